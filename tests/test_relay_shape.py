"""Network conditions as stages of the relay core: a fake clock, no sockets, websockets'
sans-I/O peers (``tests.test_relay.Pipe``). When each byte reaches a peer is recorded."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.frames import Opcode as WsOp

from devconsole.frames import Control, DataMessage, StreamDecoder
from devconsole.model import CLIENT, SERVER, ControlFrame, Shape, ShapeEvent
from devconsole.relay import Output, Relay, RelayError
from devconsole.shaping import SHAPE_BUFFER
from tests.test_frames import Ctl, Msg, chunk_sizes, streams
from tests.test_relay import Deflate, Pipe, compressible, frames_bytes


@dataclass
class Clocked(Pipe):
    """A Pipe that records when bytes reach each peer: ``writes[to]`` = [(time, bytes)]."""

    writes: dict[str, list[tuple[float, bytes]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.writes = {CLIENT: [], SERVER: []}
        self.relay.rng = random.Random(self.seed)

    def apply(self, out: Output) -> Output:
        for to in (CLIENT, SERVER):
            for b in out.to_client if to == CLIENT else out.to_server:
                if b:
                    self.writes[to].append((self.now, b))
        return super().apply(out)

    def feed(self, side: str, data: bytes, chunks: list[int] | None = None) -> None:
        to = SERVER if side == CLIENT else CLIENT
        out = self.relay.feed(side, data, self.now)  # type: ignore[arg-type]
        if out:
            self.writes[to].append((self.now, out))
            self.wire[to] += out
        if self.relay.out:
            self.apply(self.relay.take())

    def shape(self, to: str, **conditions: object) -> None:
        self.apply(self.relay.shape(to, Shape(**conditions), self.now))  # type: ignore[arg-type]

    def advance(self, dt: float) -> None:
        end = self.now + dt
        while True:
            t = self.relay.next_deadline()
            if t is None or t > end:
                break
            self.now = max(self.now, t)
            self.apply(self.relay.tick(self.now))
        self.now = end
        self.apply(self.relay.tick(self.now))

    def received_bytes(self, to: str) -> bytes:
        return b"".join(b for _, b in self.writes[to])


# --------------------------------------------------------------------------- latency


def test_latency_delays_every_byte_by_exactly_the_set_value() -> None:
    p = Clocked()
    p.shape(CLIENT, latency=0.1)
    t0 = p.now
    p.send(SERVER, "one")
    p.advance(0.03)
    p.send(SERVER, "two")
    p.advance(0.069)
    assert p.writes[CLIENT] == []
    p.advance(0.2)
    p.deliver()
    assert p.messages(CLIENT) == ["one", "two"]
    assert [round(t - t0, 6) for t, _ in p.writes[CLIENT]] == [0.1, 0.13]
    # the other direction is untouched: the hot path
    p.client.send_text(b"up")
    chunk = b"".join(p.client.data_to_send())
    assert p.relay.feed(CLIENT, chunk, p.now) is chunk


def test_jitter_keeps_order_and_range() -> None:
    p = Clocked(seed=5)
    p.shape(SERVER, latency=0.1, jitter=0.03)
    sent: list[float] = []
    for i in range(40):
        sent.append(p.now)
        p.send(CLIENT, f"m{i}")
        p.advance(0.005)
    p.advance(1)
    p.deliver()
    assert p.messages(SERVER) == [f"m{i}" for i in range(40)]
    delays = [t - s for (t, _), s in zip(p.writes[SERVER], sent, strict=True)]
    assert all(0.07 - 1e-9 <= d <= 0.13 + 0.005 * 40 for d in delays)
    assert max(delays) - min(delays) > 0.01  # it does vary


# --------------------------------------------------------------------------- rate


def test_rate_limits_throughput_at_the_receiver() -> None:
    p = Clocked()
    rate = 8_000.0  # 64kbit
    p.shape(CLIENT, rate=rate)
    t0 = p.now
    payload = "z" * 999
    for _ in range(20):
        p.send(SERVER, payload)
    p.advance(10)
    p.deliver()
    assert p.messages(CLIENT) == [payload] * 20
    total = len(p.received_bytes(CLIENT))
    last_t, last = p.writes[CLIENT][-1]
    elapsed = last_t + len(last) / rate - t0
    assert total / elapsed == pytest.approx(rate, rel=0.01)
    got = 0
    for t, b in p.writes[CLIENT]:
        assert got <= rate * (t - t0) + 1e-6
        got += len(b)


def test_a_full_shaped_buffer_stops_reading_the_sender_and_resumes_at_half() -> None:
    p = Clocked()
    p.shape(CLIENT, rate=50_000.0)
    big = "q" * 60_000
    while SERVER not in p.paused:
        p.send(SERVER, big)
        assert len(p.msgs()) < 20, "never paused: the buffer grows without bound"
    held = p.relay.down.chain.pending  # type: ignore[union-attr]
    assert SHAPE_BUFFER < held < SHAPE_BUFFER + 2 * len(big) + 100
    p.advance(2.0)
    assert SERVER in p.paused  # still above half
    p.advance(10)
    assert SERVER not in p.paused
    p.deliver()
    assert len(p.messages(CLIENT)) == len(p.msgs())


# --------------------------------------------------------------------------- slicing


def test_slice_cuts_tcp_writes_one_per_tick() -> None:
    p = Clocked()
    p.shape(CLIENT, slice=16, slice_delay=0.002)
    p.send(SERVER, "a message longer than one slice of sixteen bytes")
    first = list(p.writes[CLIENT])
    assert len(first) == 1 and len(first[0][1]) == 16
    p.advance(1)
    p.deliver()
    assert p.messages(CLIENT) == ["a message longer than one slice of sixteen bytes"]
    sizes = [len(b) for _, b in p.writes[CLIENT]]
    assert all(s <= 16 for s in sizes) and sum(sizes) == 2 + 48
    times = [t for t, _ in p.writes[CLIENT]]
    assert all(b - a >= 0.002 - 1e-9 for a, b in itertools.pairwise(times))


# --------------------------------------------------------------------------- fragments


@pytest.mark.parametrize("deflate", [None, Deflate(), Deflate(client_nct=True, server_nct=True)])
def test_fragment_makes_continuation_frames_of_the_set_size(deflate: Deflate | None) -> None:
    p = Clocked(deflate=deflate)
    p.shape(SERVER, fragment=20)
    msgs = [compressible(i) for i in range(4)]
    p.send(CLIENT, *msgs)
    p.deliver()
    assert p.healthy(SERVER)
    assert p.messages(SERVER) == msgs
    frames = p.received[SERVER]
    assert {f.opcode for f in frames} == {WsOp.TEXT, WsOp.CONT}
    # on the wire (compressed or not): every frame carries at most 20 payload bytes
    lengths = frame_lengths(p.received_bytes(SERVER))
    assert len(lengths) == len(frames) > 4 and max(lengths) == 20
    assert [m.frames for m in p.msgs()] == [1, 1, 1, 1]  # as the sender sent them


def frame_lengths(data: bytes) -> list[int]:
    """The payload length of each frame in ``data``."""
    out = []
    pos = 0
    while pos < len(data):
        ln = data[pos + 1] & 0x7F
        p = pos + 2
        if ln == 126:
            ln = int.from_bytes(data[p : p + 2], "big")
            p += 2
        elif ln == 127:
            ln = int.from_bytes(data[p : p + 8], "big")
            p += 8
        if data[pos + 1] & 0x80:
            p += 4
        out.append(ln)
        pos = p + ln
    return out


def test_fragment_and_an_edit_on_a_takeover_connection() -> None:
    from devconsole.rules import load

    p = Clocked(deflate=Deflate())
    for _, out in p.intercept.set_rules(
        load('[[rule]]\nmatch = "seq\\": 2"\nrewrite = { regex = "repeat", replace = "REPEAT" }'),
        p.now,
    ):
        p.apply(out)
    p.shape(SERVER, fragment=7)
    p.send(CLIENT, *(compressible(i) for i in range(5)))
    p.deliver()
    assert p.healthy(SERVER)
    assert p.messages(SERVER)[2] == compressible(2).replace("repeat", "REPEAT")
    assert p.messages(SERVER)[3:] == [compressible(3), compressible(4)]


# --------------------------------------------------------------------------- stall, pongs


def test_stall_stops_reading_the_sender_until_cleared() -> None:
    p = Clocked()
    p.shape(SERVER, stall=True)  # the server gets nothing new: stop reading the client
    assert p.paused == {CLIENT}
    p.apply(p.relay.shape(SERVER, None, p.now))
    assert p.paused == set()


def test_pongs_dropped_toward_the_client() -> None:
    p = Clocked()
    p.shape(CLIENT, pongs="drop")
    p.client.send_ping(b"hb")
    p.feed(CLIENT, b"".join(p.client.data_to_send()))
    p.deliver()
    p.feed(SERVER, b"".join(p.server.data_to_send()))
    p.send(SERVER, "data still flows")
    p.deliver()
    assert p.controls(CLIENT) == []
    assert p.messages(CLIENT) == ["data still flows"]
    [pong] = [e for e in p.items() if isinstance(e, ControlFrame) and e.side == SERVER]
    assert pong.dropped and "pong dropped" in pong.action


def test_pongs_delayed_without_holding_data_back() -> None:
    p = Clocked()
    p.shape(CLIENT, pongs="delay", pong_delay=2.0)
    p.client.send_ping(b"hb")
    p.feed(CLIENT, b"".join(p.client.data_to_send()))
    p.deliver()
    t0 = p.now
    p.feed(SERVER, b"".join(p.server.data_to_send()))
    p.send(SERVER, "not held up")
    p.deliver()
    assert p.controls(CLIENT) == [] and p.messages(CLIENT) == ["not held up"]
    p.advance(1.99)
    p.deliver()
    assert p.controls(CLIENT) == []
    p.advance(0.02)
    p.deliver()
    assert p.controls(CLIENT) == [(WsOp.PONG, b"hb")]
    assert p.writes[CLIENT][-1][0] - t0 == pytest.approx(2.0)


# --------------------------------------------------------------------------- lifecycle


def test_close_waits_for_shaped_bytes_then_fins() -> None:
    p = Clocked()
    p.shape(CLIENT, latency=0.5)
    p.send(SERVER, "last words")
    p.apply(p.relay.close(1001, "bye", "both", p.now))
    p.feed(CLIENT, b"".join(p.client.data_to_send()))  # nothing yet: the client has no close
    p.deliver()
    p.feed(SERVER, b"".join(p.server.data_to_send()))  # the server answers
    assert p.end is None  # the client has not even got the data yet
    p.advance(0.6)
    p.deliver()
    p.feed(CLIENT, b"".join(p.client.data_to_send()))
    p.advance(0.01)
    assert p.messages(CLIENT) == ["last words"]
    assert p.client.close_rcvd is not None and p.client.close_rcvd.code == 1001
    assert p.end == "close"


def test_clearing_conditions_sends_what_they_held_in_order() -> None:
    p = Clocked()
    p.shape(CLIENT, latency=5.0, rate=10.0)
    p.send(SERVER, "a", "b", "c")
    p.apply(p.relay.shape(CLIENT, None, p.now))
    p.deliver()
    assert p.messages(CLIENT) == ["a", "b", "c"]
    p.client.send_text(b"hot")
    p.server.send_text(b"hot")
    for side, peer in ((CLIENT, p.client), (SERVER, p.server)):
        chunk = b"".join(peer.data_to_send())
        assert p.relay.feed(side, chunk, p.now) is chunk


def test_shape_events_and_endpoint_conditions() -> None:
    p = Clocked()
    p.shape(CLIENT, latency=0.2)
    [ev] = [e for e in p.events if isinstance(e, ShapeEvent)]
    assert ev.shape == {CLIENT: Shape(latency=0.2)} and ev.source == "cli"
    assert p.relay.shapes == {CLIENT: Shape(latency=0.2)}
    # endpoint conditions apply to new relays of the path, and to live ones
    p.intercept.set_endpoint_shape("/slow*", SERVER, Shape(rate=1000.0), p.now)
    r = Relay("2", emit=p.events.append, intercept=p.intercept, path="/slow/x")
    assert r.shapes == {SERVER: Shape(rate=1000.0)}
    assert p.relay.shapes == {CLIENT: Shape(latency=0.2)}  # path "" does not match


def test_bad_conditions_are_refused() -> None:
    p = Clocked()
    with pytest.raises(RelayError, match="jitter"):
        p.relay.shape(CLIENT, Shape(latency=0.01, jitter=0.1), p.now)
    with pytest.raises(RelayError, match="client, server or both"):
        p.relay.shape("nobody", Shape(latency=1), p.now)


# --------------------------------------------------------------------------- properties


@settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=streams(),
    from_client=st.booleans(),
    seed=st.integers(0, 2**32),
    latency=st.sampled_from([0.0, 0.05]),
    jitter=st.sampled_from([0.0, 0.02]),
    rate=st.sampled_from([0.0, 3000.0]),
    slice_=st.sampled_from([0, 7]),
    frag=st.sampled_from([0, 5]),
)
def test_any_conditions_keep_every_message_in_order(
    spec: list[Msg | Ctl],
    from_client: bool,
    seed: int,
    latency: float,
    jitter: float,
    rate: float,
    slice_: int,
    frag: int,
) -> None:
    """Whatever the frames (fragmented, control frames between fragments) and however
    the reads cut them, the receiver gets the same data messages in the same order, and
    every control frame, under any combination of conditions."""
    data = frames_bytes(spec, mask=from_client)
    side = CLIENT if from_client else SERVER
    to = SERVER if from_client else CLIENT
    shape = Shape(latency=latency, jitter=min(jitter, latency), rate=rate, slice=slice_,
                  fragment=frag)  # fmt: skip
    r = Relay("1", emit=lambda ev: None, rng=random.Random(seed))
    now = 1000.0
    out = bytearray()

    def take(o: Output) -> None:
        out.extend(o.data(to))  # type: ignore[arg-type]

    if not shape.empty:
        take(r.shape(to, shape, now))
    pos = 0
    for n in chunk_sizes(random.Random(seed), len(data)):
        out += r.feed(side, data[pos : pos + n], now)  # type: ignore[arg-type]
        pos += n
        if r.out:
            take(r.take())
        now += 0.001
    for _ in range(100_000):
        t = r.next_deadline()
        if t is None:
            break
        now = max(now, t)
        take(r.tick(now))
    assert r.next_deadline() is None
    got = StreamDecoder(from_client).feed(bytes(out))
    want = StreamDecoder(from_client).feed(data)
    msgs = [(i.opcode, i.payload) for i in got if isinstance(i, DataMessage)]
    assert msgs == [(i.opcode, i.payload) for i in want if isinstance(i, DataMessage)]
    ctls = sorted((i.opcode, i.payload) for i in got if isinstance(i, Control))
    assert ctls == sorted((i.opcode, i.payload) for i in want if isinstance(i, Control))
    if not frag:
        assert bytes(out) == data  # only time changed, not one byte
