"""Reconnects and backoff: how clients come back after a connection ends.

Core module: no I/O. Connections are grouped into *endpoints* (by default the same URL
path and ``Origin``) and, within an endpoint, into client *lineages* (by default the same
User-Agent, Cookie header and client IP without the port): one browser tab, one app
instance. Each end of a connection (close, kill, TCP end, or a refused upgrade, which ends
at its response) followed by a new upgrade request of the same lineage is a reconnect,
with ``delay = new.handshake.ts - old end``.

Each lineage is judged on its own: two clients of one endpoint (a tab with exponential
backoff, a script retrying every 5 s) must not be read as one series. A lineage that never
got a 101 (a client refused again and again, say for a missing cookie) is not a connected
client's backoff: its retries are reported apart (``EndpointReport.refused_retries``).
The endpoint's own ``backoff`` is the one connected client's with reconnects, or
``"mixed"`` when there are several (each is in ``lineages``).

The series of delays of a lineage is judged (``judge``):

- ``storm``: immediate retries (delays under ``storm_below``, 100 ms) again and again;
- ``exponential``: delays grow by a steady factor (the median ratio of successive delays,
  reported as ``factor``), maybe up to a ``cap`` where they plateau;
- ``linear``: delays grow by a steady step;
- ``fixed``: delays stay about the same;
- ``irregular``: none of these; ``single``: one reconnect; ``none``: no reconnect.

A client's backoff usually resets after a successful connection, so the series is split
into *runs*: a new run starts when the delay drops to less than half the previous one, or
when the connection before it stayed up for ``stable_after`` seconds. Growth is measured
within runs only. ``jitter`` says the ratios (or, for a fixed interval, the delays) vary
by more than a few percent.

Recomputed from scratch each time: O(n log n) in the number of connections, fine on a
timer for 10,000 connections.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from devconsole.analysis.clients import ClientLabels
from devconsole.model import Connection, ConnState

Pattern = Literal["exponential", "linear", "fixed", "storm", "single", "none", "irregular", "mixed"]
EndpointKey = Callable[[Connection], tuple[str, str | None]]
LineageKey = Callable[[Connection], str]

STORM_BELOW = 0.1  # seconds: a retry faster than this is immediate
GROWTH_RATIO = 1.2  # successive delays growing by more than this are growth
RESET_DROP = 0.5  # a delay below this fraction of the previous one starts a new run
PLATEAU = 0.65  # delays within this fraction of a run's maximum form its plateau (cap)
JITTER_CV = 0.05  # coefficient of variation above which jitter is present


# --------------------------------------------------------------------------- keys


def client_ip(addr: str) -> str:
    """``"1.2.3.4:5678"`` -> ``"1.2.3.4"``; ``"[::1]:5678"`` -> ``"::1"``."""
    if addr.startswith("["):
        end = addr.find("]")
        return addr[1:end] if end > 0 else addr
    if addr.count(":") == 1:
        return addr.rsplit(":", 1)[0]
    if addr.count(":") > 1 and "." not in addr:
        # A bare IPv6 address with a port appended ("::1:5678"), as some tools print it.
        head, _, tail = addr.rpartition(":")
        return head if tail.isdigit() and head else addr
    return addr


def default_endpoint_key(conn: Connection) -> tuple[str, str | None]:
    hs = conn.handshake
    return hs.path or "/", hs.request_header("origin")


def default_lineage_key(conn: Connection) -> str:
    hs = conn.handshake
    cookies = [v for k, v in hs.request_headers if k.lower() == "cookie"]
    return "\x1f".join(
        (hs.request_header("user-agent") or "", "; ".join(cookies), client_ip(hs.client))
    )


# --------------------------------------------------------------------------- judging


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _cv(values: Sequence[float]) -> float:
    """Coefficient of variation (population); 0 for fewer than two values."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = math.fsum(values) / n
    if mean <= 0:
        return 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / n
    return math.sqrt(var) / mean


def _ratios(run: Sequence[float]) -> list[float]:
    return [b / a for a, b in pairwise(run) if a > 1e-9]


@dataclass(slots=True)
class Backoff:
    """The judgement of a series of reconnect delays (seconds)."""

    pattern: Pattern = "none"
    factor: float | None = None  # median ratio of successive delays (growth phase)
    jitter: bool = False
    cap: float | None = None  # the plateau the delays reached after growing
    min: float | None = None
    max: float | None = None
    median: float | None = None
    step: float | None = None  # linear growth: median increase per attempt
    runs: int = 0  # backoff sequences (a run restarts when the client resets its backoff)
    reconnects: int = 0

    def to_dict(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 6)

        return {
            "pattern": self.pattern,
            "factor": None if self.factor is None else round(self.factor, 4),
            "jitter": self.jitter,
            "cap": r(self.cap),
            "min": r(self.min),
            "max": r(self.max),
            "median": r(self.median),
            "step": r(self.step),
            "runs": self.runs,
            "reconnects": self.reconnects,
        }


def split_runs(
    delays: Sequence[float], run_starts: Sequence[bool] | None = None
) -> list[list[float]]:
    """Split a delay series where the client evidently reset its backoff."""
    runs: list[list[float]] = []
    for i, d in enumerate(delays):
        new = (
            i == 0
            or (run_starts is not None and i < len(run_starts) and run_starts[i])
            or d < RESET_DROP * delays[i - 1]
        )
        if new:
            runs.append([d])
        else:
            runs[-1].append(d)
    return runs


def judge(
    delays: Sequence[float],
    run_starts: Sequence[bool] | None = None,
    *,
    storm_below: float = STORM_BELOW,
) -> Backoff:
    """Judge a series of reconnect delays (in the order they happened).

    ``run_starts[i]`` marks a delay that follows a stable connection (the client may have
    reset its backoff there). Exponential needs growth (ratio > 1.2) in at least 70% of the
    steps within runs, at a steady factor (coefficient of variation < 0.4), and two growth
    steps in a row somewhere (or three single steps at a very steady factor): random
    delays also go up now and then, but neither steadily nor for long."""
    ds = [max(float(d), 0.0) for d in delays if math.isfinite(d)]
    b = Backoff(reconnects=len(ds))
    if not ds:
        return b
    b.min, b.max, b.median = min(ds), max(ds), _median(ds)
    if len(ds) == 1:
        b.pattern = "single"
        b.runs = 1
        return b
    runs = split_runs(ds, run_starts)
    b.runs = len(runs)

    growth: list[float] = []  # ratios > GROWTH_RATIO within growth phases
    growth_diffs: list[float] = []
    level: list[float] = []  # ratios <= GROWTH_RATIO within growth phases
    plateau_ratios: list[float] = []
    caps: list[float] = []
    streak = 0  # the longest series of successive growth steps in one run
    for run in runs:
        if len(run) < 2:
            continue
        top = max(run)
        k = len(run)
        while k > 0 and run[k - 1] >= PLATEAU * top:
            k -= 1
        plateau = run[k:]
        level_pair = (
            len(plateau) == 2
            and plateau[0] > 0
            and 1 / GROWTH_RATIO <= plateau[1] / plateau[0] <= GROWTH_RATIO
        )
        if k > 0 and (len(plateau) >= 3 or level_pair):
            # Grew, then stayed near its maximum: a cap.
            caps.append(_median(plateau))
            plateau_ratios.extend(_ratios(plateau))
            phase = run[: k + 1]
        else:
            phase = run
        cur = 0
        for a, c in pairwise(phase):
            if a <= 1e-9:
                cur = 0
                continue
            ratio = c / a
            if ratio > GROWTH_RATIO:
                growth.append(ratio)
                growth_diffs.append(c - a)
                cur += 1
                streak = max(streak, cur)
            else:
                level.append(ratio)
                cur = 0

    all_ratios = growth + level + plateau_ratios
    if all_ratios:
        b.factor = _median(all_ratios)

    gcv = _cv(growth)
    steady = (streak >= 2 and gcv < 0.4) or (len(growth) >= 3 and gcv < 0.2)
    if steady and len(growth) >= 0.7 * (len(growth) + len(level)):
        dcv = _cv(growth_diffs)
        if streak >= 3 and dcv < 0.25 and dcv < gcv:
            b.pattern = "linear"
            b.step = _median(growth_diffs)
            b.factor = _median(growth)
            b.jitter = dcv > JITTER_CV
        else:
            b.pattern = "exponential"
            b.factor = _median(growth)
            b.jitter = _cv(growth) > JITTER_CV or _cv(plateau_ratios) > JITTER_CV
        if caps:
            b.cap = _median(caps)
        return b

    quick = sum(1 for d in ds if d < storm_below)
    if quick >= 2 and 2 * quick >= len(ds):
        b.pattern = "storm"
        b.factor = None
        return b

    if _cv(ds) < 0.3:
        b.pattern = "fixed"
        b.jitter = _cv(ds) > JITTER_CV
        return b

    b.pattern = "irregular"
    b.factor = None
    b.jitter = _cv(all_ratios) > JITTER_CV if all_ratios else _cv(ds) > JITTER_CV
    return b


# --------------------------------------------------------------------------- grouping


@dataclass(slots=True)
class Reconnect:
    after: str  # id of the connection (or refused attempt) that ended
    conn: str  # id of the new attempt
    ts: float  # the new upgrade request
    delay: float  # seconds from the end of ``after`` to ``ts``
    after_refused: bool  # the attempt before was refused
    after_stable: bool  # the connection before stayed up for ``stable_after`` seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "after": self.after,
            "conn": self.conn,
            "ts": self.ts,
            "delay": round(self.delay, 6),
            "after_refused": self.after_refused,
            "after_stable": self.after_stable,
        }


@dataclass(slots=True)
class LineageReport:
    key: str
    conn_ids: list[str]
    reconnects: list[Reconnect]
    backoff: Backoff
    label: str = ""  # the client's short key (``analysis.clients``), without secrets
    refused: int = 0  # attempts of this client that got no 101
    statuses: dict[str, int] = field(default_factory=dict)  # of its refused attempts

    @property
    def delays(self) -> list[float]:
        return [r.delay for r in self.reconnects]

    @property
    def accepted(self) -> int:
        return len(self.conn_ids) - self.refused

    @property
    def never_connected(self) -> bool:
        """Refused every time: its retries are not a connected client's backoff."""
        return self.accepted == 0

    def to_dict(self) -> dict[str, Any]:
        """The client as ``report --json`` lists it (``endpoints[].clients``)."""
        return {
            "client": self.label,
            "connections": len(self.conn_ids),
            "refused": self.refused,
            "reconnect_delays": [round(d, 6) for d in self.delays],
            "backoff": self.backoff.to_dict(),
        }


@dataclass(slots=True)
class RefusedRetries:
    """Attempts of clients that were refused every time (never got a 101)."""

    count: int = 0  # refused attempts of such clients
    clients: int = 0
    interval: float | None = None  # median delay between their retries
    status: int | str | None = None  # the most common refusal (an HTTP status or error)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "clients": self.clients,
            "interval": None if self.interval is None else round(self.interval, 6),
            "status": self.status,
        }


@dataclass(slots=True)
class EndpointReport:
    path: str
    origin: str | None
    conn_ids: list[str] = field(default_factory=list)  # in handshake order
    refused: int = 0
    # the reconnect delays of the connected client (or of every connected client when
    # ``mixed``), in the order they happened
    reconnect_delays: list[float] = field(default_factory=list)
    # the backoff of the one connected client with reconnects; "mixed" when several
    backoff: Backoff = field(default_factory=Backoff)
    lineages: list[LineageReport] = field(default_factory=list)  # every client
    refused_retries: RefusedRetries = field(default_factory=RefusedRetries)

    @property
    def connections(self) -> int:
        return len(self.conn_ids)

    @property
    def mixed(self) -> bool:
        return self.backoff.pattern == "mixed"

    @property
    def reconnecting(self) -> list[LineageReport]:
        """The connected clients (not refused every time) that reconnected."""
        return [lin for lin in self.lineages if lin.reconnects and not lin.never_connected]

    def to_dict(self) -> dict[str, Any]:
        """The endpoint's backoff as ``report --json`` gives it: ``reconnect_delays`` and
        ``backoff`` say ``"mixed"`` when several clients reconnected (see ``clients``)."""
        backoff = self.backoff.to_dict()
        if self.mixed:
            backoff["see"] = "clients"
        return {
            "path": self.path,
            "origin": self.origin,
            "connections": self.connections,
            "refused": self.refused,
            "reconnect_delays": (
                "mixed" if self.mixed else [round(d, 6) for d in self.reconnect_delays]
            ),
            "backoff": backoff,
            "clients": [lin.to_dict() for lin in self.lineages],
            "refused_retries": self.refused_retries.to_dict(),
        }


def end_ts(conn: Connection) -> float | None:
    """When an attempt ended: its end, or for a refused upgrade its response."""
    if conn.ts_end is not None:
        return conn.ts_end
    if conn.state == ConnState.REFUSED:
        hs = conn.handshake
        return hs.ts_response if hs.ts_response is not None else hs.ts
    return None


def reconnects_of(
    conns: Sequence[Connection],
    *,
    stable_after: float = 10.0,
    max_delay: float | None = 300.0,
) -> list[Reconnect]:
    """Pair each new attempt of one lineage with the attempt that ended most recently
    before it (and was not already paired). Gaps over ``max_delay`` are not reconnects."""
    # (time, order, index): ends sort before starts at the same instant, except the end of
    # a zero-length attempt, which must not precede its own start.
    events: list[tuple[float, int, int]] = []
    ends: list[float | None] = []
    for i, c in enumerate(conns):
        start = c.handshake.ts
        e = end_ts(c)
        if e is not None:
            e = max(e, start)
            events.append((e, 0 if e > start else 2, i))
        ends.append(e)
        events.append((start, 1, i))
    events.sort()
    ended: list[int] = []
    out: list[Reconnect] = []
    for t, kind, i in events:
        if kind != 1:
            ended.append(i)
            continue
        if not ended:
            continue
        j = ended.pop()
        e = ends[j]
        assert e is not None
        delay = t - e
        if max_delay is not None and delay > max_delay:
            ended.clear()  # older ends are even further away
            continue
        old = conns[j]
        refused = old.state == ConnState.REFUSED
        out.append(
            Reconnect(
                after=old.id,
                conn=conns[i].id,
                ts=t,
                delay=delay,
                after_refused=refused,
                after_stable=not refused and e - old.handshake.ts >= stable_after,
            )
        )
    return out


def analyze_endpoints(
    connections: Iterable[Connection],
    *,
    key: LineageKey = default_lineage_key,
    endpoint_key: EndpointKey = default_endpoint_key,
    stable_after: float = 10.0,
    max_delay: float | None = 300.0,
    storm_below: float = STORM_BELOW,
) -> list[EndpointReport]:
    """Group connections into endpoints and lineages, find reconnects, judge the backoff.

    Endpoints come in the order of their first handshake, their clients in the order of
    their first attempt. The endpoint's ``backoff`` is the judgement of its one connected
    client with reconnects, or ``"mixed"`` when several connected clients reconnected;
    clients refused every time are summed up in ``refused_retries``."""
    by_ep: dict[tuple[str, str | None], list[Connection]] = {}
    labels = ClientLabels(key)
    for c in sorted(connections, key=lambda c: (c.handshake.ts, c.id)):
        labels.label(c)
        by_ep.setdefault(endpoint_key(c), []).append(c)
    reports: list[EndpointReport] = []
    for (path, origin), conns in by_ep.items():
        ep = EndpointReport(path=path, origin=origin, conn_ids=[c.id for c in conns])
        ep.refused = sum(1 for c in conns if c.state == ConnState.REFUSED)
        by_lineage: dict[str, list[Connection]] = {}
        for c in conns:
            by_lineage.setdefault(key(c), []).append(c)
        for lkey, lconns in by_lineage.items():
            rcs = reconnects_of(lconns, stable_after=stable_after, max_delay=max_delay)
            bo = judge(
                [r.delay for r in rcs],
                [r.after_stable for r in rcs],
                storm_below=storm_below,
            )
            lin = LineageReport(lkey, [c.id for c in lconns], rcs, bo, labels.label(lconns[0]))
            for c in lconns:
                if c.state == ConnState.REFUSED:
                    lin.refused += 1
                    st = _refusal(c)
                    lin.statuses[st] = lin.statuses.get(st, 0) + 1
            ep.lineages.append(lin)
        connected = ep.reconnecting
        if len(connected) == 1:
            ep.reconnect_delays = connected[0].delays
            ep.backoff = connected[0].backoff
        elif connected:
            rcs = sorted((r for lin in connected for r in lin.reconnects), key=lambda r: r.ts)
            ep.reconnect_delays = [r.delay for r in rcs]
            ep.backoff = Backoff(pattern="mixed", reconnects=len(rcs))
        ep.refused_retries = _refused_retries(ep.lineages)
        reports.append(ep)
    return reports


def _refusal(c: Connection) -> str:
    hs = c.handshake
    return str(hs.status) if hs.status is not None else (hs.error or "error")


def _refused_retries(lineages: Sequence[LineageReport]) -> RefusedRetries:
    never = [lin for lin in lineages if lin.never_connected]
    out = RefusedRetries(clients=len(never), count=sum(len(lin.conn_ids) for lin in never))
    delays = [d for lin in never for d in lin.delays]
    if delays:
        out.interval = _median(delays)
    statuses: dict[str, int] = {}
    for lin in never:
        for st, n in lin.statuses.items():
            statuses[st] = statuses.get(st, 0) + n
    if statuses:
        top = max(statuses, key=lambda st: statuses[st])
        out.status = int(top) if top.isdigit() else top
    return out
