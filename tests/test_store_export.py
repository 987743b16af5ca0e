"""Exports: JSON lines in the ``tail --json`` schema and HAR 1.2 with Chrome's
``_webSocketMessages``, redacted by default."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from devconsole.decoders.tracker import ProtocolTracker
from devconsole.model import (
    ConnSnapshot,
    ConnState,
    ControlFrame,
    EndEvent,
    Event,
    GapEvent,
    Handshake,
    HandshakeEvent,
    Message,
    Opcode,
    OutcomeEvent,
    ProtocolErrorEvent,
    RefusedEvent,
    Snapshot,
    StateEvent,
)
from devconsole.session import Session
from devconsole.store.capture import CaptureError, CaptureWriter, save_capture
from devconsole.store.export import (
    event_dict,
    expand_snapshots,
    export_capture,
    export_har,
    export_jsonl,
    har_log,
)
from devconsole.store.lines import TailPrinter, event_json
from tests.factories import make_handshake

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
# every secret in the traffic below; none may survive a default export
SECRETS = [
    "c00kieval",
    "s3ss10n",
    "b3arer-t0ken",
    "abc-ticket",
    JWT,
    "hunter2",
    "k3y-123",
    "setc00kie",
    "refr3sh",
]


def handshake(conn: str = "c1", **kw: Any) -> Handshake:
    fields: dict[str, Any] = dict(
        ts=1700000000.25,
        client="127.0.0.1:51234",
        server="app.example:443",
        scheme="wss",
        url="wss://app.example/ws?ticket=abc-ticket&room=lobby",
        method="GET",
        path="/ws",
        query=[("ticket", "abc-ticket"), ("room", "lobby")],
        http_version="HTTP/1.1",
        request_headers=[
            ("Host", "app.example"),
            ("Cookie", "session=s3ss10n; theme=c00kieval"),
            ("Authorization", "Bearer b3arer-t0ken"),
            ("X-Api-Key", "k3y-123"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Protocol", f"graphql-ws, {JWT}"),
            ("Origin", "https://app.example"),
        ],
        cookies=[("session", "s3ss10n"), ("theme", "c00kieval")],
        status=101,
        reason="Switching Protocols",
        response_headers=[
            ("Upgrade", "websocket"),
            ("Set-Cookie", "srv=setc00kie; Path=/; HttpOnly; Secure"),
            ("Sec-WebSocket-Protocol", "graphql-ws"),
        ],
        subprotocol="graphql-ws",
        extensions=["permessage-deflate"],
        ts_response=1700000000.35,
    )
    fields.update(kw)
    return make_handshake(conn, **fields)


REFUSED = handshake(
    "r1",
    ts=1700000010.0,
    url="wss://app.example/ws?ticket=abc-ticket",
    query=[("ticket", "abc-ticket")],
    status=401,
    reason="Unauthorized",
    response_headers=[("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")],
    subprotocol=None,
    extensions=[],
    ts_response=1700000010.2,
    body=b'{"error": "bad ticket", "token": "refr3sh"}',
    body_size=2000,
)


def traffic() -> list[Event]:
    return [
        HandshakeEvent(handshake()),
        Message(
            1, "c1", 1700000001.0, "client", Opcode.TEXT,
            b'{"type": "login", "user": "bob", "password": "hunter2"}', 54, 60,
        ),
        Message(
            2, "c1", 1700000001.5, "server", Opcode.TEXT,
            f'{{"type": "welcome", "jwt": "{JWT}", "refresh_token": "refr3sh"}}'.encode(),
            200, 206,
        ),
        Message(3, "c1", 1700000002.0, "server", Opcode.BINARY, b"\x00\x01\xff", 3, 5),
        Message(
            4, "c1", 1700000002.5, "client", Opcode.TEXT, b"\xff plain " + JWT.encode(),
            90, 96, utf8_ok=False, injected=True, dropped=True, compressed=True, frames=2,
        ),
        ControlFrame(5, "c1", 1700000003.0, "client", Opcode.PING, b"hb", 4),
        ControlFrame(6, "c1", 1700000003.1, "server", Opcode.PONG, b"hb", 4),
        ControlFrame(
            7, "c1", 1700000004.0, "client", Opcode.CLOSE, b"\x03\xe8bye", 7, 1000, "bye"
        ),
        ControlFrame(
            8, "c1", 1700000004.1, "server", Opcode.CLOSE, b"\x03\xe8", 4, 1000, "",
            injected=True, error="odd",
        ),
        ProtocolErrorEvent("c1", 1700000004.2, "server", 77, "reserved opcode 0x3"),
        StateEvent("c1", 1700000004.3, ConnState.HALF_OPEN, "by user"),
        EndEvent("c1", 1700000005.0, True, "client"),
        EndEvent("c9", 1700000005.0, False, None, "reset"),
        RefusedEvent(REFUSED),
        GapEvent(3, "too slow"),
    ]  # fmt: skip


def jsonl(events: list[Event], **kw: Any) -> tuple[str, list[dict[str, Any]]]:
    out = io.StringIO()
    n = export_jsonl(events, out, **kw)
    text = out.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert n == len(lines)
    return text, lines


# ------------------------------------------------------------------ JSON lines


@pytest.mark.parametrize("ev", traffic(), ids=lambda e: type(e).__name__)
def test_unredacted_objects_are_exactly_tail_json(ev: Event) -> None:
    assert event_dict(ev, redact=False) == event_json(ev)


@pytest.mark.parametrize("ev", traffic(), ids=lambda e: type(e).__name__)
def test_redacted_objects_keep_the_schema(ev: Event) -> None:
    red, raw = event_dict(ev), event_json(ev)
    assert red is not None and raw is not None

    def shape(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: shape(v) for k, v in o.items()}
        if isinstance(o, list):
            return [shape(v) for v in o]
        return type(o).__name__

    assert shape(red) == shape(raw)


def test_snapshot_is_internal() -> None:
    assert event_dict(Snapshot(0, [], "", 0)) is None


def test_jsonl_is_redacted_by_default() -> None:
    text, lines = jsonl(traffic())
    for s in SECRETS:
        assert s not in text, s
    hs = lines[0]
    assert hs["event"] == "handshake"
    assert hs["url"] == "wss://app.example/ws?ticket=[REDACTED]&room=lobby"
    assert hs["request"]["query"] == [["ticket", "[REDACTED]"], ["room", "lobby"]]
    assert hs["request"]["cookies"] == [["session", "[REDACTED]"], ["theme", "[REDACTED]"]]
    headers = dict(map(tuple, hs["request"]["headers"]))
    assert headers["Cookie"] == "session=[REDACTED]; theme=[REDACTED]"
    assert headers["Authorization"] == "Bearer [REDACTED]"
    assert headers["X-Api-Key"] == "[REDACTED]"
    assert headers["Sec-WebSocket-Protocol"] == "graphql-ws, [REDACTED]"
    assert headers["Sec-WebSocket-Key"] == "dGhlIHNhbXBsZSBub25jZQ=="  # not a secret
    assert headers["Origin"] == "https://app.example"
    resp = dict(map(tuple, hs["response"]["headers"]))
    assert resp["Set-Cookie"] == "srv=[REDACTED]; Path=/; HttpOnly; Secure"
    login = lines[1]
    assert json.loads(login["text"]) == {"type": "login", "user": "bob", "password": "[REDACTED]"}
    welcome = json.loads(lines[2]["text"])
    assert welcome == {"type": "welcome", "jwt": "[REDACTED]", "refresh_token": "[REDACTED]"}
    assert lines[2]["truncated"] is True  # size 200 > payload: from the capture, not redaction
    assert base64.b64decode(lines[3]["b64"]) == b"\x00\x01\xff"
    bad = lines[4]
    assert bad["invalid_utf8"] is True
    assert JWT.encode() not in base64.b64decode(bad["b64"])
    refused = next(x for x in lines if x["event"] == "refused")
    assert refused["response"]["status"] == 401
    assert json.loads(refused["body"]) == {"error": "bad ticket", "token": "[REDACTED]"}
    assert refused["body_size"] == 2000


def test_jsonl_unredacted_keeps_everything() -> None:
    text, lines = jsonl(traffic(), redact=False)
    for s in SECRETS:
        assert s in text, s
    # what tail --json prints: its tracker decodes by the negotiated subprotocol
    # (graphql-ws), and the app's own messages then carry the decode error
    tracker = ProtocolTracker()
    expected = []
    for e in traffic():
        tracker.on_event(e)
        expected.append(event_json(e, tracker.decoded(e) if isinstance(e, Message) else None))
    assert lines == expected
    assert lines[1]["protocol"] == "graphql-ws"
    assert lines[1]["decode_error"] == "unknown message type 'login'"


def test_jsonl_expands_a_snapshot_like_tail() -> None:
    old = handshake("c0", ts=1.0)
    refused = handshake("r0", ts=2.0, status=403)
    snap = Snapshot(
        5,
        [
            ConnSnapshot(old, ConnState.CLOSED, 1, 1, 2, 2, 1000, "", "client", 9.0, True),
            ConnSnapshot(refused, ConnState.REFUSED, 0, 0, 0, 0, None, "", None, 2.5),
            ConnSnapshot(handshake("c1"), ConnState.OPEN, 0, 0, 0, 0, None, "", None, None),
        ],
        "proxy",
        0,
    )
    events: list[Event] = [
        snap,
        Message(4, "c0", 3.0, "client", Opcode.TEXT, b"a", 1, 3),  # backlog
        Message(5, "c0", 4.0, "server", Opcode.TEXT, b"b", 1, 3),
        HandshakeEvent(handshake("c1")),  # resent after the snapshot: dropped
        Message(6, "c1", 10.0, "client", Opcode.TEXT, b"c", 1, 3),
        Message(6, "c1", 10.0, "client", Opcode.TEXT, b"c", 1, 3),  # duplicate seq
    ]
    _, lines = jsonl(events, redact=False)
    assert [(x["event"], x.get("conn"), x.get("seq")) for x in lines] == [
        ("handshake", "c0", None),
        ("refused", "r0", None),
        ("handshake", "c1", None),
        ("message", "c0", 4),
        ("message", "c0", 5),
        ("end", "c0", None),
        ("message", "c1", 6),
    ]
    assert lines[5] == {"event": "end", "conn": "c0", "ts": 9.0, "clean": True,
                        "closed_by": "client"}  # fmt: skip


def test_expand_snapshots_emits_pending_ends_at_the_end() -> None:
    snap = Snapshot(
        1,
        [ConnSnapshot(handshake("c0"), ConnState.CLOSED, 0, 0, 0, 0, None, "", "bogus", 9.0)],
        "",
        0,
    )
    out = list(expand_snapshots([snap]))
    assert [type(e) for e in out] == [HandshakeEvent, EndEvent]
    assert isinstance(out[1], EndEvent) and out[1].closed_by is None and out[1].clean is False


def test_a_pending_upgrade_in_the_snapshot_does_not_hide_its_answer() -> None:
    pending = handshake("c0", status=None, reason="", response_headers=[], ts_response=None)
    snap = Snapshot(
        0, [ConnSnapshot(pending, ConnState.CONNECTING, 0, 0, 0, 0, None, "", None, None)], "", 0
    )
    answered = HandshakeEvent(handshake("c0"))
    out = list(expand_snapshots([snap, answered, answered]))
    assert [type(e) for e in out] == [HandshakeEvent, HandshakeEvent]
    assert out[0].handshake.status is None and out[1].handshake.status == 101  # type: ignore[union-attr]


def test_without_backlog_only_what_follows_the_snapshot_is_shown() -> None:
    from devconsole.store.export import SnapshotExpander

    snap = Snapshot(
        2,
        [ConnSnapshot(handshake("c0"), ConnState.CLOSED, 0, 1, 0, 5, None, "", None, 9.0)],
        "",
        0,
    )
    old = Message(2, "c0", 1.0, "client", Opcode.TEXT, b"hello", 5, 11)
    new = Message(3, "c1", 2.0, "client", Opcode.TEXT, b"later", 5, 11)
    expander = SnapshotExpander(backlog=False)
    out = [e for ev in (snap, old, HandshakeEvent(handshake("c1")), new) for e in expander.feed(ev)]
    out += list(expander.finish())
    assert [(type(e).__name__, getattr(e, "seq", None)) for e in out] == [
        ("HandshakeEvent", None),
        ("Message", 3),
    ]


# ------------------------------------------------------------------ HAR


def har(data: Any, **kw: Any) -> tuple[str, dict[str, Any]]:
    out = io.StringIO()
    n = export_har(data, out, **kw)
    text = out.getvalue()
    doc = json.loads(text)
    assert n == len(doc["log"]["entries"])
    return text, doc


def test_har_structure() -> None:
    _, doc = har(traffic(), redact=False)
    log = doc["log"]
    assert log["version"] == "1.2"
    assert log["creator"]["name"] == "devconsole"
    assert isinstance(log["pages"], list)
    entries = log["entries"]
    assert len(entries) == 2  # c1 and the refused upgrade; c9 was never opened
    ws, _ = entries
    for e in entries:
        for key in ("startedDateTime", "time", "request", "response", "cache", "timings"):
            assert key in e
        for key in ("method", "url", "httpVersion", "cookies", "headers", "queryString",
                    "headersSize", "bodySize"):  # fmt: skip
            assert key in e["request"]
        for key in ("status", "statusText", "httpVersion", "cookies", "headers", "content",
                    "redirectURL", "headersSize", "bodySize"):  # fmt: skip
            assert key in e["response"]
        assert "size" in e["response"]["content"] and "mimeType" in e["response"]["content"]
        assert e["_resourceType"] == "websocket"
        assert all(isinstance(h["name"], str) and isinstance(h["value"], str)
                   for h in e["request"]["headers"])  # fmt: skip
    assert ws["startedDateTime"] == "2023-11-14T22:13:20.250Z"
    assert ws["time"] == pytest.approx(100, abs=0.01)
    assert ws["timings"]["wait"] == pytest.approx(100, abs=0.01)
    req = ws["request"]
    assert req["method"] == "GET"
    assert req["url"] == "wss://app.example/ws?ticket=abc-ticket&room=lobby"
    assert req["queryString"] == [
        {"name": "ticket", "value": "abc-ticket"},
        {"name": "room", "value": "lobby"},
    ]
    assert {"name": "session", "value": "s3ss10n"} in req["cookies"]
    assert ws["response"]["status"] == 101
    assert ws["response"]["statusText"] == "Switching Protocols"
    assert ws["response"]["cookies"] == [
        {"name": "srv", "value": "setc00kie", "path": "/", "httpOnly": True, "secure": True}
    ]
    msgs = ws["_webSocketMessages"]
    assert [(m["type"], m["opcode"]) for m in msgs] == [
        ("send", 1),
        ("receive", 1),
        ("receive", 2),
        ("send", 1),
    ]
    assert msgs[0]["time"] == 1700000001.0
    assert json.loads(msgs[0]["data"])["password"] == "hunter2"
    assert base64.b64decode(msgs[2]["data"]) == b"\x00\x01\xff"
    dc = ws["_devconsole"]
    assert dc["conn"] == "c1"
    assert (dc["close_code"], dc["close_reason"], dc["closed_by"]) == (1000, "bye", "client")
    assert dc["clean"] is True and dc["state"] == "closed"
    assert dc["subprotocol"] == "graphql-ws"


def test_har_refused_upgrade_carries_status_and_body() -> None:
    _, doc = har(traffic(), redact=False)
    refused = doc["log"]["entries"][1]
    resp = refused["response"]
    assert resp["status"] == 401
    assert resp["statusText"] == "Unauthorized"
    assert resp["content"]["mimeType"] == "application/json"
    assert json.loads(resp["content"]["text"])["error"] == "bad ticket"
    assert resp["content"]["size"] == 2000
    assert resp["bodySize"] == 2000
    assert "first 43 of 2000 bytes" in resp["content"]["comment"]
    assert refused["_webSocketMessages"] == []
    assert refused["_devconsole"]["state"] == "refused"


def test_har_unreachable_server_and_binary_body() -> None:
    hs = handshake("u1", status=None, reason="", error="connection refused", body=b"\xff\x00")
    _, doc = har([RefusedEvent(hs)], redact=False)
    resp = doc["log"]["entries"][0]["response"]
    assert resp["status"] == 0
    assert resp["_error"] == "connection refused"
    assert resp["content"]["encoding"] == "base64"
    assert base64.b64decode(resp["content"]["text"]) == b"\xff\x00"


def test_har_is_redacted_by_default() -> None:
    text, doc = har(traffic())
    for s in SECRETS:
        assert s not in text, s
    ws = doc["log"]["entries"][0]
    req = ws["request"]
    assert req["url"] == "wss://app.example/ws?ticket=[REDACTED]&room=lobby"
    assert {"name": "ticket", "value": "[REDACTED]"} in req["queryString"]
    assert {"name": "session", "value": "[REDACTED]"} in req["cookies"]
    assert {"name": "Authorization", "value": "Bearer [REDACTED]"} in req["headers"]
    assert ws["response"]["cookies"][0]["value"] == "[REDACTED]"
    assert json.loads(ws["_webSocketMessages"][0]["data"])["password"] == "[REDACTED]"
    assert ws["_devconsole"]["redacted"] is True


def test_har_unredacted_keeps_the_secrets() -> None:
    text, _ = har(traffic(), redact=False)
    for s in SECRETS:
        assert s in text, s


def test_har_from_a_session_equals_har_from_its_events() -> None:
    session = Session()
    session.apply_all(traffic())
    assert har_log(session, redact=True) == har_log(traffic(), redact=True)


def test_har_from_a_late_attach_recording_uses_the_snapshot() -> None:
    snap = Snapshot(
        0,
        [ConnSnapshot(handshake("c1"), ConnState.OPEN, 0, 0, 0, 0, None, "", None, None)],
        "p",
        0,
    )
    events: list[Event] = [snap, Message(1, "c1", 5.0, "server", Opcode.TEXT, b"hi", 2, 4)]
    _, doc = har(events)
    [entry] = doc["log"]["entries"]
    [m] = entry["_webSocketMessages"]
    assert {k: v for k, v in m.items() if not k.startswith("_")} == {
        "type": "receive", "time": 5.0, "opcode": 1, "data": "hi"
    }  # fmt: skip
    # the snapshot's handshake negotiated graphql-ws, which "hi" is not: shown with why
    assert m["_protocol"] == "graphql-ws" and "bad JSON" in m["_decode_error"]


def test_har_survives_absurd_timestamps() -> None:
    hs = handshake("c1", ts=float("inf"), ts_response=float("nan"))
    _, doc = har([HandshakeEvent(hs), Message(1, "c1", 1e300, "client", 1, b"x", 1, 3)])
    entry = doc["log"]["entries"][0]
    assert entry["startedDateTime"] == "1970-01-01T00:00:00.000Z"


# ------------------------------------------------------------------ export_capture


def test_export_capture_to_a_file(tmp_path: Path) -> None:
    cap = tmp_path / "s.dcap"
    save_capture(cap, traffic())
    out = tmp_path / "out.jsonl"
    res = export_capture(cap, out)
    assert (res.events, res.error) == (len(traffic()), None)
    text = out.read_text()
    assert res.written == len(text.splitlines()) == len(traffic())
    for s in SECRETS:
        assert s not in text
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    har_out = tmp_path / "out.har"
    res = export_capture(cap, har_out, fmt="har", redact=False)
    assert res.written == 2
    assert json.loads(har_out.read_text())["log"]["version"] == "1.2"
    assert sorted(os.listdir(tmp_path)) == ["out.har", "out.jsonl", "s.dcap"]


def test_export_capture_to_a_stream_and_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cap = tmp_path / "s.dcap"
    save_capture(cap, traffic())
    buf = io.StringIO()
    export_capture(cap, buf, fmt="jsonl")
    export_capture(cap, "-", fmt="jsonl")
    assert capsys.readouterr().out == buf.getvalue()


def test_export_a_damaged_capture(tmp_path: Path) -> None:
    cap = tmp_path / "s.dcap"
    with CaptureWriter(cap) as w:
        w.write(traffic())
    cap.write_bytes(cap.read_bytes()[:-3])
    out = tmp_path / "out.jsonl"
    res = export_capture(cap, out)
    assert res.events == len(traffic()) - 1
    assert res.error is not None and "truncated" in res.error
    assert len(out.read_text().splitlines()) == len(traffic()) - 1
    with pytest.raises(CaptureError):
        export_capture(cap, tmp_path / "strict.jsonl", strict=True)
    assert not (tmp_path / "strict.jsonl").exists()  # nothing half-written
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl", "s.dcap"]


def test_export_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("hello")
    with pytest.raises(CaptureError, match="not a devconsole capture file"):
        export_capture(bad, tmp_path / "o.jsonl")
    with pytest.raises(ValueError, match="unknown export format"):
        export_capture(bad, None, fmt="csv")  # type: ignore[arg-type]
    assert not (tmp_path / "o.jsonl").exists()


def tail_json_lines(events: list[Event]) -> list[dict[str, Any]]:
    """What ``devconsole tail --json`` prints for this stream."""
    out = io.StringIO()
    printer = TailPrinter(out, True, None, None, True)
    printer.on_events(events)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_recording_started_before_the_client_connected_has_one_handshake(
    tmp_path: Path,
) -> None:
    """Recorded from a live tap: the upgrade is seen "connecting" (no status) before its
    answer. The export has one handshake line for it, the answered one, exactly as
    ``tail --json`` prints the same stream."""
    pending = handshake("c1", status=None, reason="", response_headers=[], ts_response=None)
    answered = handshake("c1")
    refused_pending = handshake("r1", status=None, reason="", ts_response=None)
    refused = handshake("r1", status=None, error="connection refused", ts_response=2.0)
    events: list[Event] = [
        Snapshot(0, [], "proxy", 0),
        HandshakeEvent(pending),
        HandshakeEvent(answered),
        Message(1, "c1", 1700000001.0, "client", Opcode.TEXT, b"hi", 2, 8),
        HandshakeEvent(refused_pending),
        RefusedEvent(refused),
        EndEvent("c1", 1700000009.0, False, None),
    ]
    path = tmp_path / "rec.dcap"
    save_capture(path, events)
    out = io.StringIO()
    export_capture(path, out, redact=False)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["event"], x["conn"]) for x in lines] == [
        ("handshake", "c1"),
        ("message", "c1"),
        ("refused", "r1"),
        ("end", "c1"),
    ]
    assert lines[0]["response"]["status"] == 101
    assert lines == tail_json_lines(events)


def test_held_messages_and_outcomes_as_json() -> None:
    held = Message(9, "c1", 9.5, "client", Opcode.TEXT, b'{"token": "hunter2"}', 20, 26)
    held.held, held.breakpoint = 4, 2
    assert event_dict(held, redact=False) == {
        "event": "message", "conn": "c1", "seq": 9, "ts": 9.5, "from": "client",
        "type": "text", "size": 20, "frames": 1, "compressed": False,
        "text": '{"token": "hunter2"}', "held": True, "held_id": 4, "breakpoint": 2,
    }  # fmt: skip
    edited = OutcomeEvent("c1", 12.0, 9, 4, "edited", Opcode.TEXT, b'{"token": "hunter2"}', 20)
    assert event_dict(edited, redact=False) == {
        "event": "outcome", "conn": "c1", "seq": 9, "ts": 12.0, "held_id": 4,
        "outcome": "edited", "type": "text", "size": 20, "text": '{"token": "hunter2"}',
    }  # fmt: skip
    assert "hunter2" not in json.dumps(event_dict(edited))  # redacted by default
    binary = OutcomeEvent("c1", 12.0, 9, 4, "edited", Opcode.BINARY, b"\x00\xff", 2)
    assert event_dict(binary, redact=False)["b64"] == "AP8="  # type: ignore[index]
    assert event_dict(OutcomeEvent("c1", 13.0, 9, 4, "timeout-dropped")) == {
        "event": "outcome", "conn": "c1", "seq": 9, "ts": 13.0, "held_id": 4,
        "outcome": "timeout-dropped",
    }  # fmt: skip
    # decided, as a late viewer (or an export of its recording) sees it
    held.outcome, held.edited, held.edited_opcode, held.edited_size = "edited", b"x", 1, 1
    d = event_dict(held, redact=False)
    assert d is not None and d["outcome"] == "edited"
    assert d["edited"] == {"type": "text", "size": 1, "text": "x"}
    assert event_json(edited) == event_dict(edited, redact=False)
