"""Socket.IO (v5 over Engine.IO v4, and v4/v2 over Engine.IO v3) on a WebSocket.

Core module: no I/O. Engine.IO packet types: 0 open, 1 close, 2 ping, 3 pong, 4 message,
5 upgrade, 6 noop; a text message is the type digit and its data. A binary WebSocket
message is an Engine.IO binary message (v3 prefixes it with the byte 4). A Socket.IO
packet rides in an Engine.IO message::

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]
    42["chat",{"text":"hi"}]        EVENT "chat" on "/"
    42/admin,12["kick","bob"]       EVENT on "/admin" that wants ack 12
    43/admin,12["done"]             its ACK
    451-["upload",{"_placeholder":true,"num":0}]   BINARY_EVENT with one attachment,
                                    which is the binary message that follows

Fields (``d:`` filters and ``tail --json``): ``type`` (Engine.IO: open, close, ping,
pong, upgrade, noop, message; Socket.IO: connect, disconnect, event, ack, connect_error,
binary_event, binary_ack), ``namespace``, ``event``, ``args``, ``ack``, ``data``,
``attachments``, ``query`` (a v2 namespace's query string).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from devconsole.decoders.base import (
    Decoded,
    DecodeError,
    Frame,
    Packet,
    ProtocolDecoder,
    compact_json,
    loads_json,
    short_value,
)
from devconsole.model import Handshake, Opcode, Side

EIO_TYPES = ("open", "close", "ping", "pong", "message", "upgrade", "noop")
SIO_TYPES = (
    "connect",
    "disconnect",
    "event",
    "ack",
    "connect_error",
    "binary_event",
    "binary_ack",
)
_BINARY = ("binary_event", "binary_ack")
MAX_ATTACHMENTS = 10_000


class _Pending:
    __slots__ = ("attachments", "fields", "seq", "want")

    def __init__(self, fields: dict[str, Any], want: int, seq: int) -> None:
        self.fields = fields
        self.want = want
        self.seq = seq
        self.attachments: list[bytes] = []


class SocketIOState:
    """Per connection: the Engine.IO version and, per direction, a binary packet waiting
    for its attachments."""

    __slots__ = ("eio", "pending")

    def __init__(self, eio: int = 4) -> None:
        self.eio = eio
        self.pending: dict[str, _Pending] = {}


def _eio_version(hs: Handshake | None) -> int:
    if hs is not None:
        for k, v in hs.query:
            if k == "EIO" and v.strip() in ("2", "3"):
                return 3
    return 4


class SocketIODecoder(ProtocolDecoder):
    name = "socket.io"
    title = "Socket.IO / Engine.IO"
    short = "sio"
    stateful = True

    def url_score(self, hs: Handshake) -> float:
        path = hs.path.lower()
        eio = any(k == "EIO" for k, _ in hs.query)
        if "/socket.io" in path:
            return 0.95 if eio else 0.8
        if eio and any(k == "transport" and v == "websocket" for k, v in hs.query):
            return 0.8  # Engine.IO on a custom path
        return 0.0

    def sniff(self, payload: bytes, opcode: int, side: Side) -> float:
        if opcode != Opcode.TEXT or not payload:
            return 0.0
        head = payload[:1]
        if head == b"0" and payload[1:2] == b"{" and b'"sid"' in payload[:200]:
            return 0.95  # the Engine.IO open packet
        if payload in (b"2probe", b"3probe", b"5"):
            return 0.9
        if head == b"4" and payload[1:2] in (b"0", b"2", b"3") and payload[2:3] in (b"[", b"{"):
            return 0.6
        if head == b"4" and payload[1:2] == b"2" and payload[2:3] == b"/":
            return 0.6
        return 0.0

    def new_state(self, hs: Handshake | None = None) -> SocketIOState:
        return SocketIOState(_eio_version(hs))

    # ----------------------------------------------------------------- decode

    def decode(self, payload: bytes, opcode: int, side: Side, state: Any, seq: int = 0) -> Decoded:
        st = state if isinstance(state, SocketIOState) else SocketIOState()
        if opcode == Opcode.BINARY:
            return self._binary(payload, side, st)
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(f"not UTF-8 at byte {e.start}") from None
        if not text or not text[0].isdigit() or int(text[0]) >= len(EIO_TYPES):
            raise DecodeError(f"not an Engine.IO packet (type {text[:1]!r})")
        etype = EIO_TYPES[int(text[0])]
        data = text[1:]
        if etype != "message":
            return Decoded(self.name, (self._engine(etype, data, side, st),))
        if not data or not data[0].isdigit():
            fields: dict[str, Any] = {"type": "message", "data": data}
            return Decoded(self.name, (Packet(f"eio message {short_value(data)}", fields),))
        fields = parse_sio(data)
        if fields["type"] in _BINARY:
            want = int(fields.get("attachments", 0))
            if want > 0:
                st.pending[side] = _Pending(fields, want, seq)
                n = "attachment" if want == 1 else "attachments"
                return Decoded(
                    self.name,
                    (self._packet(fields),),
                    note=f"waiting for {want} binary {n}",
                    pending=True,
                )
        return Decoded(self.name, (self._packet(fields),))

    def _binary(self, payload: bytes, side: Side, st: SocketIOState) -> Decoded:
        data = payload
        if st.eio == 3:
            if payload[:1] != b"\x04":
                raise DecodeError("an Engine.IO v3 binary message starts with the byte 4")
            data = payload[1:]
        p = st.pending.get(side)
        if p is None:
            fields = {"type": "message", "data": data}
            return Decoded(self.name, (Packet(f"eio message <{len(data)} bytes>", fields),))
        p.attachments.append(data)
        n = len(p.attachments)
        if n < p.want:
            return Decoded(
                self.name,
                note=f"binary attachment {n} of {p.want}",
                joined_to=p.seq,
            )
        del st.pending[side]
        fields = dict(p.fields)
        key = "args" if "args" in fields else "data"
        fields[key] = _fill(fields.get(key), p.attachments)
        return Decoded(
            self.name,
            (self._packet(fields),),
            note=f"binary attachment {n} of {p.want}: joined with its packet",
            joined_to=p.seq,
        )

    def _engine(self, etype: str, data: str, side: Side, st: SocketIOState) -> Packet:
        fields: dict[str, Any] = {"type": etype}
        if etype == "open":
            value = loads_json(data) if data else {}
            fields["data"] = value
            hb: tuple[dict[str, Any], ...] = ()
            summary = "eio open"
            if isinstance(value, dict):
                if isinstance(value.get("sid"), str):
                    summary += f" sid={value['sid']}"
                iv, to = value.get("pingInterval"), value.get("pingTimeout")
                if _num(iv) and _num(to):
                    hb = (
                        {
                            "side": "server" if st.eio >= 4 else "client",
                            "interval": iv / 1000,
                            "timeout": to / 1000,
                        },
                    )
                    summary += f" ping {iv / 1000:g}s timeout {to / 1000:g}s"
            return Packet(summary, fields, key="eio-open", role="reply", heartbeat=hb)
        if data:
            fields["data"] = data
        role = None
        if etype in ("ping", "pong") and data != "probe":
            role = etype
        summary = f"eio {etype}" + (f" {short_value(data)}" if data else "")
        return Packet(summary, fields, role=role)

    def _packet(self, f: dict[str, Any]) -> Packet:
        t = f["type"]
        nsp = f.get("namespace", "/")
        where = "" if nsp == "/" else f"{nsp} "
        ack = f.get("ack")
        if t in ("event", "binary_event"):
            args = f.get("args", [])
            shown = " ".join(short_value(a, 80) for a in args)
            summary = f"sio {where}{short_value(f.get('event'))}" + (f" {shown}" if shown else "")
            if ack is not None:
                summary += f" ack {ack}"
            key = None if ack is None else f"ack:{nsp}:{ack}"
            return Packet(
                summary,
                f,
                key=key,
                role="request" if key else None,
                method=str(f.get("event")),
            )
        if t in ("ack", "binary_ack"):
            args = f.get("args", [])
            summary = f"sio {where}ack {ack}" + (f" {short_value(args, 80)}" if args else "")
            return Packet(summary, f, key=f"ack:{nsp}:{ack}", role="reply")
        if t == "connect":
            data = f.get("data")
            summary = f"sio connect {nsp}" + ("" if data is None else f" {short_value(data)}")
            # the client's CONNECT asks, the server's (with a sid) answers
            role = "reply" if isinstance(data, dict) and "sid" in data else "request"
            return Packet(summary, f, key=f"connect:{nsp}", role=role, method="connect")
        if t == "connect_error":
            data = f.get("data")
            summary = f"sio connect_error {nsp}" + ("" if data is None else f" {short_value(data)}")
            return Packet(summary, f, key=f"connect:{nsp}", role="reply")
        return Packet(f"sio {t} {nsp}", f)

    # ----------------------------------------------------------------- encode

    def encode(self, fields: Mapping[str, Any], state: Any = None) -> list[Frame]:
        eio = state.eio if isinstance(state, SocketIOState) else 4
        t = fields.get("type")
        if t in EIO_TYPES and t != "message":
            data = fields.get("data")
            if t == "open":
                body = compact_json(data if data is not None else {})
            else:
                if data is not None and not isinstance(data, str):
                    raise ValueError(f"{t}: data must be a string")
                body = data or ""
            return [(Opcode.TEXT, (str(EIO_TYPES.index(t)) + body).encode())]
        if t == "message":
            data = fields.get("data", "")
            if isinstance(data, bytes | bytearray):
                prefix = b"\x04" if eio == 3 else b""
                return [(Opcode.BINARY, prefix + bytes(data))]
            if not isinstance(data, str):
                raise ValueError("message: data must be a string or bytes")
            return [(Opcode.TEXT, ("4" + data).encode())]
        if t not in SIO_TYPES:
            raise ValueError(
                f"unknown Socket.IO packet type {t!r} (one of {', '.join(SIO_TYPES + EIO_TYPES)})"
            )
        text, attachments = encode_sio(fields)
        prefix = b"\x04" if eio == 3 else b""
        frames: list[Frame] = [(Opcode.TEXT, ("4" + text).encode())]
        return frames + [(Opcode.BINARY, prefix + a) for a in attachments]


def _num(v: Any) -> TypeGuard[float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and v >= 0


# --------------------------------------------------------------------------- Socket.IO


def parse_sio(text: str) -> dict[str, Any]:
    """The fields of a Socket.IO packet (the Engine.IO message data). Raises DecodeError."""
    t = int(text[0])
    if t >= len(SIO_TYPES):
        raise DecodeError(f"unknown Socket.IO packet type {t}")
    ptype = SIO_TYPES[t]
    ep = text[1:]
    fields: dict[str, Any] = {"type": ptype}
    attachments = None
    if ptype in _BINARY:
        dash = ep.find("-")
        if dash <= 0 or not ep[:dash].isdigit() or dash > 6:
            raise DecodeError("a binary packet needs its attachment count: 51-[...]")
        attachments = int(ep[:dash])
        if attachments > MAX_ATTACHMENTS:
            raise DecodeError(f"{attachments} attachments is too many")
        ep = ep[dash + 1 :]
    nsp = "/"
    if ep.startswith("/"):
        comma = ep.find(",")
        if comma == -1:
            # "1/admin": no comma when nothing follows; but "2/chat[...]" is malformed
            end = len(ep)
            for i, c in enumerate(ep):
                if c in '[{"' or c.isdigit():
                    end = i
                    break
            nsp, ep = ep[:end], ep[end:]
        else:
            nsp, ep = ep[:comma], ep[comma + 1 :]
        nsp, q, query = nsp.partition("?")
        if q:
            fields["query"] = query
    fields["namespace"] = nsp
    i = 0
    while i < len(ep) and ep[i].isdigit():
        i += 1
    if i:
        if i > 18:
            raise DecodeError("ack id too long")
        fields["ack"] = int(ep[:i])
        ep = ep[i:]
    data = loads_json(ep) if ep else None
    if ptype in ("event", "binary_event"):
        if not isinstance(data, list) or not data:
            raise DecodeError("an event's data must be [name, ...args]")
        fields["event"] = data[0]
        fields["args"] = data[1:]
    elif ptype in ("ack", "binary_ack"):
        if not isinstance(data, list):
            raise DecodeError("an ack's data must be an array")
        fields["args"] = data
    elif data is not None:
        fields["data"] = data
    if attachments is not None:
        fields["attachments"] = attachments
    return fields


def _fill(value: Any, attachments: list[bytes]) -> Any:
    """Replace ``{"_placeholder": true, "num": n}`` by the n-th attachment."""
    if isinstance(value, dict):
        if value.get("_placeholder") is True and isinstance(value.get("num"), int):
            n = value["num"]
            if 0 <= n < len(attachments):
                return attachments[n]
            raise DecodeError(f"placeholder {n} has no attachment")
        return {k: _fill(v, attachments) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, attachments) for v in value]
    return value


def _deconstruct(value: Any, out: list[bytes]) -> Any:
    if isinstance(value, bytes | bytearray):
        out.append(bytes(value))
        return {"_placeholder": True, "num": len(out) - 1}
    if isinstance(value, dict):
        return {k: _deconstruct(v, out) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deconstruct(v, out) for v in value]
    return value


def encode_sio(fields: Mapping[str, Any]) -> tuple[str, list[bytes]]:
    """The Socket.IO packet text (without the Engine.IO "4") and its binary attachments.

    An event or ack whose args hold bytes becomes a binary_event / binary_ack with
    placeholders, as python-socketio and socket.io-parser build them."""
    ptype = fields.get("type")
    if ptype not in SIO_TYPES:
        raise ValueError(f"unknown Socket.IO packet type {ptype!r}")
    nsp = fields.get("namespace", "/") or "/"
    if not isinstance(nsp, str) or not nsp.startswith("/"):
        raise ValueError("namespace must start with '/'")
    data: Any
    if ptype in ("event", "binary_event"):
        event = fields.get("event")
        if not isinstance(event, str):
            raise ValueError("an event needs a string 'event' name")
        args = fields.get("args", [])
        if not isinstance(args, list | tuple):
            raise ValueError("args must be a list")
        data = [event, *args]
    elif ptype in ("ack", "binary_ack"):
        args = fields.get("args", [])
        if not isinstance(args, list | tuple):
            raise ValueError("args must be a list")
        data = list(args)
    else:
        data = fields.get("data")
    attachments: list[bytes] = []
    data = _deconstruct(data, attachments)
    if attachments:
        ptype = "binary_event" if ptype in ("event", "binary_event") else ptype
        ptype = "binary_ack" if ptype in ("ack", "binary_ack") else ptype
        if ptype not in _BINARY:
            raise ValueError(f"{ptype} cannot carry binary data")
    elif ptype in _BINARY:  # nothing binary left to attach: a plain event or ack
        ptype = "event" if ptype == "binary_event" else "ack"
    out = str(SIO_TYPES.index(ptype))
    if ptype in _BINARY:
        out += f"{len(attachments)}-"
    comma = False
    if nsp != "/" or fields.get("query"):
        out += nsp
        if fields.get("query"):
            out += "?" + str(fields["query"])
        comma = True
    ack = fields.get("ack")
    if ack is not None:
        if not isinstance(ack, int) or isinstance(ack, bool) or ack < 0:
            raise ValueError("ack must be a non-negative integer")
        if comma:
            out += ","
            comma = False
        out += str(ack)
    if data is not None:
        if comma:
            out += ","
        out += compact_json(data)
    return out, attachments


def event_frames(
    event: str,
    args: list[Any],
    *,
    namespace: str = "/",
    ack: int | None = None,
    eio: int = 4,
) -> list[Frame]:
    """The WebSocket messages that emit Socket.IO ``event`` with ``args`` (bytes in
    ``args`` become binary attachments, sent as the binary messages that follow)."""
    fields: dict[str, Any] = {"type": "event", "namespace": namespace, "event": event}
    fields["args"] = list(args)
    if ack is not None:
        fields["ack"] = ack
    return SocketIODecoder().encode(fields, SocketIOState(eio))
