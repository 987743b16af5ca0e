"""WAMP v2 (Web Application Messaging Protocol): ``wamp.2.json`` (text) and
``wamp.2.msgpack`` (binary).

Core module: no I/O. A message is an array ``[code, ...]``; its elements are named here
by the WAMP spec (HELLO ``[1, realm, details]``, CALL ``[48, request, options,
procedure, args?, kwargs?]``...).

Fields: ``type`` (HELLO, WELCOME, ABORT, CHALLENGE, AUTHENTICATE, GOODBYE, ERROR,
PUBLISH, PUBLISHED, SUBSCRIBE, SUBSCRIBED, UNSUBSCRIBE, UNSUBSCRIBED, EVENT, CALL,
CANCEL, RESULT, REGISTER, REGISTERED, UNREGISTER, UNREGISTERED, INVOCATION, INTERRUPT,
YIELD), then the message's elements by name: ``realm``, ``session``, ``details``,
``reason``, ``request``, ``request_type``, ``error``, ``options``, ``topic``,
``procedure``, ``publication``, ``subscription``, ``registration``, ``args``,
``kwargs``, ``authmethod``, ``signature``, ``extra``; ``encoding`` (json or msgpack).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

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
from devconsole.model import Opcode, Side

SCHEMA: dict[int, tuple[str, tuple[str, ...]]] = {
    1: ("HELLO", ("realm", "details")),
    2: ("WELCOME", ("session", "details")),
    3: ("ABORT", ("details", "reason")),
    4: ("CHALLENGE", ("authmethod", "extra")),
    5: ("AUTHENTICATE", ("signature", "extra")),
    6: ("GOODBYE", ("details", "reason")),
    8: ("ERROR", ("request_type", "request", "details", "error", "args", "kwargs")),
    16: ("PUBLISH", ("request", "options", "topic", "args", "kwargs")),
    17: ("PUBLISHED", ("request", "publication")),
    32: ("SUBSCRIBE", ("request", "options", "topic")),
    33: ("SUBSCRIBED", ("request", "subscription")),
    34: ("UNSUBSCRIBE", ("request", "subscription")),
    35: ("UNSUBSCRIBED", ("request",)),
    36: ("EVENT", ("subscription", "publication", "details", "args", "kwargs")),
    48: ("CALL", ("request", "options", "procedure", "args", "kwargs")),
    49: ("CANCEL", ("request", "options")),
    50: ("RESULT", ("request", "details", "args", "kwargs")),
    64: ("REGISTER", ("request", "options", "procedure")),
    65: ("REGISTERED", ("request", "registration")),
    66: ("UNREGISTER", ("request", "registration")),
    67: ("UNREGISTERED", ("request",)),
    68: ("INVOCATION", ("request", "registration", "details", "args", "kwargs")),
    69: ("INTERRUPT", ("request", "options")),
    70: ("YIELD", ("request", "options", "args", "kwargs")),
}
_CODES = {name: code for code, (name, _) in SCHEMA.items()}
_OPTIONAL = ("args", "kwargs")
_REQUESTS = frozenset(
    {"PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE", "CALL", "REGISTER", "UNREGISTER", "INVOCATION"}
)
_REPLIES = frozenset(
    {
        "PUBLISHED",
        "SUBSCRIBED",
        "UNSUBSCRIBED",
        "RESULT",
        "REGISTERED",
        "UNREGISTERED",
        "YIELD",
        "ERROR",
    }
)


class WampDecoder(ProtocolDecoder):
    name = "wamp"
    title = "WAMP v2 (JSON and MessagePack)"
    short = "wamp"
    subprotocols = ("wamp.2.json", "wamp.2.msgpack")

    def sniff(self, payload: bytes, opcode: int, side: Side) -> float:
        if opcode == Opcode.TEXT and payload.startswith((b"[1,", b"[1 ,", b"[2,")):
            try:
                v = loads_json(payload)
            except DecodeError:
                return 0.0
            if isinstance(v, list) and len(v) == 3 and isinstance(v[2], dict):
                return 0.7  # HELLO [1, "realm", {...}] / WELCOME [2, session, {...}]
        return 0.0

    def decode(self, payload: bytes, opcode: int, side: Side, state: Any, seq: int = 0) -> Decoded:
        if opcode == Opcode.TEXT:
            v, encoding = loads_json(payload), "json"
        else:
            try:
                v = msgpack.unpackb(payload, raw=False, strict_map_key=False, timestamp=0)
            except Exception as e:
                raise DecodeError(f"bad MessagePack: {e}") from None
            encoding = "msgpack"
        if not isinstance(v, list) or not v or not isinstance(v[0], int) or isinstance(v[0], bool):
            raise DecodeError("a WAMP message is an array starting with its code")
        if v[0] not in SCHEMA:
            raise DecodeError(f"unknown WAMP message code {v[0]}")
        name, names = SCHEMA[v[0]]
        required = len([n for n in names if n not in _OPTIONAL])
        if not required <= len(v) - 1 <= len(names):
            raise DecodeError(f"{name} has {len(v) - 1} elements, expected {required}-{len(names)}")
        f: dict[str, Any] = {"type": name}
        f.update(zip(names, v[1:], strict=False))
        if name == "ERROR" and isinstance(f.get("request_type"), int):
            f["request_type"] = SCHEMA.get(f["request_type"], (f["request_type"],))[0]
        f["encoding"] = encoding
        return Decoded(self.name, (self._packet(f),))

    def _packet(self, f: dict[str, Any]) -> Packet:
        t = f["type"]
        req = f.get("request")
        summary = f"wamp {t}"
        for k in ("realm", "procedure", "topic", "error"):
            if k in f:
                summary += f" {short_value(f[k])}"
        if req is not None:
            summary += f" req={req}"
        if f.get("args") or f.get("kwargs"):
            summary += f" {short_value(f.get('args') or f.get('kwargs'), 80)}"
        key = None if req is None else f"req:{req}"
        role = method = None
        if t in _REQUESTS and key:
            if t == "PUBLISH" and not (
                isinstance(f.get("options"), dict) and f["options"].get("acknowledge")
            ):
                key = None
            else:
                role = "request"
                method = str(f.get("procedure") or f.get("topic") or t)
                if t == "INVOCATION":
                    method = f"INVOCATION {f.get('registration')}"
        elif t in _REPLIES and key:
            role = "reply"
        elif t == "HELLO":
            key, role, method = "session", "request", "HELLO"
        elif t in ("WELCOME", "ABORT"):
            key, role = "session", "reply"
        return Packet(summary, f, key, role, method)

    def encode(self, fields: Mapping[str, Any], state: Any = None) -> list[Frame]:
        t = fields.get("type")
        if t not in _CODES:
            raise ValueError(f"unknown WAMP message type {t!r}")
        code = _CODES[t]
        names = SCHEMA[code][1]
        arr: list[Any] = [code]
        for n in names:
            if n in _OPTIONAL:
                if n == "args" and ("args" in fields or "kwargs" in fields):
                    arr.append(fields.get("args", []))
                elif n == "kwargs" and "kwargs" in fields:
                    arr.append(fields["kwargs"])
                continue
            if n not in fields:
                raise ValueError(f"{t} needs {n!r}")
            v = fields[n]
            if n == "request_type" and isinstance(v, str):
                v = _CODES.get(v, v)
            arr.append(v)
        if fields.get("encoding", "json") == "msgpack":
            return [(Opcode.BINARY, msgpack.packb(arr, use_bin_type=True))]
        return [(Opcode.TEXT, compact_json(arr).encode())]
