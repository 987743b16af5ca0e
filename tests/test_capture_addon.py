"""The Capture addon's hooks and commands on mitmproxy's test flows (``taddons``,
``tflow``), without sockets: options, the handshake-to-relay hand-over, what
``tcp_message`` forwards, the outbox that keeps bytes written later in order."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions, tcp
from mitmproxy.test import taddons, tflow, tutils

from devconsole.capture import Capture
from devconsole.frames import build_frame
from devconsole.model import (
    BreakpointCommand,
    BreakpointsEvent,
    DropCommand,
    EndEvent,
    ForwardCommand,
    InjectCommand,
    Message,
    Opcode,
    OutcomeEvent,
)


@pytest.fixture
def capture():  # type: ignore[no-untyped-def]
    c = Capture()
    with taddons.context(c) as tctx:
        tctx.configure(c, devconsole_tap="off")
        yield c


def upgraded(c: Capture) -> tcp.TCPFlow:
    """An upgrade answered with 101, then its raw TCP flow started."""
    f = tflow.tflow(
        req=tutils.treq(
            headers=((b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")),
            path=b"/ws",
        ),
        resp=tutils.tresp(
            status_code=101,
            reason=b"Switching Protocols",
            headers=((b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")),
            content=b"",
        ),
    )
    f.websocket = None
    c.request(f)
    c.response(f)
    t = tflow.ttcpflow(client_conn=f.client_conn, server_conn=f.server_conn, messages=[])
    c.tcp_start(t)
    return t


def relay(c: Capture, t: tcp.TCPFlow, from_client: bool, data: bytes) -> bytes:
    t.messages.append(tcp.TCPMessage(from_client, data))
    c.tcp_message(t)
    out = t.messages[-1].content
    assert len(t.messages) == 1  # mitmproxy's list is trimmed
    return out


def test_options_are_validated_and_websocket_relayed_as_tcp() -> None:
    c = Capture()
    with taddons.context(c) as tctx:
        tctx.configure(c, devconsole_tap="off", devconsole_hold_bytes="2m")
        assert c.intercept.hold_bytes == 2 << 20
        assert tctx.options.websocket is False and tctx.options.rawtcp is True
        with pytest.raises(exceptions.OptionsError, match="hold_bytes"):
            tctx.configure(c, devconsole_hold_bytes="lots")
        with pytest.raises(exceptions.OptionsError, match="positive"):
            tctx.configure(c, devconsole_hold_bytes="0")


def test_plain_tcp_is_not_ours(capture: Capture) -> None:
    t = tflow.ttcpflow(messages=[])
    capture.tcp_start(t)
    assert relay(capture, t, True, b"\x81\x85garbage") == b"\x81\x85garbage"
    assert capture.session.connections == {}


def test_frames_are_forwarded_as_they_came_and_captured(capture: Capture) -> None:
    t = upgraded(capture)
    frame = build_frame(Opcode.TEXT, b"hello", mask=True)
    assert relay(capture, t, True, frame) is frame
    [conn] = capture.session.connections.values()
    assert conn.msgs_out == 1 and conn.handshake.status == 101
    [m] = capture.session.items()
    assert isinstance(m, Message) and m.payload == b"hello" and m.side == "client"


async def test_forwarded_bytes_go_out_before_the_next_chunk(capture: Capture) -> None:
    t = upgraded(capture)
    res = await capture.execute(BreakpointCommand("from:client hold"))
    assert res.ok and res.info == "1"
    assert capture.session.breakpoints[0].filter == "from:client hold"
    held = build_frame(Opcode.TEXT, b"hold me", mask=True)
    after = build_frame(Opcode.TEXT, b"after", mask=True)
    assert relay(capture, t, True, held + after) == b""  # withheld, with what follows
    [hid] = capture.session.held
    res = await capture.execute(ForwardCommand(hid))
    assert res.ok, res.error
    # no proxy server here to inject through: the bytes wait in the outbox and the next
    # chunk relayed that way carries them first
    nxt = build_frame(Opcode.TEXT, b"next", mask=True)
    out = relay(capture, t, True, nxt)
    assert out == held + after + nxt
    outcomes = [e for e in capture.session.buffer if e.outcome]
    assert [o.payload for o in outcomes] == [b"hold me"]


async def test_drop_unknown_and_closed_ids(capture: Capture) -> None:
    t = upgraded(capture)
    await capture.execute(BreakpointCommand("x"))
    relay(capture, t, False, build_frame(Opcode.TEXT, b"x"))
    [hid] = capture.session.held
    assert (await capture.execute(DropCommand(hid))).ok
    res = await capture.execute(DropCommand(hid))
    assert not res.ok and res.error == f"message {hid} is no longer held"
    res = await capture.execute(ForwardCommand(hid + 100))
    assert not res.ok and res.error == f"no held message {hid + 100}"
    res = await capture.execute(ForwardCommand(0, "77"))
    assert not res.ok and "unknown" in res.error
    res = await capture.execute(BreakpointCommand("(bad"))
    assert not res.ok and res.error.startswith("bad filter")


async def test_end_drops_held_messages_and_records_the_end(capture: Capture) -> None:
    events: list[object] = []
    capture.session.observers.append(events.append)
    t = upgraded(capture)
    await capture.execute(BreakpointCommand("x"))
    relay(capture, t, True, build_frame(Opcode.TEXT, b"x", mask=True))
    capture.tcp_end(t)
    kinds = [type(e) for e in events]
    assert BreakpointsEvent in kinds
    assert kinds[-2:] == [OutcomeEvent, EndEvent]
    assert capture.session.held == {}
    res = await capture.execute(InjectCommand("1", "client", Opcode.TEXT, b"late"))
    assert not res.ok and "closed" in res.error


async def test_every_event_reaches_every_sink_in_the_sessions_order(capture: Capture) -> None:
    """The tap, a Redis publisher and the like are sinks: each gets every event the
    relays emit (hot path, holds, outcomes, ends) and the hooks' and other producers'
    (``record``), in the order the session applied them."""
    applied: list[object] = []
    capture.session.observers.append(applied.append)
    first: list[object] = []
    second: list[object] = []
    capture.add_sink(first.append)
    capture.add_sink(second.append)
    t = upgraded(capture)
    relay(capture, t, True, build_frame(Opcode.TEXT, b"plain", mask=True))
    await capture.execute(BreakpointCommand("from:server"))
    relay(capture, t, False, build_frame(Opcode.TEXT, b"held"))
    [hid] = capture.session.held
    assert (await capture.execute(ForwardCommand(hid))).ok
    # another producer (the backplane recorder) numbers its items after the relays'
    cid = capture.new_conn_id()
    assert cid == "2"
    capture.record(Message(0, cid, 5.0, "server", Opcode.TEXT, b"pub", 3, 3))
    capture.tcp_end(t)
    assert first == second == applied
    kinds = [type(e).__name__ for e in first]
    assert kinds == [
        "HandshakeEvent",
        "HandshakeEvent",
        "Message",
        "BreakpointsEvent",
        "Message",
        "OutcomeEvent",
        "Message",
        "EndEvent",
    ]
    seqs = [e.seq for e in first if isinstance(e, Message)]
    assert seqs == [1, 2, 3]
