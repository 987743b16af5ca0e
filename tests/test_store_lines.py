"""What ``devconsole tail`` and ``devconsole conns`` print: human lines, the table, and
the tail printer (backlog, filter, limit), fed events directly (no proxy)."""

from __future__ import annotations

import io
import json
import os
import time

import pytest

from devconsole.filters import parse
from devconsole.model import (
    CLIENT,
    SERVER,
    ConnState,
    ControlFrame,
    EndEvent,
    Event,
    GapEvent,
    HandshakeEvent,
    Message,
    Opcode,
    ProtocolErrorEvent,
    RefusedEvent,
    StateEvent,
)
from devconsole.session import Session
from devconsole.store.lines import TailPrinter, conn_json, conns_table, event_json, event_line
from tests.factories import make_handshake


@pytest.fixture(autouse=True)
def utc() -> object:
    """``tail`` prints local times: pin the zone so the lines are known."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield None
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


TS = 1_700_000_000.25  # 22:13:20.250 UTC


def msg(seq: int, side: str = CLIENT, text: str = "hello", **kw: object) -> Message:
    data = text.encode()
    return Message(
        seq=seq,
        conn="3",
        ts=TS + seq,
        side=side,  # type: ignore[arg-type]
        opcode=Opcode.TEXT,
        payload=data,
        size=len(data),
        wire_size=len(data) + 6,
        **kw,  # type: ignore[arg-type]
    )


def events() -> list[Event]:
    hs = make_handshake("3", TS, url="ws://example.com/chat", subprotocol="chat.v2")
    return [
        HandshakeEvent(hs),
        msg(1, text="hello"),
        msg(2, SERVER, text="\x1b[31mred"),
        ControlFrame(4, "3", TS + 4, SERVER, Opcode.PING, b"hb", 4),
        EndEvent("3", TS + 5, clean=True, closed_by=CLIENT),
    ]


def test_event_lines_show_the_proxy_id_time_direction_and_a_safe_preview() -> None:
    lines = [event_line(ev) for ev in events()]
    assert lines[0] == (
        "22:13:20.250 #3    open    101 127.0.0.1:5000 ws://example.com/chat subprotocol=chat.v2"
    )
    assert lines[1] is not None and lines[1].startswith("22:13:21.250 #3          1 → text ")
    assert lines[1].endswith("5B  hello")
    assert lines[2] is not None and "← text" in lines[2] and "\x1b" not in lines[2]
    assert lines[3] is not None and "← ping" in lines[3]
    assert lines[4] == "22:13:25.250 #3    end     clean by client"


def test_event_lines_of_refusals_faults_errors_and_gaps() -> None:
    refused = make_handshake("9", TS, status=403, url="ws://example.com/admin")
    assert event_line(RefusedEvent(refused)) == (
        "22:13:20.250 #9    REFUSED 403 127.0.0.1:5000 ws://example.com/admin"
    )
    upgrade = make_handshake("9", TS, status=None)
    assert "upgrade -" in (event_line(HandshakeEvent(upgrade)) or "")
    assert event_line(StateEvent("9", TS, ConnState.HALF_OPEN, "by the TUI")) == (
        "22:13:20.250 #9    half-open by the TUI"
    )
    err = ProtocolErrorEvent("9", TS, SERVER, 12, "bad opcode 3")
    assert "server stream at byte 12: bad opcode 3 (forwarding continues)" in (
        event_line(err) or ""
    )
    assert event_line(GapEvent(5, "slow client")) == "-- 5 events missed: slow client --"
    injected = msg(7, injected=True, dropped=True)
    assert "[injected] [dropped]" in (event_line(injected) or "")


def test_conns_table_and_json() -> None:
    s = Session()
    s.apply_all(events())
    s.apply(RefusedEvent(make_handshake("9", TS + 9, status=403, url="ws://x/\x1b]0;t\x07")))
    conns = sorted(s.connections.values(), key=lambda c: c.ts_start)
    table = conns_table(conns).splitlines()
    assert table[0].split() == [
        "ID", "STATE", "CLIENT", "URL", "IN", "OUT", "BYTES", "IN", "BYTES", "OUT", "CLOSE",
    ]  # fmt: skip
    assert table[1].split()[:6] == [
        "3",
        "closed",
        "127.0.0.1:5000",
        "ws://example.com/chat",
        "1",
        "1",
    ]
    assert table[2].split()[1] == "refused" and table[2].rstrip().endswith("403")
    assert "\x1b" not in table[2] and "\x07" not in table[2]
    first = conn_json(conns[0])
    assert (first["id"], first["msgs_out"], first["msgs_in"]) == ("3", 1, 1)
    json.dumps([conn_json(c) for c in conns])  # JSON-ready


def test_tail_printer_filters_limits_and_prints_json_or_lines() -> None:
    out = io.StringIO()
    printer = TailPrinter(out, True, parse("from:client"), limit=1, backlog=True)
    printer.on_events(events())
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [p["event"] for p in printed] == ["handshake", "message"]
    assert printed[1] == event_json(events()[1])
    assert printer.done.is_set()

    out = io.StringIO()
    printer = TailPrinter(out, False, None, limit=None, backlog=True)
    upgrade = HandshakeEvent(make_handshake("3", TS, status=None))
    printer.on_events([upgrade, *events()])
    text = out.getvalue().splitlines()
    assert len(text) == 6 and "upgrade" in text[0] and not printer.done.is_set()


def test_tail_json_shows_only_the_answered_handshake() -> None:
    out = io.StringIO()
    printer = TailPrinter(out, True, None, limit=None, backlog=True)
    printer.on_events([HandshakeEvent(make_handshake("3", TS, status=None)), *events()[:1]])
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(p["event"], p["response"]["status"]) for p in printed] == [("handshake", 101)]
