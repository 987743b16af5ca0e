"""Network conditions: small stages over the bytes delivered to one peer, chained.

Core module: no I/O, imports neither mitmproxy nor asyncio. Like toxiproxy's toxics, each
condition is one small type with one job over a timed stream of byte chunks, and they
chain (``Chain``): latency (with jitter) -> rate -> slicer. The relay
(``devconsole.relay``) pushes the bytes it would write toward a peer into the chain of
that direction, with the time it read them, and writes what ``pop(now)`` gives back; the
driver's clock calls it again at ``next_time()``. Every stage keeps byte order; none looks
inside the bytes, so none can tear a frame (the relay only ever pushes whole frames, and
TCP is a byte stream: a slice is not a frame).

The conditions that need frames (re-fragmenting data messages, suppressing or delaying
pongs) and stall (backpressure through the driver) are the relay's; ``fragment`` here
re-frames one message's payload.

Units: ``parse_duration`` ("200ms", "1.5s", "2m", a bare number is seconds),
``parse_rate`` ("64kbit", "1mbit", "100kB", "1.5MB"; per second; bits or bytes, decimal
prefixes; returns bytes/second), ``parse_size`` ("1400", "4k", "1KiB"; bytes).
"""

from __future__ import annotations

import random
import re
from collections import deque
from dataclasses import fields

from devconsole.frames import build_frame
from devconsole.model import Shape

__all__ = [
    "SHAPE_BUFFER",
    "Chain",
    "Latency",
    "Rate",
    "ShapeError",
    "Slicer",
    "chain_for",
    "format_duration",
    "format_rate",
    "fragment",
    "parse_duration",
    "parse_rate",
    "parse_shape",
    "parse_size",
    "wire_payload",
]

# Bytes a shaped direction keeps before it stops reading the sender (TCP backpressure), as
# the buffers of a slow link would: memory stays bounded whatever the sender does.
SHAPE_BUFFER = 256 << 10
MAX_DURATION = 24 * 3600.0


class ShapeError(ValueError):
    """A condition or unit that cannot be used (the message is for the user)."""


# --------------------------------------------------------------------------- units

_DUR = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(us|µs|ms|s|m|min|h)?\s*$", re.IGNORECASE)
_DUR_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)(bit|bps|Bps|b|B)?(?:/s)?\s*$")
_SIZE = re.compile(r"^\s*([0-9]+)\s*(b|k|kb|kib|m|mb|mib)?\s*$", re.IGNORECASE)
_PREFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1 << 20, "mb": 10**6}
_SIZE_UNITS["mib"] = 1 << 20


def parse_duration(value: str | float | int, what: str = "duration") -> float:
    """Seconds from ``200ms``, ``1.5s``, ``2m``, ``1h`` or a number of seconds."""
    if isinstance(value, bool):
        raise ShapeError(f"{what}: expected a duration like 200ms or 1.5s, not {value!r}")
    if isinstance(value, int | float):
        secs = float(value)
    else:
        m = _DUR.match(value)
        if m is None:
            raise ShapeError(f"{what}: expected a duration like 200ms or 1.5s, not {value!r}")
        secs = float(m.group(1)) * _DUR_UNITS[(m.group(2) or "s").lower()]
    if not 0 <= secs <= MAX_DURATION:
        raise ShapeError(f"{what}: {value!r} is out of range (0 to 24h)")
    return secs


def parse_rate(value: str | float | int, what: str = "rate") -> float:
    """Bytes per second from ``64kbit``, ``1mbit``, ``100kB``, ``1.5MB`` (decimal prefixes;
    ``bit``/``bps``/``b`` are bits, ``B``/``Bps`` bytes) or a number of bytes per second."""
    if isinstance(value, bool):
        raise ShapeError(f"{what}: expected a rate like 64kbit or 100kB, not {value!r}")
    if isinstance(value, int | float):
        rate = float(value)
    else:
        m = _RATE.match(value)
        if m is None or (m.group(3) is None and m.group(2)):
            raise ShapeError(
                f"{what}: expected a rate like 64kbit, 1mbit or 100kB (per second), not {value!r}"
            )
        n = float(m.group(1)) * _PREFIX[m.group(2).lower()]
        unit = m.group(3) or "B"
        rate = n if unit in ("B", "Bps") else n / 8  # b, bit, bps: bits
    if not rate > 0 or rate > 1e12:
        raise ShapeError(f"{what}: {value!r} must be a positive rate")
    return rate


def parse_size(value: str | int, what: str = "size") -> int:
    """Bytes from ``1400``, ``4k`` (1024), ``4kB`` (1000), ``1KiB``, ``1m``."""
    if isinstance(value, bool):
        raise ShapeError(f"{what}: expected a number of bytes, not {value!r}")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(value)
        if m is None:
            raise ShapeError(f"{what}: expected a number of bytes like 1400 or 4k, not {value!r}")
        n = int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]
    if not 1 <= n <= 1 << 30:
        raise ShapeError(f"{what}: {value!r} must be between 1 byte and 1 GiB")
    return n


def format_duration(secs: float) -> str:
    if secs >= 1 or secs == 0:
        return f"{secs:g}s"
    return f"{secs * 1000:g}ms"


def format_rate(rate: float) -> str:
    bits = rate * 8
    for unit, div in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bits >= div:
            return f"{bits / div:g}{unit}"
    return f"{bits:g}bit"


def describe(shape: Shape) -> str:
    """One short line: ``latency 100ms +-10ms, rate 64kbit, pongs drop``."""
    parts: list[str] = []
    if shape.latency or shape.jitter:
        s = f"latency {format_duration(shape.latency)}"
        if shape.jitter:
            s += f" +-{format_duration(shape.jitter)}"
        parts.append(s)
    if shape.rate:
        parts.append(f"rate {format_rate(shape.rate)}")
    if shape.slice:
        s = f"slice {shape.slice}B"
        if shape.slice_delay:
            s += f"/{format_duration(shape.slice_delay)}"
        parts.append(s)
    if shape.fragment:
        parts.append(f"fragment {shape.fragment}B")
    if shape.stall:
        parts.append("stall")
    if shape.pongs == "drop":
        parts.append("pongs dropped")
    elif shape.pongs == "delay":
        parts.append(f"pongs +{format_duration(shape.pong_delay)}")
    return ", ".join(parts) or "none"


def parse_shape(conditions: dict[str, object], what: str = "shape") -> Shape:
    """A Shape from user-facing values (``{"latency": "100ms", "rate": "64kbit",
    "pongs": "delay:2s"}``); raises ShapeError naming the bad key."""
    known = {f.name for f in fields(Shape)}
    s = Shape()
    for key, value in conditions.items():
        k = key.replace("-", "_")
        if k not in known:
            raise ShapeError(
                f"{what}: unknown condition {key!r} (known: {', '.join(sorted(known))})"
            )
        where = f"{what}.{key}"
        if k in ("latency", "jitter", "slice_delay", "pong_delay"):
            setattr(s, k, parse_duration(value, where))  # type: ignore[arg-type]
        elif k == "rate":
            s.rate = parse_rate(value, where)  # type: ignore[arg-type]
        elif k in ("slice", "fragment"):
            setattr(s, k, parse_size(value, where))  # type: ignore[arg-type]
        elif k == "stall":
            if not isinstance(value, bool):
                raise ShapeError(f"{where}: expected true or false")
            s.stall = value
        elif k == "pongs":
            if not isinstance(value, str):
                raise ShapeError(f"{where}: expected drop or delay:DURATION")
            mode, _, dur = value.partition(":")
            if mode == "drop" and not dur:
                s.pongs = "drop"
            elif mode == "delay" and dur:
                s.pongs = "delay"
                s.pong_delay = parse_duration(dur, where)
            elif mode == "delay" and s.pong_delay:
                s.pongs = "delay"
            else:
                raise ShapeError(f"{where}: expected drop or delay:DURATION, not {value!r}")
    check_shape(s, what)
    return s


def check_shape(s: Shape, what: str = "shape") -> None:
    for name in ("latency", "jitter", "rate", "slice", "slice_delay", "fragment", "pong_delay"):
        v = getattr(s, name)
        if not 0 <= v < float("inf"):
            raise ShapeError(f"{what}: {name} must be a positive number, not {v!r}")
    if s.latency > MAX_DURATION or s.pong_delay > MAX_DURATION:
        raise ShapeError(f"{what}: durations are at most 24h")
    if s.jitter > s.latency:
        raise ShapeError(f"{what}: jitter ({format_duration(s.jitter)}) exceeds the latency")
    if s.pongs not in ("", "drop", "delay"):
        raise ShapeError(f"{what}: pongs must be drop or delay")
    if s.pongs == "delay" and not s.pong_delay:
        raise ShapeError(f"{what}: pongs delay needs a duration (delay:2s)")
    if s.slice_delay and not s.slice:
        raise ShapeError(f"{what}: slice_delay goes with slice")
    if s.fragment and s.fragment < 1:
        raise ShapeError(f"{what}: fragment must be at least 1 byte")


# --------------------------------------------------------------------------- stages


class Stage:
    """One condition over a stream of byte chunks. ``push`` a chunk that reached this
    stage at time ``t``; ``pop(now)`` returns the chunks that leave it by ``now``, in
    order, each with the time it left; ``next_time`` is when ``pop`` has more."""

    pending = 0  # bytes inside

    def push(self, data: bytes, t: float) -> None:
        raise NotImplementedError

    def pop(self, now: float) -> list[tuple[float, bytes]]:
        raise NotImplementedError

    def next_time(self) -> float | None:
        raise NotImplementedError

    def take_all(self) -> list[bytes]:
        """Everything inside, in order; the stage is empty after."""
        raise NotImplementedError


class Latency(Stage):
    """Every chunk leaves ``latency`` seconds (+- uniform ``jitter``) after it came, never
    before the chunk ahead of it."""

    def __init__(self, latency: float, jitter: float = 0.0, rng: random.Random | None = None):
        self.latency = latency
        self.jitter = jitter
        self.rng = rng or random.Random()
        self._q: deque[tuple[float, bytes]] = deque()
        self._last = 0.0
        self.pending = 0

    def push(self, data: bytes, t: float) -> None:
        due = t + self.latency
        if self.jitter:
            due += self.rng.uniform(-self.jitter, self.jitter)
        due = max(due, self._last, t)
        self._last = due
        self._q.append((due, data))
        self.pending += len(data)

    def pop(self, now: float) -> list[tuple[float, bytes]]:
        q = self._q
        out: list[tuple[float, bytes]] = []
        while q and q[0][0] <= now:
            due, data = q.popleft()
            self.pending -= len(data)
            out.append((due, data))
        return out

    def next_time(self) -> float | None:
        return self._q[0][0] if self._q else None

    def take_all(self) -> list[bytes]:
        out = [d for _, d in self._q]
        self._q.clear()
        self.pending = 0
        return out


class Rate(Stage):
    """At most ``rate`` bytes a second: chunks are cut into pieces of about 20 ms each and
    paced; a late clock catches up (the average rate is exact over a transfer)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.quantum = max(128, min(16384, int(rate * 0.02)))
        self._q: deque[tuple[float, bytes]] = deque()
        self._free = 0.0  # when the link can start the next piece
        self.pending = 0

    def push(self, data: bytes, t: float) -> None:
        self._q.append((t, data))
        self.pending += len(data)

    def pop(self, now: float) -> list[tuple[float, bytes]]:
        q = self._q
        out: list[tuple[float, bytes]] = []
        while q:
            ready, data = q[0]
            start = max(self._free, ready)
            if start > now:
                break
            n = min(len(data), self.quantum)
            if n == len(data):
                q.popleft()
            else:
                q[0] = (ready, data[n:])
                data = data[:n]
            self.pending -= n
            self._free = start + n / self.rate
            out.append((start, data))
        return out

    def next_time(self) -> float | None:
        if not self._q:
            return None
        return max(self._free, self._q[0][0])

    def take_all(self) -> list[bytes]:
        out = [d for _, d in self._q]
        self._q.clear()
        self.pending = 0
        return out


class Slicer(Stage):
    """Cuts the stream into writes of at most ``size`` bytes, one per call, ``delay``
    seconds apart (0: as fast as the driver calls again, each a write of its own)."""

    MIN_GAP = 1e-6  # with no delay: the next slice goes at the next call, not this one

    def __init__(self, size: int, delay: float = 0.0) -> None:
        self.size = size
        self.delay = delay
        self._q: deque[bytes] = deque()
        self._next = 0.0
        self._ready = 0.0  # when the head reached this stage
        self.pending = 0

    def push(self, data: bytes, t: float) -> None:
        if not self._q:
            self._ready = t
        self._q.append(data)
        self.pending += len(data)

    def pop(self, now: float) -> list[tuple[float, bytes]]:
        q = self._q
        if not q:
            return []
        start = max(self._next, self._ready)
        if start > now:
            return []
        data = q[0]
        n = min(len(data), self.size)
        if n == len(data):
            q.popleft()
        else:
            q[0] = data[n:]
            data = data[:n]
        self.pending -= n
        self._next = max(start, now) + max(self.delay, self.MIN_GAP)
        return [(start, data)]

    def next_time(self) -> float | None:
        if not self._q:
            return None
        return max(self._next, self._ready)

    def take_all(self) -> list[bytes]:
        out = list(self._q)
        self._q.clear()
        self.pending = 0
        return out


class Chain:
    """Stages in order; bytes pushed in come out of the last one."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages

    @property
    def pending(self) -> int:
        return sum(s.pending for s in self.stages)

    def push(self, data: bytes, t: float) -> None:
        self.stages[0].push(data, t)

    def pop(self, now: float) -> list[bytes]:
        moved: list[tuple[float, bytes]] = []
        for stage in self.stages:
            for t, data in moved:
                stage.push(data, t)
            moved = stage.pop(now)
        return [data for _, data in moved]

    def next_time(self) -> float | None:
        first: float | None = None
        for s in self.stages:
            t = s.next_time()
            if t is not None and (first is None or t < first):
                first = t
        return first

    def drain(self) -> list[bytes]:
        """Everything inside, in order, at once (the conditions are lifted). The last
        stage holds the oldest bytes."""
        out: list[bytes] = []
        for stage in reversed(self.stages):
            out.extend(stage.take_all())
        return out


def chain_for(shape: Shape, rng: random.Random | None = None) -> Chain | None:
    """The byte stages a Shape needs (None: none)."""
    stages: list[Stage] = []
    if shape.latency or shape.jitter:
        stages.append(Latency(shape.latency, shape.jitter, rng))
    if shape.rate:
        stages.append(Rate(shape.rate))
    if shape.slice:
        stages.append(Slicer(shape.slice, shape.slice_delay))
    return Chain(stages) if stages else None


# --------------------------------------------------------------------------- frames


def wire_payload(raw: bytes) -> tuple[int, int, bytes]:
    """The opcode, RSV bits and unmasked payload (as on the wire: still compressed) of the
    data frames of one whole message (``raw``: its frames, nothing else)."""
    pos = 0
    n = len(raw)
    opcode = -1
    rsv = 0
    parts: list[bytes] = []
    while pos < n:
        b0 = raw[pos]
        b1 = raw[pos + 1]
        ln = b1 & 0x7F
        p = pos + 2
        if ln == 126:
            ln = int.from_bytes(raw[p : p + 2], "big")
            p += 2
        elif ln == 127:
            ln = int.from_bytes(raw[p : p + 8], "big")
            p += 8
        key = None
        if b1 & 0x80:
            key = raw[p : p + 4]
            p += 4
        body = raw[p : p + ln]
        if key is not None:
            body = _unmask(body, key)
        if opcode < 0:
            opcode = b0 & 0x0F
            rsv = (b0 >> 4) & 0x07
        parts.append(body)
        pos = p + ln
    return opcode, rsv, b"".join(parts)


def _unmask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def fragment(opcode: int, payload: bytes, size: int, *, rsv: int = 0, mask: bool) -> bytes:
    """One message as frames of at most ``size`` payload bytes: the first with ``opcode``
    and ``rsv`` (RSV1: compressed), continuation frames after it, FIN on the last."""
    if len(payload) <= size:
        return build_frame(opcode, payload, rsv=rsv, mask=mask)
    out: list[bytes] = []
    last = len(payload)
    for i in range(0, last, size):
        first = i == 0
        out.append(
            build_frame(
                opcode if first else 0,
                payload[i : i + size],
                fin=i + size >= last,
                rsv=rsv if first else 0,
                mask=mask,
            )
        )
    return b"".join(out)
