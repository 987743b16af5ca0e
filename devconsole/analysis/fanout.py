"""The fan-out trace: which WebSocket frames carried each backplane publication.

Core module: no I/O. A proxy run with ``--backplane`` records every publication on the
app's Redis pub/sub channels as a ``Publication`` of a pseudo-connection (method
``PSUBSCRIBE``). ``FanoutTracer`` observes a Session's events (``session.observers``) and
correlates each publication with the server-to-client messages, on any connection of
any instance, that carry it:

- by the same payload (the app forwards what it received from Redis), or
- by the same value at ``--trace-key PATH`` in both (JSON; a Socket.IO-style prefix
  such as ``42`` or ``42/chat,`` before the JSON is skipped). ``PATH`` is a dotted path
  (``data.id``, ``items.0.id``) looked up at any depth, so ``id`` finds the ``id`` in
  ``{"data": {"id": 7}}`` and in ``42["chat", {"id": 7}]``; ``$.data.id`` anchors it
  at the root.

For each publication: its deliveries (connection, instance, delay from publication to
delivery), and the connections that **missed** it: connections that received the
previous publication on the same channel, were still open, and did not receive this one
(certain once they received a later publication on that channel, else after
``window`` seconds).

The publication's time is when devconsole's subscriber received it; a frame seen up to
``skew`` seconds before it still counts (delay 0): instances' clocks and the recording
itself are not perfectly in step.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from devconsole.model import (
    CLIENT,
    EndEvent,
    Event,
    Handshake,
    HandshakeEvent,
    Message,
    Publication,
    RefusedEvent,
    Snapshot,
    conn_instance,
)

BACKPLANE_METHOD = "PSUBSCRIBE"
BACKPLANE_SCHEMES = frozenset({"redis", "rediss"})
TRACE_KEY_PARAM = "trace_key"
WINDOW = 5.0  # seconds after which a publication not received counts as missed
SKEW = 1.0
MAX_DELAY = 60.0  # a frame this long after a publication is not its delivery
MAX_PUBLICATIONS = 10_000  # traces kept
MAX_TRACE_PAYLOAD = 64 << 10  # larger frames are not keyed
DEDUPE = 0.2  # the same publication recorded twice (two patterns, two recorders)
MAX_RECENT = 50_000  # unmatched frames kept for publications recorded after them
SLOW_FANOUT = 1.0  # a p95 delay above this fails the readiness item

Key = bytes | str
PathSpec = tuple[bool, tuple[str, ...]]  # (anchored, segments)


def is_backplane(hs: Handshake) -> bool:
    """A backplane pseudo-connection (not a WebSocket)."""
    return hs.method == BACKPLANE_METHOD and hs.scheme in BACKPLANE_SCHEMES


def trace_key_of(hs: Handshake) -> str | None:
    for k, v in hs.query:
        if k == TRACE_KEY_PARAM and v:
            return v
    return None


# ------------------------------------------------------------------ keys


def parse_path(path: str) -> PathSpec:
    """``"data.id"`` -> (False, ("data", "id")); ``"$.a.b"`` anchored. Raises ValueError."""
    p = path.strip()
    anchored = p.startswith("$")
    if anchored:
        p = p[1:].lstrip(".")
    segs = tuple(s for s in p.replace("[", ".").replace("]", "").split(".") if s)
    if not segs:
        raise ValueError(f"empty trace key path {path!r}")
    return anchored, segs


_MISSING = object()


def _step(value: Any, seg: str) -> Any:
    if isinstance(value, dict):
        return value.get(seg, _MISSING)
    if isinstance(value, list) and seg.lstrip("-").isdigit():
        i = int(seg)
        return value[i] if -len(value) <= i < len(value) else _MISSING
    return _MISSING


def _follow(value: Any, segs: tuple[str, ...]) -> Any:
    for s in segs:
        value = _step(value, s)
        if value is _MISSING:
            return _MISSING
    return value


def find_path(value: Any, spec: PathSpec, depth: int = 0) -> Any:
    """The value at ``spec`` in ``value`` (first match, depth first), or ``_MISSING``."""
    anchored, segs = spec
    found = _follow(value, segs)
    if found is not _MISSING or anchored or depth > 16:
        return found
    children: Iterable[Any] = ()
    if isinstance(value, dict):
        children = value.values()
    elif isinstance(value, list):
        children = value
    for child in children:
        if isinstance(child, dict | list):
            found = find_path(child, spec, depth + 1)
            if found is not _MISSING:
                return found
    return _MISSING


def json_of(payload: bytes) -> Any:
    """The JSON value of a payload, skipping a short non-JSON prefix (Socket.IO's
    ``42``, ``42/chat,``, Engine.IO's ``4``); ``_MISSING`` if there is none."""
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        return _MISSING
    try:
        return json.loads(text)
    except ValueError:
        pass
    for i, ch in enumerate(text[:64]):
        if ch in "[{":
            try:
                return json.loads(text[i:])
            except ValueError:
                return _MISSING
    return _MISSING


def key_of(payload: bytes, spec: PathSpec | None) -> Key | None:
    """What identifies a publication in ``payload``: the payload itself, or the value
    at ``spec`` (canonical JSON text); None if there is no such value."""
    if spec is None:
        return payload
    value = json_of(payload)
    if value is _MISSING:
        return None
    found = find_path(value, spec)
    if found is _MISSING or found is None or isinstance(found, bool):
        return None
    return json.dumps(found, sort_keys=True, separators=(",", ":"))


# ------------------------------------------------------------------ traces


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``; None if empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))
    return s[k]


@dataclass(slots=True)
class Delivery:
    conn: str
    instance: str
    seq: int
    ts: float
    delay: float


@dataclass(eq=False)
class PublicationTrace:
    seq: int
    conn: str  # the pseudo-connection that recorded it
    channel: str
    ts: float
    key: Key
    spec: PathSpec | None
    size: int
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    prev: PublicationTrace | None = None  # the previous publication on this channel
    copies: list[int] = field(default_factory=list)  # seqs of the same one recorded again

    @property
    def receivers(self) -> int:
        return len(self.deliveries)

    @property
    def instances(self) -> list[str]:
        return sorted({d.instance for d in self.deliveries.values()})

    @property
    def delays(self) -> list[float]:
        return [d.delay for d in self.deliveries.values()]

    @property
    def delay_p50(self) -> float | None:
        return percentile(self.delays, 0.5)

    @property
    def delay_p95(self) -> float | None:
        return percentile(self.delays, 0.95)

    @property
    def delay_max(self) -> float | None:
        d = self.delays
        return max(d) if d else None


@dataclass(slots=True)
class _Conn:
    ts_start: float
    ts_end: float | None = None
    backplane: bool = False
    spec: PathSpec | None = None


class FanoutTracer:
    """Observes events (``on_event``) and keeps one trace per publication."""

    def __init__(
        self,
        trace_key: str | None = None,
        *,
        window: float = WINDOW,
        skew: float = SKEW,
        max_delay: float = MAX_DELAY,
        max_publications: int = MAX_PUBLICATIONS,
    ) -> None:
        self.override: PathSpec | None = parse_path(trace_key) if trace_key else None
        self.window = window
        self.skew = skew
        self.max_delay = max_delay
        self.max_publications = max_publications
        self.conns: dict[str, _Conn] = {}
        self.publications: deque[PublicationTrace] = deque()
        self.by_seq: dict[int, PublicationTrace] = {}
        self._index: dict[Key, deque[PublicationTrace]] = {}
        self._last_on_channel: dict[str, PublicationTrace] = {}
        self._received: dict[tuple[str, str], float] = {}  # (channel, conn) -> pub ts
        self._specs: dict[PathSpec | None, int] = {}  # key kinds in use -> publications
        self._raw_sizes: dict[int, int] = {}  # payload sizes of raw-keyed publications
        self._recent: deque[tuple[float, str, int, bytes]] = deque()  # unmatched frames
        self.active = False

    # ---------------------------------------------------------------- events

    def on_event(self, ev: Event) -> None:
        t = type(ev)
        if t is Message:
            if self.active and ev.side != CLIENT:  # type: ignore[union-attr]
                self._frame(ev)  # type: ignore[arg-type]
        elif t is Publication:
            self._publication(ev)  # type: ignore[arg-type]
        elif isinstance(ev, HandshakeEvent | RefusedEvent):
            self._conn(ev.handshake, None)
        elif isinstance(ev, EndEvent):
            c = self.conns.get(ev.conn)
            if c is not None:
                c.ts_end = ev.ts
        elif isinstance(ev, Snapshot):
            for cs in ev.connections:
                self._conn(cs.handshake, cs.ts_end)

    def _conn(self, hs: Handshake, ts_end: float | None) -> None:
        c = self.conns.get(hs.conn)
        if c is None:
            c = self.conns[hs.conn] = _Conn(hs.ts)
        if ts_end is not None:
            c.ts_end = ts_end
        if is_backplane(hs):
            c.backplane = True
            self.active = True
            key = trace_key_of(hs)
            c.spec = self.override or (parse_path(key) if key else None)

    def _spec_for(self, conn: str) -> PathSpec | None:
        c = self.conns.get(conn)
        if c is not None and c.backplane:
            return c.spec
        return self.override

    # ---------------------------------------------------------------- publications

    def _publication(self, p: Publication) -> None:
        self.active = True
        spec = self._spec_for(p.conn)
        key = key_of(p.payload, spec)
        if key is None:
            return
        # the same publication recorded by two patterns or two recorders
        for other in reversed(self._index.get(key, ())):
            if p.ts - other.ts > DEDUPE:
                break
            if other.channel == p.channel and other.conn != p.conn:
                other.copies.append(p.seq)
                return
        prev = self._last_on_channel.get(p.channel)
        tr = PublicationTrace(p.seq, p.conn, p.channel, p.ts, key, spec, p.size, prev=prev)
        self._last_on_channel[p.channel] = tr
        self.publications.append(tr)
        self.by_seq[p.seq] = tr
        self._index.setdefault(key, deque()).append(tr)
        self._specs[spec] = self._specs.get(spec, 0) + 1
        if spec is None:
            self._raw_sizes[len(key)] = self._raw_sizes.get(len(key), 0) + 1
        while len(self.publications) > self.max_publications:
            self._forget(self.publications.popleft())
        # frames that arrived before the publication was recorded
        lo = p.ts - self.skew
        needle = key if isinstance(key, bytes) else key.encode()
        for ts, conn, seq, payload in reversed(self._recent):
            if ts < lo:
                break
            if needle not in payload or conn in tr.deliveries:
                continue
            if (payload == key) if spec is None else (key_of(payload, spec) == key):
                self._deliver(tr, conn, seq, ts)

    def _forget(self, tr: PublicationTrace) -> None:
        self.by_seq.pop(tr.seq, None)
        q = self._index.get(tr.key)
        if q is not None:
            try:
                q.remove(tr)
            except ValueError:
                pass
            if not q:
                del self._index[tr.key]
        n = self._specs.get(tr.spec, 0) - 1
        if n > 0:
            self._specs[tr.spec] = n
        else:
            self._specs.pop(tr.spec, None)
        if tr.spec is None:
            size = len(tr.key)
            m = self._raw_sizes.get(size, 0) - 1
            if m > 0:
                self._raw_sizes[size] = m
            else:
                self._raw_sizes.pop(size, None)
        if self._last_on_channel.get(tr.channel) is tr:
            del self._last_on_channel[tr.channel]
        for later in self.publications:
            if later.prev is tr:
                later.prev = None

    # ---------------------------------------------------------------- frames

    def _frame(self, m: Message) -> None:
        c = self.conns.get(m.conn)
        if c is not None and c.backplane:
            return
        payload = m.payload
        if len(payload) > MAX_TRACE_PAYLOAD:
            return
        matched = False
        for spec in self._specs:
            if spec is None:
                if len(payload) not in self._raw_sizes:
                    continue
                key: Key | None = payload
            else:
                last = spec[1][-1]
                if not last.isdigit() and f'"{last}"'.encode() not in payload:
                    continue  # cheap: the key's name is not even in the frame
                key = key_of(payload, spec)
            if key is None:
                continue
            q = self._index.get(key)
            if not q:
                continue
            for tr in q:
                if tr.ts > m.ts + self.skew:
                    break
                if m.conn in tr.deliveries or m.ts - tr.ts > self.max_delay:
                    continue
                self._deliver(tr, m.conn, m.seq, m.ts)
                matched = True
                break
            if matched:
                return
        # kept a little while: its publication may be recorded just after it
        rec = self._recent
        rec.append((m.ts, m.conn, m.seq, payload))
        horizon = m.ts - self.skew
        while rec and (rec[0][0] < horizon or len(rec) > MAX_RECENT):
            rec.popleft()

    def _deliver(self, tr: PublicationTrace, conn: str, seq: int, ts: float) -> None:
        tr.deliveries[conn] = Delivery(conn, conn_instance(conn), seq, ts, max(0.0, ts - tr.ts))
        k = (tr.channel, conn)
        if self._received.get(k, -math.inf) < tr.ts:
            self._received[k] = tr.ts

    # ---------------------------------------------------------------- queries

    def trace(self, seq: int) -> PublicationTrace | None:
        return self.by_seq.get(seq)

    def missed(self, tr: PublicationTrace, now: float) -> list[str]:
        """The connections that should have received ``tr`` and did not (see the module
        doc); those still within the window are not listed."""
        prev = tr.prev
        if prev is None:
            return []
        out: list[str] = []
        for conn in prev.deliveries:
            if conn in tr.deliveries:
                continue
            c = self.conns.get(conn)
            if c is None or (c.ts_end is not None and c.ts_end <= tr.ts):
                continue  # gone before this publication
            if self._received.get((tr.channel, conn), -math.inf) > tr.ts:
                out.append(conn)  # it received a later one, not this one
            elif now - tr.ts >= self.window and (
                c.ts_end is None or c.ts_end >= tr.ts + self.window
            ):
                out.append(conn)
        return out

    def summary(self, conns: Iterable[str] | None, now: float) -> dict[str, Any]:
        """``{"publications", "deliveries", "missed", "delay_p50", "delay_p95",
        "delay_max", "instances": {NAME: {"deliveries", "delay_p50", "delay_p95"}}}``
        over the connections ``conns`` (None: all)."""
        only = None if conns is None else set(conns)
        pubs = deliveries = missed = 0
        delays: list[float] = []
        per: dict[str, list[float]] = {}
        for tr in self.publications:
            ds = [d for d in tr.deliveries.values() if only is None or d.conn in only]
            ms = [c for c in self.missed(tr, now) if only is None or c in only]
            if not ds and not ms:
                continue
            pubs += 1
            deliveries += len(ds)
            missed += len(ms)
            for d in ds:
                delays.append(d.delay)
                per.setdefault(d.instance, []).append(d.delay)
        return {
            "publications": pubs,
            "deliveries": deliveries,
            "missed": missed,
            "delay_p50": _r(percentile(delays, 0.5)),
            "delay_p95": _r(percentile(delays, 0.95)),
            "delay_max": _r(max(delays) if delays else None),
            "instances": {
                name: {
                    "deliveries": len(v),
                    "delay_p50": _r(percentile(v, 0.5)),
                    "delay_p95": _r(percentile(v, 0.95)),
                }
                for name, v in sorted(per.items())
            },
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)
