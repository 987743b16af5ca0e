"""Per-connection heartbeat monitor: protocol pings/pongs and application-level heartbeats.

Core module: no I/O. The monitor is fed item by item (``observe``) or event by event
(``on_event``, a ``Session`` observer), so it works on connections that live for days:
per connection it keeps running statistics (Welford mean/variance) and small bounded
deques, never the items themselves.

What it finds, per connection:

- who sends protocol pings (client, server, both), their interval (mean, jitter = sample
  standard deviation, median of the recent ones) and the ping -> pong round-trip time. A
  pong is matched to the ping with the same payload (RFC 6455 5.5.3), else to the oldest
  outstanding ping that has not timed out (FIFO). Pings never answered (older than
  ``pong_timeout``, skipped by the peer, or outstanding when the connection ended) are
  counted; pongs that answer nothing are *unsolicited* (a legal one-way heartbeat).
- time since the last frame in each direction.
- application-protocol heartbeats (``on_decoded``, a ProtocolTracker listener): Engine.IO
  ping/pong, GraphQL-WS ping/pong and ``ka``, STOMP heart-beats, MQTT PINGREQ/PINGRESP,
  Phoenix ``heartbeat``, SignalR ping, Action Cable ``ping``, per protocol and sender,
  with the interval and timeout the protocol negotiated (Engine.IO open packet, STOMP
  CONNECT/CONNECTED ``heart-beat``, MQTT keepalive) and how many intervals ran late.
  Such messages are not also analysed as app heartbeats.
- application-level heartbeats: a small data message whose normalised content repeats on
  a roughly regular schedule (at least ``app_min_count`` times, coefficient of variation
  of the interval below ``app_max_cv``). ``{"type":"ping","ts":123}`` is normalised to
  ``{"type":"ping"}``: numbers, id-like strings and keys named like timestamps or ids are
  volatile and dropped. A small message from the other side that regularly follows each
  occurrence (``{"type":"pong"}``) is reported as its reply, with the round-trip time.
  Only a message that looks like the answer counts as one: the same message back (an
  echo), the heartbeat with "ping" turned into "pong", or one that says pong or ack; a
  presence update that happens to follow every ping is not its reply.
  At most ``app_max_rate`` small messages a second per direction are analysed, so a
  flood costs little; a heartbeat drowned in such a flood goes unrecognised.
- what devconsole's own frames did not change: injected pings and messages are not the
  peers' heartbeat, and a ping or heartbeat that devconsole did not forward (half-open)
  reached nobody, so it is counted as sent and unanswered.
- after a half-open (a ``StateEvent``): the heartbeats that went unanswered since, and who
  closed with which code how long after, in one sentence (``HalfOpenReport.summary``):
  "3 app pings unanswered; client closed 4001 5.50 s after half-open".
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from devconsole.decoders.base import Decoded
from devconsole.model import (
    CLIENT,
    SERVER,
    ControlFrame,
    EndEvent,
    Event,
    HandshakeEvent,
    Item,
    Message,
    Opcode,
    RefusedEvent,
    Side,
    Snapshot,
    StateEvent,
)
from devconsole.text import fmt_duration

if TYPE_CHECKING:  # the Session is these functions' input; analysis does not import it
    from devconsole.session import Session

Pinger = Literal["client", "server", "both", "none"]

RECENT = 64  # recent intervals / RTTs kept per series, for medians and the regularity test
MAX_OUTSTANDING = 64  # pings awaiting a pong, per direction


# --------------------------------------------------------------------------- statistics


class RunningStats:
    """Count, mean, variance (Welford), min and max of a series, in O(1) memory."""

    __slots__ = ("_m2", "max", "mean", "min", "n")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (x - self.mean)
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x

    @property
    def variance(self) -> float:
        """Sample variance (0 with fewer than two values)."""
        return self._m2 / (self.n - 1) if self.n > 1 else 0.0

    @property
    def stdev(self) -> float:
        return math.sqrt(max(self.variance, 0.0))


def median(values: Iterable[float]) -> float | None:
    s = sorted(values)
    if not s:
        return None
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _mean_stdev(values: Iterable[float]) -> tuple[float, float]:
    rs = RunningStats()
    for v in values:
        rs.add(v)
    return rs.mean, rs.stdev


# --------------------------------------------------------------------------- normalisation

# Keys whose values change on every message of an otherwise identical heartbeat.
_VOLATILE_KEYS = frozenset(
    {
        "id", "ts", "t", "time", "timestamp", "date", "now", "at", "sent", "sent_at",
        "sentat", "seq", "sequence", "n", "nonce", "ref", "cid", "mid", "rid", "req",
        "request_id", "requestid", "msgid", "msg_id", "message_id", "messageid", "counter",
        "count", "clock", "tick", "epoch", "uptime", "ms", "serial", "num", "uuid",
    }
)  # fmt: skip
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}")
_HEX_RE = re.compile(r"[0-9a-fA-F]{12,}")
_DIGITS_RE = re.compile(r"\d+")
_VOLATILE = "*"


def _volatile_str(s: str) -> bool:
    if len(s) > 32 or (s and s.isdigit()):
        return True
    if sum(ch.isdigit() for ch in s) >= 3:
        return True
    return bool(_UUID_RE.search(s) or _HEX_RE.search(s))


def _normalise(value: Any, depth: int = 0) -> Any:
    """The shape of a JSON value with its volatile parts replaced by ``_VOLATILE``."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return _VOLATILE
    if isinstance(value, str):
        return _VOLATILE if _volatile_str(value) else value
    if depth >= 3:
        return _VOLATILE
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if str(k).lower() in _VOLATILE_KEYS:
                continue
            nv = _normalise(v, depth + 1)
            if nv != _VOLATILE:
                out[str(k)] = nv
        return out
    if isinstance(value, list):
        if len(value) > 8:
            return [_VOLATILE]
        return [_normalise(v, depth + 1) for v in value]
    return _VOLATILE


def signature(opcode: int, payload: bytes) -> str:
    """A small message's identity for heartbeat detection, with volatile values removed.

    JSON objects/arrays -> compact JSON of their normalised shape; other text -> the text
    (digit runs replaced by ``#`` when longer than 8 characters); binary -> ``bin:<hex>``.
    """
    if opcode == Opcode.TEXT:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return "bin:" + payload.hex()
        stripped = text.strip()
        if stripped[:1] in ("{", "["):
            try:
                value = json.loads(stripped)
            except ValueError:
                pass
            else:
                return json.dumps(_normalise(value), separators=(",", ":"), ensure_ascii=False)
        if len(text) <= 8:
            return text
        return _DIGITS_RE.sub("#", text)
    return "bin:" + payload.hex()


_PONG_WORD = re.compile(
    r"(?<![a-z])(pong|ack|acked|acknowledged?|alive|keep[-_]?alive|heartbeat[-_]?ack|hb[-_]?ack)"
    r"(?![a-z])",
    re.IGNORECASE,
)
_PING_WORD = re.compile(r"ping", re.IGNORECASE)
# Replies that say nothing in words: Engine.IO's ping "2" and pong "3" (Socket.IO).
_KNOWN_REPLIES = frozenset({("2", "3"), ("2probe", "3probe")})


def _ping_to_pong(m: re.Match[str]) -> str:
    word = m.group(0)
    return "".join(b.upper() if a.isupper() else b for a, b in zip(word, "pong", strict=True))


@functools.lru_cache(maxsize=4096)
def looks_like_reply(heartbeat: str, reply: str) -> bool:
    """Whether a message (signature ``reply``) looks like the answer to a heartbeat
    (signature ``heartbeat``): the same message back, the heartbeat with "ping" turned into
    "pong", or a message that says pong/ack/alive. Anything else that follows a heartbeat
    (a presence update in a flood) only happens to follow it."""
    if reply == heartbeat or (heartbeat, reply) in _KNOWN_REPLIES:
        return True
    if _PING_WORD.search(heartbeat) and _PING_WORD.sub(_ping_to_pong, heartbeat) == reply:
        return True
    return bool(_PONG_WORD.search(reply))


# --------------------------------------------------------------------------- state


class _Pings:
    """Pings sent by one side, and the pongs of the other side that answer them."""

    __slots__ = (
        "count",
        "intervals",
        "last",
        "outstanding",
        "recent_intervals",
        "recent_rtts",
        "rtts",
        "unanswered",
    )

    def __init__(self) -> None:
        self.count = 0
        self.last: float | None = None
        self.intervals = RunningStats()
        self.recent_intervals: deque[float] = deque(maxlen=RECENT)
        self.outstanding: deque[tuple[bytes, float]] = deque()
        self.rtts = RunningStats()
        self.recent_rtts: deque[float] = deque(maxlen=RECENT)
        self.unanswered = 0

    def ping(self, payload: bytes, ts: float, expect_pong: bool = True) -> None:
        if self.last is not None:
            dt = ts - self.last
            self.intervals.add(dt)
            self.recent_intervals.append(dt)
        self.last = ts
        self.count += 1
        if not expect_pong:  # a one-way heartbeat (STOMP heart-beat, Action Cable ping)
            return
        if len(self.outstanding) >= MAX_OUTSTANDING:
            self.outstanding.popleft()
            self.unanswered += 1
        self.outstanding.append((payload[:125], ts))

    def pong(self, payload: bytes, ts: float, timeout: float) -> bool:
        """Match a pong to an outstanding ping; False if it answers none (unsolicited)."""
        out = self.outstanding
        if payload:
            for i, (p, _) in enumerate(out):
                if p == payload:
                    # The peer may answer only the most recent ping (RFC 6455 5.5.3).
                    for _ in range(i):
                        out.popleft()
                        self.unanswered += 1
                    _, t = out.popleft()
                    self._rtt(ts - t)
                    return True
        while out and ts - out[0][1] > timeout:
            out.popleft()
            self.unanswered += 1
        if out and not (payload and out[0][0]):
            _, t = out.popleft()
            self._rtt(ts - t)
            return True
        return False

    def _rtt(self, rtt: float) -> None:
        rtt = max(rtt, 0.0)
        self.rtts.add(rtt)
        self.recent_rtts.append(rtt)

    def end(self) -> None:
        self.unanswered += len(self.outstanding)
        self.outstanding.clear()


class _Reply:
    __slots__ = ("count", "last_for", "recent", "rtts")

    def __init__(self) -> None:
        self.count = 0
        self.last_for = -math.inf  # the occurrence it last answered
        self.rtts = RunningStats()
        self.recent: deque[float] = deque(maxlen=RECENT)


class _Candidate:
    """A small message that may be an application heartbeat."""

    __slots__ = (
        "awaiting",
        "count",
        "dropped",
        "first",
        "intervals",
        "last",
        "recent",
        "replied",
        "replies",
        "side",
        "sig",
        "unanswered",
    )

    def __init__(self, side: Side, sig: str, ts: float) -> None:
        self.side = side
        self.sig = sig
        self.count = 1
        self.first = ts
        self.last = ts
        self.intervals = RunningStats()
        self.recent: deque[float] = deque(maxlen=RECENT // 2)
        self.awaiting: float | None = ts  # the occurrence waiting for a reply
        self.replies: dict[str, _Reply] = {}
        self.replied = False  # the occurrence ``awaiting`` got a reply
        self.dropped = 0  # occurrences devconsole did not forward (half-open)
        # when the recent occurrences that got no reply were sent
        self.unanswered: deque[float] = deque(maxlen=RECENT)

    def settle(self) -> None:
        """The occurrence waiting for a reply waits no longer."""
        if self.awaiting is not None and not self.replied:
            self.unanswered.append(self.awaiting)
        self.awaiting = None


class _Conn:
    __slots__ = (
        "awaiting",
        "budget",
        "candidates",
        "closed",
        "ended",
        "first_client",
        "half_open",
        "last_client",
        "last_server",
        "negotiated",
        "pings",
        "proto",
        "proto_seq",
        "started",
        "unsolicited",
    )

    def __init__(self, started: float | None) -> None:
        # application-protocol heartbeats: (protocol, side that sends them) -> series
        self.proto: dict[tuple[str, str], tuple[str, _Pings]] = {}
        self.negotiated: dict[tuple[str, str], tuple[float, float | None]] = {}
        self.proto_seq = -1  # the last item that was a protocol heartbeat
        self.started = started
        self.ended: float | None = None
        self.last_client: float | None = None
        self.last_server: float | None = None
        # pings["client"] are the pings the client sends (answered by the server's pongs)
        self.pings: dict[str, _Pings] = {CLIENT: _Pings(), SERVER: _Pings()}
        self.unsolicited: dict[str, int] = {CLIENT: 0, SERVER: 0}  # pongs sent by side
        self.candidates: dict[tuple[str, str], _Candidate] = {}
        # candidates of each side whose last occurrence still waits for a reply
        self.awaiting: dict[str, list[_Candidate]] = {CLIENT: [], SERVER: []}
        self.first_client: tuple[int, bytes] | None = None  # opcode, payload prefix
        # per side: [start of the current one-second window, small messages analysed in it]
        self.budget: dict[str, list[float]] = {CLIENT: [-math.inf, 0.0], SERVER: [-math.inf, 0.0]}
        # the first close frame: (who sent it, or "proxy"; its code; when)
        self.closed: tuple[str, int | None, float] | None = None
        self.half_open: _HalfOpen | None = None


class _HalfOpen:
    """What the protocol ping counters were when devconsole stopped forwarding."""

    __slots__ = ("at", "pings", "released")

    def __init__(self, at: float, pings: dict[str, _Pings]) -> None:
        self.at = at
        self.released: float | None = None
        # per side: pings sent and pongs received so far
        self.pings = {side: (p.count, p.rtts.n) for side, p in pings.items()}


def _other(side: str) -> Side:
    return SERVER if side == CLIENT else CLIENT


def _side(side: str) -> Side:
    return CLIENT if side == CLIENT else SERVER


# --------------------------------------------------------------------------- reports


def _r(x: float | None, nd: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(x, nd)


@dataclass(slots=True)
class PingStats:
    """Protocol pings sent by ``side`` and the pongs answering them."""

    side: Side
    count: int = 0
    interval_mean: float | None = None
    interval_jitter: float | None = None  # sample standard deviation of the interval
    interval_p50: float | None = None  # median of the recent intervals
    rtt_count: int = 0
    rtt_mean: float | None = None
    rtt_p50: float | None = None  # median of the recent round trips
    rtt_max: float | None = None
    unanswered: int = 0  # timed out, skipped by the peer, or outstanding at the end
    pending: int = 0  # outstanding, not timed out yet
    last_ago: float | None = None  # seconds since the last ping

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "count": self.count,
            "interval_mean": _r(self.interval_mean),
            "interval_jitter": _r(self.interval_jitter),
            "interval_p50": _r(self.interval_p50),
            "rtt_count": self.rtt_count,
            "rtt_mean": _r(self.rtt_mean),
            "rtt_p50": _r(self.rtt_p50),
            "rtt_max": _r(self.rtt_max),
            "unanswered": self.unanswered,
            "pending": self.pending,
            "last_ago": _r(self.last_ago, 3),
        }


@dataclass(slots=True)
class AppHeartbeat:
    """A recognised application-level heartbeat."""

    side: Side  # who sends it
    signature: str  # normalised content, e.g. {"type":"ping"}
    count: int
    interval_mean: float
    interval_jitter: float
    interval_cv: float
    reply: str | None = None  # normalised content of the reply from the other side
    replies: int = 0
    rtt_mean: float | None = None
    rtt_p50: float | None = None
    rtt_max: float | None = None
    last_ago: float | None = None
    unanswered: int = 0  # occurrences that got no reply (or were never forwarded)

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "signature": self.signature,
            "count": self.count,
            "interval_mean": _r(self.interval_mean),
            "interval_jitter": _r(self.interval_jitter),
            "interval_cv": _r(self.interval_cv, 4),
            "reply": self.reply,
            "replies": self.replies,
            "rtt_mean": _r(self.rtt_mean),
            "rtt_p50": _r(self.rtt_p50),
            "rtt_max": _r(self.rtt_max),
            "last_ago": _r(self.last_ago, 3),
            "unanswered": self.unanswered,
        }


@dataclass(slots=True)
class HalfOpenReport:
    """What happened after devconsole half-opened a connection (forwarded nothing)."""

    at: float  # when it stopped forwarding
    app_unanswered: int = 0  # app heartbeats sent since that got no reply
    app_side: str | None = None  # who sends the app heartbeat
    pings_unanswered: dict[str, int] = field(default_factory=dict)  # protocol pings, by sender
    closed_by: str | None = None  # who sent the first close frame since ("proxy": devconsole)
    close_code: int | None = None
    close_after: float | None = None  # seconds from the half-open to that close frame
    ended_after: float | None = None  # ... to the end of the connection
    released_after: float | None = None  # ... to devconsole forwarding again

    @property
    def summary(self) -> str:
        """One plain sentence: "3 app pings unanswered; client closed 4001 5.50 s after
        half-open"."""
        parts: list[str] = []
        n = self.app_unanswered
        if n:
            parts.append(f"{n} app ping{'' if n == 1 else 's'} unanswered")
        for side, m in self.pings_unanswered.items():
            if m:
                parts.append(f"{m} {side} ping{'' if m == 1 else 's'} without pong")
        if self.close_after is not None:
            who = "devconsole" if self.closed_by == "proxy" else (self.closed_by or "?")
            code = f" {self.close_code}" if self.close_code is not None else ""
            parts.append(f"{who} closed{code} {fmt_duration(self.close_after)} after half-open")
        elif self.ended_after is not None:
            parts.append(
                f"ended without a close frame {fmt_duration(self.ended_after)} after half-open"
            )
        elif self.released_after is not None:
            parts.append(f"released {fmt_duration(self.released_after)} after half-open")
        else:
            parts.append("nobody closed it yet")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "app_unanswered": self.app_unanswered,
            "app_side": self.app_side,
            "pings_unanswered": dict(self.pings_unanswered),
            "closed_by": self.closed_by,
            "close_code": self.close_code,
            "close_after": _r(self.close_after, 3),
            "ended_after": _r(self.ended_after, 3),
            "released_after": _r(self.released_after, 3),
            "summary": self.summary,
        }


@dataclass(slots=True)
class ProtocolHeartbeat:
    """An application protocol's own heartbeat (Engine.IO ping/pong, GraphQL-WS
    ping/pong, STOMP heart-beats, MQTT PINGREQ/PINGRESP, Phoenix heartbeat, SignalR
    ping, Action Cable ping) sent by ``side``, with what the protocol negotiated."""

    protocol: str
    side: Side
    kind: str  # "ping" (answered by a pong) or "beat" (one-way)
    count: int = 0
    interval_mean: float | None = None
    interval_jitter: float | None = None
    interval_p50: float | None = None
    rtt_count: int = 0
    rtt_p50: float | None = None
    rtt_max: float | None = None
    unanswered: int = 0
    pending: int = 0
    last_ago: float | None = None
    negotiated_interval: float | None = None
    negotiated_timeout: float | None = None
    late: int = 0  # recent intervals longer than the negotiated interval (+ timeout)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "side": self.side,
            "kind": self.kind,
            "count": self.count,
            "interval_mean": _r(self.interval_mean),
            "interval_jitter": _r(self.interval_jitter),
            "interval_p50": _r(self.interval_p50),
            "rtt_count": self.rtt_count,
            "rtt_p50": _r(self.rtt_p50),
            "rtt_max": _r(self.rtt_max),
            "unanswered": self.unanswered,
            "pending": self.pending,
            "last_ago": _r(self.last_ago, 3),
            "negotiated_interval": _r(self.negotiated_interval),
            "negotiated_timeout": _r(self.negotiated_timeout),
            "late": self.late,
        }


@dataclass(slots=True)
class HeartbeatReport:
    conn: str
    pinger: Pinger = "none"  # who sends protocol pings
    client_pings: PingStats = field(default_factory=lambda: PingStats(CLIENT))
    server_pings: PingStats = field(default_factory=lambda: PingStats(SERVER))
    unsolicited_pongs_client: int = 0  # pongs the client sent that answer no ping
    unsolicited_pongs_server: int = 0
    since_last_client: float | None = None  # seconds since the last client -> server frame
    since_last_server: float | None = None
    app_heartbeats: list[AppHeartbeat] = field(default_factory=list)
    ended: bool = False
    known: bool = False  # the monitor has seen this connection
    protocol: list[ProtocolHeartbeat] = field(default_factory=list)
    half_open: HalfOpenReport | None = None  # devconsole half-opened it

    @property
    def seen(self) -> bool:
        """Any heartbeat at all: protocol pings, unsolicited pongs, an application
        protocol's heartbeat or an app heartbeat."""
        return (
            self.pinger != "none"
            or bool(self.app_heartbeats)
            or any(p.count for p in self.protocol)
            or self.unsolicited_pongs_client + self.unsolicited_pongs_server >= 2
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "conn": self.conn,
            "seen": self.seen,
            "pinger": self.pinger,
            "client_pings": self.client_pings.to_dict(),
            "server_pings": self.server_pings.to_dict(),
            "unsolicited_pongs": {
                CLIENT: self.unsolicited_pongs_client,
                SERVER: self.unsolicited_pongs_server,
            },
            "since_last_client": _r(self.since_last_client, 3),
            "since_last_server": _r(self.since_last_server, 3),
            "app_heartbeats": [a.to_dict() for a in self.app_heartbeats],
            "protocol": [p.to_dict() for p in self.protocol],
            "ended": self.ended,
            "half_open": None if self.half_open is None else self.half_open.to_dict(),
        }


# --------------------------------------------------------------------------- monitor


class HeartbeatMonitor:
    """Incremental heartbeat analysis of every connection it is fed.

    Attach to a Session with ``session.observers.append(monitor.on_event)``, or feed items
    with ``observe(item)`` and ends with ``end(conn, ts)``.
    """

    def __init__(
        self,
        *,
        pong_timeout: float = 10.0,
        app_max_size: int = 64,
        app_min_count: int = 3,
        app_max_cv: float = 0.35,
        app_min_interval: float = 0.5,
        app_max_rate: int = 200,
        reply_window: float = 5.0,
        max_candidates: int = 32,
        max_connections: int = 10_000,
    ) -> None:
        self.pong_timeout = pong_timeout
        self.app_max_size = app_max_size
        self.app_min_count = app_min_count
        self.app_max_cv = app_max_cv
        self.app_min_interval = app_min_interval
        self.app_max_rate = app_max_rate
        self.reply_window = reply_window
        self.max_candidates = max_candidates
        self.max_connections = max_connections
        self._conns: dict[str, _Conn] = {}

    @classmethod
    def from_session(cls, session: Session, **kwargs: Any) -> HeartbeatMonitor:
        """A monitor fed with what a Session still has buffered (older items may have been
        evicted), and the ends of its connections."""
        from devconsole.decoders.tracker import ProtocolTracker

        mon = cls(**kwargs)
        tracker = ProtocolTracker(max_cached=0)
        tracker.listeners.append(mon.on_decoded)
        for c in session.connections.values():
            mon._conn(c.id, c.handshake.ts)
            tracker.on_event(HandshakeEvent(c.handshake))
        for item in session.items():
            tracker.on_event(item)
            mon.observe(item)
        for c in session.connections.values():
            if c.ts_end is not None:
                mon.end(c.id, c.ts_end)
        return mon

    # ----------------------------------------------------------------- feeding

    def on_event(self, ev: Event) -> None:
        """A ``Session`` observer."""
        if isinstance(ev, Message | ControlFrame):
            self.observe(ev)
        elif isinstance(ev, EndEvent):
            self.end(ev.conn, ev.ts)
        elif isinstance(ev, HandshakeEvent):
            self._conn(ev.handshake.conn, ev.handshake.ts)
        elif isinstance(ev, RefusedEvent):
            pass  # a refused upgrade carries no frames
        elif isinstance(ev, StateEvent):
            self.state(ev.conn, ev.ts, ev.state)
        elif isinstance(ev, Snapshot):
            for cs in ev.connections:
                c = self._conn(cs.handshake.conn, cs.handshake.ts)
                if cs.ts_end is not None and c.ended is None:
                    c.ended = cs.ts_end

    def observe(self, item: Item) -> None:
        c = self._conns.get(item.conn)
        if c is None:
            c = self._conn(item.conn, None)
        side = item.side
        ts = item.ts
        if side == CLIENT:
            c.last_client = ts
        else:
            c.last_server = ts
        if isinstance(item, ControlFrame):
            if item.opcode == Opcode.CLOSE:
                if c.closed is None and not (item.dropped and item.injected):
                    c.closed = ("proxy" if item.injected else side, item.code, ts)
                return
            if item.injected:
                return  # devconsole's ping (or its pong): not the peers' heartbeat
            if item.opcode == Opcode.PING:
                pings = c.pings[side]
                pings.ping(item.payload, ts)
                if item.dropped and pings.outstanding:
                    # not forwarded (half-open): it reached nobody and cannot be answered
                    pings.outstanding.pop()
                    pings.unanswered += 1
            elif item.dropped:
                return  # a pong that never reached the pinger answers nothing
            elif item.opcode == Opcode.PONG and not c.pings[_other(side)].pong(
                item.payload, ts, self.pong_timeout
            ):
                c.unsolicited[side] += 1
            return
        if item.injected:
            return  # built by devconsole, not sent by the peer
        if side == CLIENT and c.first_client is None:
            c.first_client = (item.opcode, item.payload[:1024])
        if item.seq == c.proto_seq:
            return  # an application protocol's heartbeat: counted as such (on_decoded)
        if item.size <= self.app_max_size and len(item.payload) >= item.size:
            # A flood of small messages is not analysed message by message (a signature
            # costs ~10 us): past ``app_max_rate`` a second, the rest of the second is
            # skipped. Heartbeats drowned in such a flood are not recognised.
            budget = c.budget[side]
            if ts - budget[0] >= 1.0:
                budget[0] = ts
                budget[1] = 0.0
            if budget[1] < self.app_max_rate:
                budget[1] += 1
                self._small(c, side, ts, signature(item.opcode, item.payload), item.dropped)

    def on_decoded(self, item: Item, decoded: Decoded) -> None:
        """A ProtocolTracker listener: application-protocol heartbeats and the intervals
        the protocol negotiates. Register it (``tracker.listeners``) and the tracker's
        ``on_event`` before this monitor's, so the heartbeat messages are not also taken
        for app heartbeats."""
        c = self._conns.get(item.conn)
        if c is None:
            c = self._conn(item.conn, None)
        proto = decoded.protocol
        for p in decoded.packets:
            for h in p.heartbeat:
                side = h.get("side")
                iv = h.get("interval")
                if side in (CLIENT, SERVER) and isinstance(iv, int | float):
                    to = h.get("timeout")
                    c.negotiated[(proto, side)] = (
                        float(iv),
                        float(to) if isinstance(to, int | float) else None,
                    )
            role = p.role
            if role not in ("ping", "pong", "beat"):
                continue
            c.proto_seq = item.seq
            side = item.side
            if role == "pong":
                entry = c.proto.get((proto, _other(side)))
                if entry is not None:
                    nego = c.negotiated.get((proto, _other(side)))
                    timeout = nego[1] if nego and nego[1] else self.pong_timeout
                    entry[1].pong(b"", item.ts, timeout)
                continue
            entry = c.proto.get((proto, side))
            if entry is None:
                entry = c.proto[(proto, side)] = (role, _Pings())
            entry[1].ping(b"", item.ts, expect_pong=role == "ping")

    def end(self, conn: str, ts: float) -> None:
        c = self._conns.get(conn)
        if c is None:
            return
        c.ended = ts
        for p in c.pings.values():
            p.end()
        for _, pp in c.proto.values():
            pp.end()
        for lst in c.awaiting.values():
            for cand in lst:
                cand.settle()
            lst.clear()

    def state(self, conn: str, ts: float, state: str) -> None:
        """A fault changed the connection's state: remember when a half-open began and
        ended, to say what the peers did meanwhile."""
        c = self._conns.get(conn)
        if c is None:
            return
        if state == "half-open":
            if c.half_open is None or c.half_open.released is not None:
                c.half_open = _HalfOpen(ts, c.pings)
        elif c.half_open is not None and c.half_open.released is None:
            c.half_open.released = ts

    def forget(self, conn: str) -> None:
        self._conns.pop(conn, None)

    def _conn(self, conn: str, started: float | None) -> _Conn:
        c = self._conns.get(conn)
        if c is not None:
            if c.started is None:
                c.started = started
            return c
        c = self._conns[conn] = _Conn(started)
        if len(self._conns) > self.max_connections:
            victim = next((k for k, v in self._conns.items() if v.ended is not None), None)
            if victim is None:
                victim = next(iter(self._conns))
            del self._conns[victim]
        return c

    def _small(self, c: _Conn, side: Side, ts: float, sig: str, dropped: bool = False) -> None:
        # Is it the reply to a recent occurrence of a candidate of the other side? A message
        # devconsole did not forward reached nobody: it answers nothing.
        waiting = c.awaiting[_other(side)]
        if waiting and not dropped:
            keep: list[_Candidate] = []
            for w in waiting:
                occ = w.awaiting
                if occ is None or ts - occ > self.reply_window:
                    w.settle()
                    continue
                keep.append(w)
                if ts < occ or not looks_like_reply(w.sig, sig):
                    continue
                w.replied = True
                replies = w.replies
                rep = replies.get(sig)
                if rep is None:
                    if len(replies) >= 4:
                        del replies[min(replies, key=lambda s: replies[s].count)]
                    rep = replies[sig] = _Reply()
                if rep.last_for != occ:
                    rep.last_for = occ
                    rep.count += 1
                    rep.rtts.add(ts - occ)
                    rep.recent.append(ts - occ)
            waiting[:] = keep
        key = (side, sig)
        cand = c.candidates.get(key)
        if cand is None:
            if len(c.candidates) >= self.max_candidates:
                # Evict the least repeated (then the stalest) candidate.
                victim_key = min(
                    c.candidates, key=lambda k: (c.candidates[k].count, c.candidates[k].last)
                )
                victim = c.candidates.pop(victim_key)
                if victim.awaiting is not None:
                    lst = c.awaiting[victim.side]
                    if victim in lst:
                        lst.remove(victim)
            cand = c.candidates[key] = _Candidate(side, sig, ts)
            was_waiting = False
        else:
            dt = ts - cand.last
            cand.intervals.add(dt)
            cand.recent.append(dt)
            cand.count += 1
            cand.last = ts
            was_waiting = cand.awaiting is not None
            cand.settle()
            cand.awaiting = ts
        cand.replied = False
        if dropped:
            # Never forwarded (half-open): sent, and unanswered, for sure.
            cand.dropped += 1
            cand.awaiting = None
            cand.unanswered.append(ts)
            return  # still in the awaiting list if it was: pruned there
        if not was_waiting:
            c.awaiting[side].append(cand)

    # ----------------------------------------------------------------- reports

    def conn_ids(self) -> list[str]:
        return list(self._conns)

    def first_client_message(self, conn: str) -> tuple[int, bytes] | None:
        """Opcode and first KiB of the first data message the client sent, if seen."""
        c = self._conns.get(conn)
        return None if c is None else c.first_client

    def report(self, conn: str, now: float) -> HeartbeatReport:
        c = self._conns.get(conn)
        rep = HeartbeatReport(conn)
        if c is None:
            return rep
        rep.known = True
        rep.ended = c.ended is not None
        ref = now if c.ended is None else min(now, c.ended)
        rep.client_pings = self._ping_stats(CLIENT, c.pings[CLIENT], ref, c.ended is not None)
        rep.server_pings = self._ping_stats(SERVER, c.pings[SERVER], ref, c.ended is not None)
        cp, sp = rep.client_pings.count > 0, rep.server_pings.count > 0
        rep.pinger = "both" if cp and sp else "client" if cp else "server" if sp else "none"
        rep.unsolicited_pongs_client = c.unsolicited[CLIENT]
        rep.unsolicited_pongs_server = c.unsolicited[SERVER]
        if c.last_client is not None:
            rep.since_last_client = max(ref - c.last_client, 0.0)
        if c.last_server is not None:
            rep.since_last_server = max(ref - c.last_server, 0.0)
        rep.app_heartbeats = self._app(c, ref)
        rep.protocol = self._protocol(c, ref)
        if c.half_open is not None:
            rep.half_open = self._half_open(c, rep, ref)
        return rep

    def _protocol(self, c: _Conn, ref: float) -> list[ProtocolHeartbeat]:
        out: list[ProtocolHeartbeat] = []
        keys = list(c.proto) + [k for k in c.negotiated if k not in c.proto]
        for proto, side in keys:
            kind, p = c.proto.get((proto, side), ("ping", _Pings()))
            st = self._ping_stats(_side(side), p, ref, c.ended is not None)
            hb = ProtocolHeartbeat(
                proto,
                _side(side),
                kind,
                count=p.count,
                interval_mean=st.interval_mean,
                interval_jitter=st.interval_jitter,
                interval_p50=st.interval_p50,
                rtt_count=st.rtt_count,
                rtt_p50=st.rtt_p50,
                rtt_max=st.rtt_max,
                unanswered=st.unanswered if kind == "ping" else 0,
                pending=st.pending if kind == "ping" else 0,
                last_ago=st.last_ago,
            )
            nego = c.negotiated.get((proto, side))
            if nego is not None:
                hb.negotiated_interval, hb.negotiated_timeout = nego
                limit = nego[0] + (nego[1] if nego[1] else nego[0] * 0.5)
                hb.late = sum(1 for dt in p.recent_intervals if dt > limit)
            out.append(hb)
        return out

    def _half_open(self, c: _Conn, rep: HeartbeatReport, ref: float) -> HalfOpenReport:
        ho = c.half_open
        assert ho is not None
        out = HalfOpenReport(at=ho.at)
        for hb in rep.app_heartbeats:
            cand = c.candidates.get((hb.side, hb.signature))
            if cand is None:
                continue
            missed = sum(1 for t in cand.unanswered if t >= ho.at)
            pending = cand.awaiting
            if (
                pending is not None
                and pending >= ho.at
                and not cand.replied
                and ref - pending > self.reply_window
            ):
                missed += 1  # waited longer than any reply takes
            if missed:
                out.app_unanswered += missed
                out.app_side = hb.side
        for side, p in c.pings.items():
            sent, answered = ho.pings[side]
            missed = (p.count - sent) - (p.rtts.n - answered)
            if missed > 0:
                out.pings_unanswered[side] = missed
        if c.closed is not None and c.closed[2] >= ho.at:
            out.closed_by, out.close_code = c.closed[0], c.closed[1]
            out.close_after = c.closed[2] - ho.at
        if c.ended is not None:
            out.ended_after = max(c.ended - ho.at, 0.0)
        if ho.released is not None:
            out.released_after = ho.released - ho.at
        return out

    def reports(self, now: float) -> list[HeartbeatReport]:
        return [self.report(cid, now) for cid in self._conns]

    def _ping_stats(self, side: Side, p: _Pings, ref: float, ended: bool) -> PingStats:
        st = PingStats(side, count=p.count, rtt_count=p.rtts.n)
        if p.intervals.n:
            st.interval_mean = p.intervals.mean
            st.interval_jitter = p.intervals.stdev
            st.interval_p50 = median(p.recent_intervals)
        if p.rtts.n:
            st.rtt_mean = p.rtts.mean
            st.rtt_p50 = median(p.recent_rtts)
            st.rtt_max = p.rtts.max
        overdue = sum(1 for _, t in p.outstanding if ref - t > self.pong_timeout)
        st.unanswered = p.unanswered + overdue
        st.pending = 0 if ended else len(p.outstanding) - overdue
        if p.last is not None:
            st.last_ago = max(ref - p.last, 0.0)
        return st

    def _app(self, c: _Conn, ref: float) -> list[AppHeartbeat]:
        found: list[tuple[_Candidate, tuple[str, _Reply] | None]] = []
        for cand in c.candidates.values():
            if cand.count < self.app_min_count or len(cand.recent) < self.app_min_count - 1:
                continue
            mean, sd = _mean_stdev(cand.recent)
            if mean < self.app_min_interval or sd / mean >= self.app_max_cv:
                continue
            best: tuple[str, _Reply] | None = None
            answerable = cand.count - cand.dropped
            for sig, r in cand.replies.items():
                # A reply follows (nearly) every occurrence that reached the peer; noise
                # follows a few.
                if r.count < 2 or r.count < 0.6 * (answerable - 1):
                    continue
                if (
                    best is None
                    or r.count > best[1].count
                    or (r.count == best[1].count and r.rtts.mean < best[1].rtts.mean)
                ):
                    best = (sig, r)
            found.append((cand, best))
        found.sort(key=lambda x: x[0].first)
        replies_taken: set[tuple[str, str]] = set()
        out: list[AppHeartbeat] = []
        for cand, best in found:
            if (cand.side, cand.sig) in replies_taken:
                continue  # the answer of an earlier heartbeat, not a heartbeat itself
            mean, sd = _mean_stdev(cand.recent)
            hb = AppHeartbeat(
                side=cand.side,
                signature=cand.sig,
                count=cand.count,
                interval_mean=mean,
                interval_jitter=sd,
                interval_cv=sd / mean if mean > 0 else 0.0,
                last_ago=max(ref - cand.last, 0.0),
                unanswered=len(cand.unanswered),
            )
            # Whatever answered it repeatedly is an answer, not a heartbeat of its own.
            replies_taken.update(
                (_other(cand.side), sig) for sig, r in cand.replies.items() if r.count >= 2
            )
            if best is not None:
                sig, r = best
                hb.reply = sig
                hb.replies = r.count
                hb.rtt_mean = r.rtts.mean
                hb.rtt_p50 = median(r.recent)
                hb.rtt_max = r.rtts.max
            out.append(hb)
        return out
