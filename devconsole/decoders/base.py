"""What every application-protocol decoder shares: the decoded form and the interface.

Core module: no I/O, imports neither mitmproxy, textual nor rich.

A ``ProtocolDecoder`` turns one WebSocket message (its payload, opcode and sender) into a
``Decoded``: the protocol's packets in that message, each a ``Packet`` with a one-line
``summary``, its ``fields`` (plain data: dicts, lists, str, int, float, bool, None and
bytes) and, for request/reply pairing and heartbeats, a ``key``/``role``/``method``. It
also does the reverse: ``encode(fields)`` builds the WebSocket messages (opcode, payload)
that carry one packet, so ``decode(encode(fields))`` gives ``fields`` back. Decoders are
symmetric, like python-socketio's ``packet.py``.

A decoder keeps what it must remember between messages of one connection (MQTT bytes
of a packet continued in the next frame, Socket.IO binary attachments, the negotiated
protocol version) in a state object of its own from ``new_state()``; the tracker
(``devconsole.decoders.tracker``) keeps one per connection and feeds messages in order.

``decode()`` may raise anything on bad input: ``decode_message()`` turns any exception
into a ``Decoded`` with ``error`` set, so a message that fails to decode is shown raw with
the reason, never hidden and never fatal.

Writing a plugin (entry point group ``devconsole.decoders``, see docs/protocols.md)::

    class MyDecoder(ProtocolDecoder):
        name = "myproto"            # what proto:NAME and --decoder PATH=NAME use
        short = "my"                # the preview prefix
        subprotocols = ("my.v1",)   # Sec-WebSocket-Protocol values that mean this protocol

        def sniff(self, payload, opcode, side): ...   # 0..1: does this message look like it?
        def decode(self, payload, opcode, side, state): ...  # -> Decoded
        def encode(self, fields): ...                        # -> [(opcode, payload), ...]
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from devconsole.model import Handshake, Opcode, Side

__all__ = [
    "ROLES",
    "DecodeError",
    "Decoded",
    "Frame",
    "Packet",
    "ProtocolDecoder",
    "compact_json",
    "decode_message",
    "from_jsonable",
    "jsonable",
    "loads_json",
]

# request: opens a pair (its reply comes from the other side with the same key);
# reply: closes it; partial: answers without closing (stream items, GraphQL "next");
# cancel: the requester closes its own request (GraphQL "complete" from the client);
# ping / pong: a protocol heartbeat and its answer; beat: a one-way heartbeat.
ROLES = ("request", "reply", "partial", "cancel", "ping", "pong", "beat")

Frame = tuple[int, bytes]  # a WebSocket message to send: (Opcode.TEXT | Opcode.BINARY, payload)


class DecodeError(ValueError):
    """The payload is not a valid packet of the protocol (the message says why)."""


@dataclass(slots=True)  # not frozen: one is built per decoded packet, frozen inits cost 2x
class Packet:
    """One protocol packet.

    ``fields``: the decoded form, documented per protocol in docs/protocols.md; ``key``:
    what pairs a request with its reply (scoped to the connection); ``role``: one of
    ``ROLES`` or None; ``method``: the name latency is grouped by (JSON-RPC method,
    Socket.IO event, SignalR target, GraphQL operation...); ``heartbeat``: a negotiated
    heartbeats this packet announces, ``{"side": who sends them, "interval": s,
    "timeout": s or None}`` each.
    """

    summary: str
    fields: dict[str, Any]
    key: str | None = None
    role: str | None = None
    method: str | None = None
    heartbeat: tuple[dict[str, Any], ...] = ()


@dataclass(slots=True)
class Decoded:
    """The protocol's reading of one WebSocket message.

    ``packets`` may be empty (an MQTT frame that only starts a packet, a Socket.IO binary
    attachment still waiting for the rest); ``note`` then says why. ``error``: the message
    is not valid for the protocol (or only partly: the packets before the error are
    kept). ``joined_to``: the seq of an earlier message this one completes (a Socket.IO
    binary attachment completes its placeholder packet)."""

    protocol: str
    packets: tuple[Packet, ...] = ()
    error: str | None = None
    note: str | None = None
    joined_to: int | None = None
    pending: bool = False  # more messages will complete it (then it is decoded again)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def summary(self) -> str:
        parts = [p.summary for p in self.packets]
        if not parts and self.note:
            parts.append(self.note)
        return " | ".join(parts)

    @property
    def value(self) -> Any:
        """The decoded fields: one packet's, or ``{"packets": [...]}`` for several (or
        none)."""
        if len(self.packets) == 1:
            return self.packets[0].fields
        return {"packets": [p.fields for p in self.packets]}

    def to_json(self) -> dict[str, Any]:
        """``{"protocol", "decoded"?, "error"?, "note"?}``, JSON-ready (bytes as
        ``{"$b64": ...}``)."""
        out: dict[str, Any] = {"protocol": self.protocol}
        if self.packets or self.error is None:
            out["decoded"] = jsonable(self.value)
        if self.error is not None:
            out["error"] = self.error
        if self.note is not None:
            out["note"] = self.note
        return out


class ProtocolDecoder:
    """An application protocol over WebSocket: detection, decoding and encoding.

    Subclasses set ``name`` (and usually ``short``, ``subprotocols``, ``paths``) and
    implement ``decode``, ``encode`` and ``sniff``. Instances must be stateless: what a
    connection needs lives in ``new_state()``'s object."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # for humans: "Socket.IO / Engine.IO"
    short: ClassVar[str] = ""  # preview prefix: "sio", "rpc"
    subprotocols: ClassVar[tuple[str, ...]] = ()  # lower case
    stateful: ClassVar[bool] = False  # needs messages in order (not just new_state())

    # ----------------------------------------------------------------- detection

    def detect(self, hs: Handshake) -> float:
        """How sure the handshake makes us (0..1): the accepted (else the offered)
        subprotocol, then URL conventions (``url_score``)."""
        accepted = (hs.subprotocol or "").strip().lower()
        if accepted:
            return 1.0 if accepted in self.subprotocols else 0.0
        offered = [p.lower() for p in hs.requested_subprotocols]
        if any(p in self.subprotocols for p in offered):
            return 0.9
        return self.url_score(hs)

    def url_score(self, hs: Handshake) -> float:
        return 0.0

    def sniff(self, payload: bytes, opcode: int, side: Side) -> float:
        """How much one message looks like this protocol (0..1). Never raises."""
        return 0.0

    # ----------------------------------------------------------------- codec

    def new_state(self, hs: Handshake | None = None) -> Any:
        return None

    def decode(self, payload: bytes, opcode: int, side: Side, state: Any, seq: int = 0) -> Decoded:
        raise NotImplementedError

    def encode(self, fields: Mapping[str, Any], state: Any = None) -> list[Frame]:
        """The WebSocket message(s) that carry the packet ``fields``. Raises ValueError
        (with a message for the user) for fields that do not make a packet."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def decode_message(
    decoder: ProtocolDecoder,
    payload: bytes,
    opcode: int,
    side: Side,
    state: Any = None,
    seq: int = 0,
) -> Decoded:
    """``decoder.decode``, but never raises: a failure is a Decoded with ``error``."""
    if opcode not in (Opcode.TEXT, Opcode.BINARY):
        return Decoded(decoder.name, error="not a data message")
    try:
        d = decoder.decode(payload, opcode, side, state, seq)
    except RecursionError:
        return Decoded(decoder.name, error="nested too deeply")
    except Exception as e:
        return Decoded(decoder.name, error=str(e) or type(e).__name__)
    if not isinstance(d, Decoded):  # a plugin returning the wrong thing
        return Decoded(decoder.name, error=f"decoder returned {type(d).__name__}")
    return d


# --------------------------------------------------------------------------- values


def loads_json(data: bytes | str) -> Any:
    """``json.loads`` that reports errors as DecodeError with a short reason."""
    try:
        return json.loads(data)
    except UnicodeDecodeError as e:
        raise DecodeError(f"not UTF-8 at byte {e.start}") from None
    except ValueError as e:
        raise DecodeError(f"bad JSON: {e}") from None


def compact_json(value: Any) -> str:
    """JSON without spaces, as most protocols put it on the wire."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` with bytes as ``{"$b64": base64}``, tuples as lists, non-string keys as
    strings and non-finite floats as strings: something ``json.dumps`` always takes."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth > 200:
        return "…"
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        return {
            (k if isinstance(k, str) else str(k)): jsonable(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, depth + 1) for v in value]
    return str(value)


def from_jsonable(value: Any) -> Any:
    """The inverse of ``jsonable`` for bytes: ``{"$b64": ...}`` back to bytes (so a
    ``--decoded`` JSON argument can carry binary data)."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("$b64"), str):
            return base64.b64decode(value["$b64"])
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value


_BYTES_MARK = re.compile(r'"\\u0000b(\d+)\\u0000"')


def _mark(o: Any) -> Any:
    if isinstance(o, bytes | bytearray | memoryview):
        return f"\x00b{len(o)}\x00"  # JSON-escaped as \u0000: replaced by <N bytes>
    if isinstance(o, tuple | set | frozenset):
        return list(o)
    return str(o)


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_mark)


def short_value(value: Any, limit: int = 60) -> str:
    """A compact one-line rendering of a value for summaries (JSON, bytes as <N bytes>)."""
    try:
        # one C encoder, built once: a summary is made for every decoded message
        s = _ENCODER.encode(value)
        if "\\u0000b" in s:
            s = _BYTES_MARK.sub(r"<\1 bytes>", s)
    except (TypeError, ValueError, RecursionError):  # odd keys, cycles
        s = _short(value, depth=0)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _short(value: Any, depth: int) -> str:
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if depth > 20:
        return "…"
    if isinstance(value, Mapping):
        return (
            "{"
            + ",".join(
                f"{json.dumps(str(k), ensure_ascii=False)}:{_short(v, depth + 1)}"
                for k, v in list(value.items())[:20]
            )
            + ("}" if len(value) <= 20 else ",…}")
        )
    if isinstance(value, list | tuple):
        items = ",".join(_short(v, depth + 1) for v in list(value)[:20])
        return "[" + items + ("]" if len(value) <= 20 else ",…]")
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)
