"""The data model shared by every layer: connections, messages, control frames and Events.

Core module: no I/O, imports neither mitmproxy, textual, rich nor asyncio.

A ``Connection`` is everything known about one WebSocket connection; a ``Session``
(``devconsole.session``) keeps them up to date as it applies Events.

Everything that crosses the tap (proxy process -> TUI / CLI) is an *Event*: a small
dataclass with ``__slots__``. The capture addon creates them, the tap serialises them
(``devconsole.wire``), and a ``Session`` applies them. Commands travel the other way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal


class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        return self >= 0x8


# Direction of a frame: who sent it.
CLIENT: Literal["client"] = "client"
SERVER: Literal["server"] = "server"
Side = Literal["client", "server"]


class ConnState(enum.StrEnum):
    CONNECTING = "connecting"  # upgrade request seen, no response yet
    OPEN = "open"
    CLOSING = "closing"  # a close frame was seen in one direction
    CLOSED = "closed"
    KILLED = "killed"  # ended by a devconsole fault (close code injected / abort)
    HALF_OPEN = "half-open"  # devconsole forwards nothing, both sockets open
    REFUSED = "refused"  # the upgrade got a non-101 answer


@dataclass(slots=True)
class Handshake:
    """The HTTP upgrade exchange of one connection (or a refused upgrade)."""

    conn: str
    ts: float  # request start
    client: str  # "ip:port"
    server: str  # "host:port" of the upstream server
    scheme: str  # "ws" or "wss"
    url: str  # ws://host/path?query (scheme follows the client side TLS)
    method: str
    path: str  # path without the query
    query: list[tuple[str, str]]
    http_version: str
    request_headers: list[tuple[str, str]]  # in order, duplicates kept
    cookies: list[tuple[str, str]]
    status: int | None = None
    reason: str = ""
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    subprotocol: str | None = None  # as accepted by the server
    extensions: list[str] = field(default_factory=list)  # as accepted by the server
    ts_response: float | None = None
    body: bytes = b""  # the response body of a refused upgrade (first few KiB)
    body_size: int = 0  # its true size
    error: str | None = None  # e.g. the server could not be reached
    # Read from a format that records less than devconsole (a HAR file): where it came
    # from ("har:chrome", ...; "" = captured by devconsole) and what it does not carry
    # ("control frames", "fragmentation", "close", ...), which is unknown, not absent.
    source: str = ""
    unknown: list[str] = field(default_factory=list)
    decoder: str | None = None  # the proxy's --decoder choice for this path (docs/protocols.md)
    # HTTP requests that belong with this upgrade and came before it: the Engine.IO
    # long-polling handshake of a Socket.IO connection that then upgraded (same sid)
    preceding: list[HttpExchange] = field(default_factory=list)

    def request_header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.request_headers:
            if k.lower() == lname:
                return v
        return None

    def response_header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.response_headers:
            if k.lower() == lname:
                return v
        return None

    @property
    def requested_subprotocols(self) -> list[str]:
        return _split_header_values(self.request_headers, "sec-websocket-protocol")

    @property
    def requested_extensions(self) -> list[str]:
        return _split_header_values(self.request_headers, "sec-websocket-extensions")


@dataclass(slots=True)
class HttpExchange:
    """One plain HTTP request and its response, kept beside an upgrade it belongs with
    (``Handshake.preceding``). Bodies are the first few hundred bytes."""

    ts: float
    method: str
    target: str  # path?query
    status: int | None
    request_body: bytes = b""
    response_body: bytes = b""
    request_size: int = 0  # true sizes
    response_size: int = 0
    ts_response: float | None = None


def _split_header_values(headers: list[tuple[str, str]], name: str) -> list[str]:
    out: list[str] = []
    for k, v in headers:
        if k.lower() == name:
            out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


@dataclass(slots=True)
class Shape:
    """Network conditions on the bytes delivered to one peer (docs/shaping.md). Zero/empty
    fields are off."""

    latency: float = 0.0  # seconds added to every byte
    jitter: float = 0.0  # +- seconds around ``latency`` (uniform; order is kept)
    rate: float = 0.0  # bytes per second
    slice: int = 0  # bytes per TCP write
    slice_delay: float = 0.0  # seconds between two slices
    fragment: int = 0  # payload bytes per frame: data messages re-fragmented
    stall: bool = False  # stop reading the sending peer (TCP backpressure)
    pongs: str = ""  # "drop" or "delay"
    pong_delay: float = 0.0  # with pongs="delay"

    @property
    def empty(self) -> bool:
        return self == Shape()

    def to_dict(self) -> dict[str, float | int | bool | str]:
        """The conditions that are on (``conns --json``)."""
        out: dict[str, float | int | bool | str] = {}
        for name in SHAPE_FIELDS:
            v = getattr(self, name)
            if v:
                out[name] = v
        return out


SHAPE_FIELDS = (
    "latency",
    "jitter",
    "rate",
    "slice",
    "slice_delay",
    "fragment",
    "stall",
    "pongs",
    "pong_delay",
)


@dataclass(slots=True)
class Connection:
    """Everything known about one WebSocket connection (or refused upgrade)."""

    id: str
    handshake: Handshake
    state: str = ConnState.OPEN
    msgs_in: int = 0  # server -> client
    msgs_out: int = 0  # client -> server
    bytes_in: int = 0  # payload bytes
    bytes_out: int = 0
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str | None = None  # "client", "server", "proxy"
    ts_end: float | None = None
    clean: bool | None = None
    last_in: float | None = None  # ts of the last frame server -> client
    last_out: float | None = None
    largest_message: int = 0
    injected: int = 0
    dropped: int = 0
    errors: list[str] = field(default_factory=list)  # protocol errors, one per direction
    half_open: bool = False
    # network conditions in effect (docs/shaping.md), by the peer the bytes go to
    shape: dict[str, Shape] = field(default_factory=dict)

    @property
    def ts_start(self) -> float:
        return self.handshake.ts

    @property
    def client(self) -> str:
        return self.handshake.client

    @property
    def url(self) -> str:
        return self.handshake.url

    @property
    def path(self) -> str:
        return self.handshake.path

    @property
    def refused(self) -> bool:
        return self.state == ConnState.REFUSED

    @property
    def live(self) -> bool:
        return self.ts_end is None and self.state not in (ConnState.REFUSED, ConnState.CLOSED)

    @property
    def killed(self) -> bool:
        """Ended (or being ended) by a devconsole fault. Its ``close_code`` is then the code
        of the close frame devconsole sent (None for an abort): the Session records it when
        that frame arrives, after the kill's StateEvent."""
        return self.state == ConnState.KILLED or self.closed_by == "proxy"

    def snapshot(self) -> ConnSnapshot:
        return ConnSnapshot(
            handshake=self.handshake,
            state=self.state,
            msgs_in=self.msgs_in,
            msgs_out=self.msgs_out,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            close_code=self.close_code,
            close_reason=self.close_reason,
            closed_by=self.closed_by,
            ts_end=self.ts_end,
            clean=self.clean,
            errors=list(self.errors),
            half_open=self.half_open,
            largest_message=self.largest_message,
            injected=self.injected,
            dropped=self.dropped,
            shape=dict(self.shape),
        )

    @classmethod
    def from_snapshot(cls, s: ConnSnapshot) -> Connection:
        return cls(
            id=s.handshake.conn,
            handshake=s.handshake,
            state=s.state,
            msgs_in=s.msgs_in,
            msgs_out=s.msgs_out,
            bytes_in=s.bytes_in,
            bytes_out=s.bytes_out,
            close_code=s.close_code,
            close_reason=s.close_reason,
            closed_by=s.closed_by,
            ts_end=s.ts_end,
            clean=s.clean,
            errors=list(s.errors),
            half_open=s.half_open,
            largest_message=s.largest_message,
            injected=s.injected,
            dropped=s.dropped,
            shape=dict(s.shape),
        )


# --------------------------------------------------------------------------- Events


@dataclass(slots=True)
class HandshakeEvent:
    """A 101 upgrade: a WebSocket connection opens."""

    handshake: Handshake


@dataclass(slots=True)
class RefusedEvent:
    """An upgrade request answered with anything but 101 (401, 403, 426, 200, 502...)."""

    handshake: Handshake


@dataclass(slots=True)
class Message:
    """One data message (text or binary), assembled from one or more frames."""

    seq: int
    conn: str
    ts: float
    side: Side  # who sent it
    opcode: int  # Opcode.TEXT or Opcode.BINARY
    payload: bytes  # decoded (inflated, unmasked); possibly truncated, see ``size``
    size: int  # true decoded payload size
    wire_size: int  # bytes on the wire, frame headers included
    frames: int = 1
    compressed: bool = False
    rsv: int = 0  # RSV bits of the first frame (rsv1<<2 | rsv2<<1 | rsv3)
    utf8_ok: bool = True  # False: a text message whose payload is not valid UTF-8
    injected: bool = False  # built and sent by devconsole
    dropped: bool = False  # captured but not forwarded (half-open)
    frame_sizes: tuple[int, ...] = ()  # payload size of each frame when frames > 1
    # intercept (docs/intercept.md): set when a breakpoint held the message
    held: int = 0  # the held message's id (0: never held)
    breakpoint: int = 0  # the breakpoint that held it
    outcome: str = ""  # an Outcome value once it is no longer held
    edited: bytes | None = None  # the body sent instead (outcome "edited"), maybe truncated
    edited_opcode: int = 0
    edited_size: int = 0  # true size of the edited body
    # rules (docs/rules.md): the rules that acted on it and what they did ("delay 0.3s")
    rule: str = ""
    action: str = ""

    @property
    def truncated(self) -> bool:
        return len(self.payload) < self.size

    @property
    def is_text(self) -> bool:
        return self.opcode == Opcode.TEXT

    @property
    def on_hold(self) -> bool:
        """Held by a breakpoint and not forwarded or dropped yet."""
        return bool(self.held) and not self.outcome


@dataclass(slots=True)
class ControlFrame:
    """A ping, pong or close frame (possibly interleaved inside a fragmented message)."""

    seq: int
    conn: str
    ts: float
    side: Side
    opcode: int  # Opcode.PING / PONG / CLOSE
    payload: bytes
    wire_size: int
    code: int | None = None  # close frames
    reason: str = ""  # close frames
    injected: bool = False
    dropped: bool = False
    error: str | None = None  # e.g. a close frame with an invalid code
    held: int = 0  # see Message
    breakpoint: int = 0
    outcome: str = ""
    rule: str = ""  # see Message
    action: str = ""

    @property
    def size(self) -> int:
        return len(self.payload)

    @property
    def on_hold(self) -> bool:
        return bool(self.held) and not self.outcome


Item = Message | ControlFrame  # what the stream shows, each with a global seq


@dataclass(slots=True)
class EndEvent:
    """The TCP connection(s) of a WebSocket connection are gone."""

    conn: str
    ts: float
    clean: bool  # a close frame was exchanged before the TCP end
    closed_by: Side | Literal["proxy"] | None  # who sent the first close frame / killed it
    error: str | None = None


@dataclass(slots=True)
class ProtocolErrorEvent:
    """The frame parser gave up on one direction of a connection. Forwarding is unaffected."""

    conn: str
    ts: float
    side: Side
    offset: int  # byte offset in that direction's stream
    error: str


@dataclass(slots=True)
class StateEvent:
    """A fault changed a connection's state (half-open, released, killed)."""

    conn: str
    ts: float
    state: str  # a ConnState value
    detail: str = ""


@dataclass(slots=True)
class GapEvent:
    """Events this client did not receive: evicted before a late attach, or skipped by a
    slow client. ``missed`` counts events. ``instance``: the proxy instance they came from
    (a Redis source; "" otherwise)."""

    missed: int
    reason: str
    instance: str = ""


@dataclass(slots=True)
class ConnSnapshot:
    """The proxy's view of one connection when a tap client attaches: handshake, state and
    counters up to ``Snapshot.seq``."""

    handshake: Handshake
    state: str
    msgs_in: int  # server -> client
    msgs_out: int  # client -> server
    bytes_in: int
    bytes_out: int
    close_code: int | None
    close_reason: str
    closed_by: str | None
    ts_end: float | None
    clean: bool | None = None
    errors: list[str] = field(default_factory=list)
    half_open: bool = False
    largest_message: int = 0
    injected: int = 0
    dropped: int = 0
    shape: dict[str, Shape] = field(default_factory=dict)  # see Connection.shape


@dataclass(slots=True)
class Snapshot:
    """First event a tap client receives: every known connection, and the seq the counters
    include. Buffered events follow; counters are not incremented for seq <= ``seq``."""

    seq: int
    connections: list[ConnSnapshot]
    proxy: str  # listen address(es) of the proxy, for display
    evicted_messages: int  # how many the proxy's ring buffer evicted so far
    breakpoints: list[Breakpoint] = field(default_factory=list)
    held: list[Item] = field(default_factory=list)  # messages held now (maybe evicted)


@dataclass(slots=True)
class OutcomeEvent:
    """A held message was forwarded (maybe edited) or dropped. ``seq`` is the message's."""

    conn: str
    ts: float
    seq: int
    held: int  # the held message's id
    outcome: str  # an Outcome value
    opcode: int = 0  # of the edited body
    body: bytes | None = None  # the edited body (outcome "edited"), maybe truncated
    size: int = 0  # its true size


@dataclass(slots=True)
class BreakpointsEvent:
    """The proxy's breakpoints changed: all of them, as they are now."""

    breakpoints: list[Breakpoint]


@dataclass(slots=True)
class Breakpoint:
    """Hold data messages that match ``filter`` (docs/intercept.md)."""

    id: int
    filter: str  # a filter expression (docs/filters.md)
    conn: str = ""  # only this connection ("": every connection)
    timeout: float = 120.0  # seconds a message stays held before ``on_timeout``
    on_timeout: str = "forward"  # "forward" or "drop"
    control: bool = False  # hold matching control frames too, and queue them behind
    enabled: bool = True
    # the proxy instance it is on, in a merged view over Redis (set by the viewer, not on
    # the wire); its id is then shown and accepted as INSTANCE/ID (``ref``)
    instance: str = ""

    @property
    def ref(self) -> str:
        return f"{self.instance}{INSTANCE_SEP}{self.id}" if self.instance else str(self.id)


class Outcome(enum.StrEnum):
    """What became of a held message."""

    FORWARDED = "forwarded"
    EDITED = "edited"
    DROPPED = "dropped"
    TIMEOUT_FORWARDED = "timeout-forwarded"
    TIMEOUT_DROPPED = "timeout-dropped"
    # said by a merged view over Redis, never by a proxy: the instance holding it died or
    # went quiet (docs/scale.md); shown as held again if that instance comes back with it
    LOST = "lost"


@dataclass(slots=True)
class Publication(Message):
    """A message the app published on its Redis pub/sub backplane, recorded by a proxy run
    with ``--backplane``: ``conn`` is the pseudo-connection of the channel pattern that
    matched, ``side`` is "server" (Redis -> subscriber), the payload is the published one."""

    channel: str = ""


@dataclass(slots=True)
class InstanceEvent:
    """A proxy instance publishing to a Redis stream appeared, went quiet or stopped.
    ``state`` is "up", "gone" (no heartbeat) or "stopped" (it said goodbye)."""

    name: str
    ts: float
    state: str
    detail: str = ""


@dataclass(slots=True)
class BacklogEnd:
    """The backlog a tap client attached to is all sent (the Snapshot and the buffered
    events): what follows is live. One-shot viewers (``conns``, ``report``) stop here
    instead of waiting for a quiet moment, which a flood never has. Sent only to a viewer
    that asks for it in its hello (``"backlog_end": true``); not written to capture
    files."""

    seq: int  # the Snapshot's seq: the newest item of the backlog


@dataclass(slots=True)
class RuleEvent:
    """A rule did something that no message shows (docs/rules.md): a handshake changed
    or refused, a connection closed or shaped; or (``conn`` "") the rules file was
    loaded (``action`` "loaded", ``detail`` the rule names) or rejected ("error")."""

    conn: str
    ts: float
    rule: str
    action: str
    detail: str = ""


@dataclass(slots=True)
class ShapeEvent:
    """A connection's network conditions changed: all of them, as they are now (an empty
    dict: none). Keys are the peer the bytes go to: "client", "server"."""

    conn: str
    ts: float
    shape: dict[str, Shape]
    source: str = ""  # "cli", "rule NAME", "endpoint PATH"


Event = (
    HandshakeEvent
    | RefusedEvent
    | Message
    | ControlFrame
    | EndEvent
    | ProtocolErrorEvent
    | StateEvent
    | GapEvent
    | Snapshot
    | InstanceEvent
    | OutcomeEvent
    | BreakpointsEvent
    | BacklogEnd
    | RuleEvent
    | ShapeEvent
)


# --------------------------------------------------------------------------- Commands


@dataclass(slots=True)
class CloseCommand:
    """Send close frames with ``code`` and ``reason`` to ``to``, then end the connection."""

    conn: str
    code: int
    reason: str = ""
    to: Literal["client", "server", "both"] = "both"
    id: int = 0


@dataclass(slots=True)
class AbortCommand:
    """Drop both TCP connections at once, with no close frame; ``rst`` sends a TCP reset."""

    conn: str
    rst: bool = False
    id: int = 0


@dataclass(slots=True)
class HalfOpenCommand:
    """Forward nothing in either direction while both sockets stay open."""

    conn: str
    id: int = 0


@dataclass(slots=True)
class ReleaseCommand:
    """End half-open: traffic flows again."""

    conn: str
    id: int = 0


@dataclass(slots=True)
class InjectCommand:
    """Send a message or ping built by devconsole to ``to``, at a frame boundary."""

    conn: str
    to: Side
    opcode: int  # TEXT, BINARY or PING
    payload: bytes
    id: int = 0


@dataclass(slots=True)
class BreakpointCommand:
    """Add a breakpoint; the result's ``info`` is its id."""

    filter: str
    conn: str = ""
    timeout: float = 120.0
    on_timeout: str = "forward"
    control: bool = False
    id: int = 0


@dataclass(slots=True)
class RemoveBreakpointCommand:
    """Remove breakpoint ``breakpoint`` (0: all of them). Held messages stay held."""

    breakpoint: int
    id: int = 0
    # viewer-side only, never sent to a proxy: in a merged view over Redis, the instance
    # whose id this is (INSTANCE/ID); the Redis source sends the command there
    instance: str = ""


@dataclass(slots=True)
class EnableBreakpointCommand:
    breakpoint: int
    enabled: bool = True
    id: int = 0
    # viewer-side only, never sent to a proxy: in a merged view over Redis, the instance
    # whose id this is (INSTANCE/ID); the Redis source sends the command there
    instance: str = ""


@dataclass(slots=True)
class ForwardCommand:
    """Forward held message ``held`` (0: every held message, of ``conn`` if set), as it is
    or with ``payload`` instead (``opcode`` 0 keeps the original's). ``more``: messages
    (opcode, payload) sent right after the edited one, before anything queued behind it
    (a Socket.IO event edited in its decoded form: its binary attachments)."""

    held: int
    conn: str = ""
    payload: bytes | None = None
    opcode: int = 0
    id: int = 0
    more: list[tuple[int, bytes]] = field(default_factory=list)
    # viewer-side only, never sent to a proxy: in a merged view over Redis, the instance
    # whose id this is (INSTANCE/ID); the Redis source sends the command there
    instance: str = ""


@dataclass(slots=True)
class DropCommand:
    """Drop held message ``held`` (0: every held message, of ``conn`` if set)."""

    held: int
    conn: str = ""
    id: int = 0
    # viewer-side only, never sent to a proxy: in a merged view over Redis, the instance
    # whose id this is (INSTANCE/ID); the Redis source sends the command there
    instance: str = ""


@dataclass(slots=True)
class ShapeCommand:
    """Set (or with ``clear``, remove) the network conditions of the bytes delivered to
    ``to`` on connection ``conn``; or, with ``path`` (a glob) instead of ``conn``, on every
    connection of that endpoint, now and later."""

    conn: str
    to: Literal["client", "server", "both"] = "both"
    shape: Shape = field(default_factory=Shape)
    clear: bool = False
    path: str = ""
    id: int = 0


@dataclass(slots=True)
class RulesCommand:
    """Replace the proxy's rules with those of ``text`` (a rules file; "" removes them).
    ``path`` names it in messages. The result's error has the line and column."""

    text: str
    path: str = ""
    id: int = 0


Command = (
    CloseCommand
    | AbortCommand
    | HalfOpenCommand
    | ReleaseCommand
    | InjectCommand
    | BreakpointCommand
    | RemoveBreakpointCommand
    | EnableBreakpointCommand
    | ForwardCommand
    | DropCommand
    | ShapeCommand
    | RulesCommand
)


@dataclass(slots=True)
class CommandResult:
    """The addon's answer to a Command with the same ``id``."""

    id: int
    ok: bool
    error: str = ""
    info: str = ""  # e.g. the id of a new breakpoint, how many held messages were released


# Connection ids of a merged view (many proxies over Redis) are "INSTANCE/ID".
INSTANCE_SEP = "/"


def split_conn(conn: str) -> tuple[str, str]:
    """``("app-1", "3")`` for "app-1/3"; ``("", "3")`` for a plain proxy id."""
    inst, sep, cid = conn.rpartition(INSTANCE_SEP)
    return (inst, cid) if sep else ("", conn)


def conn_instance(conn: str) -> str:
    """The instance part of a connection id ("" for a plain proxy id)."""
    return conn.rpartition(INSTANCE_SEP)[0]


def held_ref(conn: str, held: int) -> str:
    """How a viewer names held message ``held`` of connection ``conn``: "7", or "app-1/7"
    in a merged view (held ids, like connection ids, are the proxy's own)."""
    inst = conn_instance(conn)
    return f"{inst}{INSTANCE_SEP}{held}" if inst else str(held)


def held_key(conn: str, held: int) -> int | str:
    """The key of a held message in ``Session.held``: its id, or "INSTANCE/ID" in a merged
    view, where two instances may hold messages with the same id."""
    return held_ref(conn, held) if INSTANCE_SEP in conn else held


def parse_ref(ref: str) -> tuple[str, int]:
    """``("app-1", 7)`` for "app-1/7", ``("", 7)`` for "7" (a held message or breakpoint
    id); raises ValueError."""
    inst, _, num = ref.strip().rpartition(INSTANCE_SEP)
    if not num.isdigit() or int(num) < 1:
        raise ValueError(f"not an id: {ref!r} (give ID, or INSTANCE/ID through Redis)")
    return inst, int(num)


# close codes (RFC 6455 section 7.4.1 and the IANA registry)
CLOSE_CODES: dict[int, str] = {
    1000: "Normal Closure",
    1001: "Going Away",
    1002: "Protocol Error",
    1003: "Unsupported Data",
    1004: "Reserved",
    1005: "No Status Received",
    1006: "Abnormal Closure",
    1007: "Invalid Frame Payload Data",
    1008: "Policy Violation",
    1009: "Message Too Big",
    1010: "Mandatory Extension",
    1011: "Internal Error",
    1012: "Service Restart",
    1013: "Try Again Later",
    1014: "Bad Gateway",
    1015: "TLS Handshake",
}


def close_code_meaning(code: int | None) -> str:
    if code is None:
        return "no status code"
    if code in CLOSE_CODES:
        return CLOSE_CODES[code]
    if 3000 <= code <= 3999:
        return "registered (libraries, frameworks, applications)"
    if 4000 <= code <= 4999:
        return "private use (application-defined)"
    if 1016 <= code <= 2999:
        return "reserved for the WebSocket protocol"
    return "invalid"


def valid_close_code(code: int) -> bool:
    """Codes a peer may send in a close frame (RFC 6455 7.4)."""
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999
