"""Request/reply pairing by each application protocol's own key, and latency per method.

Core module: no I/O. A ``PairTracker`` listens to a ``ProtocolTracker``
(``tracker.listeners.append(pairs.on_decoded)``) and to the Session
(``session.observers.append(pairs.on_event)``, for handshakes and ends). Each decoded
packet may carry a pairing ``key`` and a ``role`` (``devconsole.decoders.base``):

- ``request`` opens a pair on its connection: JSON-RPC ``id``, Socket.IO ack id,
  GraphQL-WS operation id, STOMP ``receipt``, MQTT packet id, SignalR invocationId,
  Phoenix ``ref``, WAMP request id, Action Cable subscription identifier;
- ``reply`` from the other side with the same key closes it; ``partial`` (GraphQL
  ``next``, SignalR stream items, MQTT PUBREC) answers without closing; ``cancel`` from
  the requester closes it unanswered but not missing (a client's GraphQL ``complete``).

Latency is request -> first answer, grouped per endpoint (URL path) and method (the
JSON-RPC method, Socket.IO event, SignalR target, GraphQL operation...). Requests still
open when their connection ends are *unanswered*. ``partner(seq)`` finds the other half
of a pair, for a detail view's jump.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from devconsole.decoders.base import Decoded
from devconsole.model import (
    EndEvent,
    Event,
    HandshakeEvent,
    Item,
    RefusedEvent,
    Snapshot,
)

RECENT = 10_000  # latencies kept per method, for percentiles
MAX_METHODS = 500  # per endpoint; more distinct names are counted as "(other)"
MAX_OPEN = 10_000  # open requests per connection
MAX_UNANSWERED = 200  # unanswered requests described per endpoint (all are counted)
MAX_PARTNERS = 200_000


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of sorted values, by the nearest-rank method."""
    if not sorted_values:
        return None
    rank = max(math.ceil(q * len(sorted_values)), 1)
    return sorted_values[rank - 1]


@dataclass(slots=True)
class _Open:
    seq: int
    ts: float
    method: str
    summary: str
    protocol: str
    answered: bool = False


class _Method:
    __slots__ = ("count", "max", "protocol", "recent")

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.count = 0
        self.max = 0.0
        self.recent: deque[float] = deque(maxlen=RECENT)

    def add(self, latency: float) -> None:
        self.count += 1
        if latency > self.max:
            self.max = latency
        self.recent.append(latency)


class _Endpoint:
    __slots__ = ("methods", "requests", "unanswered", "unanswered_count", "unmatched")

    def __init__(self) -> None:
        self.methods: dict[str, _Method] = {}
        self.requests = 0
        self.unanswered: list[dict[str, Any]] = []
        self.unanswered_count = 0
        self.unmatched = 0  # replies to no request seen (e.g. sent before we attached)


class PairTracker:
    def __init__(self) -> None:
        self._paths: dict[str, str] = {}  # conn -> endpoint path
        self._open: dict[str, dict[tuple[str, str], _Open]] = {}  # conn -> (side, key)
        self._endpoints: dict[str, _Endpoint] = {}
        self._partners: OrderedDict[int, int] = OrderedDict()

    # ----------------------------------------------------------------- feeding

    def on_event(self, ev: Event) -> None:
        if isinstance(ev, HandshakeEvent | RefusedEvent):
            self._paths[ev.handshake.conn] = ev.handshake.path or "/"
        elif isinstance(ev, Snapshot):
            for cs in ev.connections:
                self._paths[cs.handshake.conn] = cs.handshake.path or "/"
        elif isinstance(ev, EndEvent):
            self.end(ev.conn)

    def _endpoint(self, conn: str) -> _Endpoint:
        path = self._paths.get(conn, "?")
        ep = self._endpoints.get(path)
        if ep is None:
            ep = self._endpoints[path] = _Endpoint()
        return ep

    def on_decoded(self, item: Item, decoded: Decoded) -> None:
        """A ProtocolTracker listener."""
        for p in decoded.packets:
            if p.key is None or p.role not in ("request", "reply", "partial", "cancel"):
                continue
            side = item.side
            other = "server" if side == "client" else "client"
            opened = self._open.setdefault(item.conn, {})
            if p.role == "request":
                ep = self._endpoint(item.conn)
                old = opened.pop((side, p.key), None)
                if old is not None and not old.answered:
                    self._unanswered(item.conn, old, "its key was reused before a reply")
                if len(opened) >= MAX_OPEN:
                    victim = next(iter(opened))
                    lost = opened.pop(victim)
                    if not lost.answered:
                        self._unanswered(item.conn, lost, "too many open requests")
                ep.requests += 1
                opened[(side, p.key)] = _Open(
                    item.seq, item.ts, p.method or "?", p.summary, decoded.protocol
                )
                continue
            if p.role == "cancel":
                opened.pop((side, p.key), None)
                continue
            req = opened.get((other, p.key))
            if req is None:
                if p.role == "reply":
                    self._endpoint(item.conn).unmatched += 1
                continue
            if not req.answered:
                req.answered = True
                self._latency(item.conn, req, max(item.ts - req.ts, 0.0))
                self._pair(req.seq, item.seq)
            else:  # a later stream item or the final reply: it points at its request
                self._pair(req.seq, item.seq, both=False)
            if p.role == "reply":
                del opened[(other, p.key)]

    def _pair(self, a: int, b: int, both: bool = True) -> None:
        if both:
            self._partners[a] = b
        self._partners[b] = a
        while len(self._partners) > MAX_PARTNERS:
            self._partners.popitem(last=False)

    def _latency(self, conn: str, req: _Open, latency: float) -> None:
        ep = self._endpoint(conn)
        name = req.method
        m = ep.methods.get(name)
        if m is None:
            if len(ep.methods) >= MAX_METHODS:
                name = "(other)"
                m = ep.methods.get(name)
            if m is None:
                m = ep.methods[name] = _Method(req.protocol)
        m.add(latency)

    def _unanswered(self, conn: str, req: _Open, why: str) -> None:
        ep = self._endpoint(conn)
        ep.unanswered_count += 1
        if len(ep.unanswered) < MAX_UNANSWERED:
            ep.unanswered.append(
                {
                    "conn": conn,
                    "seq": req.seq,
                    "ts": req.ts,
                    "protocol": req.protocol,
                    "method": req.method,
                    "summary": req.summary,
                    "why": why,
                }
            )

    def end(self, conn: str) -> None:
        """The connection ended: its open requests are unanswered."""
        for req in (self._open.pop(conn, None) or {}).values():
            if not req.answered:
                self._unanswered(conn, req, "the connection ended")

    # ----------------------------------------------------------------- queries

    def partner(self, seq: int) -> int | None:
        """The seq of the other half of ``seq``'s pair (a request's first answer, an
        answer's request), if known."""
        return self._partners.get(seq)

    def pending(self, conn: str | None = None) -> list[dict[str, Any]]:
        """Requests still waiting for an answer on live connections."""
        out = []
        for cid, opened in self._open.items():
            if conn is not None and cid != conn:
                continue
            for (side, key), req in opened.items():
                if not req.answered:
                    out.append(
                        {
                            "conn": cid,
                            "seq": req.seq,
                            "ts": req.ts,
                            "from": side,
                            "key": key,
                            "protocol": req.protocol,
                            "method": req.method,
                            "summary": req.summary,
                        }
                    )
        return out

    def endpoint_report(self, path: str) -> dict[str, Any]:
        """``{"requests", "methods": [{"method", "protocol", "count", "p50", "p95",
        "max"}], "unanswered": n, "unanswered_requests": [...], "unmatched_replies",
        "pending": n, "pending_requests": [...]}`` (latencies in seconds; pending: still
        waiting on live connections)."""
        ep = self._endpoints.get(path)
        waiting = [r for r in self.pending() if self._paths.get(r["conn"], "?") == path]
        if ep is None:
            return {
                "requests": 0,
                "methods": [],
                "unanswered": 0,
                "unanswered_requests": [],
                "unmatched_replies": 0,
                "pending": 0,
                "pending_requests": [],
            }
        methods = []
        for name, m in sorted(ep.methods.items(), key=lambda kv: (-kv[1].count, kv[0])):
            s = sorted(m.recent)
            methods.append(
                {
                    "method": name,
                    "protocol": m.protocol,
                    "count": m.count,
                    "p50": _r(percentile(s, 0.5)),
                    "p95": _r(percentile(s, 0.95)),
                    "max": _r(m.max),
                }
            )
        return {
            "requests": ep.requests,
            "methods": methods,
            "unanswered": ep.unanswered_count,
            "unanswered_requests": list(ep.unanswered),
            "unmatched_replies": ep.unmatched,
            "pending": len(waiting),  # still waiting, on connections still open
            "pending_requests": waiting[:MAX_UNANSWERED],
        }

    def paths(self) -> Iterable[str]:
        return list(self._endpoints)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)
