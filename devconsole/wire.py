"""The tap protocol: a sans-I/O msgpack codec of Events and Commands.

Core module: no I/O. The byte stream in each direction is a sequence of msgpack objects
(msgpack frames itself; no length prefix). Each object is a ``[kind, body]`` pair:

client -> server
    ``[HELLO, {"version": 1, "token": str | None}]`` first (``"backlog_end": true`` asks
    for a ``BacklogEnd`` event after the backlog, ``"items": false`` for a backlog of the
    Snapshot alone), then
    ``[COMMAND, <encoded command>]``
server -> client
    ``[WELCOME, {"version": 1, "proxy": str}]`` or ``[ERROR, "message"]`` (then EOF),
    ``[EVENTS, [<encoded event>, ...]]`` (events travel in batches),
    ``[RESULT, <encoded CommandResult>]``

An encoded event or command is a list ``[tag, field, ...]`` with the dataclass fields in
declaration order. Decoding validates tags, arity and field types, and raises
``WireError`` (and nothing else) for anything malformed. Capture files (``store``) use the
same event encoding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import msgpack

from devconsole.model import (
    AbortCommand,
    BacklogEnd,
    Breakpoint,
    BreakpointCommand,
    BreakpointsEvent,
    CloseCommand,
    Command,
    CommandResult,
    ConnSnapshot,
    ControlFrame,
    DropCommand,
    EnableBreakpointCommand,
    EndEvent,
    Event,
    ForwardCommand,
    GapEvent,
    HalfOpenCommand,
    Handshake,
    HandshakeEvent,
    InjectCommand,
    InstanceEvent,
    Message,
    OutcomeEvent,
    ProtocolErrorEvent,
    Publication,
    RefusedEvent,
    ReleaseCommand,
    RemoveBreakpointCommand,
    RuleEvent,
    RulesCommand,
    Shape,
    ShapeCommand,
    ShapeEvent,
    Snapshot,
    StateEvent,
)

PROTOCOL_VERSION = 1

HELLO = 0
WELCOME = 1
ERROR = 2
EVENTS = 3
COMMAND = 4
RESULT = 5

# The largest single msgpack object a decoder accepts (a batch of events).
MAX_OBJECT = 256 << 20
# The most elements an array or map may declare. msgpack allocates a container as soon as
# it reads its header, so without this a 5-byte header claiming 2**28 elements would make
# the decoder allocate 2 GiB.
MAX_LEN = 1 << 22


class WireError(Exception):
    """Malformed tap data."""


# ------------------------------------------------------------------ type specs

_STR = (str,)
_OSTR = (str, type(None))
_INT = (int,)
_OINT = (int, type(None))
_NUM = (int, float)
_ONUM = (int, float, type(None))
_BOOL = (bool,)
_OBOOL = (bool, type(None))
_BYTES = (bytes,)
_LIST = (list, tuple)

_HANDSHAKE_TYPES: tuple[tuple[type, ...], ...] = (
    _STR,  # conn
    _NUM,  # ts
    _STR,  # client
    _STR,  # server
    _STR,  # scheme
    _STR,  # url
    _STR,  # method
    _STR,  # path
    _LIST,  # query
    _STR,  # http_version
    _LIST,  # request_headers
    _LIST,  # cookies
    _OINT,  # status
    _STR,  # reason
    _LIST,  # response_headers
    _OSTR,  # subprotocol
    _LIST,  # extensions
    _ONUM,  # ts_response
    _BYTES,  # body
    _INT,  # body_size
    _OSTR,  # error
)
# optional trailing fields, written only when set (older files decode with the defaults);
# a field is written with those before it, at their defaults if they are not set
_HANDSHAKE_OPTIONAL: tuple[tuple[type, ...], ...] = (
    _STR,  # source
    _LIST,  # unknown
    _OSTR,  # decoder: the proxy's --decoder choice
)
_HANDSHAKE_PAIRS = {8, 10, 11, 14}  # list-of-pairs fields
_HANDSHAKE_STRS = {16, 22}  # list-of-str fields

_MESSAGE_TYPES = (
    _INT, _STR, _NUM, _STR, _INT, _BYTES, _INT, _INT, _INT,
    _BOOL, _INT, _BOOL, _BOOL, _BOOL, _LIST,
)  # fmt: skip
_CONTROL_TYPES = (
    _INT, _STR, _NUM, _STR, _INT, _BYTES, _INT, _OINT, _STR, _BOOL, _BOOL, _OSTR,
)  # fmt: skip
_END_TYPES = (_STR, _NUM, _BOOL, _OSTR, _OSTR)
_PERR_TYPES = (_STR, _NUM, _STR, _INT, _STR)
_STATE_TYPES = (_STR, _NUM, _STR, _STR)
_GAP_TYPES = (_INT, _STR)
_GAP_TYPES_V2 = (_INT, _STR, _STR)  # + instance (a Redis source)
_INSTANCE_TYPES = (_STR, _NUM, _STR, _STR)
_CONNSNAP_TYPES = (
    None, _STR, _INT, _INT, _INT, _INT, _OINT, _STR, _OSTR, _ONUM, _OBOOL, _LIST, _BOOL,
    _INT, _INT, _INT,
)  # fmt: skip
_SNAPSHOT_TYPES = (_INT, _LIST, _STR, _INT)
# optional trailing fields (intercept): present only when set
_MESSAGE_HELD_TYPES = (_INT, _INT, _STR, (bytes, type(None)), _INT, _INT)
_CONTROL_HELD_TYPES = (_INT, _INT, _STR)
_SNAPSHOT_MORE_TYPES = (_LIST, _LIST)
_OUTCOME_TYPES = (_STR, _NUM, _INT, _INT, _STR, _INT, (bytes, type(None)), _INT)
_BREAKPOINT_TYPES = (_INT, _STR, _STR, _NUM, _STR, _BOOL, _BOOL)
_BACKLOG_END_TYPES = (_INT,)
# optional trailing fields (rules): after the intercept ones, present only when set
_RULE_TYPES = (_STR, _STR)
_CONNSNAP_MORE_TYPES = (_LIST,)  # shape
_SHAPE_TYPES = (_NUM, _NUM, _NUM, _INT, _NUM, _INT, _BOOL, _STR, _NUM)
_RULE_EVENT_TYPES = (_STR, _NUM, _STR, _STR, _STR)
_SHAPE_EVENT_TYPES = (_STR, _NUM, _LIST, _STR)
_SHAPE_CMD_TYPES = (_STR, _STR, _LIST, _BOOL, _STR, _INT)
_RULES_CMD_TYPES = (_STR, _STR, _INT)

# The exact field types of the usual messages and control frames: decoding checks them
# with one tuple comparison and falls back to the field-by-field check otherwise.
_NONE = type(None)
_MESSAGE_FAST = {
    (int, str, ts, str, int, bytes, int, int, int, bool, int, bool, bool, bool, list)
    for ts in (float, int)
}
_CONTROL_FAST = {
    (int, str, ts, str, int, bytes, int, code, str, bool, bool, err)
    for ts in (float, int)
    for code in (int, _NONE)
    for err in (str, _NONE)
}

_CLOSE_CMD_TYPES = (_STR, _INT, _STR, _STR, _INT)
_ABORT_CMD_TYPES = (_STR, _BOOL, _INT)
_CONN_CMD_TYPES = (_STR, _INT)
_INJECT_CMD_TYPES = (_STR, _STR, _INT, _BYTES, _INT)
_RESULT_TYPES = (_INT, _BOOL, _STR)
_BREAK_CMD_TYPES = (_STR, _STR, _NUM, _STR, _BOOL, _INT)
_UNBREAK_CMD_TYPES = (_INT, _INT)
_ENABLE_CMD_TYPES = (_INT, _BOOL, _INT)
_FORWARD_CMD_TYPES = (_INT, _STR, (bytes, type(None)), _INT, _INT)
_DROP_CMD_TYPES = (_INT, _STR, _INT)

# tags
T_HANDSHAKE = 1
T_REFUSED = 2
T_MESSAGE = 3
T_CONTROL = 4
T_END = 5
T_PERROR = 6
T_STATE = 7
T_GAP = 8
T_SNAPSHOT = 9
T_PUBLICATION = 10  # a message's first 15 fields, then the channel
T_INSTANCE = 11
T_OUTCOME = 12
T_BREAKPOINTS = 13
T_RULE = 14  # rules and network conditions
T_SHAPE = 15
T_BACKLOG_END = 20  # chosen while other branches were adding 10 and 11

C_CLOSE = 1
C_ABORT = 2
C_HALF_OPEN = 3
C_RELEASE = 4
C_INJECT = 5
C_BREAK = 6
C_UNBREAK = 7
C_ENABLE_BREAK = 8
C_FORWARD = 9
C_DROP = 10
C_SHAPE = 11
C_RULES = 12


def _check_opt(
    fields: list[Any], types: tuple[Any, ...], more: tuple[Any, ...], what: str, *later: Any
) -> None:
    """Like _check, for a record that may end after ``types`` or carry ``more`` (and then
    each of the ``later`` groups of fields in turn)."""
    if len(fields) == len(types):
        _check(fields, types, what)
        return
    full = types + more
    for group in later:
        if len(fields) == len(full):
            break
        full += group
    _check(fields, full, what)


def _check(fields: list[Any], types: tuple[Any, ...], what: str) -> None:
    if len(fields) != len(types):
        raise WireError(f"{what}: expected {len(types)} fields, got {len(fields)}")
    for i, (value, allowed) in enumerate(zip(fields, types, strict=True)):
        if allowed is not None and (
            not isinstance(value, allowed)
            # bool is an int subclass: True is not a seq, a size or a code
            or (value.__class__ is bool and bool not in allowed)
        ):
            raise WireError(f"{what}: field {i} has type {type(value).__name__}")


def _pairs(value: Any, what: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for p in value:
        if (
            not isinstance(p, (list, tuple))
            or len(p) != 2
            or not isinstance(p[0], str)
            or not isinstance(p[1], str)
        ):
            raise WireError(f"{what}: expected [name, value] string pairs")
        out.append((p[0], p[1]))
    return out


# ------------------------------------------------------------------ handshake


def _enc_handshake(h: Handshake) -> list[Any]:
    out = [
        h.conn, h.ts, h.client, h.server, h.scheme, h.url, h.method, h.path, h.query,
        h.http_version, h.request_headers, h.cookies, h.status, h.reason,
        h.response_headers, h.subprotocol, h.extensions, h.ts_response, h.body,
        h.body_size, h.error,
    ]  # fmt: skip
    # Live captures without a --decoder choice keep 21 fields; imported connections add
    # source and unknown; a proxy-side decoder choice comes after them.
    if h.source or h.unknown or h.decoder is not None:
        out += [h.source, h.unknown]
    if h.decoder is not None:
        out.append(h.decoder)
    return out


def _dec_handshake(f: Any) -> Handshake:
    if not isinstance(f, (list, tuple)):
        raise WireError("handshake: expected a list")
    f = list(f)
    n = len(_HANDSHAKE_TYPES)
    if n < len(f) <= n + len(_HANDSHAKE_OPTIONAL):
        _check(f, _HANDSHAKE_TYPES + _HANDSHAKE_OPTIONAL[: len(f) - n], "handshake")
    else:
        _check(f, _HANDSHAKE_TYPES, "handshake")
    for i in _HANDSHAKE_PAIRS:
        f[i] = _pairs(f[i], "handshake")
    for i in _HANDSHAKE_STRS:
        if i >= len(f):
            continue
        if not all(isinstance(x, str) for x in f[i]):
            raise WireError("handshake: expected a list of strings")
        f[i] = list(f[i])
    return Handshake(*f)


# ------------------------------------------------------------------ events


def encode_event(ev: Event) -> list[Any]:
    """An Event as a msgpack-ready list."""
    t = type(ev)
    if t is Message:
        m: Message = ev  # type: ignore[assignment]
        out = [
            T_MESSAGE, m.seq, m.conn, m.ts, m.side, m.opcode, m.payload, m.size, m.wire_size,
            m.frames, m.compressed, m.rsv, m.utf8_ok, m.injected, m.dropped, m.frame_sizes,
        ]  # fmt: skip
        if m.held or m.outcome or m.rule or m.action:
            out += [m.held, m.breakpoint, m.outcome, m.edited, m.edited_opcode, m.edited_size]
            if m.rule or m.action:
                out += [m.rule, m.action]
        return out
    if t is ControlFrame:
        c: ControlFrame = ev  # type: ignore[assignment]
        out = [
            T_CONTROL, c.seq, c.conn, c.ts, c.side, c.opcode, c.payload, c.wire_size,
            c.code, c.reason, c.injected, c.dropped, c.error,
        ]  # fmt: skip
        if c.held or c.outcome or c.rule or c.action:
            out += [c.held, c.breakpoint, c.outcome]
            if c.rule or c.action:
                out += [c.rule, c.action]
        return out
    if t is OutcomeEvent:
        o: OutcomeEvent = ev  # type: ignore[assignment]
        return [
            T_OUTCOME, o.conn, o.ts, o.seq, o.held, o.outcome, o.opcode, o.body, o.size,
        ]  # fmt: skip
    if isinstance(ev, BreakpointsEvent):
        return [T_BREAKPOINTS, [_enc_breakpoint(b) for b in ev.breakpoints]]
    if isinstance(ev, RuleEvent):
        return [T_RULE, ev.conn, ev.ts, ev.rule, ev.action, ev.detail]
    if isinstance(ev, ShapeEvent):
        return [T_SHAPE, ev.conn, ev.ts, _enc_shapes(ev.shape), ev.source]
    if isinstance(ev, HandshakeEvent):
        return [T_HANDSHAKE, _enc_handshake(ev.handshake)]
    if isinstance(ev, RefusedEvent):
        return [T_REFUSED, _enc_handshake(ev.handshake)]
    if isinstance(ev, EndEvent):
        return [T_END, ev.conn, ev.ts, ev.clean, ev.closed_by, ev.error]
    if isinstance(ev, ProtocolErrorEvent):
        return [T_PERROR, ev.conn, ev.ts, ev.side, ev.offset, ev.error]
    if isinstance(ev, StateEvent):
        return [T_STATE, ev.conn, ev.ts, ev.state, ev.detail]
    if t is Publication:
        p: Publication = ev  # type: ignore[assignment]
        return [
            T_PUBLICATION, p.seq, p.conn, p.ts, p.side, p.opcode, p.payload, p.size,
            p.wire_size, p.frames, p.compressed, p.rsv, p.utf8_ok, p.injected, p.dropped,
            p.frame_sizes, p.channel,
        ]  # fmt: skip
    if isinstance(ev, GapEvent):
        if ev.instance:  # an optional trailing field: plain gaps encode as before
            return [T_GAP, ev.missed, ev.reason, ev.instance]
        return [T_GAP, ev.missed, ev.reason]
    if isinstance(ev, InstanceEvent):
        return [T_INSTANCE, ev.name, ev.ts, ev.state, ev.detail]
    if isinstance(ev, Snapshot):
        conns = [
            [
                _enc_handshake(s.handshake), s.state, s.msgs_in, s.msgs_out, s.bytes_in,
                s.bytes_out, s.close_code, s.close_reason, s.closed_by, s.ts_end,
                s.clean, s.errors, s.half_open, s.largest_message, s.injected, s.dropped,
            ] + ([_enc_shapes(s.shape)] if s.shape else [])
            for s in ev.connections
        ]  # fmt: skip
        snap = [T_SNAPSHOT, ev.seq, conns, ev.proxy, ev.evicted_messages]
        if ev.breakpoints or ev.held:
            snap += [
                [_enc_breakpoint(b) for b in ev.breakpoints],
                [encode_event(i) for i in ev.held],
            ]
        return snap
    if isinstance(ev, BacklogEnd):
        return [T_BACKLOG_END, ev.seq]
    raise TypeError(f"not an Event: {ev!r}")


def _enc_shape(s: Shape) -> list[Any]:
    return [
        s.latency, s.jitter, s.rate, s.slice, s.slice_delay, s.fragment, s.stall, s.pongs,
        s.pong_delay,
    ]  # fmt: skip


def _enc_shapes(shapes: dict[str, Shape]) -> list[Any]:
    """By peer: ``[[peer, [fields...]], ...]``."""
    return [[to, _enc_shape(s)] for to, s in shapes.items()]


def _dec_shapes(f: Any, what: str) -> dict[str, Shape]:
    if not isinstance(f, (list, tuple)):
        raise WireError(f"{what}: expected a list of shapes")
    out: dict[str, Shape] = {}
    for pair in f:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or pair[0] not in _SIDES:
            raise WireError(f"{what}: expected [peer, shape] pairs")
        fields = pair[1]
        if not isinstance(fields, (list, tuple)):
            raise WireError(f"{what}: expected a shape")
        fields = list(fields)
        _check(fields, _SHAPE_TYPES, what)
        out[pair[0]] = Shape(*fields)
    return out


def _enc_breakpoint(b: Breakpoint) -> list[Any]:
    return [b.id, b.filter, b.conn, b.timeout, b.on_timeout, b.control, b.enabled]


def _dec_breakpoint(f: Any) -> Breakpoint:
    if not isinstance(f, (list, tuple)):
        raise WireError("breakpoint: expected a list")
    f = list(f)
    _check(f, _BREAKPOINT_TYPES, "breakpoint")
    return Breakpoint(*f)


_SIDES = ("client", "server")


def _is_tag(v: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def decode_event(obj: Any) -> Event:
    """The Event encoded as ``obj``; raises WireError if it is not one."""
    if not isinstance(obj, (list, tuple)) or not obj or not _is_tag(obj[0]):
        raise WireError("event: expected [tag, fields...]")
    tag = obj[0]
    f = list(obj[1:])
    if tag == T_MESSAGE:
        if tuple(map(type, f)) not in _MESSAGE_FAST:  # one comparison for the usual case
            _check_opt(f, _MESSAGE_TYPES, _MESSAGE_HELD_TYPES, "message", _RULE_TYPES)
        if f[3] not in _SIDES:
            raise WireError("message: bad side")
        sizes = f[14]
        if not all(_is_tag(x) for x in sizes):
            raise WireError("message: bad frame sizes")
        f[14] = tuple(sizes)
        return Message(*f)
    if tag == T_CONTROL:
        if tuple(map(type, f)) not in _CONTROL_FAST:
            _check_opt(f, _CONTROL_TYPES, _CONTROL_HELD_TYPES, "control frame", _RULE_TYPES)
        if f[3] not in _SIDES:
            raise WireError("control frame: bad side")
        return ControlFrame(*f)
    if tag in (T_HANDSHAKE, T_REFUSED):
        if len(f) != 1:
            raise WireError("handshake: expected one field")
        hs = _dec_handshake(f[0])
        return HandshakeEvent(hs) if tag == T_HANDSHAKE else RefusedEvent(hs)
    if tag == T_END:
        _check(f, _END_TYPES, "end")
        if f[3] not in (*_SIDES, "proxy", None):
            raise WireError("end: bad closed_by")
        return EndEvent(*f)
    if tag == T_PERROR:
        _check(f, _PERR_TYPES, "protocol error")
        if f[2] not in _SIDES:
            raise WireError("protocol error: bad side")
        return ProtocolErrorEvent(*f)
    if tag == T_STATE:
        _check(f, _STATE_TYPES, "state")
        return StateEvent(*f)
    if tag == T_GAP:
        _check(f, _GAP_TYPES_V2 if len(f) == 3 else _GAP_TYPES, "gap")
        return GapEvent(*f)
    if tag == T_PUBLICATION:
        _check(f, (*_MESSAGE_TYPES, _STR), "publication")
        if f[3] not in _SIDES:
            raise WireError("publication: bad side")
        if not all(_is_tag(x) for x in f[14]):
            raise WireError("publication: bad frame sizes")
        f[14] = tuple(f[14])
        # the channel comes after the 15 fields a Message had when publications were
        # added; Message's later trailing fields (intercept) are never set on one
        pub = Publication(*f[:15])
        pub.channel = f[15]
        return pub
    if tag == T_INSTANCE:
        _check(f, _INSTANCE_TYPES, "instance")
        return InstanceEvent(*f)
    if tag == T_SNAPSHOT:
        _check_opt(f, _SNAPSHOT_TYPES, _SNAPSHOT_MORE_TYPES, "snapshot")
        conns: list[ConnSnapshot] = []
        for c in f[1]:
            if not isinstance(c, (list, tuple)):
                raise WireError("snapshot: bad connection")
            c = list(c)
            _check_opt(c, _CONNSNAP_TYPES, _CONNSNAP_MORE_TYPES, "snapshot connection")
            c[0] = _dec_handshake(c[0])
            if len(c) > len(_CONNSNAP_TYPES):
                c[16] = _dec_shapes(c[16], "snapshot connection")
            if not all(isinstance(x, str) for x in c[11]):
                raise WireError("snapshot connection: bad errors")
            c[11] = list(c[11])
            conns.append(ConnSnapshot(*c))
        snapshot = Snapshot(f[0], conns, f[2], f[3])
        if len(f) > 4:
            snapshot.breakpoints = [_dec_breakpoint(b) for b in f[4]]
            for obj in f[5]:
                item = decode_event(obj)
                if not isinstance(item, (Message, ControlFrame)):
                    raise WireError("snapshot: a held item is not a message or control frame")
                snapshot.held.append(item)
        return snapshot
    if tag == T_OUTCOME:
        _check(f, _OUTCOME_TYPES, "outcome")
        return OutcomeEvent(*f)
    if tag == T_BREAKPOINTS:
        _check(f, (_LIST,), "breakpoints")
        return BreakpointsEvent([_dec_breakpoint(b) for b in f[0]])
    if tag == T_RULE:
        _check(f, _RULE_EVENT_TYPES, "rule")
        return RuleEvent(*f)
    if tag == T_SHAPE:
        _check(f, _SHAPE_EVENT_TYPES, "shape")
        return ShapeEvent(f[0], f[1], _dec_shapes(f[2], "shape"), f[3])
    if tag == T_BACKLOG_END:
        _check(f, _BACKLOG_END_TYPES, "backlog end")
        return BacklogEnd(*f)
    raise WireError(f"unknown event tag {tag!r}")


# ------------------------------------------------------------------ commands


def encode_command(cmd: Command) -> list[Any]:
    if isinstance(cmd, CloseCommand):
        return [C_CLOSE, cmd.conn, cmd.code, cmd.reason, cmd.to, cmd.id]
    if isinstance(cmd, AbortCommand):
        return [C_ABORT, cmd.conn, cmd.rst, cmd.id]
    if isinstance(cmd, HalfOpenCommand):
        return [C_HALF_OPEN, cmd.conn, cmd.id]
    if isinstance(cmd, ReleaseCommand):
        return [C_RELEASE, cmd.conn, cmd.id]
    if isinstance(cmd, InjectCommand):
        return [C_INJECT, cmd.conn, cmd.to, cmd.opcode, cmd.payload, cmd.id]
    if isinstance(cmd, BreakpointCommand):
        return [C_BREAK, cmd.filter, cmd.conn, cmd.timeout, cmd.on_timeout, cmd.control, cmd.id]
    if isinstance(cmd, RemoveBreakpointCommand):
        return [C_UNBREAK, cmd.breakpoint, cmd.id]
    if isinstance(cmd, EnableBreakpointCommand):
        return [C_ENABLE_BREAK, cmd.breakpoint, cmd.enabled, cmd.id]
    if isinstance(cmd, ForwardCommand):
        return [C_FORWARD, cmd.held, cmd.conn, cmd.payload, cmd.opcode, cmd.id]
    if isinstance(cmd, DropCommand):
        return [C_DROP, cmd.held, cmd.conn, cmd.id]
    if isinstance(cmd, ShapeCommand):
        return [C_SHAPE, cmd.conn, cmd.to, _enc_shape(cmd.shape), cmd.clear, cmd.path, cmd.id]
    if isinstance(cmd, RulesCommand):
        return [C_RULES, cmd.text, cmd.path, cmd.id]
    raise TypeError(f"not a Command: {cmd!r}")


def decode_command(obj: Any) -> Command:
    if not isinstance(obj, (list, tuple)) or not obj or not _is_tag(obj[0]):
        raise WireError("command: expected [tag, fields...]")
    tag = obj[0]
    f = list(obj[1:])
    if tag == C_CLOSE:
        _check(f, _CLOSE_CMD_TYPES, "close command")
        if f[3] not in ("client", "server", "both"):
            raise WireError("close command: bad target")
        return CloseCommand(*f)
    if tag == C_ABORT:
        _check(f, _ABORT_CMD_TYPES, "abort command")
        return AbortCommand(*f)
    if tag == C_HALF_OPEN:
        _check(f, _CONN_CMD_TYPES, "half-open command")
        return HalfOpenCommand(*f)
    if tag == C_RELEASE:
        _check(f, _CONN_CMD_TYPES, "release command")
        return ReleaseCommand(*f)
    if tag == C_INJECT:
        _check(f, _INJECT_CMD_TYPES, "inject command")
        if f[1] not in _SIDES:
            raise WireError("inject command: bad target")
        return InjectCommand(*f)
    if tag == C_BREAK:
        _check(f, _BREAK_CMD_TYPES, "breakpoint command")
        return BreakpointCommand(*f)
    if tag == C_UNBREAK:
        _check(f, _UNBREAK_CMD_TYPES, "remove-breakpoint command")
        return RemoveBreakpointCommand(*f)
    if tag == C_ENABLE_BREAK:
        _check(f, _ENABLE_CMD_TYPES, "enable-breakpoint command")
        return EnableBreakpointCommand(*f)
    if tag == C_FORWARD:
        _check(f, _FORWARD_CMD_TYPES, "forward command")
        return ForwardCommand(*f)
    if tag == C_DROP:
        _check(f, _DROP_CMD_TYPES, "drop command")
        return DropCommand(*f)
    if tag == C_SHAPE:
        _check(f, _SHAPE_CMD_TYPES, "shape command")
        if f[1] not in ("client", "server", "both"):
            raise WireError("shape command: bad target")
        fields = list(f[2])
        _check(fields, _SHAPE_TYPES, "shape command")
        f[2] = Shape(*fields)
        return ShapeCommand(*f)
    if tag == C_RULES:
        _check(f, _RULES_CMD_TYPES, "rules command")
        return RulesCommand(*f)
    raise WireError(f"unknown command tag {tag!r}")


def encode_result(res: CommandResult) -> list[Any]:
    if res.info:
        return [res.id, res.ok, res.error, res.info]
    return [res.id, res.ok, res.error]


def decode_result(obj: Any) -> CommandResult:
    if not isinstance(obj, (list, tuple)):
        raise WireError("result: expected a list")
    f = list(obj)
    _check_opt(f, _RESULT_TYPES, (_STR,), "result")
    return CommandResult(*f)


# ------------------------------------------------------------------ framing


def pack(kind: int, body: Any) -> bytes:
    return msgpack.packb([kind, body], use_bin_type=True)  # type: ignore[no-any-return]


def pack_events(events: list[Event]) -> bytes:
    return pack(EVENTS, [encode_event(e) for e in events])


def _no_ext(code: int, data: bytes) -> Any:
    # Without this, msgpack would return ExtType, a 2-tuple that passes for a list.
    raise ValueError(f"unexpected msgpack extension type {code}")


class Decoder:
    """Incremental decoder of one direction of the tap stream: ``feed(bytes)``, then iterate
    ``frames()`` for ``(kind, body)`` pairs. Raises WireError on malformed data."""

    def __init__(self, max_object: int = MAX_OBJECT, max_len: int = MAX_LEN) -> None:
        max_len = max(1, min(max_len, max_object))
        self._unpacker = msgpack.Unpacker(
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_buffer_size=max_object,
            max_array_len=max_len,
            max_map_len=max_len,
            ext_hook=_no_ext,
        )

    def feed(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull as e:
            raise WireError("tap object too large") from e

    def frames(self) -> Iterator[tuple[int, Any]]:
        while True:
            try:
                obj = next(self._unpacker)
            except StopIteration:
                return
            except (ValueError, msgpack.UnpackException, TypeError, MemoryError) as e:
                raise WireError(f"malformed tap data: {e}") from e
            if (
                not isinstance(obj, list)
                or len(obj) != 2
                or not isinstance(obj[0], int)
                or isinstance(obj[0], bool)
            ):
                raise WireError("malformed tap frame: expected [kind, body]")
            yield obj[0], obj[1]


def decode_events(body: Any) -> list[Event]:
    if not isinstance(body, list):
        raise WireError("events: expected a list")
    return [decode_event(o) for o in body]


def fields_of(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
