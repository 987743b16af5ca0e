from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from devconsole.analysis.heartbeat import HeartbeatMonitor
from devconsole.analysis.readiness import (
    build_report,
    first_message_auth,
    handshake_auth,
    render_text,
    subprotocol_token,
)
from devconsole.model import (
    CLIENT,
    SERVER,
    ControlFrame,
    EndEvent,
    Handshake,
    HandshakeEvent,
    Message,
    Opcode,
    RefusedEvent,
    Side,
)
from devconsole.session import Session
from tests.factories import make_handshake

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)

_ids = itertools.count(1)
_seq = itertools.count(1)


def hs(
    ts: float,
    *,
    path: str = "/ws",
    scheme: str = "ws",
    origin: str | None = "https://app.test",
    cookie: str | None = None,
    query: list[tuple[str, str]] | None = None,
    headers: list[tuple[str, str]] | None = None,
    status: int = 101,
    extensions: list[str] | None = None,
    conn: str | None = None,
) -> Handshake:
    req = [("Host", "srv.test"), ("User-Agent", "ua/1")]
    if origin:
        req.append(("Origin", origin))
    cookies: list[tuple[str, str]] = []
    if cookie:
        req.append(("Cookie", cookie))
        cookies = [(k.strip(), v) for k, v in (p.split("=", 1) for p in cookie.split(";"))]
    req.extend(headers or [])
    q = query or []
    qs = "&".join(f"{k}={v}" for k, v in q)
    return make_handshake(
        conn=conn or f"c{next(_ids)}",
        ts=ts,
        client="10.1.1.1:5555",
        server="srv.test:443",
        scheme=scheme,
        url=f"{scheme}://srv.test{path}" + (f"?{qs}" if qs else ""),
        method="GET",
        path=path,
        query=q,
        http_version="HTTP/1.1",
        request_headers=req,
        cookies=cookies,
        status=status,
        reason="Unauthorized" if status == 401 else "",
        extensions=extensions or [],
        ts_response=ts + 0.002,
        body=b'{"error":"unauthorized"}' if status == 401 else b"",
    )


def msg(conn: str, ts: float, side: Side, data: str | bytes) -> Message:
    payload = data.encode() if isinstance(data, str) else data
    op = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
    return Message(next(_seq), conn, ts, side, op, payload, len(payload), len(payload) + 2)


def ctl(
    conn: str, ts: float, side: Side, op: Opcode, payload: bytes = b"", **kw: Any
) -> ControlFrame:
    return ControlFrame(next(_seq), conn, ts, side, op, payload, 2 + len(payload), **kw)


def close(session: Session, conn: str, ts: float, code: int, by: Side = SERVER) -> None:
    session.apply(ctl(conn, ts, by, Opcode.CLOSE, code.to_bytes(2, "big"), code=code))
    other: Side = CLIENT if by == SERVER else SERVER
    session.apply(ctl(conn, ts + 0.001, other, Opcode.CLOSE, code.to_bytes(2, "big"), code=code))
    session.apply(EndEvent(conn, ts + 0.002, clean=True, closed_by=by))


def endpoint(report: dict[str, Any], path: str) -> dict[str, Any]:
    (ep,) = [e for e in report["endpoints"] if e["path"] == path]
    return ep


# --------------------------------------------------------------------------- auth detection


def test_auth_detection_helpers() -> None:
    assert handshake_auth(hs(0, cookie="session=abc; theme=dark")) == ["cookie session, theme"]
    assert handshake_auth(hs(0, query=[("ticket", "abc123")])) == ["query ticket"]
    assert handshake_auth(hs(0, query=[("room", "7")])) == []
    assert handshake_auth(hs(0, headers=[("Authorization", "Bearer xyz")])) == [
        "Authorization Bearer"
    ]
    proto = [("Sec-WebSocket-Protocol", f"access_token, {JWT}")]
    assert subprotocol_token(hs(0, headers=proto)) == 'subprotocol "access_token" + token'
    assert subprotocol_token(hs(0, headers=[("Sec-WebSocket-Protocol", f"v1, {JWT}")])) == (
        "token-like subprotocol"
    )
    k8s = "base64url.bearer.authorization.k8s.io.ZXlKaGJHY2lPaUpTVXpJMU5pSXNJbXRw"
    assert subprotocol_token(
        hs(0, headers=[("Sec-WebSocket-Protocol", f"v4.channel.k8s.io, {k8s}")])
    )
    for plain in ("graphql-transport-ws", "wamp.2.json, wamp.2.msgpack", "v12.stomp, mqtt"):
        assert subprotocol_token(hs(0, headers=[("Sec-WebSocket-Protocol", plain)])) is None
    assert first_message_auth(Opcode.TEXT, b'{"type":"auth","token":"x"}') == (
        'first message {"type":"auth"}'
    )
    assert (
        first_message_auth(Opcode.TEXT, b'{"type":"connection_init","payload":{"authToken":"x"}}')
        == "first message carries a credential field"
    )
    assert first_message_auth(Opcode.TEXT, f"AUTH {JWT}".encode()) == "first message carries a JWT"
    assert first_message_auth(Opcode.TEXT, b'{"type":"subscribe","channel":"x"}') is None
    assert first_message_auth(Opcode.BINARY, b"\x00\x01") is None


@pytest.mark.parametrize(
    ("kwargs", "first", "ok", "needle"),
    [
        ({"cookie": "session=s3cr3t"}, None, True, "cookie session"),
        ({"query": [("ticket", "abc123")]}, None, True, "query ticket"),
        (
            {"headers": [("Sec-WebSocket-Protocol", f"access_token, {JWT}")]},
            None,
            True,
            "subprotocol",
        ),
        ({}, '{"type":"auth","jwt":"x"}', True, "first message"),
        ({}, '{"type":"hello"}', False, "no credentials"),
        ({}, None, False, "no credentials"),
    ],
)
def test_checklist_auth(kwargs: dict[str, Any], first: str | None, ok: bool, needle: str) -> None:
    session = Session()
    h = hs(0.0, **kwargs)
    session.apply(HandshakeEvent(h))
    if first is not None:
        session.apply(msg(h.conn, 0.1, CLIENT, first))
    item = endpoint(build_report(session, None, now=1.0), "/ws")["checklist"]["auth"]
    assert item["ok"] is ok
    assert needle in item["detail"]
    assert "s3cr3t" not in json.dumps(item)  # credentials are never echoed


def test_refused_401_means_auth_is_enforced() -> None:
    session = Session()
    for i in range(3):
        session.apply(RefusedEvent(hs(i * 20.0, path="/private", status=401)))
    ep = endpoint(build_report(session, None, now=100.0), "/private")
    assert ep["connections"] == 3
    assert ep["checklist"]["auth"]["ok"] is True
    assert "401 x3" in ep["checklist"]["auth"]["detail"]
    assert ep["checklist"]["refused_upgrades"]["ok"] is None
    assert ep["checklist"]["refused_upgrades"]["statuses"] == {"401": 3}
    # a client refused every time has retries, not a backoff
    assert ep["reconnect_delays"] == []
    assert ep["backoff"]["pattern"] == "none"
    rr = ep["refused_retries"]
    assert (rr["count"], rr["clients"], rr["status"]) == (3, 1, 401)
    assert rr["interval"] == pytest.approx(20.0, abs=0.01)
    assert ep["clients"][0]["reconnect_delays"] == pytest.approx([20.0, 20.0], abs=0.01)
    assert "retried 3 times, every 20.00 s (401)" in ep["checklist"]["refused_upgrades"]["detail"]


# --------------------------------------------------------------------------- full report


def build_demo_like_session() -> tuple[Session, HeartbeatMonitor]:
    session = Session()
    mon = HeartbeatMonitor()
    session.observers.append(mon.on_event)
    # /chat: wss, cookie, server pings every 3 s answered in 2 ms; one big message
    chat = hs(0.0, path="/chat", scheme="wss", cookie="session=alice")
    session.apply(HandshakeEvent(chat))
    for i in range(12):
        t = 1.0 + 3 * i
        session.apply(ctl(chat.conn, t, SERVER, Opcode.PING, bytes([i, 1, 2, 3])))
        session.apply(ctl(chat.conn, t + 0.002, CLIENT, Opcode.PONG, bytes([i, 1, 2, 3])))
        session.apply(msg(chat.conn, t + 0.5, CLIENT, json.dumps({"type": "chat", "n": i})))
    session.apply(msg(chat.conn, 20.0, SERVER, "x" * 70_000))
    # /feed: ws, app heartbeat, exponential reconnects after 1012 restarts
    t = 0.0
    feed = hs(t, path="/feed", cookie="session=feed")
    session.apply(HandshakeEvent(feed))
    for k in range(8):
        session.apply(msg(feed.conn, t + 0.1 + 2 * k, CLIENT, '{"type":"ping"}'))
        session.apply(msg(feed.conn, t + 0.105 + 2 * k, SERVER, '{"type":"pong"}'))
    close(session, feed.conn, 16.0, 1012)
    t = 16.002
    for d in (0.5, 1.0, 2.0):
        t += d
        session.apply(RefusedEvent(hs(t, path="/feed", cookie="session=feed", status=503)))
        t += 0.002
    session.apply(HandshakeEvent(hs(t + 4.0, path="/feed", cookie="session=feed")))
    # /ticker: compression negotiated, ended without a close frame
    tick = hs(
        1.0,
        path="/ticker",
        cookie="session=bob",
        headers=[("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")],
        extensions=["permessage-deflate"],
    )
    session.apply(HandshakeEvent(tick))
    for i in range(50):
        session.apply(msg(tick.conn, 1.0 + i * 0.1, SERVER, bytes(2000)))
    session.apply(EndEvent(tick.conn, 9.0, clean=False, closed_by=None))
    return session, mon


def test_report_shape_and_checklist() -> None:
    session, mon = build_demo_like_session()
    report = build_report(session, mon, now=60.0)
    json.dumps(report)
    assert set(report) == {"endpoints"}
    assert [e["path"] for e in report["endpoints"]] == ["/chat", "/feed", "/ticker"]
    for ep in report["endpoints"]:
        assert set(ep) == {
            "path",
            "origin",
            "connections",
            "reconnect_delays",
            "backoff",
            "clients",
            "refused_retries",
            "heartbeat",
            "backplane",
            "protocols",
            "latency",
            "checklist",
        }
        # no backplane recorded: reported as not observed, never assumed
        assert ep["backplane"] is None
        assert ep["checklist"]["backplane"]["ok"] is None
        for item in ep["checklist"].values():
            assert item["ok"] in (True, False, None)
            assert isinstance(item["detail"], str) and item["detail"]

    chat = endpoint(report, "/chat")
    cl = chat["checklist"]
    assert chat["origin"] == "https://app.test"
    assert chat["heartbeat"]["pinger"] == "server"
    assert chat["heartbeat"]["server_pings"]["interval"] == pytest.approx(3.0)
    assert chat["heartbeat"]["server_pings"]["rtt_p50"] == pytest.approx(0.002)
    assert cl["heartbeat"]["ok"] is True
    assert "server pings every 3.00 s" in cl["heartbeat"]["detail"]
    assert cl["pongs"]["ok"] is True
    assert cl["wss"]["ok"] is True
    assert cl["auth"]["ok"] is True
    assert cl["largest_message"]["bytes"] == 70_000
    assert cl["largest_message"]["ok"] is True
    assert cl["compression"]["ok"] is False  # 68 KiB messages, no compression offered
    assert cl["reconnect"]["ok"] is None
    assert cl["close_codes"]["ok"] is None  # still open

    feed = endpoint(report, "/feed")
    assert feed["connections"] == 5
    assert feed["reconnect_delays"] == pytest.approx([0.5, 1.0, 2.0, 4.0], abs=0.001)
    assert feed["backoff"]["pattern"] == "exponential"
    assert feed["backoff"]["factor"] == pytest.approx(2.0, rel=0.01)
    fcl = feed["checklist"]
    assert fcl["reconnect"]["ok"] is True
    assert "exponential" in fcl["reconnect"]["detail"]
    assert fcl["wss"]["ok"] is False
    app = feed["heartbeat"]["app"]
    assert [(a["side"], a["signature"], a["reply"]) for a in app] == [
        ("client", '{"type":"ping"}', '{"type":"pong"}')
    ]
    assert app[0]["interval"] == pytest.approx(2.0)
    assert fcl["heartbeat"]["ok"] is True
    assert fcl["pongs"]["ok"] is None
    assert fcl["close_codes"]["ok"] is True
    assert fcl["close_codes"]["codes"] == [
        {"code": 1012, "meaning": "Service Restart", "count": 1, "by": {"server": 1}}
    ]
    assert fcl["refused_upgrades"]["statuses"] == {"503": 3}

    ticker = endpoint(report, "/ticker")
    tcl = ticker["checklist"]
    assert tcl["compression"]["ok"] is True
    assert tcl["close_codes"]["ok"] is False
    assert "without a close handshake" in tcl["close_codes"]["detail"]
    assert tcl["heartbeat"]["ok"] is None  # 8 s is too short to tell


def test_report_without_monitor_uses_the_buffer() -> None:
    session, mon = build_demo_like_session()
    with_monitor = build_report(session, mon, now=60.0)
    without = build_report(session, None, now=60.0)
    assert without == with_monitor


def test_no_heartbeat_on_long_connection_fails() -> None:
    session = Session()
    h = hs(0.0, cookie="sid=1")
    session.apply(HandshakeEvent(h))
    session.apply(msg(h.conn, 1.0, CLIENT, "hello"))
    ep = endpoint(build_report(session, None, now=600.0), "/ws")
    assert ep["checklist"]["heartbeat"]["ok"] is False
    assert ep["heartbeat"]["seen"] is False


def test_error_close_codes_and_unanswered_pings() -> None:
    session = Session()
    h = hs(0.0)
    session.apply(HandshakeEvent(h))
    session.apply(ctl(h.conn, 1.0, CLIENT, Opcode.PING, b"a"))
    session.apply(ctl(h.conn, 31.0, CLIENT, Opcode.PING, b"b"))
    close(session, h.conn, 32.0, 1011)
    ep = endpoint(build_report(session, None, now=40.0), "/ws")
    cl = ep["checklist"]
    assert cl["pongs"]["ok"] is False
    assert "2 of 2 pings got no pong" in cl["pongs"]["detail"]
    assert cl["close_codes"]["ok"] is False
    assert "1011 Internal Error" in cl["close_codes"]["detail"]


def test_reconnect_storm_fails() -> None:
    session = Session()
    t = 0.0
    for _ in range(8):
        h = hs(t, path="/storm")
        session.apply(HandshakeEvent(h))
        session.apply(EndEvent(h.conn, t + 0.01, clean=False, closed_by="server"))
        t += 0.015
    ep = endpoint(build_report(session, None, now=10.0), "/storm")
    assert ep["backoff"]["pattern"] == "storm"
    assert ep["checklist"]["reconnect"]["ok"] is False


def test_render_text() -> None:
    session, mon = build_demo_like_session()
    text = render_text(build_report(session, mon, now=60.0))
    assert text.startswith("Production readiness: 3 endpoint(s)")
    assert "/feed" in text
    assert "reconnect delays: 500 ms, 1.00 s, 2.00 s, 4.00 s" in text
    assert "[FAIL] wss" in text
    assert "[ ok ] heartbeat" in text
    assert "[" in text and "\x1b" not in text  # plain text, no escape codes
    assert render_text({"endpoints": []}).startswith("Production readiness: 0 endpoint(s)")


# --------------------------------------------------------------------------- protocols


def test_latency_per_method_and_unanswered_requests() -> None:
    from devconsole.analysis.readiness import observe
    from devconsole.model import EndEvent as End
    from devconsole.model import HandshakeEvent as Hs
    from devconsole.model import Message as Msg
    from devconsole.model import Opcode as Op
    from tests.factories import make_handshake

    session = Session()
    analysis = observe(session)
    session.apply(Hs(make_handshake("r1", path="/rpc")))
    seq = iter(range(1, 1000))

    def send(side: str, ts: float, text: str) -> None:
        p = text.encode()
        session.apply(Msg(next(seq), "r1", ts, side, Op.TEXT, p, len(p), len(p) + 2))  # type: ignore[arg-type]

    for i in range(10):
        send("client", i, f'{{"jsonrpc":"2.0","method":"eth_call","id":{i}}}')
        send("server", i + 0.01 * (i + 1), f'{{"jsonrpc":"2.0","result":"0x","id":{i}}}')
    send(
        "client",
        20.0,
        '{"jsonrpc":"2.0","method":"eth_subscribe","id":"s","params":["x\\u001b[2J"]}',
    )
    session.apply(End("r1", 30.0, True, "client"))
    report = build_report(session, None, 40.0, analysis=analysis)
    ep = endpoint(report, "/rpc")
    assert ep["protocols"] == ["jsonrpc"]
    [m] = ep["latency"]["methods"]
    assert (m["method"], m["count"], m["p50"], m["p95"], m["max"]) == (
        "eth_call",
        10,
        0.05,
        0.1,
        0.1,
    )
    replies = ep["checklist"]["replies"]
    assert replies["ok"] is False and replies["unanswered"] == 1
    assert (
        "1 of 11 requests unanswered" in replies["detail"] and "eth_subscribe" in replies["detail"]
    )
    text = render_text(report)
    assert "latency (request -> first answer):" in text and "eth_call" in text
    assert "\x1b" not in text
    # without an analysis, the same is rebuilt from the buffered items
    again = endpoint(build_report(session, None, 40.0), "/rpc")
    assert again["latency"]["methods"] == ep["latency"]["methods"]
    assert again["checklist"]["replies"]["ok"] is False


def test_requests_still_waiting_on_a_live_connection_are_not_called_answered() -> None:
    from devconsole.analysis.readiness import observe
    from devconsole.model import HandshakeEvent as Hs
    from devconsole.model import Message as Msg
    from devconsole.model import Opcode as Op
    from tests.factories import make_handshake

    session = Session()
    analysis = observe(session)
    session.apply(Hs(make_handshake("r1", path="/rpc")))
    for seq, (side, text) in enumerate(
        [
            ("client", '{"jsonrpc":"2.0","method":"a","id":1}'),
            ("server", '{"jsonrpc":"2.0","result":1,"id":1}'),
            ("client", '{"jsonrpc":"2.0","method":"debug_trace","id":2}'),
        ],
        start=1,
    ):
        p = text.encode()
        session.apply(Msg(seq, "r1", float(seq), side, Op.TEXT, p, len(p), len(p) + 2))  # type: ignore[arg-type]
    ep = endpoint(build_report(session, None, 10.0, analysis=analysis), "/rpc")
    replies = ep["checklist"]["replies"]
    assert replies["ok"] is None
    assert replies["detail"].startswith("1 of 2 requests answered; 1 still waiting")
    assert "debug_trace" in replies["detail"] and ep["latency"]["pending"] == 1


def test_auth_names_the_connections_that_lacked_what_the_others_sent() -> None:
    session = Session()
    good = hs(0.0, path="/app", cookie="session=s3cr3t-alice; theme=dark", conn="1")
    session.apply(HandshakeEvent(good))
    for i, t in enumerate((5.0, 10.0, 15.0)):
        session.apply(
            RefusedEvent(hs(t, path="/app", origin="http://127.0.0.1:5173", status=403,
                            conn=str(10 + i)))
        )  # fmt: skip
    # an accepted upgrade without the cookie, same Origin as the good one
    session.apply(HandshakeEvent(hs(20.0, path="/app", cookie="theme=dark", conn="20")))
    report = build_report(session, None, now=30.0)
    items = {
        (ep["origin"], ep["connections"]): ep["checklist"]["auth"] for ep in report["endpoints"]
    }
    refused = items[("http://127.0.0.1:5173", 3)]
    assert refused["lacking"] == [
        {"connections": ["10", "11", "12"], "reference": "1",
         "missing": ["cookie session", "cookie theme"]}
    ]  # fmt: skip
    assert "#10, #11, #12 lacked cookie session, cookie theme (sent by #1)" in refused["detail"]
    same_origin = items[("https://app.test", 2)]
    assert same_origin["lacking"] == [
        {"connections": ["20"], "reference": "1", "missing": ["cookie session"]}
    ]
    assert "#20 lacked cookie session (sent by #1)" in same_origin["detail"]
    assert "s3cr3t" not in json.dumps(report)
    assert "lacked cookie session" in render_text(report)


def test_reconnect_item_judges_the_connected_client_not_the_refused_one() -> None:
    """Issue 16.1: the checklist said "fixed interval ~5.01 s" (the no-cookie client's
    refused retries) for an endpoint whose connected client backs off exponentially."""
    from tests.test_analysis_backoff import Sim, chat_app

    sim = Sim()
    chat_app(sim)
    (ep,) = build_report(sim.session, None, now=200.0)["endpoints"]
    item = ep["checklist"]["reconnect"]
    assert item["ok"] is True
    assert "exponential backoff x1.99" in item["detail"]
    assert "client/1 session (2)" in item["detail"]  # which client
    assert "fixed" not in item["detail"]
    assert ep["backoff"]["pattern"] == "exponential"
    assert ep["reconnect_delays"] == pytest.approx([0.51, 1.01, 2.01, 4.01], abs=0.001)
    refused = ep["checklist"]["refused_upgrades"]["detail"]
    assert "1 client never connected and retried 12 times, every 5.01 s (403)" in refused
    text = render_text({"endpoints": [ep]})
    assert "reconnect delays: 510 ms, 1.01 s, 2.01 s, 4.01 s" in text


def test_mixed_clients_are_each_named_in_the_reconnect_item() -> None:
    from tests.test_analysis_backoff import Sim, chat_app

    sim = Sim()
    chat_app(sim)
    t = 100.0
    for _ in range(5):
        sim.connect(t, t + 1.0, cookie="session=other", client="10.0.0.6:1")
        t += 4.0
    (ep,) = build_report(sim.session, None, now=200.0)["endpoints"]
    assert ep["reconnect_delays"] == "mixed"
    detail = ep["checklist"]["reconnect"]["detail"]
    assert detail.startswith("2 clients, each judged apart: ")
    assert "client/1 session (2): exponential" in detail
    assert "client/1 session (3): fixed interval ~3.00 s" in detail
    text = render_text({"endpoints": [ep]})
    assert "reconnect delays of client/1 session (3): 3.00 s" in text
