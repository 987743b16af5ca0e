"""The relay: one WebSocket connection's two byte streams, as a sans-I/O state machine.

Core module: no I/O, imports neither mitmproxy nor asyncio. A driver owns the sockets
(``devconsole.capture`` drives it from mitmproxy's raw TCP relay); it feeds the relay the
bytes it reads from each peer with the time it read them, and writes what comes back:

- ``feed(side, data, ts)`` returns the bytes to write to the *other* peer now;
- events (``Message``, ``ControlFrame``, ``EndEvent``...) go to the ``emit`` callback;
- commands (``close``, ``abort``, ``inject``, ``half_open``/``release``, ``forward``,
  ``drop``) and the clock (``tick(now)``; ``next_deadline()`` says when to call it) return
  an ``Output``: bytes for each peer, an instruction to end or abort both TCP connections,
  and peers to stop or resume reading (backpressure while messages are held). Anything a
  ``feed`` produces besides its return value waits in ``take()`` (``out`` is true then).

A command that cannot run raises ``RelayError`` with a message for the user.

Each direction is a pipeline (docs/intercept.md, docs/rules.md, docs/shaping.md)::

    bytes from one peer -> frame parser -> units (a data message, or a control frame)
        -> capture (an event, always) -> faults (half-open, closing, swallowed pongs)
        -> rules (rewrite, drop, delay, duplicate, respond, close, hold: ``_act``)
        -> hold (breakpoints; the queue behind a held or delayed message) -> output
        -> re-framing (edits, re-compression, fragmenting: ``_unit_bytes``)
        -> network conditions (latency, rate, slicing: ``devconsole.shaping``, ``_pull``)
        -> bytes to the other peer

While no stage has anything to do in a direction it is *plain*: each chunk is parsed for
its events and forwarded as the very same bytes object (the hot path). Otherwise units are
cut out of the stream at frame boundaries; a unit nothing changed is written as the bytes
it arrived as, and only a unit that changes (an edited message, an injected one, a message
re-compressed) is re-framed. Data messages are forwarded as they arrive unless a stage
must see a whole message first (a breakpoint, a held message ahead of it, re-compression):
then the message is withheld until its last frame, and control frames interleaved in it
overtake it, as RFC 6455 allows.

permessage-deflate with context takeover: once a compressed message was not delivered as
the sender compressed it (dropped, edited, lost in half-open), the receiver's inflate
window no longer matches the sender's deflate window. From that message on devconsole
inflates what the sender sends (the parser does it anyway) and compresses every later
message of that direction itself, with its own context, toward the receiver.

Where the stages are: a unit is decided in ``_message_done`` / ``_control_done`` (capture,
then faults, then rules, then hold), waits in its direction's ``queue`` while something
ahead of it is held or delayed (or in ``timed`` when it goes out of line: a delayed pong, a
delayed message others may overtake), and is written by ``_deliver`` (as received, or
re-framed by ``_frame``). What is written toward a peer with network conditions goes
through that direction's ``chain`` of stages. A stage keeps its direction off the hot path
while it has work (the conditions at the end of ``_settle``), and uses the driver's clock
through ``tick``/``next_deadline``. Stall and full buffers stop reading the sending peer
(``_pressure``: ``Output.pause``/``resume``); a driver lets a peer's TCP close wait for
what the stages still hold toward the other one (``pending_to``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import heapq
import itertools
import random
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from devconsole.filters import MATCH_ALL, Filter, FilterError, parse
from devconsole.frames import (
    Control,
    DataMessage,
    DecodeError,
    DeflateParams,
    FrameError,
    StreamDecoder,
    build_close,
    build_frame,
)
from devconsole.model import (
    CLIENT,
    SERVER,
    Breakpoint,
    ConnState,
    ControlFrame,
    EndEvent,
    Event,
    Handshake,
    Item,
    Message,
    Opcode,
    Outcome,
    OutcomeEvent,
    ProtocolErrorEvent,
    RuleEvent,
    Shape,
    ShapeEvent,
    Side,
    StateEvent,
    valid_close_code,
)
from devconsole.rules import Decision, MessageRule, RuleSet, decide
from devconsole.shaping import (
    SHAPE_BUFFER,
    Chain,
    ShapeError,
    chain_for,
    check_shape,
    format_duration,
    fragment,
    wire_payload,
)

if TYPE_CHECKING:
    from devconsole.decoders.base import Decoded, ProtocolDecoder

__all__ = [
    "CLOSE_REPLY_TIMEOUT",
    "DEFAULT_HOLD_BYTES",
    "Intercept",
    "Output",
    "Relay",
    "RelayError",
]

CLOSE_REPLY_TIMEOUT = 2.0  # seconds to wait for the peers' answers to a close we sent
DEFAULT_HOLD_BYTES = 16 << 20  # per direction: held and queued bytes before backpressure
MAX_FRAME_SIZES = 4096  # per-frame sizes kept for a fragmented message (``frames`` is exact)
# Memory of a queued unit besides its bytes (the unit, its event, the hold record).
UNIT_OVERHEAD = 400
ON_TIMEOUT = ("forward", "drop")

# What becomes of the bytes of the data message being received in a direction.
_NONE = 0  # no data message in progress
_STREAM = 1  # forwarded as they arrive
_HOLDBACK = 2  # withheld until the message is complete, then decided
_DISCARD = 3  # dropped (half-open, closing)

_FORWARD = 1
_DROP = 2


class RelayError(Exception):
    """A command that cannot be carried out (the message is for the user)."""


@dataclass(slots=True)
class Output:
    """What the driver must do after a call: write bytes (in this order, after anything
    written before), end or abort both TCP connections, stop/resume reading a peer."""

    to_client: list[bytes] = field(default_factory=list)
    to_server: list[bytes] = field(default_factory=list)
    end: Literal["close", "abort"] | None = None  # close: FIN after the bytes; abort: now
    rst: bool = False  # with end="abort": a TCP reset
    pause: list[Side] = field(default_factory=list)  # stop reading these peers
    resume: list[Side] = field(default_factory=list)
    info: str = ""  # for the command's result
    rearm: bool = False  # next_deadline() may be earlier than before

    def __bool__(self) -> bool:
        return bool(
            self.to_client or self.to_server or self.end or self.pause or self.resume or self.rearm
        )

    def data(self, to: Side) -> bytes:
        return b"".join(self.to_client if to == CLIENT else self.to_server)


# ---------------------------------------------------------------------- breakpoints


@dataclass(slots=True)
class _Bp:
    spec: Breakpoint
    filter: Filter


class Intercept:
    """Breakpoints and held messages, shared by every Relay of one proxy. Held message ids
    and breakpoint ids are unique in it. It also holds the proxy's rules (docs/rules.md)
    and the network conditions set per endpoint (docs/shaping.md)."""

    def __init__(self, hold_bytes: int = DEFAULT_HOLD_BYTES) -> None:
        self.hold_bytes = hold_bytes
        self._bps: dict[int, _Bp] = {}
        self._next_bp = 1
        self._next_held = 1
        self.held: dict[int, Relay] = {}  # held message id -> the relay holding it
        self.relays: dict[str, Relay] = {}  # connection id -> relay
        self.rules = RuleSet()
        # (path glob, peer the bytes go to, conditions): set per endpoint, later wins
        self.endpoint_shapes: list[tuple[str, Side, Shape]] = []
        self.now = 0.0  # the driver's clock at the last change (for the events it causes)

    # -- rules and endpoint conditions

    def set_rules(self, rules: RuleSet, now: float) -> list[tuple[Relay, Output]]:
        """Replace the rules; every relay applies them from its next message on. Returns
        what each relay must write or pause now (their ``take()``), for the driver."""
        self.rules = rules
        self.now = now
        out = []
        for r in list(self.relays.values()):
            r._rules_changed(now)
            out.append((r, r.take()))
        return out

    def set_endpoint_shape(
        self, glob: str, to: Side, shape: Shape | None, now: float
    ) -> list[tuple[Relay, Output]]:
        """Conditions for the bytes going to ``to`` on every connection whose path matches
        ``glob``, now and later (None: remove those set for that glob)."""
        self.endpoint_shapes = [e for e in self.endpoint_shapes if (e[0], e[1]) != (glob, to)]
        if shape is not None and not shape.empty:
            self.endpoint_shapes.append((glob, to, shape))
        out = []
        for r in list(self.relays.values()):
            r._reshape(now, f"endpoint {glob}")
            out.append((r, r.take()))
        return out

    # -- breakpoints

    @property
    def breakpoints(self) -> list[Breakpoint]:
        return [b.spec for b in self._bps.values()]

    def add(
        self,
        expr: str,
        conn: str = "",
        timeout: float = 120.0,
        on_timeout: str = "forward",
        control: bool = False,
    ) -> Breakpoint:
        try:
            flt = parse(expr, self.decoded)
        except FilterError as e:
            raise RelayError(f"bad filter: {e}") from None
        if not expr.strip():
            raise RelayError("a breakpoint needs a filter (docs/filters.md)")
        if not timeout > 0 or timeout != timeout or timeout == float("inf"):
            raise RelayError(f"timeout must be a positive number of seconds, not {timeout}")
        if on_timeout not in ON_TIMEOUT:
            raise RelayError(f"on-timeout must be forward or drop, not {on_timeout!r}")
        bp = Breakpoint(self._next_bp, expr, conn, float(timeout), on_timeout, control)
        self._next_bp += 1
        self._bps[bp.id] = _Bp(bp, flt)
        self._changed()
        return bp

    def remove(self, bp: int) -> int:
        """Remove one breakpoint (0: all); returns how many were removed."""
        if bp == 0:
            n = len(self._bps)
            self._bps.clear()
        elif bp in self._bps:
            del self._bps[bp]
            n = 1
        else:
            raise RelayError(f"no breakpoint {bp}")
        self._changed()
        return n

    def enable(self, bp: int, enabled: bool) -> None:
        b = self._bps.get(bp)
        if b is None:
            raise RelayError(f"no breakpoint {bp}")
        b.spec.enabled = enabled
        self._changed()

    def applicable(self, conn: str) -> list[_Bp]:
        return [b for b in self._bps.values() if b.spec.enabled and b.spec.conn in ("", conn)]

    def _changed(self) -> None:
        for r in self.relays.values():
            r._breakpoints_changed()

    # -- proto: and d: in breakpoints

    def decoded(self, item: Item) -> Decoded | None:
        """What ``proto:`` and ``d:`` see on the proxy: ``item`` decoded on its own by the
        protocol its connection's handshake names (the proxy's ``--decoder``, the
        subprotocol, the URL), else by the protocol its content alone is recognised as.
        Nothing is carried from one message to the next (see docs/intercept.md)."""
        from devconsole.decoders.base import decode_message
        from devconsole.filters import standalone_decode

        relay = self.relays.get(item.conn)
        if relay is None or relay.handshake is None:
            return standalone_decode(item)
        if relay._decoder is None:
            from devconsole.decoders.protocols import NONE, choose, get_protocol

            name, _ = choose(relay.handshake)
            chosen: ProtocolDecoder | str = "sniff"
            if name == NONE:
                chosen = NONE  # the proxy's --decoder PATH=none: nothing decodes
            elif name is not None:
                try:
                    chosen = get_protocol(name) or "sniff"
                except ValueError:
                    chosen = "sniff"
            relay._decoder = chosen
        dec = relay._decoder
        if isinstance(dec, str):
            return standalone_decode(item) if dec == "sniff" else None
        if item.opcode not in (Opcode.TEXT, Opcode.BINARY):
            return None
        return decode_message(
            dec, item.payload, item.opcode, item.side, dec.new_state(relay.handshake), item.seq
        )

    # -- held messages

    def _new_held(self, relay: Relay) -> int:
        hid = self._next_held
        self._next_held += 1
        self.held[hid] = relay
        return hid

    def relay_of(self, held: int) -> Relay:
        r = self.held.get(held)
        if r is None:
            if 0 < held < self._next_held:
                raise RelayError(f"message {held} is no longer held")
            raise RelayError(f"no held message {held}")
        return r


# ---------------------------------------------------------------------- per direction


@dataclass(slots=True, eq=False)
class _Hold:
    id: int
    breakpoint: int
    since: float
    deadline: float
    on_timeout: str
    control: bool
    verdict: int = 0  # 0 while held, then _FORWARD / _DROP
    body: bytes | None = None  # edited body
    opcode: int = 0
    more: list[tuple[int, bytes]] | None = None  # messages sent right after the edited body


@dataclass(slots=True, eq=False)
class _Unit:
    """A data message or control frame cut out of a direction's stream, waiting in its
    queue. ``event`` None: bytes after the parser gave up (forwarded as they are)."""

    event: Item | None
    raw: bytes  # as received
    payload: bytes | None  # the whole decoded payload, when re-compressing may need it
    cost: int
    hold: _Hold | None = None
    # rules (docs/rules.md)
    edit: bytes | None = None  # sent instead (rewrite, set, delete)
    edit_opcode: int = 0
    due: float = 0.0  # not before (delay); 0: now
    copies: int = 0  # duplicates sent after it
    rule: str = ""


class _Dir:
    """One direction of a connection: what ``side`` sends to ``to``."""

    __slots__ = (
        "chain",
        "close",
        "compressor",
        "ctl",
        "ctl_rules",
        "ctl_stream",
        "dec",
        "dropping",
        "hold_controls",
        "mask_reported",
        "msg",
        "msg_rules",
        "nparts",
        "out",
        "parts",
        "paused",
        "pending",
        "plain",
        "qbytes",
        "queue",
        "recompress",
        "shape",
        "side",
        "swallow",
        "takeover",
        "timed",
        "to",
        "transition",
        "wbits",
        "whole",
    )

    def __init__(self, side: Side, dec: StreamDecoder, deflate: DeflateParams | None) -> None:
        self.side: Side = side
        self.to: Side = SERVER if side == CLIENT else CLIENT
        self.dec = dec
        self.plain = True  # nothing to do but parse and forward: the hot path
        self.out: list[bytes] = []  # bytes for ``to`` produced by the current call
        # the data message being received (only tracked while not plain)
        self.msg = _NONE
        self.parts: list[bytes] = []  # its withheld bytes (_HOLDBACK)
        self.nparts = 0
        self.ctl: list[bytes] = []  # a control frame received in part, withheld
        self.ctl_stream = False  # ... or partly forwarded before this left the hot path
        # held messages and what queues behind them
        self.queue: deque[_Unit] = deque()
        self.qbytes = 0
        self.hold_controls = 0  # held units whose breakpoint holds control frames too
        self.paused = False
        # faults
        self.dropping = False
        self.transition: bool | None = None  # new ``dropping`` at the next message boundary
        # frames to send at a message boundary (and their event, None: already emitted)
        self.pending: list[tuple[bytes, Item | None]] = []
        self.swallow: set[bytes] = set()  # payloads of pongs answering our pings
        # permessage-deflate
        self.takeover = False
        self.wbits = 15
        if deflate is not None:
            if side == CLIENT:
                self.takeover = not deflate.client_no_context_takeover
                self.wbits = deflate.client_max_window_bits
            else:
                self.takeover = not deflate.server_no_context_takeover
                self.wbits = deflate.server_max_window_bits
        self.recompress = False
        self.compressor: zlib._Compress | None = None
        # close frames: None none yet, True a valid first one, False invalid or repeated
        self.close: bool | None = None
        self.mask_reported = False
        # rules that apply to what ``side`` sends (data messages / control frames), and
        # whether messages must be seen whole before they go (rules, re-fragmenting)
        self.msg_rules: list[MessageRule] = []
        self.ctl_rules: list[MessageRule] = []
        self.whole = False
        # network conditions of the bytes going to ``to``: the frame-level ones are read
        # from ``shape``, the byte-level ones (latency, rate, slicing) are ``chain``
        self.shape: Shape | None = None
        self.chain: Chain | None = None
        # units sent out of line when due (a delayed pong, a message others may overtake)
        self.timed: list[tuple[float, int, _Unit]] = []


# ---------------------------------------------------------------------- the relay


class Relay:
    """One WebSocket connection. ``emit`` receives every event; ``seq`` numbers items
    (share one iterator between relays for a global order)."""

    # slots, not a __dict__: 1.2 KiB less per connection (10,000 idle ones, issue 18)
    __slots__ = (
        "_bps",
        "_close_deadline",
        "_ctl_bps",
        "_deadlines",
        "_decoder",
        "_end_drained",
        "_held",
        "_now",
        "_out",
        "_replies",
        "_rng",
        "_rule_counts",
        "_seq",
        "_shape_src",
        "_shapes",
        "_timed_n",
        "close_timeout",
        "closed_by",
        "conn",
        "down",
        "emit",
        "ended",
        "handshake",
        "intercept",
        "killing",
        "max_payload",
        "out",
        "path",
        "state",
        "up",
        "url",
    )

    def __init__(
        self,
        conn: str,
        deflate: DeflateParams | None = None,
        *,
        emit: Callable[[Event], None],
        seq: Iterator[int] | None = None,
        max_payload: int = 1 << 20,
        intercept: Intercept | None = None,
        close_timeout: float = CLOSE_REPLY_TIMEOUT,
        url: str = "",
        path: str = "",
        rng: random.Random | None = None,
        now: float = 0.0,
        handshake: Handshake | None = None,
    ) -> None:
        self.conn = conn
        self.url = url  # the connection's URL and path: what rules and endpoints match
        self.path = path
        self.handshake = handshake  # what decides the protocol proto:/d: breakpoints see
        # proto:/d: breakpoints' decoder: "sniff" (by content), "none", None (not chosen yet)
        self._decoder: ProtocolDecoder | str | None = None
        self.emit = emit
        self._seq = seq if seq is not None else itertools.count(1)
        self.max_payload = max(0, max_payload)
        self.intercept = intercept if intercept is not None else Intercept()
        self.close_timeout = close_timeout
        self.up = _Dir(CLIENT, StreamDecoder(True, deflate, self.max_payload), deflate)
        self.down = _Dir(SERVER, StreamDecoder(False, deflate, self.max_payload), deflate)
        self.state: str = ConnState.OPEN
        self.killing = False  # closed or aborted by devconsole
        self.ended = False
        self.closed_by: Side | None = None  # who sent the first valid close frame
        self._replies: set[Side] = set()  # peers whose answer to our close we wait for
        self._close_deadline: float | None = None
        self._held: dict[int, tuple[_Dir, _Unit]] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._bps: list[_Bp] = []
        self._ctl_bps: list[_Bp] = []
        self._out = Output()
        self.out = False  # True when take() has something for the driver
        self._now = now  # the driver's clock at the current call
        # rules and network conditions (docs/rules.md, docs/shaping.md)
        # made on first use: a Random is 2.9 KiB and most connections never draw from it
        self._rng = rng
        self._rule_counts: dict[int, int] = {}
        self._shapes: dict[str, Shape] = {}  # set on this connection, by peer (overrides)
        self._shape_src: dict[str, str] = {}
        self._end_drained = False  # a close waits for shaped bytes to go out first
        self._timed_n = itertools.count()
        self.intercept.relays[conn] = self
        self._breakpoints_changed()
        if self.intercept.rules or self.intercept.endpoint_shapes:
            self._rules_changed(self._now)

    @property
    def rng(self) -> random.Random:
        """The random source of rules and network conditions (``rng`` or a new one)."""
        r = self._rng
        if r is None:
            r = self._rng = random.Random()
        return r

    @rng.setter
    def rng(self, value: random.Random) -> None:
        self._rng = value

    # ------------------------------------------------------------------ driver API

    def take(self) -> Output:
        """What the driver must do besides writing ``feed``'s return value (check ``out``
        first: it is a plain attribute, cheap on the hot path)."""
        self._collect(self.up)
        self._collect(self.down)
        out, self._out = self._out, Output()
        self.out = False
        if self.up.chain is not None or self.down.chain is not None or self._end_drained:
            busy = self._shaping_busy()
            if out.end == "close" and busy:
                # FIN only after the bytes the conditions still hold went out
                out.end = None
                self._end_drained = True
            elif self._end_drained and not busy and out.end is None:
                out.end = "close"
                self._end_drained = False
            if busy:
                out.rearm = True
        return out

    def pending_to(self, to: Side) -> int:
        """How much the time-based stages still hold toward ``to`` (bytes the conditions
        delay, and messages a rule delays): a driver lets a TCP close from the other peer
        wait for it, as a slow link would deliver the data before the FIN."""
        d = self.down if to == CLIENT else self.up
        n = d.chain.pending if d.chain is not None else 0
        n += len(d.timed)
        if d.queue:
            n += sum(1 for u in d.queue if u.due and u.hold is None)
        return n

    def _shaping_busy(self) -> bool:
        return any(d.chain is not None and d.chain.pending for d in (self.up, self.down))

    def feed(self, side: Side, data: bytes, ts: float) -> bytes:
        """Bytes read from ``side`` at time ``ts``; returns the bytes to write to the other
        peer now (``data`` itself when nothing changes)."""
        d = self.up if side == CLIENT else self.down
        if d.plain:
            dec = d.dec
            items = dec.feed(data)
            if items:
                conn = self.conn
                emit = self.emit
                seq = self._seq
                for item in items:
                    if type(item) is DataMessage:
                        emit(
                            Message(
                                next(seq),
                                conn,
                                ts,
                                side,
                                item.opcode,
                                item.payload,
                                item.size,
                                item.wire_size,
                                item.frames,
                                item.compressed,
                                item.rsv,
                                item.utf8_ok,
                                False,
                                False,
                                item.frame_sizes[:MAX_FRAME_SIZES],
                            )
                        )
                    elif type(item) is Control:
                        emit(self._control_event(d, item, ts, False))
                    else:
                        self._decode_error(d, item, ts)  # type: ignore[arg-type]
            if dec.mask_error is not None and not d.mask_reported:
                self._mask_error(d, ts)
            return data
        return self._feed_slow(d, data, ts)

    def tick(self, now: float) -> Output:
        """Run what is due at ``now``: hold timeouts, the end of a close nobody answered."""
        self._now = now
        touched: list[_Dir] = []
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            _, hid = heapq.heappop(dl)
            found = self._held.pop(hid, None)
            if found is None:
                continue
            d, unit = found
            assert unit.hold is not None
            drop = unit.hold.on_timeout == "drop"
            self._resolve(d, unit, _DROP if drop else _FORWARD, now, timeout=True)
            if d not in touched:
                touched.append(d)
        if self._close_deadline is not None and now >= self._close_deadline:
            self._close_deadline = None
            if not self.ended:
                self._out.end = "close"
                self.out = True
        for d in (self.up, self.down):
            timed = d.timed
            while timed and timed[0][0] <= now:
                _, _, unit = heapq.heappop(timed)
                self._deliver_late(d, unit)
            if d.queue and d not in touched:
                touched.append(d)  # a delayed message at its head may be due
        for d in touched:
            self._settle(d)
        for d in (self.up, self.down):
            if d.chain is not None:
                self._collect(d)
                self._pressure(d)
        return self.take()

    def next_deadline(self) -> float | None:
        dl = self._deadlines
        while dl and dl[0][1] not in self._held:
            heapq.heappop(dl)
        t = dl[0][0] if dl else None
        c = self._close_deadline
        if c is not None and (t is None or c < t):
            t = c
        for d in (self.up, self.down):
            for c in (
                d.timed[0][0] if d.timed else None,
                d.chain.next_time() if d.chain is not None else None,
                d.queue[0].due if d.queue and d.queue[0].due else None,
            ):
                if c is not None and (t is None or c < t):
                    t = c
        return t

    def end(self, now: float, error: str | None = None) -> None:
        """Both TCP connections are gone (emits the EndEvent)."""
        self._now = now
        if self.ended:
            return
        self.ended = True
        for d in (self.up, self.down):
            self._drop_queue(d, now)
            d.chain = None  # what the conditions still held has nowhere to go
        self._close_deadline = None
        self._end_drained = False
        self.emit(
            EndEvent(
                conn=self.conn,
                ts=now,
                clean=self.up.close is True and self.down.close is True,
                closed_by="proxy" if self.killing else self.closed_by,
                error=error,
            )
        )
        if self.intercept.relays.get(self.conn) is self:
            del self.intercept.relays[self.conn]

    # ------------------------------------------------------------------ commands

    def close(self, code: int, reason: str, to: str, now: float) -> Output:
        """Close frames with ``code``/``reason`` to ``to`` (client, server, both), nothing
        else forwarded after them, then FIN when the peers answered (or after
        ``close_timeout``)."""
        self._now = now
        if self.killing:
            raise RelayError(f"connection {self.conn} is being closed")
        if not valid_close_code(code):
            raise RelayError(
                f"{code} is not a close code a peer may send (1000-1003, 1007-1014, 3000-4999)"
            )
        try:
            to_client = build_close(code, reason)
            to_server = build_close(code, reason, mask=True)
        except FrameError as e:
            raise RelayError(str(e)) from None
        if to not in (CLIENT, SERVER, "both"):
            raise RelayError(f"close to client, server or both, not {to!r}")
        self._kill(now, f"close {code} {reason}".strip())
        for d in (self.up, self.down):
            self._slow(d)
            self._drop_queue(d, now)
            if d.msg == _HOLDBACK:  # withheld: the receiver gets none of it
                d.parts = []
                d.nparts = 0
                d.msg = _DISCARD
        payload = code.to_bytes(2, "big") + reason.encode()
        targets: tuple[Side, ...] = (CLIENT, SERVER) if to == "both" else (to,)  # type: ignore[assignment]
        for target in targets:
            d = self.down if target == CLIENT else self.up
            frame = to_client if target == CLIENT else to_server
            ev = ControlFrame(
                seq=0,
                conn=self.conn,
                ts=0.0,
                side=d.side,  # who it pretends to be from
                opcode=Opcode.CLOSE,
                payload=payload,
                wire_size=len(frame),
                code=code,
                reason=reason,
                injected=True,
            )
            self._send(d, frame, ev)
            self._replies.add(target)  # its answering close comes the other way
        # A peer that got a close frame must get nothing after it; the answers are ours.
        for d in (self.up, self.down):
            if d.dec.failed or (not d.pending and self._at_boundary(d)):
                d.dropping = True
                d.transition = None
            else:
                d.transition = True
        self._close_deadline = now + self.close_timeout
        self._out.rearm = True
        self._settle(self.up)
        self._settle(self.down)
        return self.take()

    def abort(self, rst: bool, now: float) -> Output:
        """Drop both TCP connections at once, with no close frame."""
        self._now = now
        self._kill(now, "abort (TCP reset)" if rst else "abort")
        self._out.end = "abort"
        self._out.rst = rst
        return self.take()

    def half_open(self, now: float) -> Output:
        """Forward nothing either way, from the next message boundary."""
        self._now = now
        if self.state == ConnState.HALF_OPEN:
            raise RelayError(f"connection {self.conn} is already half-open")
        for d in (self.up, self.down):
            self._slow(d)
            self._drop_queue(d, now)
            if d.msg == _HOLDBACK:
                d.parts = []
                d.nparts = 0
                d.msg = _DISCARD
            if d.dec.failed or self._at_boundary(d):
                d.dropping = True
                d.transition = None
            else:
                d.transition = True
        self.state = ConnState.HALF_OPEN
        self.emit(StateEvent(self.conn, now, self.state, "forwarding nothing"))
        self._settle(self.up)
        self._settle(self.down)
        return self.take()

    def release(self, now: float) -> Output:
        """End half-open at the next message boundary."""
        self._now = now
        if self.state != ConnState.HALF_OPEN:
            raise RelayError(f"connection {self.conn} is not half-open")
        for d in (self.up, self.down):
            self._slow(d)
            if d.dec.failed or self._at_boundary(d):
                d.dropping = False
                d.transition = None
            else:
                d.transition = False
        self.state = ConnState.OPEN
        self.emit(StateEvent(self.conn, now, self.state, "released"))
        self._settle(self.up)
        self._settle(self.down)
        return self.take()

    def inject(self, to: Side, opcode: int, payload: bytes, now: float) -> Output:
        """A text/binary message or a ping built by devconsole, sent to ``to`` at the next
        message boundary, as if from the other peer."""
        self._now = now
        if self.state == ConnState.HALF_OPEN:
            raise RelayError(f"connection {self.conn} is half-open; release it")
        if self.killing:
            raise RelayError(f"connection {self.conn} is being closed")
        d = self.down if to == CLIENT else self.up
        if d.dec.failed:
            raise RelayError("that direction is undecodable: no frame boundary to inject at")
        if opcode not in (Opcode.TEXT, Opcode.BINARY, Opcode.PING):
            raise RelayError("inject sends text, binary or ping")
        try:
            frame = build_frame(opcode, payload, mask=to == SERVER)
        except FrameError as e:
            raise RelayError(str(e)) from None
        ev: Item
        if opcode == Opcode.PING:
            # The answering pong goes to the other peer; devconsole takes it out.
            back = self.up if d is self.down else self.down
            back.swallow.add(payload)
            self._slow(back)
            ev = ControlFrame(0, self.conn, 0.0, d.side, opcode, payload, len(frame), injected=True)
        else:
            ev = self._injected_message(d, opcode, payload, len(frame))
        self._slow(d)
        self._send(d, frame, ev)
        self._settle(d)
        return self.take()

    def forward(
        self,
        held: int,
        now: float,
        payload: bytes | None = None,
        opcode: int = 0,
        more: list[tuple[int, bytes]] | None = None,
    ) -> Output:
        """Forward a held message, as it is or with ``payload`` (and ``opcode``; 0 keeps the
        original's) instead, followed by the messages ``more`` (sent by devconsole, before
        anything queued behind the held one)."""
        self._now = now
        d, unit = self._held_unit(held)
        ev = unit.event
        assert ev is not None
        if more:
            if payload is None or ev.opcode >= 8:
                raise RelayError("messages after a held one go with an edited data message")
            if any(op not in (Opcode.TEXT, Opcode.BINARY) for op, _ in more):
                raise RelayError("the messages after an edited one are text or binary")
        if payload is not None:
            op = opcode or ev.opcode
            if ev.opcode >= 8 and op != ev.opcode:
                raise RelayError("a held control frame keeps its opcode")
            if ev.opcode < 8 and op not in (Opcode.TEXT, Opcode.BINARY):
                raise RelayError("an edited message is text or binary")
            if op >= 8 and len(payload) > 125:
                raise RelayError(f"control frame payload of {len(payload)} bytes (max 125)")
            opcode = op
        del self._held[held]
        if more:
            assert unit.hold is not None
            unit.hold.more = list(more)
        self._resolve(d, unit, _FORWARD, now, payload=payload, opcode=opcode)
        self._settle(d)
        return self.take()

    def drop(self, held: int, now: float) -> Output:
        self._now = now
        d, unit = self._held_unit(held)
        del self._held[held]
        self._resolve(d, unit, _DROP, now)
        self._settle(d)
        return self.take()

    def release_all(self, now: float, drop: bool) -> Output:
        """Forward (or drop) every message held on this connection; ``info`` says how many."""
        self._now = now
        n = 0
        for hid in sorted(self._held):
            d, unit = self._held.pop(hid)
            self._resolve(d, unit, _DROP if drop else _FORWARD, now)
            n += 1
        self._settle(self.up)
        self._settle(self.down)
        out = self.take()
        out.info = str(n)
        return out

    @property
    def held_ids(self) -> list[int]:
        return sorted(self._held)

    # ------------------------------------------------------------------ events

    def _injected_message(self, d: _Dir, opcode: int, payload: bytes, wire_size: int) -> Message:
        utf8_ok = True
        if opcode == Opcode.TEXT:
            try:
                payload.decode()
            except UnicodeDecodeError:
                utf8_ok = False
        return Message(
            seq=0,
            conn=self.conn,
            ts=0.0,
            side=d.side,
            opcode=opcode,
            payload=payload[: self.max_payload],
            size=len(payload),
            wire_size=wire_size,
            utf8_ok=utf8_ok,
            injected=True,
        )

    def _control_event(self, d: _Dir, item: Control, ts: float, dropped: bool) -> ControlFrame:
        error = item.error
        if item.opcode == Opcode.CLOSE:
            if d.close is None:
                d.close = error is None
                if error is None and self.closed_by is None:
                    self.closed_by = d.side
            else:
                d.close = False
                error = f"{error}; a second close frame" if error else "a second close frame"
            if d.side in self._replies:
                self._replies.discard(d.side)
                if not self._replies:
                    self._close_deadline = None
                    self._out.end = "close"
                    self.out = True
        return ControlFrame(
            next(self._seq),
            self.conn,
            ts,
            d.side,
            item.opcode,
            item.payload,
            item.wire_size,
            item.code,
            item.reason,
            False,
            dropped,
            error,
        )

    def _message_event(self, d: _Dir, item: DataMessage, ts: float, dropped: bool) -> Message:
        payload = item.payload
        if len(payload) > self.max_payload:  # kept whole for re-framing, not for display
            payload = payload[: self.max_payload]
        return Message(
            next(self._seq),
            self.conn,
            ts,
            d.side,
            item.opcode,
            payload,
            item.size,
            item.wire_size,
            item.frames,
            item.compressed,
            item.rsv,
            item.utf8_ok,
            False,
            dropped,
            item.frame_sizes[:MAX_FRAME_SIZES],
        )

    def _decode_error(self, d: _Dir, item: DecodeError, ts: float) -> None:
        self.emit(ProtocolErrorEvent(self.conn, ts, d.side, item.offset, item.error))

    def _mask_error(self, d: _Dir, ts: float) -> None:
        d.mask_reported = True
        off = d.dec.mask_error
        assert off is not None
        what = (
            "unmasked client frame (RFC 6455 5.1: the server must fail the connection)"
            if d.side == CLIENT
            else "masked server frame (RFC 6455 5.1: the client must fail the connection)"
        )
        self.emit(ProtocolErrorEvent(self.conn, ts, d.side, off, what))

    def _kill(self, now: float, detail: str) -> None:
        self.killing = True
        self.state = ConnState.KILLED
        self.emit(StateEvent(self.conn, now, ConnState.KILLED, detail))

    # ------------------------------------------------------------------ the slow path

    def _slow(self, d: _Dir) -> None:
        """Leave the hot path: from here on units are cut out of the stream."""
        if d.plain:
            d.plain = False
            d.msg = _STREAM if d.dec.in_message else _NONE
            d.ctl_stream = d.dec.partial_control_start is not None

    def _feed_slow(self, d: _Dir, data: bytes, ts: float) -> bytes:
        self._now = ts
        dec = d.dec
        if dec.failed:
            self._raw(d, data)
        else:
            base = dec.offset
            items = dec.feed(data)
            n = len(data)
            p = 0
            for item in items:
                t = type(item)
                if t is DataMessage:
                    end = item.end  # type: ignore[union-attr]
                    if end > p:
                        self._data(d, data if (p == 0 and end == n) else data[p:end])
                    p = end
                    self._message_done(d, item, ts)  # type: ignore[arg-type]
                elif t is Control:
                    end = item.end  # type: ignore[union-attr]
                    s = end - item.wire_size  # type: ignore[union-attr]
                    if s > p:
                        self._data(d, data[p:s])
                    if d.ctl_stream:  # its start was forwarded from the hot path
                        d.ctl_stream = False
                        d.out.append(data[:end])
                        self.emit(self._control_event(d, item, ts, False))  # type: ignore[arg-type]
                    else:
                        if s >= 0:
                            raw = data[s:end]
                        else:
                            raw = b"".join(d.ctl) + data[:end]
                            d.ctl = []
                        self._control_done(d, item, raw, ts)  # type: ignore[arg-type]
                    p = end
                else:
                    self._decode_error(d, item, ts)  # type: ignore[arg-type]
                    self._failed(d, data[p:])
                    p = n
                    break
            if p < n and not dec.failed:
                cs = dec.partial_control_start
                if cs is None:
                    self._data(d, data if p == 0 else data[p:])
                else:
                    rel = cs - base
                    if rel > p:
                        self._data(d, data[p:rel])
                        p = rel
                    if d.ctl_stream:
                        d.out.append(data[p:])
                    else:
                        d.ctl.append(data[p:])
        if dec.mask_error is not None and not d.mask_reported:
            self._mask_error(d, ts)
        self._settle(d)
        other = self.down if d is self.up else self.up
        if other.out:
            self._collect(other)
        out = self._pull(d) if d.chain is not None else d.out
        if not out:
            return b""
        d.out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def _data(self, d: _Dir, b: bytes) -> None:
        """Bytes of the data frames of the message being received."""
        m = d.msg
        if m == _NONE:
            self._boundary(d)
            if d.dropping:
                m = _DISCARD
            elif d.queue or d.recompress or self._bps or d.whole:
                m = _HOLDBACK
            else:
                m = _STREAM
            d.msg = m
        if m == _STREAM:
            d.out.append(b)
        elif m == _HOLDBACK:
            d.parts.append(b)
            d.nparts += len(b)

    def _boundary(self, d: _Dir) -> None:
        """The output toward ``d.to`` is at a message boundary: send what waits for one,
        then switch half-open on or off."""
        if d.pending:
            for frame, ev in d.pending:
                d.out.append(frame)
                if ev is not None:
                    self._emit_injected(ev)
            d.pending = []
        if d.transition is not None:
            d.dropping = d.transition
            d.transition = None

    def _at_boundary(self, d: _Dir) -> bool:
        """Whether the output toward ``d.to`` is at a message boundary now."""
        if d.dec.failed:
            return True  # no boundaries are known any more: now is as good as ever
        if d.plain:
            return d.dec.at_message_boundary
        return d.msg != _STREAM and not d.ctl_stream

    def _send(self, d: _Dir, frame: bytes, ev: Item) -> None:
        """Send a frame built by devconsole toward ``d.to`` at the next message boundary."""
        if not d.pending and d.transition is None and self._at_boundary(d):
            d.out.append(frame)
            self._emit_injected(ev)
        else:
            d.pending.append((frame, ev))

    def _emit_injected(self, ev: Item) -> None:
        ev.seq = next(self._seq)
        ev.ts = self._now
        self.emit(ev)

    def _message_done(self, d: _Dir, item: DataMessage, ts: float) -> None:
        m = d.msg
        d.msg = _NONE
        if m == _STREAM:
            self.emit(self._message_event(d, item, ts, False))
            self._boundary(d)
            return
        if m == _DISCARD:
            self.emit(self._message_event(d, item, ts, True))
            if item.compressed and d.takeover:
                self._start_recompress(d)
            return
        parts = d.parts
        raw = parts[0] if len(parts) == 1 else b"".join(parts)
        d.parts = []
        d.nparts = 0
        ev = self._message_event(d, item, ts, False)
        dec: Decision | None = None
        if d.msg_rules:
            view = ev if len(ev.payload) == len(item.payload) else _with_payload(ev, item.payload)
            dec = decide(d.msg_rules, view, self._rule_counts, self.rng, self._whole_limit())
        keep = (
            item.payload
            if (item.compressed and d.takeover) or (dec is not None and dec.copies)
            else None
        )
        unit = _Unit(ev, raw, keep, len(raw) + (len(keep) if keep else 0) + UNIT_OVERHEAD)
        bp: _Bp | None = None
        if dec is not None:
            if self._act(d, unit, dec, ts):
                return  # dropped, answered instead, or the connection closes
            if dec.hold is not None:
                spec = Breakpoint(0, dec.rule, self.conn, dec.hold.timeout, dec.hold.on_timeout)
                bp = _Bp(spec, MATCH_ALL)
        if bp is None and self._bps:
            bp = self._match(ev, self._bps)
        if bp is not None:
            self._hold(d, unit, bp, ts)
        self.emit(ev)
        if dec is not None:
            for opcode, body in dec.respond:
                self._respond(d, opcode, body, dec.rule)
        if bp is not None:
            self._enqueue(d, unit)
        elif unit.due and dec is not None and dec.reorder:
            self._set_aside(d, unit)
        elif d.queue or unit.due:
            self._enqueue(d, unit)
        else:
            self._deliver(d, unit)

    def _control_done(self, d: _Dir, item: Control, raw: bytes, ts: float) -> None:
        if d.msg == _NONE:
            self._boundary(d)
        drop = d.dropping
        if not drop and item.opcode == Opcode.PONG and item.payload in d.swallow:
            # the peer answering a ping devconsole injected: not the other side's business
            d.swallow.discard(item.payload)
            drop = True
        ev = self._control_event(d, item, ts, drop)
        if drop:
            self.emit(ev)
            return
        unit = _Unit(ev, raw, None, len(raw) + UNIT_OVERHEAD)
        bp: _Bp | None = None
        sh = d.shape
        if sh is not None and sh.pongs and item.opcode == Opcode.PONG:
            if sh.pongs == "drop":
                ev.dropped = True
                ev.action = "pong dropped (shape)"
                self.emit(ev)
                return
            unit.due = ts + sh.pong_delay
            ev.action = f"pong delayed {format_duration(sh.pong_delay)} (shape)"
        if d.ctl_rules:
            dec = decide(d.ctl_rules, ev, self._rule_counts, self.rng)
            if dec is not None:
                if self._act(d, unit, dec, ts):
                    return
                if dec.hold is not None:
                    spec = Breakpoint(
                        0, dec.rule, self.conn, dec.hold.timeout, dec.hold.on_timeout, True
                    )
                    bp = _Bp(spec, MATCH_ALL)
        if bp is None and self._ctl_bps:
            bp = self._match(ev, self._ctl_bps)
        if bp is not None:
            self._hold(d, unit, bp, ts)
            self.emit(ev)
            self._enqueue(d, unit)
        elif d.queue and d.hold_controls:
            self.emit(ev)
            self._enqueue(d, unit)
        elif unit.due:
            self.emit(ev)
            self._set_aside(d, unit)  # control frames are not held up by data, nor hold it
        else:
            self.emit(ev)
            if item.opcode == Opcode.CLOSE and d.queue:
                # a close still closes: what waits behind a hold can never follow it
                self._drop_queue(d, ts)
            d.out.append(raw)

    def _failed(self, d: _Dir, rest: bytes) -> None:
        """The parser gave up: what was withheld and everything after goes as it is."""
        d.pending = []
        d.transition = None
        withheld = [*d.parts, *d.ctl, rest]
        d.parts = []
        d.nparts = 0
        d.ctl = []
        d.ctl_stream = False
        d.msg = _NONE
        self._raw(d, b"".join(withheld))

    def _raw(self, d: _Dir, data: bytes) -> None:
        if d.dropping or not data:
            return
        if d.queue:
            self._enqueue(d, _Unit(None, data, None, len(data) + UNIT_OVERHEAD))
        else:
            d.out.append(data)

    # ------------------------------------------------------------------ holding

    def _breakpoints_changed(self) -> None:
        self._bps = self.intercept.applicable(self.conn)
        self._ctl_bps = [b for b in self._bps if b.spec.control]
        for d in (self.up, self.down):
            if self._bps:
                self._slow(d)
            elif not d.plain:
                self._settle(d)
                self._collect(d)  # a message no longer withheld goes now

    @staticmethod
    def _match(ev: Item, bps: list[_Bp]) -> _Bp | None:
        for b in bps:
            if b.filter(ev):
                return b
        return None

    def _hold(self, d: _Dir, unit: _Unit, bp: _Bp, now: float) -> None:
        ev = unit.event
        assert ev is not None
        hid = self.intercept._new_held(self)
        spec = bp.spec
        unit.hold = _Hold(hid, spec.id, now, now + spec.timeout, spec.on_timeout, spec.control)
        ev.held = hid
        ev.breakpoint = spec.id
        self._held[hid] = (d, unit)
        heapq.heappush(self._deadlines, (unit.hold.deadline, hid))
        self._out.rearm = True
        self.out = True
        if spec.control:
            d.hold_controls += 1

    def _enqueue(self, d: _Dir, unit: _Unit) -> None:
        d.queue.append(unit)
        d.qbytes += unit.cost
        if unit.due:
            self._out.rearm = True  # the driver's clock must come back for it
            self.out = True
        if d.takeover and not d.recompress:
            # a change behind this point would need the whole payloads to re-compress
            d.dec.max_payload = self._whole_limit()

    def _held_unit(self, held: int) -> tuple[_Dir, _Unit]:
        found = self._held.get(held)
        if found is None:
            raise RelayError(f"message {held} is no longer held")
        return found

    def _resolve(
        self,
        d: _Dir,
        unit: _Unit,
        verdict: int,
        now: float,
        *,
        timeout: bool = False,
        payload: bytes | None = None,
        opcode: int = 0,
    ) -> None:
        """Decide a held unit (already taken out of ``_held``); it leaves the queue when it
        reaches its head."""
        h = unit.hold
        ev = unit.event
        assert h is not None and ev is not None
        h.verdict = verdict
        if self.intercept.held.get(h.id) is self:
            del self.intercept.held[h.id]
        if h.control:
            d.hold_controls -= 1
        if verdict == _DROP:
            outcome = Outcome.TIMEOUT_DROPPED if timeout else Outcome.DROPPED
        elif payload is not None:
            h.body = payload
            h.opcode = opcode or ev.opcode
            outcome = Outcome.EDITED
        else:
            outcome = Outcome.TIMEOUT_FORWARDED if timeout else Outcome.FORWARDED
        edited = h.body
        self.emit(
            OutcomeEvent(
                self.conn,
                now,
                ev.seq,
                h.id,
                outcome,
                h.opcode if edited is not None else 0,
                edited[: self.max_payload] if edited is not None else None,
                len(edited) if edited is not None else 0,
            )
        )

    def _drop_queue(self, d: _Dir, now: float) -> None:
        """Everything queued in ``d`` is dropped (the connection closes or goes half-open);
        held messages get the outcome "dropped"."""
        if d.timed:
            for _, _, unit in d.timed:
                self._discarded(d, unit)
            d.timed = []
        if not d.queue:
            return
        for unit in d.queue:
            h = unit.hold
            if h is not None and h.verdict == 0:
                self._held.pop(h.id, None)
                self._resolve(d, unit, _DROP, now)
        d.queue.clear()
        d.qbytes = 0
        d.hold_controls = 0

    def _drain(self, d: _Dir) -> None:
        q = d.queue
        while q:
            u = q[0]
            h = u.hold
            if h is not None and h.verdict == 0:
                return
            if u.due > self._now and (h is None or h.verdict != _DROP):
                return  # delayed (rules): what follows waits behind it
            q.popleft()
            d.qbytes -= u.cost
            if h is not None and h.verdict == _DROP:
                self._discarded(d, u)
            else:
                self._deliver(d, u)

    # ------------------------------------------------------------------ output

    def _deliver(self, d: _Dir, unit: _Unit) -> None:
        """Write a unit toward ``d.to`` (in stream order)."""
        d.out.extend(self._unit_bytes(d, unit))

    def _unit_bytes(self, d: _Dir, unit: _Unit) -> list[bytes]:
        """A unit's bytes toward ``d.to``: as received, or re-framed when something changes
        (an edit, re-compression, re-fragmenting), then its duplicates."""
        ev = unit.event
        if ev is None or type(ev) is ControlFrame:
            h = unit.hold
            if h is not None and h.body is not None and ev is not None:
                return [build_frame(h.opcode, h.body, mask=d.to == SERVER)]
            return [unit.raw]
        assert type(ev) is Message
        h = unit.hold
        body = h.body if h is not None and h.body is not None else unit.edit
        opcode = (
            h.opcode if h is not None and h.body is not None else unit.edit_opcode
        ) or ev.opcode
        out: list[bytes] = []
        if body is not None:
            if ev.compressed and d.takeover and not d.recompress:
                self._start_recompress(d)
            out.append(self._frame(d, opcode, body))
            if h is not None and h.body is not None:
                for op, data in h.more or ():  # a decoded edit's further frames
                    frame = self._frame(d, op, data)
                    out.append(frame)
                    self._emit_injected(self._injected_message(d, op, data, len(frame)))
        elif d.recompress and ev.compressed:
            payload = unit.payload
            if payload is None or len(payload) < ev.size:
                self._cannot_recompress(d, ev.size)
                return []
            out.append(self._frame(d, ev.opcode, payload))
        elif d.shape is not None and d.shape.fragment:
            op, rsv, data = wire_payload(unit.raw)
            out.append(fragment(op, data, d.shape.fragment, rsv=rsv, mask=d.to == SERVER))
        else:
            out.append(unit.raw)
        if unit.copies:
            copy = body if body is not None else unit.payload
            if copy is None and not ev.compressed:
                copy = wire_payload(unit.raw)[2]
            if copy is not None and len(copy) >= ev.size:
                for _ in range(unit.copies):
                    frame = self._frame(d, opcode, copy)
                    out.append(frame)
                    self._emit_injected(
                        Message(
                            0,
                            self.conn,
                            0.0,
                            d.side,
                            opcode,
                            copy[: self.max_payload],
                            len(copy),
                            len(frame),
                            injected=True,
                            rule=unit.rule,
                            action="duplicate",
                        )
                    )
        return out

    def _deliver_late(self, d: _Dir, unit: _Unit) -> None:
        """A unit set aside (``_set_aside``) is due: it goes at the next message boundary,
        ahead of what waits behind a hold."""
        if d.dropping or self.killing:
            self._discarded(d, unit)
            return
        parts = self._unit_bytes(d, unit)
        if not parts:
            return
        if not d.pending and d.transition is None and self._at_boundary(d):
            d.out.extend(parts)
        else:
            d.pending.append((b"".join(parts), None))

    def _set_aside(self, d: _Dir, unit: _Unit) -> None:
        """Send ``unit`` at ``unit.due`` out of line: what comes after it may go first."""
        ev = unit.event
        if type(ev) is Message and ev.compressed and d.takeover and not d.recompress:
            self._start_recompress(d)  # the receiver's window would see them out of order
        heapq.heappush(d.timed, (unit.due, next(self._timed_n), unit))
        self._out.rearm = True
        self.out = True

    # ------------------------------------------------------------------ rules

    def _whole_limit(self) -> int:
        return max(self.max_payload, self.intercept.hold_bytes)

    def _act(self, d: _Dir, unit: _Unit, dec: Decision, now: float) -> bool:
        """Carry out what matched rules decided for a unit (its event not emitted yet).
        True: the unit is gone (dropped, answered instead, or the connection closes)."""
        ev = unit.event
        assert ev is not None
        ev.rule = unit.rule = dec.rule
        ev.action = dec.action
        if dec.body is not None and type(ev) is Message:
            unit.edit = dec.body
            unit.edit_opcode = dec.opcode
            ev.outcome = Outcome.EDITED
            ev.edited = dec.body[: self.max_payload]
            ev.edited_opcode = dec.opcode
            ev.edited_size = len(dec.body)
        for to, shape in dec.shape:
            self._shapes[to] = shape
            self._shape_src[to] = f"rule {dec.rule}"
        if dec.shape:
            self._reshape(now, f"rule {dec.rule}")
        if dec.drop or dec.close is not None:
            ev.dropped = True
            ev.outcome = Outcome.DROPPED
            self.emit(ev)
            self._discarded(d, unit)
            for opcode, body in dec.respond:
                self._respond(d, opcode, body, dec.rule)
            if dec.close is not None and not self.killing:
                c = dec.close
                self.emit(RuleEvent(self.conn, now, dec.rule, "close", f"{c.code} {c.reason}"))
                self._out_merge(self.close(c.code, c.reason, c.to, now))
            return True
        if dec.delay:
            unit.due = now + dec.delay
        unit.copies = dec.copies
        return False

    def _respond(self, d: _Dir, opcode: int, body: bytes, rule: str) -> None:
        """A message back to the peer that sent on ``d`` (as if from the other one)."""
        back = self.down if d is self.up else self.up
        if self.killing or back.dropping or back.dec.failed or self.state == ConnState.HALF_OPEN:
            return
        self._slow(back)
        frame = self._frame(back, opcode, body)
        ev = Message(
            0, self.conn, 0.0, back.side, opcode, body[: self.max_payload], len(body),
            len(frame), injected=True, rule=rule, action="respond",
        )  # fmt: skip
        self._send(back, frame, ev)
        self._settle(back)

    def _rules_changed(self, now: float) -> None:
        rules = self.intercept.rules.for_connection(self.url, self.path)
        for d in (self.up, self.down):
            mine = [r for r in rules if r.side is None or r.side == d.side]
            d.msg_rules = [r for r in mine if not r.control]
            d.ctl_rules = [r for r in mine if r.control]
        self._reshape(now, "rules")
        for d in (self.up, self.down):
            self._update_whole(d)

    def _update_whole(self, d: _Dir) -> None:
        d.whole = bool(d.msg_rules) or (d.shape is not None and bool(d.shape.fragment))
        if d.whole or d.ctl_rules or d.shape is not None or d.timed:
            self._slow(d)
        d.dec.max_payload = self._payload_limit(d)
        if not d.plain:
            self._settle(d)
            self._collect(d)

    def _payload_limit(self, d: _Dir) -> int:
        """How much of a message's payload the parser keeps: all of it (up to the hold
        bound) when a stage may have to re-frame it."""
        if d.whole or d.recompress or (d.queue and d.takeover):
            return self._whole_limit()
        return self.max_payload

    # ------------------------------------------------------------------ shaping

    def shape(self, to: str, shape: Shape | None, now: float, source: str = "cli") -> Output:
        """Set the network conditions of the bytes delivered to ``to`` (client, server,
        both) on this connection. None removes them: the conditions of its endpoint (a
        rules file's ``[[shape]]``, ``shape --path``), if any, apply again; an empty Shape
        means none at all."""
        self._now = now
        if to not in (CLIENT, SERVER, "both"):
            raise RelayError(f"shape to client, server or both, not {to!r}")
        if self.killing or self.ended:
            raise RelayError(f"connection {self.conn} is being closed")
        if shape is not None:
            try:
                check_shape(shape)
            except ShapeError as e:
                raise RelayError(str(e)) from None
        for t in (CLIENT, SERVER) if to == "both" else (to,):
            if shape is None:
                self._shapes.pop(t, None)
                self._shape_src.pop(t, None)
            else:
                self._shapes[t] = shape
                self._shape_src[t] = source
        self._reshape(now, source)
        return self.take()

    @property
    def shapes(self) -> dict[str, Shape]:
        """The conditions in effect, by the peer the bytes go to."""
        return {d.to: d.shape for d in (self.up, self.down) if d.shape is not None}

    def _effective_shape(self, to: Side) -> Shape | None:
        """This connection's own conditions, else its endpoint's (rules file, then
        ``shape --path``; the last that matches wins)."""
        s = self._shapes.get(to)
        if s is None:
            rules = self.intercept.rules
            if rules.shapes:
                found = rules.shapes_for(self.url, self.path).get(to)
                if found is not None:
                    s = found[0]
            for glob, t, sh in self.intercept.endpoint_shapes:
                if t == to and fnmatch.fnmatchcase(self.path or "/", glob):
                    s = sh
        return None if s is None or s.empty else s

    def _reshape(self, now: float, source: str) -> None:
        self._now = now
        changed = False
        for d in (self.up, self.down):
            new = self._effective_shape(d.to)
            if new == d.shape:
                continue
            changed = True
            self._set_shape(d, new)
        if changed and not self.ended:
            self.emit(ShapeEvent(self.conn, now, dict(self.shapes), source))

    def _set_shape(self, d: _Dir, shape: Shape | None) -> None:
        old = d.chain
        d.shape = shape
        new = chain_for(shape, self.rng) if shape is not None else None
        if old is not None and old.pending:
            # what the old conditions held goes first, through the new ones
            left = old.drain()
            if new is not None:
                for b in left:
                    new.push(b, self._now)
            else:
                d.out[:0] = left
        d.chain = new
        self._update_whole(d)
        if d.plain and d.out:
            self._collect(d)
        self._pressure(d)

    def _discarded(self, d: _Dir, unit: _Unit) -> None:
        ev = unit.event
        if type(ev) is Message and ev.compressed and d.takeover and not d.recompress:
            self._start_recompress(d)

    def _frame(self, d: _Dir, opcode: int, payload: bytes) -> bytes:
        """A data message built by devconsole toward ``d.to``: compressed with our own
        context once we re-compress, re-fragmented when the conditions say so."""
        mask = d.to == SERVER
        c = d.compressor
        rsv = 0
        if c is not None:
            payload = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
            if payload.endswith(b"\x00\x00\xff\xff"):
                payload = payload[:-4]
            rsv = 4
        size = d.shape.fragment if d.shape is not None else 0
        if size:
            return fragment(opcode, payload, size, rsv=rsv, mask=mask)
        return build_frame(opcode, payload, rsv=rsv, mask=mask)

    def _start_recompress(self, d: _Dir) -> None:
        """From now on the receiver's inflate context is ours to keep right."""
        d.recompress = True
        if d.wbits >= 9:  # zlib cannot deflate with an 8-bit window: send uncompressed then
            d.compressor = zlib.compressobj(6, zlib.DEFLATED, -d.wbits)
        d.dec.max_payload = self._whole_limit()

    def _cannot_recompress(self, d: _Dir, size: int) -> None:
        """A message too large to keep whole cannot be re-compressed: close the connection
        rather than corrupt the receiver's stream."""
        self.emit(
            ProtocolErrorEvent(
                self.conn,
                self._now,
                d.side,
                d.dec.offset,
                f"message of {size} bytes is too large for devconsole to re-compress "
                f"(limit {self.intercept.hold_bytes}); closing the connection",
            )
        )
        if not self.killing:
            self._out_merge(self.close(1009, "message too big to re-compress", "both", self._now))

    def _out_merge(self, other: Output) -> None:
        o = self._out
        o.to_client.extend(other.to_client)
        o.to_server.extend(other.to_server)
        o.end = other.end or o.end
        o.rearm = o.rearm or other.rearm
        self.out = bool(o)
        o.pause.extend(other.pause)
        o.resume.extend(other.resume)

    def _collect(self, d: _Dir) -> None:
        if d.out or d.chain is not None:
            got = self._pull(d)
            if got:
                (self._out.to_client if d.to == CLIENT else self._out.to_server).extend(got)
                self.out = True

    def _pull(self, d: _Dir) -> list[bytes]:
        """The bytes for ``d.to`` that may be written now: all of ``d.out``, or what the
        network conditions let through by now (the rest waits in ``d.chain``)."""
        out = d.out
        d.out = []
        c = d.chain
        if c is None:
            return out
        now = self._now
        for b in out:
            c.push(b, now)
        got = c.pop(now)
        if c.pending:
            self._out.rearm = True
            self.out = True
        return got

    def _pressure(self, d: _Dir) -> None:
        """Stop reading the sender while too much waits for the receiver (held messages,
        bytes the conditions hold back) or while the direction is stalled; read again at
        half."""
        limit = self.intercept.hold_bytes
        used = d.qbytes + d.nparts
        shaped = d.chain.pending if d.chain is not None else 0
        stalled = d.shape is not None and d.shape.stall
        if not d.paused:
            if (used > limit and d.queue) or shaped > SHAPE_BUFFER or stalled:
                d.paused = True
                self._out.pause.append(d.side)
                self.out = True
        elif (used <= limit // 2 or not d.queue) and shaped <= SHAPE_BUFFER // 2 and not stalled:
            d.paused = False
            self._out.resume.append(d.side)
            self.out = True

    def _settle(self, d: _Dir) -> None:
        """After every step: release what may go, apply backpressure, and return to the hot
        path when nothing is left to do."""
        if d.queue:
            self._drain(d)
        limit = self.intercept.hold_bytes
        if (
            d.msg == _HOLDBACK
            and not d.queue
            and not d.recompress
            and ((not self._bps and not d.whole) or d.nparts > limit)
        ):
            # no reason (any more) to see the whole message first, or too large to hold
            d.out.extend(d.parts)
            d.parts = []
            d.nparts = 0
            d.msg = _STREAM
        if d.msg == _HOLDBACK and d.recompress and not d.queue and d.nparts > limit:
            size = d.nparts
            d.parts = []
            d.nparts = 0
            d.msg = _DISCARD
            self._cannot_recompress(d, size)
        self._pressure(d)
        if (d.pending or d.transition is not None) and self._at_boundary(d):
            self._boundary(d)
        if not d.queue and d.takeover and not d.recompress and not d.whole:
            d.dec.max_payload = self.max_payload
        if (
            not d.plain
            and not d.queue
            and not d.whole
            and not d.ctl_rules
            and d.shape is None
            and d.chain is None
            and not d.timed
            and not d.paused
            and not d.pending
            and d.transition is None
            and not d.dropping
            and not d.swallow
            and not d.recompress
            and not self._bps
            and not self.killing
            and d.msg in (_NONE, _STREAM)
            and not d.ctl
        ):
            d.plain = True
            d.ctl_stream = False


def _with_payload(ev: Message, payload: bytes) -> Message:
    """``ev`` seeing the whole payload (rules match and rewrite all of it)."""
    return dataclasses.replace(ev, payload=payload)
