"""HAR import: every format's shape, a HAR recorded by the real headless Chromium through
the DevTools protocol, a HAR written by the real mitmproxy, devconsole's own export
round-tripping through the importer, and the export checked against the HAR 1.2 schema
and Chrome's importer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from devconsole.model import (
    ConnState,
    ControlFrame,
    EndEvent,
    Event,
    HandshakeEvent,
    Message,
    Opcode,
    RefusedEvent,
    Snapshot,
)
from devconsole.store.export import export_capture, har_log
from devconsole.store.har import HarError, har_events, parse_time, read_har
from devconsole.store.load import load_session
from tests.conftest import need_binary
from tests.factories import make_handshake
from tests.har_schema import HAR_1_2, chrome_import_problems

T0 = 1_700_000_000.0


def entry(url: str = "wss://example.com/ws?x=1", **kw: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "startedDateTime": "2023-11-14T22:13:20.000Z",
        "time": 1500.0,
        "request": {
            "method": "GET",
            "url": url,
            "httpVersion": "HTTP/1.1",
            "headers": [
                {"name": "Upgrade", "value": "websocket"},
                {"name": "Sec-WebSocket-Protocol", "value": "chat, superchat"},
                {"name": "Cookie", "value": "sid=abc"},
            ],
            "queryString": [{"name": "x", "value": "1"}],
            "cookies": [{"name": "sid", "value": "abc"}],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": 101,
            "statusText": "Switching Protocols",
            "httpVersion": "HTTP/1.1",
            "headers": [
                {"name": "Upgrade", "value": "websocket"},
                {"name": "Sec-WebSocket-Protocol", "value": "chat"},
                {"name": "Sec-WebSocket-Extensions", "value": "permessage-deflate"},
            ],
            "cookies": [],
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
        },
        "cache": {},
        "timings": {"blocked": 1, "dns": -1, "connect": -1, "send": 0, "wait": 20, "receive": 0},
        "serverIPAddress": "93.184.216.34",
    }
    e.update(kw)
    return e


MESSAGES = [
    {"type": "send", "time": T0 + 0.1, "opcode": 1, "data": '{"op":"sub","id":7}'},
    {"type": "receive", "time": T0 + 0.2, "opcode": 1, "data": "héllo"},
    {
        "type": "receive",
        "time": T0 + 0.3,
        "opcode": 2,
        "data": base64.b64encode(b"\x00\xff").decode(),
    },
]


def doc(*entries: dict[str, Any], creator: str = "WebInspector", **log: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "log": {
            "version": "1.2",
            "creator": {"name": creator, "version": "1"},
            "pages": [],
            "entries": list(entries),
        }
    }
    d["log"].update(log)
    return d


def items(events: list[Event]) -> list[Message | ControlFrame]:
    return [e for e in events if isinstance(e, Message | ControlFrame)]


# ------------------------------------------------------------------ formats


def test_chrome_har_becomes_a_connection_with_its_messages() -> None:
    imp = har_events(
        doc(
            entry(
                _resourceType="websocket",
                _webSocketMessages=MESSAGES,
                _initiator={"type": "script"},
            )
        )
    )
    assert imp.flavor == "chrome" and imp.connections == 1 and imp.messages == 3
    snap = imp.events[0]
    assert isinstance(snap, Snapshot) and snap.seq == 3
    cs = snap.connections[0]
    hs = cs.handshake
    assert hs.url == "wss://example.com/ws?x=1" and hs.scheme == "wss" and hs.path == "/ws"
    assert hs.status == 101 and hs.subprotocol == "chat"
    assert hs.extensions == ["permessage-deflate"]
    assert hs.requested_subprotocols == ["chat", "superchat"]
    assert hs.server == "93.184.216.34:443" and hs.client == ""
    assert hs.ts == pytest.approx(T0) and hs.ts_response == pytest.approx(T0 + 0.021)
    assert hs.source == "har:chrome"
    for u in ("control frames", "fragmentation", "close code", "who closed", "wire size"):
        assert u in hs.unknown
    # unknown stays unknown: no close code, no clean flag, no closer invented
    assert cs.close_code is None and cs.clean is None and cs.closed_by is None
    assert cs.state == ConnState.CLOSED and cs.ts_end == pytest.approx(T0 + 1.5)
    assert (cs.msgs_out, cs.msgs_in, cs.bytes_in) == (1, 2, len("héllo".encode()) + 2)
    ms = items(imp.events)
    assert [m.seq for m in ms] == [1, 2, 3]
    assert [(m.side, m.opcode, m.payload) for m in ms] == [
        ("client", Opcode.TEXT, b'{"op":"sub","id":7}'),
        ("server", Opcode.TEXT, "héllo".encode()),
        ("server", Opcode.BINARY, b"\x00\xff"),
    ]
    assert all(m.wire_size == 0 for m in ms)


def test_chrome_error_frames_become_connection_errors() -> None:
    msgs = [*MESSAGES, {"type": "error", "time": T0 + 1, "opcode": -1, "data": "net::ERR_X"}]
    imp = har_events(doc(entry(_resourceType="websocket", _webSocketMessages=msgs)))
    cs = imp.events[0].connections[0]  # type: ignore[union-attr]
    assert cs.errors == ["the browser reported: net::ERR_X"] and imp.messages == 3


def test_messages_are_interleaved_across_connections_by_time() -> None:
    a = entry(
        "wss://a.example/",
        _resourceType="websocket",
        _webSocketMessages=[
            {"type": "send", "time": T0 + 1, "opcode": 1, "data": "a1"},
            {"type": "send", "time": T0 + 3, "opcode": 1, "data": "a2"},
        ],
    )
    b = entry(
        "wss://b.example/",
        _resourceType="websocket",
        _webSocketMessages=[{"type": "send", "time": T0 + 2, "opcode": 1, "data": "b1"}],
    )
    imp = har_events(doc(a, b))
    assert [(m.conn, m.payload) for m in items(imp.events)] == [
        ("1", b"a1"),
        ("2", b"b1"),
        ("1", b"a2"),
    ]


def test_firefox_har_has_handshakes_only_and_says_so() -> None:
    e = entry("wss://example.com/ws", _securityState="secure")
    d = doc(e, creator="Firefox", browser={"name": "Firefox", "version": "128"})
    d["log"]["version"] = "1.1"
    imp = har_events(d)
    assert imp.flavor == "firefox" and imp.connections == 1 and imp.messages == 0
    hs = imp.events[0].connections[0].handshake  # type: ignore[union-attr]
    assert "messages" in hs.unknown and hs.source == "har:firefox"
    assert any("Firefox does not save WebSocket messages" in n for n in imp.notes)


def test_mitmproxy_har_shape() -> None:
    e = entry("http://127.0.0.1:9000/chat", _resourceType="websocket", _webSocketMessages=MESSAGES)
    e["startedDateTime"] = "2023-11-14T22:13:20.000000+00:00"
    imp = har_events(doc(e, creator="mitmproxy"))
    hs = imp.events[0].connections[0].handshake  # type: ignore[union-attr]
    assert imp.flavor == "mitmproxy" and hs.url == "ws://127.0.0.1:9000/chat"
    assert "end time" in hs.unknown and imp.events[0].connections[0].ts_end is None  # type: ignore[union-attr]


def test_http_toolkit_har_carries_the_close() -> None:
    e = entry(
        _resourceType="websocket",
        _webSocketMessages=MESSAGES,
        _webSocketClose={"code": 4001, "reason": "bye", "timestamp": T0 + 2},
    )
    aborted = entry(
        "wss://example.com/other",
        _resourceType="websocket",
        _webSocketMessages=[],
        _webSocketClose="aborted",
    )
    imp = har_events(doc(e, aborted, creator="HTTP Toolkit"))
    c1, c2 = imp.events[0].connections  # type: ignore[union-attr]
    assert imp.flavor == "httptoolkit"
    assert (c1.close_code, c1.close_reason, c1.ts_end) == (4001, "bye", pytest.approx(T0 + 2))
    assert c1.closed_by is None and "who closed" in c1.handshake.unknown
    assert "close code" not in c1.handshake.unknown
    assert c2.clean is False and c2.close_code is None


def test_refused_upgrade_and_unreachable_server() -> None:
    refused = entry(_resourceType="websocket", _webSocketMessages=[])
    refused["response"].update(
        status=403,
        statusText="Forbidden",
        content={"size": 9, "mimeType": "text/plain", "text": "forbidden"},
    )
    dead = entry("wss://down.example/", _resourceType="websocket", _webSocketMessages=[])
    dead["response"].update(status=0, _error="net::ERR_CONNECTION_REFUSED")
    imp = har_events(doc(refused, dead))
    c1, c2 = imp.events[0].connections  # type: ignore[union-attr]
    assert c1.state == ConnState.REFUSED and c1.handshake.status == 403
    assert c1.handshake.body == b"forbidden"
    assert c2.state == ConnState.REFUSED and c2.handshake.status is None
    assert c2.handshake.error == "net::ERR_CONNECTION_REFUSED"


def test_non_websocket_entries_are_skipped_and_counted() -> None:
    plain = entry("https://example.com/app.js")
    plain["request"]["headers"] = []
    plain["response"]["status"] = 200
    imp = har_events(doc(plain, entry(_resourceType="websocket", _webSocketMessages=[])))
    assert imp.skipped == 1 and imp.connections == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{", "JSON error"),
        (b"[1]", 'no "log" object'),
        (b'{"log": {"entries": 3}}', "log.entries is not a list"),
        (b"\xff\xfe{", "not UTF-8"),
    ],
)
def test_bad_har_files(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "x.har"
    p.write_bytes(content)
    with pytest.raises(HarError, match=message):
        read_har(p)


def test_odd_values_do_not_crash() -> None:
    weird = entry(
        _resourceType="websocket",
        startedDateTime="yesterday",
        time="x",
        _webSocketMessages=[
            None,
            3,
            {"type": "send"},
            {"type": "receive", "opcode": 2, "data": "!!notbase64", "time": "x"},
            {"type": "send", "opcode": 7, "data": ""},
        ],
    )
    weird["request"]["headers"] = {"Upgrade": "websocket"}
    imp = har_events(doc(weird))
    assert imp.connections == 1 and imp.messages == 0 and imp.notes


def test_parse_time() -> None:
    assert parse_time("2023-11-14T22:13:20Z") == T0
    assert parse_time("2023-11-14T23:13:20.500+01:00") == T0 + 0.5
    assert parse_time("nope") is None and parse_time(None) is None


# ------------------------------------------------------------------ devconsole round trip


def recorded_events() -> list[Event]:
    hs = make_handshake(
        "3",
        ts=T0,
        url="ws://127.0.0.1:9000/chat?room=1",
        path="/chat",
        query=[("room", "1")],
        server="127.0.0.1:9000",
        request_headers=[
            ("Host", "127.0.0.1:9000"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Protocol", "chat"),
        ],
        response_headers=[("Upgrade", "websocket")],
        subprotocol="chat",
        extensions=["permessage-deflate"],
    )
    refused = make_handshake(
        "4",
        ts=T0 + 5,
        status=401,
        reason="Unauthorized",
        body=b"no",
        body_size=2,
        ts_response=T0 + 5.1,
    )
    return [
        HandshakeEvent(hs),
        Message(1, "3", T0 + 1, "client", Opcode.TEXT, b'{"a":1}', 7, 13),
        Message(
            2, "3", T0 + 1.5, "server", Opcode.TEXT, "ünï".encode(), 5, 7, frames=2, compressed=True
        ),
        ControlFrame(3, "3", T0 + 1.6, "server", Opcode.PING, b"hb", 4),
        ControlFrame(4, "3", T0 + 1.7, "client", Opcode.PONG, b"hb", 8),
        Message(5, "3", T0 + 2, "server", Opcode.BINARY, b"\x00\x01\x02", 3, 5),
        Message(6, "3", T0 + 2.5, "client", Opcode.TEXT, b"long", 4000, 4006),  # truncated
        ControlFrame(7, "3", T0 + 3, "server", Opcode.CLOSE, b"\x03\xe8bye", 7, 1000, "bye"),
        ControlFrame(8, "3", T0 + 3.1, "client", Opcode.CLOSE, b"\x03\xe8bye", 11, 1000, "bye"),
        EndEvent("3", T0 + 3.2, True, "server"),
        RefusedEvent(refused),
    ]


def test_export_then_open_keeps_what_har_carries(tmp_path: Path) -> None:
    from devconsole.store.capture import save_capture

    cap = tmp_path / "rec.dcap"
    save_capture(cap, recorded_events())
    har = tmp_path / "rec.har"
    export_capture(cap, har, fmt="har", redact=False)
    orig, _ = load_session(cap)
    back, reader = load_session(har)
    assert reader.kind == "har" and reader.error is None
    assert set(back.connections) == {"3", "4"}
    for cid in ("3", "4"):
        a, b = orig.connections[cid], back.connections[cid]
        for f in (
            "url",
            "method",
            "path",
            "query",
            "http_version",
            "request_headers",
            "status",
            "reason",
            "response_headers",
            "subprotocol",
            "extensions",
            "body",
            "server",
            "client",
        ):
            assert getattr(b.handshake, f) == getattr(a.handshake, f), (cid, f)
        assert b.handshake.ts == pytest.approx(a.handshake.ts, abs=1e-3)
        for f in (
            "state",
            "close_code",
            "close_reason",
            "closed_by",
            "clean",
            "msgs_in",
            "msgs_out",
            "bytes_in",
            "bytes_out",
        ):
            assert getattr(b, f) == getattr(a, f), (cid, f)
        assert b.ts_end == pytest.approx(a.ts_end, abs=1e-3)
    key = [(i.side, i.opcode, i.payload, i.size, round(i.ts, 6)) for i in orig.items("3")]
    assert [(i.side, i.opcode, i.payload, i.size, round(i.ts, 6)) for i in back.items("3")] == key
    m2 = next(i for i in back.items("3") if i.seq == 2)
    assert isinstance(m2, Message) and m2.frames == 2 and m2.compressed
    assert back.connections["3"].handshake.unknown == ["wire size"]
    # and exporting the import again gives the same HAR
    har2 = tmp_path / "again.har"
    export_capture(har, har2, fmt="har", redact=False)
    a_doc = json.loads(har.read_text())
    b_doc = json.loads(har2.read_text())
    for e in (*a_doc["log"]["entries"], *b_doc["log"]["entries"]):
        e["_devconsole"].pop("unknown", None)
        e["_devconsole"].pop("source", None)
    assert a_doc["log"]["entries"] == b_doc["log"]["entries"]


def test_an_imported_har_exported_again_still_says_what_is_unknown(tmp_path: Path) -> None:
    src = tmp_path / "chrome.har"
    src.write_text(json.dumps(doc(entry(_resourceType="websocket", _webSocketMessages=MESSAGES))))
    out = tmp_path / "out.har"
    export_capture(src, out, fmt="har")
    e = json.loads(out.read_text())["log"]["entries"][0]
    assert e["_devconsole"]["clean"] is None and e["_devconsole"]["closed_by"] is None
    assert "close code" in e["_devconsole"]["unknown"]
    again, _ = load_session(out)
    c = again.connections["1"]
    assert c.handshake.source == "har:chrome" and "close code" in c.handshake.unknown
    assert c.close_code is None and c.clean is None


def test_export_matches_the_har_1_2_schema_and_chrome_importer() -> None:
    d = har_log(recorded_events(), redact=False)
    jsonschema.validate(d, HAR_1_2)
    assert chrome_import_problems(d) == []
    ws = d["log"]["entries"][0]
    assert ws["_resourceType"] == "websocket"
    assert [m["type"] for m in ws["_webSocketMessages"]] == ["send", "receive", "receive", "send"]
    assert {m["opcode"] for m in ws["_webSocketMessages"]} == {1, 2}
    # and the schema does catch a broken document
    bad = json.loads(json.dumps(d))
    del bad["log"]["entries"][0]["timings"]["wait"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, HAR_1_2)
    bad["log"]["entries"][0]["_webSocketMessages"][0]["type"] = "sent"
    assert chrome_import_problems(bad)


# ------------------------------------------------------------------ real mitmproxy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _echo_with_push(ws: ServerConnection) -> None:
    with contextlib.suppress(Exception):
        await ws.send("welcome")
        async for msg in ws:
            await ws.send(msg)


@pytest.mark.slow
async def test_a_har_written_by_mitmproxy_opens_with_every_message(tmp_path: Path) -> None:
    har = tmp_path / "mitm.har"
    async with serve(_echo_with_push, "127.0.0.1", 0) as srv:
        sport = srv.sockets[0].getsockname()[1]
        port = _free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from mitmproxy.tools.main import mitmdump; mitmdump()",
                "--mode",
                f"reverse:http://127.0.0.1:{sport}",
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                str(port),
                "--set",
                f"confdir={tmp_path / 'conf'}",
                "--set",
                f"hardump={har}",
                "-q",
            ],
            stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    ws = await connect(f"ws://127.0.0.1:{port}/chat", open_timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    await asyncio.sleep(0.2)
            async with ws:
                assert await ws.recv() == "welcome"
                await ws.send("hello")
                await ws.send(b"\x00\x01\xfe")
                assert await ws.recv() == "hello"
                assert await ws.recv() == b"\x00\x01\xfe"
        finally:
            await asyncio.sleep(0.5)  # let mitmproxy see the close (websocket_end)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    imp = read_har(har)
    assert imp.flavor == "mitmproxy" and imp.connections == 1
    ms = items(imp.events)
    assert [(m.side, m.opcode, m.payload) for m in ms] == [
        ("server", Opcode.TEXT, b"welcome"),
        ("client", Opcode.TEXT, b"hello"),
        ("client", Opcode.BINARY, b"\x00\x01\xfe"),
        ("server", Opcode.TEXT, b"hello"),
        ("server", Opcode.BINARY, b"\x00\x01\xfe"),
    ]
    hs = imp.events[0].connections[0].handshake  # type: ignore[union-attr]
    # reverse mode: mitmproxy writes the upstream URL
    assert hs.url == f"ws://127.0.0.1:{sport}/chat" and hs.status == 101


# ------------------------------------------------------------------ real Chromium


PAGE = """<!doctype html><title>ws</title><script>
const ws = new WebSocket("ws://127.0.0.1:PORT/echo?room=1", ["chat"]);
ws.binaryType = "arraybuffer";
let n = 0;
ws.onopen = () => {
  ws.send("hello");
  ws.send(JSON.stringify({id: 1, q: "\\u00e9t\\u00e9"}));
  ws.send(new Uint8Array([0, 1, 2, 255]).buffer);
};
ws.onmessage = () => { if (++n === 4) ws.close(1000, "done"); };
</script>"""


class Cdp:
    """A minimal DevTools protocol client over a real websockets connection."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg and msg["id"] in self.pending:
                self.pending.pop(msg["id"]).set_result(msg)
            elif "method" in msg:
                self.events.append(msg)

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        self.next_id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        req: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            req["sessionId"] = session
        await self.ws.send(json.dumps(req))
        res = await asyncio.wait_for(fut, 30)
        if "error" in res:
            raise AssertionError(f"{method}: {res['error']}")
        return res.get("result", {})


def har_from_cdp(events: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """A HAR entry per WebSocket, built from the Network events the way DevTools' HAR
    writer (front_end/models/har/Log.ts) builds it: message times are the monotonic
    timestamps shifted to wall time by the handshake's (timestamp, wallTime) pair."""
    by_id: dict[str, dict[str, Any]] = {}
    for ev in events:
        p = ev.get("params", {})
        rid = p.get("requestId")
        m = ev["method"]
        if m == "Network.webSocketCreated":
            by_id[rid] = {"url": p["url"], "frames": [], "closed": None}
        elif rid not in by_id:
            continue
        elif m == "Network.webSocketWillSendHandshakeRequest":
            by_id[rid].update(ts=p["timestamp"], wall=p["wallTime"], req=p["request"])
        elif m == "Network.webSocketHandshakeResponseReceived":
            by_id[rid].update(resp=p["response"], resp_ts=p["timestamp"])
        elif m in ("Network.webSocketFrameSent", "Network.webSocketFrameReceived"):
            kind = "send" if m.endswith("Sent") else "receive"
            f = p["response"]
            by_id[rid]["frames"].append((kind, p["timestamp"], f["opcode"], f["payloadData"]))
        elif m == "Network.webSocketFrameError":
            by_id[rid]["frames"].append(("error", p["timestamp"], -1, p["errorMessage"]))
        elif m == "Network.webSocketClosed":
            by_id[rid]["closed"] = p["timestamp"]
    entries = []
    for w in by_id.values():
        off = w["wall"] - w["ts"]
        resp = w["resp"]
        started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(w["wall"]))
        started += f".{int((w['wall'] % 1) * 1000):03d}Z"
        end = w["closed"] if w["closed"] is not None else w["frames"][-1][1]
        entries.append(
            {
                "startedDateTime": started,
                "time": (end - w["ts"]) * 1000,
                "request": {
                    "method": "GET",
                    "url": w["url"],
                    "httpVersion": "HTTP/1.1",
                    "headers": [{"name": k, "value": v} for k, v in w["req"]["headers"].items()],
                    "queryString": [],
                    "cookies": [],
                    "headersSize": -1,
                    "bodySize": 0,
                },
                "response": {
                    "status": resp["status"],
                    "statusText": resp["statusText"],
                    "httpVersion": "HTTP/1.1",
                    "headers": [{"name": k, "value": v} for k, v in resp["headers"].items()],
                    "cookies": [],
                    "content": {"size": 0, "mimeType": "x-unknown"},
                    "redirectURL": "",
                    "headersSize": -1,
                    "bodySize": -1,
                    "_transferSize": 0,
                    "_error": None,
                },
                "cache": {},
                "timings": {
                    "blocked": -1,
                    "dns": -1,
                    "ssl": -1,
                    "connect": -1,
                    "send": 0,
                    "wait": (w["resp_ts"] - w["ts"]) * 1000,
                    "receive": 0,
                    "_blocked_queueing": -1,
                },
                "_initiator": {"type": "script"},
                "_priority": "Low",
                "_resourceType": "websocket",
                "_webSocketMessages": [
                    {"type": k, "time": t + off, "opcode": op, "data": d}
                    for k, t, op, d in w["frames"]
                ],
            }
        )
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "WebInspector", "version": version},
            "pages": [],
            "entries": entries,
        }
    }


@pytest.mark.slow
async def test_a_har_recorded_by_headless_chromium_opens_with_every_message(
    short_tmp: Path,
) -> None:
    chromium = need_binary("chromium", "chromium-browser", "google-chrome")
    received: list[Any] = []

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            await ws.send("welcome")
            async for msg in ws:
                received.append(msg)
                await ws.send(msg)

    def page(connection: Any, request: Any) -> Response | None:
        if request.path.startswith("/page"):
            body = PAGE.replace("PORT", str(port)).encode()
            return Response(
                200,
                "OK",
                Headers({"Content-Type": "text/html", "Content-Length": str(len(body))}),
                body,
            )
        return None

    async with serve(handler, "127.0.0.1", 0, process_request=page, subprotocols=["chat"]) as srv:
        port = srv.sockets[0].getsockname()[1]
        profile = short_tmp / "profile"
        proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            active = profile / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not (active.exists() and len(active.read_text().splitlines()) >= 2):
                assert proc.poll() is None, "chromium exited"
                assert time.monotonic() < deadline, "chromium did not open its DevTools port"
                await asyncio.sleep(0.1)
            dport, dpath = active.read_text().splitlines()[:2]
            async with connect(f"ws://127.0.0.1:{dport}{dpath}", max_size=None, proxy=None) as dws:
                cdp = Cdp(dws)
                version = (await cdp.call("Browser.getVersion"))["product"]
                target = (await cdp.call("Target.createTarget", url="about:blank"))["targetId"]
                sid = (await cdp.call("Target.attachToTarget", targetId=target, flatten=True))[
                    "sessionId"
                ]
                await cdp.call("Network.enable", sid)
                await cdp.call("Page.navigate", sid, url=f"http://127.0.0.1:{port}/page")
                deadline = time.monotonic() + 60
                while not any(e["method"] == "Network.webSocketClosed" for e in cdp.events):
                    assert time.monotonic() < deadline, "the page's WebSocket never closed"
                    await asyncio.sleep(0.05)
                cdp.task.cancel()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    har = har_from_cdp(cdp.events, version)
    path = short_tmp / "chromium.har"
    path.write_text(json.dumps(har))
    assert chrome_import_problems(har) == []
    session, reader = load_session(path)
    assert reader.kind == "har" and reader.description.startswith("Chrome HAR")
    (c,) = session.connections.values()
    assert c.url == f"ws://127.0.0.1:{port}/echo?room=1" and c.handshake.status == 101
    assert c.handshake.subprotocol == "chat" and c.handshake.query == [("room", "1")]
    got = [(m.side, m.opcode, m.payload) for m in session.items(c.id)]
    sent = [
        ("client", Opcode.TEXT, b"hello"),
        ("client", Opcode.TEXT, '{"id":1,"q":"été"}'.encode()),
        ("client", Opcode.BINARY, b"\x00\x01\x02\xff"),
    ]
    echoed = [("server", o, p) for _, o, p in sent]
    assert [g for g in got if g[0] == "client"] == sent
    assert [g for g in got if g[0] == "server"] == [("server", Opcode.TEXT, b"welcome"), *echoed]
    assert len(received) == 3 and c.msgs_in == 4 and c.msgs_out == 3
    times = [m.ts for m in session.items(c.id)]
    assert times == sorted(times) and abs(times[0] - time.time()) < 600
    assert c.close_code is None and "close code" in c.handshake.unknown
