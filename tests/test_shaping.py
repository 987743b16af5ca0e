"""The network-condition stages on their own: a fake clock, chunks in, chunks out."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame
from websockets.frames import Opcode as WsOp
from websockets.protocol import Protocol, Side, State

from devconsole.model import Shape
from devconsole.shaping import (
    Chain,
    Latency,
    Rate,
    ShapeError,
    Slicer,
    chain_for,
    describe,
    fragment,
    parse_duration,
    parse_rate,
    parse_shape,
    parse_size,
    wire_payload,
)

T0 = 500.0


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("text", "secs"),
    [("200ms", 0.2), ("1.5s", 1.5), ("2", 2.0), ("2m", 120.0), ("250us", 0.00025), (3, 3.0)],
)
def test_durations(text: str | int, secs: float) -> None:
    assert parse_duration(text) == pytest.approx(secs)


@pytest.mark.parametrize(
    ("text", "bps"),
    [
        ("64kbit", 8_000),
        ("1mbit", 125_000),
        ("100kB", 100_000),
        ("1.5MB", 1_500_000),
        ("8000", 8000),
        ("1mbps", 125_000),
        ("2kB/s", 2000),
    ],
)
def test_rates(text: str, bps: float) -> None:
    assert parse_rate(text) == pytest.approx(bps)


@pytest.mark.parametrize(
    ("text", "n"), [("1400", 1400), ("4k", 4096), ("4kB", 4000), ("1KiB", 1024)]
)
def test_sizes(text: str, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize(
    ("fn", "bad"),
    [
        (parse_duration, "soon"),
        (parse_duration, "-1s"),
        (parse_duration, "48h"),
        (parse_rate, "fast"),
        (parse_rate, "0kbit"),
        (parse_rate, "10k"),  # bits or bytes?
        (parse_size, "0"),
        (parse_size, "lots"),
    ],
)
def test_bad_units_say_what_is_expected(fn, bad: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ShapeError, match=r"expected|range|positive|between"):
        fn(bad)


def test_parse_shape_and_describe() -> None:
    s = parse_shape(
        {"latency": "100ms", "jitter": "10ms", "rate": "64kbit", "pongs": "delay:2s", "slice": 64}
    )
    assert s == Shape(latency=0.1, jitter=0.01, rate=8000, slice=64, pongs="delay", pong_delay=2.0)
    assert describe(s) == "latency 100ms +-10ms, rate 64kbit, slice 64B, pongs +2s"
    assert s.to_dict() == {
        "latency": 0.1,
        "jitter": 0.01,
        "rate": 8000,
        "slice": 64,
        "pongs": "delay",
        "pong_delay": 2.0,
    }
    with pytest.raises(ShapeError, match="unknown condition 'latncy'"):
        parse_shape({"latncy": "1s"})
    with pytest.raises(ShapeError, match="jitter"):
        parse_shape({"latency": "10ms", "jitter": "20ms"})
    with pytest.raises(ShapeError, match="drop or delay"):
        parse_shape({"pongs": "sometimes"})


# --------------------------------------------------------------------------- stages


def run(stage: Chain, pushes: list[tuple[float, bytes]], until: float) -> list[tuple[float, bytes]]:
    """Push chunks at their times and pop at every time the chain asks for; returns what
    came out and when."""
    out: list[tuple[float, bytes]] = []
    pending = sorted(pushes, key=lambda p: p[0])
    now = pending[0][0] if pending else 0.0
    while True:
        while pending and pending[0][0] <= now:
            t, data = pending.pop(0)
            stage.push(data, t)
        out.extend((now, b) for b in stage.pop(now))
        nexts = [
            t for t in (stage.next_time(), pending[0][0] if pending else None) if t is not None
        ]
        if not nexts:
            return out
        now = max(now, min(nexts))
        if now > until:
            return out


def test_latency_delays_each_chunk_exactly() -> None:
    c = Chain([Latency(0.1)])
    out = run(c, [(T0, b"a"), (T0 + 0.05, b"b"), (T0 + 0.3, b"c")], T0 + 10)
    assert [d for _, d in out] == [b"a", b"b", b"c"]
    assert [t for t, _ in out] == pytest.approx([T0 + 0.1, T0 + 0.15, T0 + 0.4])
    assert c.pending == 0


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 60))
def test_jitter_stays_in_range_and_keeps_order(seed: int, n: int) -> None:
    rng = random.Random(seed)
    pushes = [(T0 + i * 0.003, bytes([i % 256]) * (1 + i % 7)) for i in range(n)]
    c = Chain([Latency(0.1, 0.02, random.Random(seed))])
    out = run(c, pushes, T0 + 10)
    assert b"".join(d for _, d in out) == b"".join(d for _, d in pushes)  # order kept
    for (t_in, _), (t_out, _) in zip(pushes, out, strict=True):
        assert t_out >= t_in + 0.08 - 1e-9
    # never later than the latest due time ahead of it: jitter holds nothing longer
    assert max(t for t, _ in out) <= pushes[-1][0] + 0.12 + 1e-9
    assert rng is not None


def test_rate_paces_bytes() -> None:
    rate = 10_000.0  # bytes/s
    c = Chain([Rate(rate)])
    data = bytes(range(256)) * 200  # 51,200 bytes
    out = run(c, [(T0, data)], T0 + 100)
    assert b"".join(d for _, d in out) == data
    sent = 0
    for t, d in out:
        # never ahead of the link: what left by t fits in rate * elapsed (+ one piece)
        assert sent <= rate * (t - T0) + 1e-6
        sent += len(d)
    last_t, last = out[-1]
    assert last_t + len(last) / rate == pytest.approx(T0 + len(data) / rate)


def test_rate_catches_up_when_the_clock_is_late() -> None:
    """A driver that calls late gets a burst, so the average rate stays exact."""
    c = Chain([Rate(1000.0)])
    c.push(b"x" * 3000, T0)
    first = c.pop(T0)
    late = c.pop(T0 + 2.0)  # two seconds later: two seconds' worth
    assert sum(map(len, first + late)) == pytest.approx(2000 + c.stages[0].quantum, abs=200)  # type: ignore[attr-defined]


def test_slicer_cuts_writes_one_per_call() -> None:
    c = Chain([Slicer(10, 0.005)])
    c.push(b"0123456789" * 3 + b"abc", T0)
    assert c.pop(T0) == [b"0123456789"]
    assert c.pop(T0) == []  # one write per call, the next one 5 ms later
    assert c.next_time() == pytest.approx(T0 + 0.005)
    out = run(c, [], T0 + 1)
    assert [d for _, d in out] == [b"0123456789", b"0123456789", b"abc"]
    assert [round(t - T0, 3) for t, _ in out] == [0.005, 0.01, 0.015]


def test_chain_of_all_three_keeps_every_byte_in_order() -> None:
    c = chain_for(Shape(latency=0.05, jitter=0.01, rate=20_000, slice=100), random.Random(3))
    assert c is not None and [type(s) for s in c.stages] == [Latency, Rate, Slicer]
    pushes = [(T0 + i * 0.001, bytes([i]) * 300) for i in range(50)]
    out = run(c, pushes, T0 + 100)
    assert b"".join(d for _, d in out) == b"".join(d for _, d in pushes)
    assert max(len(d) for _, d in out) <= 100
    assert out[0][0] >= T0 + 0.04


def test_drain_gives_everything_back_in_order() -> None:
    c = chain_for(Shape(latency=1.0, rate=100, slice=7))
    assert c is not None
    for i in range(5):
        c.push(bytes([65 + i]) * 20, T0 + i * 0.1)
    got = c.pop(T0 + 1.05)  # the first chunk is through the latency stage
    got += c.drain()
    assert b"".join(got) == b"".join(bytes([65 + i]) * 20 for i in range(5))
    assert c.pending == 0 and c.next_time() is None


def test_chain_for_nothing_is_none() -> None:
    assert chain_for(Shape(fragment=100, stall=True, pongs="drop")) is None


# --------------------------------------------------------------------------- frames


@pytest.mark.parametrize("mask", [False, True])
def test_fragment_makes_continuation_frames_a_peer_reassembles(mask: bool) -> None:
    payload = bytes(range(256)) * 4
    wire = fragment(2, payload, 100, mask=mask)
    # the peer: a websockets server reads masked frames, a client unmasked ones
    p = Protocol(Side.SERVER if mask else Side.CLIENT, state=State.OPEN, max_size=None)
    p.receive_data(wire)
    frames: list[Frame] = p.events_received()  # type: ignore[assignment]
    assert [f.opcode for f in frames] == [WsOp.BINARY] + [WsOp.CONT] * 10
    assert [len(f.data) for f in frames] == [100] * 10 + [24]
    assert [f.fin for f in frames] == [False] * 10 + [True]
    assert b"".join(f.data for f in frames) == payload
    assert wire_payload(wire) == (2, 0, payload)


def test_fragment_keeps_rsv1_on_the_first_frame_only() -> None:
    wire = fragment(1, b"x" * 25, 10, rsv=4, mask=False)
    assert wire[0] == 0x40 | 0x01  # RSV1, text, no FIN
    assert wire_payload(wire) == (1, 4, b"x" * 25)
    assert fragment(1, b"short", 10, rsv=4, mask=False)[0] == 0xC1  # one frame: FIN
