"""The relay core with no sockets: bytes in, bytes and events out, a fake clock.

The peers are websockets' sans-I/O ``Protocol`` objects (an independent implementation:
their frames, masking and permessage-deflate contexts are theirs, and a receiver that gets
a corrupt stream fails exactly as a real websockets peer does). Bytes move through the
relay in random chunks, as mitmproxy's reads cut them.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame
from websockets.frames import Opcode as WsOp
from websockets.protocol import Protocol, Side, State

from devconsole.frames import DataMessage, DeflateParams, StreamDecoder, build_close
from devconsole.model import (
    CLIENT,
    SERVER,
    ConnState,
    ControlFrame,
    EndEvent,
    Event,
    Handshake,
    Message,
    Opcode,
    OutcomeEvent,
    ProtocolErrorEvent,
    StateEvent,
)
from devconsole.relay import Intercept, Output, Relay, RelayError
from tests.factories import make_handshake
from tests.test_frames import Ctl, Msg, chunk_sizes, streams, ws_frames

SETTINGS = settings(
    deadline=None,
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

T0 = 1_000.0


# --------------------------------------------------------------------------- harness


@dataclass
class Deflate:
    client_nct: bool = False
    server_nct: bool = False
    client_bits: int = 15
    server_bits: int = 15

    def header(self) -> str:
        h = "permessage-deflate"
        if self.client_nct:
            h += "; client_no_context_takeover"
        if self.server_nct:
            h += "; server_no_context_takeover"
        h += f"; client_max_window_bits={self.client_bits}"
        return h + f"; server_max_window_bits={self.server_bits}"

    def ext(self, side: Side) -> PerMessageDeflate:
        if side is Side.CLIENT:  # local = client
            return PerMessageDeflate(
                self.server_nct, self.client_nct, self.server_bits, self.client_bits
            )
        return PerMessageDeflate(
            self.client_nct, self.server_nct, self.client_bits, self.server_bits
        )


def peer(side: Side, deflate: Deflate | None) -> Protocol:
    p = Protocol(side, state=State.OPEN, max_size=None)
    if deflate is not None:
        p.extensions = [deflate.ext(side)]
    return p


@dataclass
class Pipe:
    """client <-> Relay <-> server, moved by hand. ``wire[to]`` holds what the relay wrote
    toward a peer and the peer has not read yet."""

    deflate: Deflate | None = None
    hold_bytes: int = 16 << 20
    max_payload: int = 1 << 20
    seed: int = 0
    intercept: Intercept | None = None
    events: list[Event] = field(default_factory=list)
    handshake: Handshake | None = None

    def __post_init__(self) -> None:
        params = DeflateParams.from_extensions([self.deflate.header()]) if self.deflate else None
        if self.intercept is None:
            self.intercept = Intercept(self.hold_bytes)
        self.relay = Relay(
            "1",
            params,
            emit=self.events.append,
            max_payload=self.max_payload,
            intercept=self.intercept,
            handshake=self.handshake,
        )
        self.client = peer(Side.CLIENT, self.deflate)
        self.server = peer(Side.SERVER, self.deflate)
        self.wire: dict[str, bytearray] = {CLIENT: bytearray(), SERVER: bytearray()}
        self.paused: set[str] = set()
        self.end: str | None = None
        self.now = T0
        self.rng = random.Random(self.seed)
        self.received: dict[str, list[Frame]] = {CLIENT: [], SERVER: []}

    # -- driving

    def apply(self, out: Output) -> Output:
        self.wire[CLIENT] += out.data(CLIENT)
        self.wire[SERVER] += out.data(SERVER)
        self.paused |= set(out.pause)
        self.paused -= set(out.resume)
        if out.end:
            self.end = out.end
        return out

    def feed(self, side: str, data: bytes, chunks: list[int] | None = None) -> None:
        """Relay ``data`` sent by ``side`` in random chunks (or the given sizes)."""
        sizes = chunks if chunks is not None else chunk_sizes(self.rng, len(data))
        pos = 0
        to = SERVER if side == CLIENT else CLIENT
        for n in sizes:
            out = self.relay.feed(side, data[pos : pos + n], self.now)  # type: ignore[arg-type]
            pos += n
            self.wire[to] += out
            if self.relay.out:
                self.apply(self.relay.take())
        assert pos == len(data)

    def send(self, side: str, *payloads: str | bytes) -> bytes:
        """The peer sends messages; their bytes go through the relay."""
        p = self.client if side == CLIENT else self.server
        for pl in payloads:
            if isinstance(pl, str):
                p.send_text(pl.encode())
            else:
                p.send_binary(pl)
        data = b"".join(p.data_to_send())
        self.feed(side, data)
        return data

    def deliver(self) -> None:
        """The peers read what the relay wrote to them."""
        for to, p in ((SERVER, self.server), (CLIENT, self.client)):
            data = bytes(self.wire[to])
            self.wire[to].clear()
            if data:
                p.receive_data(data)
            self.received[to].extend(p.events_received())

    def messages(self, at: str) -> list[str | bytes]:
        """Whole data messages ``at`` received (text decoded)."""
        out: list[str | bytes] = []
        parts: list[bytes] = []
        op = None
        for f in self.received[at]:
            if f.opcode in (WsOp.TEXT, WsOp.BINARY):
                op = f.opcode
                parts = [f.data]
            elif f.opcode == WsOp.CONT:
                parts.append(f.data)
            else:
                continue
            if f.fin:
                data = b"".join(parts)
                out.append(data.decode() if op == WsOp.TEXT else data)
        return out

    def controls(self, at: str) -> list[tuple[WsOp, bytes]]:
        return [(f.opcode, f.data) for f in self.received[at] if f.opcode.value >= 8]

    def healthy(self, at: str) -> bool:
        """The peer did not fail the connection (no close frame from it)."""
        p = self.server if at == SERVER else self.client
        return p.state is State.OPEN and p.close_rcvd is None and p.close_sent is None

    # -- events

    def items(self) -> list[Message | ControlFrame]:
        return [e for e in self.events if isinstance(e, Message | ControlFrame)]

    def msgs(self) -> list[Message]:
        return [e for e in self.events if isinstance(e, Message)]

    def held(self) -> list[Message]:
        return [m for m in self.msgs() if m.held]

    def outcomes(self) -> list[OutcomeEvent]:
        return [e for e in self.events if isinstance(e, OutcomeEvent)]


def frames_bytes(spec: list[Msg | Ctl], mask: bool) -> bytes:
    return b"".join(w for w, *_ in ws_frames(spec, mask))


def decoded(data: bytes, from_client: bool) -> list[tuple[int, bytes]]:
    dec = StreamDecoder(from_client)
    return [(i.opcode, i.payload) for i in dec.feed(data) if isinstance(i, DataMessage)]


# --------------------------------------------------------------------------- the hot path


@SETTINGS
@given(spec=streams(), from_client=st.booleans(), seed=st.integers(0, 2**32))
def test_plain_relay_forwards_every_chunk_as_it_came(
    spec: list[Msg | Ctl], from_client: bool, seed: int
) -> None:
    data = frames_bytes(spec, mask=from_client)
    side = CLIENT if from_client else SERVER
    events: list[Event] = []
    r = Relay("1", emit=events.append)
    pos = 0
    for n in chunk_sizes(random.Random(seed), len(data)):
        chunk = data[pos : pos + n]
        assert r.feed(side, chunk, T0) is chunk  # zero-copy: the same object
        pos += n
    assert not r.out
    got = [(m.opcode, m.payload) for m in events if isinstance(m, Message)]
    assert got == decoded(data, from_client)
    seqs = [e.seq for e in events if isinstance(e, Message | ControlFrame)]
    assert seqs == list(range(1, len(seqs) + 1))


@SETTINGS
@given(spec=streams(), from_client=st.booleans(), seed=st.integers(0, 2**32))
def test_a_breakpoint_that_matches_nothing_changes_no_byte(
    spec: list[Msg | Ctl], from_client: bool, seed: int
) -> None:
    """With a breakpoint every message is withheld until complete (so it can be matched),
    and control frames inside fragmented messages overtake them: the receiver gets the
    same frames, data frames in order, nothing re-framed."""
    data = frames_bytes(spec, mask=from_client)
    side = CLIENT if from_client else SERVER
    intercept = Intercept()
    intercept.add("no-such-payload-anywhere")
    events: list[Event] = []
    r = Relay("1", emit=events.append, intercept=intercept)
    out = bytearray()
    pos = 0
    for n in chunk_sizes(random.Random(seed), len(data)):
        out += r.feed(side, data[pos : pos + n], T0)
        pos += n
    assert sorted(out) == sorted(data)
    assert decoded(bytes(out), from_client) == decoded(data, from_client)
    if not any(isinstance(s, Msg) and s.inter and any(s.inter) for s in spec):
        assert bytes(out) == data  # no interleaved control frame: byte for byte
    assert not any(isinstance(e, Message) and e.held for e in events)


# --------------------------------------------------------------------------- holding


def test_held_message_waits_and_what_follows_queues_in_order() -> None:
    p = Pipe()
    p.intercept.add("secret", timeout=60)
    p.send(CLIENT, "one", "the secret", "three", b"four")
    p.deliver()
    assert p.messages(SERVER) == ["one"]
    [held] = p.held()
    assert held.payload == b"the secret" and held.outcome == ""
    assert p.relay.held_ids == [held.held]
    p.apply(p.relay.forward(held.held, p.now))
    p.deliver()
    assert p.messages(SERVER) == ["one", "the secret", "three", b"four"]
    [oc] = p.outcomes()
    assert (oc.held, oc.seq, oc.outcome) == (held.held, held.seq, "forwarded")
    assert p.healthy(SERVER)


def test_hot_path_again_when_the_breakpoint_goes() -> None:
    p = Pipe()
    bp = p.intercept.add("x")
    p.intercept.remove(bp.id)
    p.client.send_text(b"xyz")
    chunk = b"".join(p.client.data_to_send())
    assert p.relay.feed(CLIENT, chunk, p.now) is chunk


@pytest.mark.parametrize(
    ("body", "opcode", "expect"),
    [
        (b'{"edited": true}', 0, '{"edited": true}'),
        (b"\x00\x01\x02", Opcode.BINARY, b"\x00\x01\x02"),
    ],
)
def test_forward_edited(body: bytes, opcode: int, expect: str | bytes) -> None:
    p = Pipe()
    p.intercept.add("json:n=2")
    p.send(CLIENT, '{"n": 1}', '{"n": 2}', '{"n": 3}')
    [held] = p.held()
    p.apply(p.relay.forward(held.held, p.now, body, opcode))
    p.deliver()
    assert p.messages(SERVER) == ['{"n": 1}', expect, '{"n": 3}']
    [oc] = p.outcomes()
    assert oc.outcome == "edited" and oc.body == body and oc.size == len(body)
    assert oc.opcode == (opcode or Opcode.TEXT)


def test_forward_edited_with_messages_after_it_before_what_queued_behind() -> None:
    """An edit that becomes several messages (a Socket.IO event with a binary attachment):
    they go together, before what arrived while it was held; the extra ones are shown as
    sent by devconsole."""
    p = Pipe()
    p.intercept.add("json:n=2")
    p.send(CLIENT, '{"n": 1}', '{"n": 2}', '{"n": 3}')
    [held] = p.held()
    more = [(Opcode.BINARY, b"\x00\x01"), (Opcode.TEXT, b"tail")]
    p.apply(p.relay.forward(held.held, p.now, b"head", Opcode.TEXT, more))
    p.deliver()
    assert p.messages(SERVER) == ['{"n": 1}', "head", b"\x00\x01", "tail", '{"n": 3}']
    injected = [e for e in p.events if isinstance(e, Message) and e.injected]
    assert [(m.opcode, m.payload) for m in injected] == more
    assert all(m.side == CLIENT for m in injected)
    assert p.healthy(SERVER)


def test_messages_after_a_held_one_need_an_edit() -> None:
    p = Pipe()
    p.intercept.add("json:n=2")
    p.send(CLIENT, '{"n": 2}')
    [held] = p.held()
    with pytest.raises(RelayError, match="edited data message"):
        p.relay.forward(held.held, p.now, None, 0, [(Opcode.BINARY, b"x")])
    with pytest.raises(RelayError, match="text or binary"):
        p.relay.forward(held.held, p.now, b"x", 0, [(Opcode.PING, b"x")])
    assert p.relay.held_ids == [held.held]  # still held after a refused command


def test_decoded_breakpoints_use_the_protocol_the_handshake_names() -> None:
    """On the proxy, d: and proto: decode each message on its own: by the protocol of the
    connection's handshake (here the Socket.IO URL), else by what its content alone is
    recognised as. An event that asks for an ack (420[...]) is not recognisable by
    content alone; the URL settles it."""
    sio = make_handshake("1", path="/socket.io/", query=[("EIO", "4"), ("transport", "websocket")])
    for hs, held in ((sio, ['420["chat",1]', '42["chat",2]']), (None, ['42["chat",2]'])):
        p = Pipe(handshake=hs)
        p.intercept.add("d:event=chat", timeout=60)
        p.send(CLIENT, '420["chat",1]', '42["chat",2]', '42["news",3]', "plain")
        assert [m.payload.decode() for m in p.held()] == held, hs
    # a protocol the proxy's --decoder chose travels in the handshake
    p = Pipe(handshake=make_handshake("1", path="/rpc", decoder="jsonrpc"))
    p.intercept.add("proto:jsonrpc d:method=sub", timeout=60)
    p.send(CLIENT, '{"jsonrpc":"2.0","id":1,"method":"sub"}', '{"method":"sub"}')
    assert [m.payload for m in p.held()] == [b'{"jsonrpc":"2.0","id":1,"method":"sub"}']
    # ... and --decoder PATH=none turns decoding off, content sniffing included
    p = Pipe(handshake=make_handshake("1", path="/rpc", decoder="none"))
    p.intercept.add("d:method=sub", timeout=60)
    p.send(CLIENT, '{"jsonrpc":"2.0","id":1,"method":"sub"}')
    assert p.held() == []


def test_dropped_message_never_arrives() -> None:
    p = Pipe()
    p.intercept.add("from:server drop-me")
    p.send(SERVER, "a", "drop-me", "b")
    [held] = p.held()
    p.apply(p.relay.drop(held.held, p.now))
    p.deliver()
    assert p.messages(CLIENT) == ["a", "b"]
    assert [o.outcome for o in p.outcomes()] == ["dropped"]


def test_breakpoint_direction_is_part_of_the_filter() -> None:
    p = Pipe()
    p.intercept.add("from:client hello")
    p.send(SERVER, "hello")
    p.send(CLIENT, "hello")
    p.deliver()
    assert p.messages(CLIENT) == ["hello"] and p.messages(SERVER) == []
    assert [m.side for m in p.held()] == [CLIENT]


def test_breakpoint_on_one_connection_only() -> None:
    ic = Intercept()
    ic.add("x", conn="2")
    p1 = Pipe(intercept=ic)
    p1.send(CLIENT, "x")
    p1.deliver()
    assert p1.messages(SERVER) == ["x"]


def test_pings_flow_while_a_message_is_held_and_are_answered() -> None:
    p = Pipe()
    p.intercept.add("hold")
    p.send(CLIENT, "hold", "queued")
    p.client.send_ping(b"are you there")
    p.feed(CLIENT, b"".join(p.client.data_to_send()))
    p.deliver()
    assert p.controls(SERVER) == [(WsOp.PING, b"are you there")]
    assert p.messages(SERVER) == []
    # the server's automatic pong goes back untouched
    p.feed(SERVER, b"".join(p.server.data_to_send()))
    p.deliver()
    assert p.controls(CLIENT) == [(WsOp.PONG, b"are you there")]
    [held] = p.held()
    p.apply(p.relay.forward(held.held, p.now))
    p.deliver()
    assert p.messages(SERVER) == ["hold", "queued"]


def test_control_frames_can_be_held_too() -> None:
    p = Pipe()
    p.intercept.add("hold", control=True)
    p.send(CLIENT, "hold")
    p.client.send_ping(b"p1")
    p.feed(CLIENT, b"".join(p.client.data_to_send()))
    p.deliver()
    assert p.controls(SERVER) == []  # queued behind the held message
    [held] = p.held()
    p.apply(p.relay.forward(held.held, p.now))
    p.deliver()
    assert p.messages(SERVER) == ["hold"] and p.controls(SERVER) == [(WsOp.PING, b"p1")]


def test_a_control_breakpoint_holds_matching_pings() -> None:
    p = Pipe()
    p.intercept.add("type:ping", control=True)
    p.client.send_ping(b"x")
    p.feed(CLIENT, b"".join(p.client.data_to_send()))
    p.send(CLIENT, "after")
    p.deliver()
    assert p.controls(SERVER) == [] and p.messages(SERVER) == []
    [ping] = [e for e in p.items() if e.held]
    assert isinstance(ping, ControlFrame)
    p.apply(p.relay.forward(ping.held, p.now))
    p.deliver()
    assert p.controls(SERVER) == [(WsOp.PING, b"x")] and p.messages(SERVER) == ["after"]


def test_a_close_still_closes_while_a_message_is_held() -> None:
    p = Pipe()
    p.intercept.add("hold")
    p.send(CLIENT, "hold", "queued")
    p.client.send_close(1000, "bye")
    p.feed(CLIENT, b"".join(p.client.data_to_send()))
    p.deliver()
    assert p.messages(SERVER) == []
    assert p.server.close_rcvd is not None and p.server.close_rcvd.code == 1000
    assert [o.outcome for o in p.outcomes()] == ["dropped"]
    assert p.relay.held_ids == []


def test_timeouts_use_the_driver_clock() -> None:
    p = Pipe()
    p.intercept.add("fwd", timeout=120)
    p.intercept.add("drp", timeout=10, on_timeout="drop")
    p.send(CLIENT, "fwd", "drp")
    assert p.relay.next_deadline() == T0 + 10
    p.apply(p.relay.tick(T0 + 9.9))
    assert p.outcomes() == []
    p.apply(p.relay.tick(T0 + 10))
    assert [o.outcome for o in p.outcomes()] == ["timeout-dropped"]
    assert p.relay.next_deadline() == T0 + 120
    p.apply(p.relay.tick(T0 + 500))
    assert [o.outcome for o in p.outcomes()] == ["timeout-dropped", "timeout-forwarded"]
    p.deliver()
    assert p.messages(SERVER) == ["fwd"]
    assert p.relay.next_deadline() is None


def test_forward_all_and_drop_all() -> None:
    p = Pipe()
    p.intercept.add("m")
    p.send(CLIENT, "m1", "m2")
    p.send(SERVER, "m3")
    out = p.apply(p.relay.release_all(p.now, drop=False))
    assert out.info == "3"
    p.deliver()
    assert p.messages(SERVER) == ["m1", "m2"] and p.messages(CLIENT) == ["m3"]
    p.send(CLIENT, "m4")
    assert p.apply(p.relay.release_all(p.now, drop=True)).info == "1"
    p.deliver()
    assert p.messages(SERVER) == ["m1", "m2"]


def test_unknown_and_no_longer_held_ids_are_errors() -> None:
    p = Pipe()
    p.intercept.add("m")
    p.send(CLIENT, "m")
    [held] = p.held()
    p.relay.forward(held.held, p.now)
    with pytest.raises(RelayError, match="no longer held"):
        p.relay.forward(held.held, p.now)
    with pytest.raises(RelayError, match="no longer held"):
        p.intercept.relay_of(held.held)
    with pytest.raises(RelayError, match="no held message 99"):
        p.intercept.relay_of(99)


def test_bad_breakpoints_are_refused() -> None:
    ic = Intercept()
    with pytest.raises(RelayError, match="bad filter"):
        ic.add("(unclosed")
    with pytest.raises(RelayError, match="needs a filter"):
        ic.add("  ")
    with pytest.raises(RelayError, match="timeout"):
        ic.add("x", timeout=0)
    with pytest.raises(RelayError, match="forward or drop"):
        ic.add("x", on_timeout="explode")
    with pytest.raises(RelayError, match="no breakpoint 7"):
        ic.remove(7)


def test_hold_queue_is_bounded_by_backpressure() -> None:
    p = Pipe(hold_bytes=20_000)
    p.intercept.add("first")
    p.send(CLIENT, "first")
    assert not p.paused
    sent = 0
    while not p.paused:  # a driver stops reading the client once told to
        p.send(CLIENT, f"{sent:03d}" + "x" * 1000)
        sent += 1
        assert sent < 100
    assert p.paused == {CLIENT}
    assert 20_000 < p.relay.up.qbytes < 20_000 + 1_500  # one message past the bound
    [first, *_] = p.held()
    p.apply(p.relay.forward(first.held, p.now))
    assert p.paused == set()
    p.deliver()
    assert len(p.messages(SERVER)) == sent + 1


def test_a_huge_message_is_not_withheld_beyond_the_bound() -> None:
    """With a breakpoint, messages are withheld until complete so they can be matched;
    one larger than the bound streams instead (it cannot be held)."""
    p = Pipe(hold_bytes=10_000)
    p.intercept.add("never")
    p.client.send_binary(b"a" * 50_000, fin=False)
    p.client.send_continuation(b"b" * 50_000, fin=True)
    data = b"".join(p.client.data_to_send())
    p.feed(CLIENT, data[:30_000])
    assert len(p.wire[SERVER]) > 10_000  # streaming, not withheld
    p.feed(CLIENT, data[30_000:])
    p.deliver()
    assert p.messages(SERVER) == [b"a" * 50_000 + b"b" * 50_000]
    assert not p.paused


# --------------------------------------------------------------------------- permessage-deflate


def compressible(i: int) -> str:
    return f'{{"seq": {i}, "text": "' + "repeat after me " * (5 + i % 7) + '"}'


@SETTINGS
@given(
    n=st.integers(3, 10),
    actions=st.lists(st.sampled_from(["forward", "edit", "drop"]), min_size=1, max_size=4),
    reverse=st.booleans(),
    direction=st.sampled_from([CLIENT, SERVER]),
    bits=st.integers(9, 15),
    seed=st.integers(0, 2**32),
)
def test_deflate_takeover_survives_edits_and_drops(
    n: int, actions: list[str], reverse: bool, direction: str, bits: int, seed: int
) -> None:
    """Held messages edited or dropped in any order on a context-takeover connection: the
    receiver decodes every later message (devconsole re-compresses that direction)."""
    p = Pipe(deflate=Deflate(client_bits=bits, server_bits=bits), seed=seed)
    p.intercept.add("HOLD")
    payloads = [compressible(i) for i in range(n)]
    marked = set(range(1, n, max(1, n // len(actions))))
    for i in marked:
        payloads[i] = "HOLD " + payloads[i]
    for pl in payloads:
        p.send(direction, pl)
    held = p.held()
    assert len(held) == len(marked)
    expect = list(payloads)
    order = list(zip(sorted(marked), held, strict=True))
    if reverse:
        order.reverse()
    for k, (i, h) in enumerate(order):
        act = actions[k % len(actions)]
        if act == "forward":
            out = p.relay.forward(h.held, p.now)
        elif act == "edit":
            expect[i] = f"edited {i} " + "repeat after me " * 3
            out = p.relay.forward(h.held, p.now, expect[i].encode())
        else:
            expect[i] = None  # type: ignore[call-overload]
            out = p.relay.drop(h.held, p.now)
        p.apply(out)
    # and more traffic after everything was decided
    later = [compressible(100 + i) for i in range(3)]
    for pl in later:
        p.send(direction, pl)
    p.deliver()
    to = SERVER if direction == CLIENT else CLIENT
    assert p.healthy(to)
    assert p.messages(to) == [e for e in expect if e is not None] + later


@pytest.mark.parametrize("direction", [CLIENT, SERVER])
def test_deflate_half_open_then_release_keeps_the_receiver_decoding(direction: str) -> None:
    """The known failure: a half-open connection with context takeover, released, made the
    receiver fail with 1002 at the first compressed message."""
    p = Pipe(deflate=Deflate())
    p.send(direction, compressible(1))
    p.apply(p.relay.half_open(p.now))
    p.send(direction, compressible(2), compressible(3))  # lost in the tunnel
    p.apply(p.relay.release(p.now))
    p.send(direction, compressible(4), compressible(5))
    p.deliver()
    to = SERVER if direction == CLIENT else CLIENT
    assert p.healthy(to)
    assert p.messages(to) == [compressible(1), compressible(4), compressible(5)]
    assert [m.dropped for m in p.msgs()] == [False, True, True, False, False]


def test_without_recompression_the_receiver_would_fail() -> None:
    """The control for the tests above: forwarding the sender's bytes after a dropped
    message breaks a context-takeover receiver."""
    d = Deflate()
    client = peer(Side.CLIENT, d)
    server = peer(Side.SERVER, d)
    for i in (1, 2, 3):
        client.send_text(compressible(i).encode())
    first, _dropped, third = client.data_to_send()
    server.receive_data(first + third)
    assert server.close_sent is not None and server.close_sent.code == 1002


def test_no_context_takeover_needs_no_recompression() -> None:
    p = Pipe(deflate=Deflate(client_nct=True, server_nct=True))
    p.intercept.add("HOLD")
    p.send(CLIENT, compressible(1), "HOLD " + compressible(2), compressible(3))
    [h] = p.held()
    p.apply(p.relay.drop(h.held, p.now))
    p.deliver()
    assert p.healthy(SERVER)
    assert p.messages(SERVER) == [compressible(1), compressible(3)]
    assert not p.relay.up.recompress


def test_injected_messages_on_a_compressed_connection() -> None:
    p = Pipe(deflate=Deflate())
    p.send(SERVER, compressible(1))
    p.apply(p.relay.inject(CLIENT, Opcode.TEXT, b"from devconsole", p.now))
    p.send(SERVER, compressible(2))
    p.deliver()
    assert p.healthy(CLIENT)
    assert p.messages(CLIENT) == [compressible(1), "from devconsole", compressible(2)]


# --------------------------------------------------------------------------- faults


@SETTINGS
@given(seed=st.integers(0, 2**32), at=st.integers(0, 200_000))
def test_inject_waits_for_the_end_of_a_fragmented_message(seed: int, at: int) -> None:
    p = Pipe(seed=seed)
    frags = [bytes([65 + i]) * 20_000 for i in range(8)]
    for i, f in enumerate(frags):
        if i == 0:
            p.server.send_binary(f, fin=False)
        else:
            p.server.send_continuation(f, fin=i == len(frags) - 1)
    data = b"".join(p.server.data_to_send())
    at = min(at, len(data))
    p.feed(SERVER, data[:at])
    p.apply(p.relay.inject(CLIENT, Opcode.TEXT, b"squeezed in", p.now))
    p.feed(SERVER, data[at:])
    p.send(SERVER, "after")
    p.deliver()
    whole = b"".join(frags)
    got = p.messages(CLIENT)
    if at == 0:
        assert got == ["squeezed in", whole, "after"]
    else:
        assert got == [whole, "squeezed in", "after"]
    [inj] = [m for m in p.msgs() if m.injected]
    assert inj.side == SERVER and inj.payload == b"squeezed in"


def test_injected_ping_is_answered_and_the_pong_taken_out() -> None:
    p = Pipe()
    p.apply(p.relay.inject(SERVER, Opcode.PING, b"dc1", p.now))
    p.deliver()
    assert p.controls(SERVER) == [(WsOp.PING, b"dc1")]
    p.feed(SERVER, b"".join(p.server.data_to_send()))  # the server's pong
    p.send(SERVER, "after")
    p.deliver()
    assert p.controls(CLIENT) == [] and p.messages(CLIENT) == ["after"]
    [pong] = [e for e in p.items() if e.opcode == Opcode.PONG]
    assert pong.dropped and pong.side == SERVER


def test_half_open_drops_whole_messages_both_ways() -> None:
    p = Pipe()
    p.apply(p.relay.half_open(p.now))
    p.send(CLIENT, "lost")
    p.send(SERVER, "lost too")
    p.deliver()
    assert p.messages(SERVER) == [] and p.messages(CLIENT) == []
    with pytest.raises(RelayError, match="already half-open"):
        p.relay.half_open(p.now)
    with pytest.raises(RelayError, match="half-open; release it"):
        p.relay.inject(CLIENT, Opcode.TEXT, b"x", p.now)
    p.apply(p.relay.release(p.now))
    p.send(CLIENT, "back")
    p.deliver()
    assert p.messages(SERVER) == ["back"]
    states = [e.state for e in p.events if isinstance(e, StateEvent)]
    assert states == [ConnState.HALF_OPEN, ConnState.OPEN]


def test_half_open_starts_at_the_message_boundary() -> None:
    p = Pipe()
    p.client.send_text(b"a" * 1000, fin=False)
    p.client.send_continuation(b"b" * 1000, fin=True)
    data = b"".join(p.client.data_to_send())
    p.feed(CLIENT, data[:500])
    p.apply(p.relay.half_open(p.now))
    p.feed(CLIENT, data[500:])
    p.send(CLIENT, "dropped")
    p.deliver()
    assert p.messages(SERVER) == ["a" * 1000 + "b" * 1000]


@pytest.mark.parametrize("to", ["both", "client", "server"])
def test_close_with_a_code_then_fin_when_answered(to: str) -> None:
    p = Pipe()
    p.send(CLIENT, "hi")
    p.apply(p.relay.close(4001, "bye", to, p.now))
    p.send(CLIENT, "not forwarded")
    p.deliver()
    if to in ("both", "server"):
        assert p.server.close_rcvd is not None and p.server.close_rcvd.code == 4001
    if to in ("both", "client"):
        assert p.client.close_rcvd is not None and p.client.close_rcvd.code == 4001
    assert p.messages(SERVER) == ["hi"]
    assert p.end is None
    # the peers answer; devconsole takes the answers (they are shown dropped)
    for side, peer_ in ((CLIENT, p.client), (SERVER, p.server)):
        data = b"".join(peer_.data_to_send())
        if data:
            p.feed(side, data)
    assert p.end == "close"
    closes = [e for e in p.items() if e.opcode == Opcode.CLOSE]
    assert all(c.injected or c.dropped for c in closes)
    with pytest.raises(RelayError, match="being closed"):
        p.relay.close(1000, "", "both", p.now)


def test_close_nobody_answers_ends_at_the_deadline() -> None:
    p = Pipe()
    p.apply(p.relay.close(1001, "going away", "both", p.now))
    assert p.relay.next_deadline() == T0 + 2.0
    assert p.apply(p.relay.tick(T0 + 1)).end is None
    assert p.apply(p.relay.tick(T0 + 2)).end == "close"


def test_close_code_must_be_sendable() -> None:
    p = Pipe()
    with pytest.raises(RelayError, match="1006"):
        p.relay.close(1006, "", "both", p.now)
    assert p.relay.state == ConnState.OPEN


def test_abort() -> None:
    p = Pipe()
    out = p.relay.abort(True, p.now)
    assert (out.end, out.rst) == ("abort", True)
    p.relay.end(p.now + 1)
    [end] = [e for e in p.events if isinstance(e, EndEvent)]
    assert end.closed_by == "proxy" and not end.clean


# --------------------------------------------------------------------------- what peers did


def raw(b0: int, payload: bytes = b"", mask: bytes | None = None) -> bytes:
    n = len(payload)
    head = bytes([b0, (0x80 if mask else 0) | n])
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def test_an_unmasked_client_frame_is_flagged_and_still_forwarded() -> None:
    p = Pipe()
    bad = raw(0x81, b"naked")
    assert p.relay.feed(CLIENT, bad, T0) is bad
    [err] = [e for e in p.events if isinstance(e, ProtocolErrorEvent)]
    assert err.side == CLIENT and "unmasked" in err.error and err.offset == 0
    [m] = p.msgs()
    assert m.payload == b"naked"
    p.relay.feed(CLIENT, bad, T0)  # once per direction
    assert len([e for e in p.events if isinstance(e, ProtocolErrorEvent)]) == 1


def test_a_masked_server_frame_is_flagged() -> None:
    p = Pipe()
    p.relay.feed(SERVER, raw(0x81, b"x", b"abcd"), T0)
    [err] = [e for e in p.events if isinstance(e, ProtocolErrorEvent)]
    assert err.side == SERVER and "masked server frame" in err.error


def end_event(p: Pipe) -> EndEvent:
    p.relay.end(p.now + 1)
    [end] = [e for e in p.events if isinstance(e, EndEvent)]
    return end


def test_clean_needs_a_close_from_both_sides() -> None:
    p = Pipe()
    p.relay.feed(CLIENT, build_close(1000, "", mask=True), T0)
    p.relay.feed(SERVER, build_close(1000, ""), T0)
    end = end_event(p)
    assert end.clean is True and end.closed_by == CLIENT


def test_a_one_sided_close_is_not_clean() -> None:
    p = Pipe()
    p.relay.feed(CLIENT, build_close(1000, "", mask=True), T0)
    end = end_event(p)
    assert end.clean is False and end.closed_by == CLIENT


def test_a_close_answered_after_the_tcp_end_is_not_clean() -> None:
    p = Pipe()
    p.relay.feed(SERVER, build_close(1001, ""), T0)
    end = end_event(p)
    p.relay.feed(CLIENT, build_close(1001, "", mask=True), T0 + 2)  # too late
    assert end.clean is False
    assert len([e for e in p.events if isinstance(e, EndEvent)]) == 1


def test_an_invalid_close_then_a_second_close_is_not_clean() -> None:
    """The client's close has a reason that is not UTF-8; the server fails it with 1007;
    the client then sends another close. The record follows the peers: not clean, the
    close that counts is the server's 1007."""
    p = Pipe()
    mask = b"\x01\x02\x03\x04"
    p.relay.feed(CLIENT, raw(0x88, struct.pack("!H", 1000) + b"\xff\xfe", mask), T0)
    p.relay.feed(SERVER, build_close(1007, "invalid UTF-8"), T0)
    p.relay.feed(CLIENT, build_close(1000, "", mask=mask), T0)
    closes = [e for e in p.items() if e.opcode == Opcode.CLOSE]
    assert closes[0].error == "close reason not UTF-8"
    assert closes[2].error == "a second close frame"
    assert closes[1].error is None
    end = end_event(p)
    assert end.clean is False and end.closed_by == SERVER


def test_bytes_after_a_parse_error_queue_behind_a_held_message() -> None:
    p = Pipe()
    p.intercept.add("hold")
    p.send(SERVER, "hold")
    garbage = raw(0x83, b"abc")  # reserved opcode
    p.relay.feed(SERVER, garbage, T0)
    assert bytes(p.wire[CLIENT]) == b""
    [h] = p.held()
    p.apply(p.relay.forward(h.held, p.now))
    assert bytes(p.wire[CLIENT]).endswith(garbage)
    assert any(isinstance(e, ProtocolErrorEvent) for e in p.events)


def test_end_drops_what_is_held() -> None:
    p = Pipe()
    p.intercept.add("hold")
    p.send(CLIENT, "hold")
    p.relay.end(T0 + 1)
    assert [o.outcome for o in p.outcomes()] == ["dropped"]
    assert p.intercept.held == {} and p.intercept.relays == {}


def test_recompressed_messages_use_the_negotiated_window() -> None:
    """A receiver with a 9-bit window inflates what devconsole compresses for it."""
    p = Pipe(deflate=Deflate(client_bits=9, server_bits=9))
    p.intercept.add("HOLD")
    p.send(CLIENT, "HOLD " + compressible(0), *(compressible(i) for i in range(1, 6)))
    [h] = p.held()
    p.apply(p.relay.drop(h.held, p.now))
    written = bytes(p.wire[SERVER])
    p.deliver()
    assert p.healthy(SERVER)
    assert p.messages(SERVER) == [compressible(i) for i in range(1, 6)]
    assert p.relay.up.compressor is not None
    # compressed for real, by devconsole: RSV1 set, far smaller than the text
    assert written[0] & 0x40
    assert len(written) < sum(len(compressible(i)) for i in range(1, 6)) / 2
