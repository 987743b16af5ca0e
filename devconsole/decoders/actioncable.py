"""Rails Action Cable over WebSocket (``actioncable-v1-json``).

Core module: no I/O. The server sends ``{"type": "welcome"}``, ``{"type": "ping",
"message": <unix time>}`` every 3 s, ``{"type": "confirm_subscription" |
"reject_subscription", "identifier"}``, ``{"type": "disconnect", "reason",
"reconnect"}`` and broadcasts ``{"identifier", "message"}``; the client sends
``{"command": "subscribe" | "unsubscribe" | "message", "identifier", "data"?}``. The
identifier (and a message command's data) is itself a JSON string.

Fields: the message's own (``type``, ``command``, ``identifier``, ``message``, ``data``,
``reason``, ``reconnect``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

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

_TYPES = frozenset({"welcome", "ping", "confirm_subscription", "reject_subscription", "disconnect"})
_COMMANDS = frozenset({"subscribe", "unsubscribe", "message"})


def _channel(identifier: Any) -> str:
    if isinstance(identifier, str):
        try:
            v = json.loads(identifier)
        except ValueError:
            return identifier
        if isinstance(v, dict) and isinstance(v.get("channel"), str):
            return str(v["channel"])
    return short_value(identifier)


class ActionCableDecoder(ProtocolDecoder):
    name = "actioncable"
    title = "Rails Action Cable"
    short = "cable"
    # (actioncable-v1-msgpack, AnyCable's binary variant, is not decoded)
    subprotocols = ("actioncable-v1-json", "actioncable-unsupported")

    def detect(self, hs: Handshake) -> float:
        # Rails offers "actioncable-unsupported" besides the real one: any offer counts.
        offered = [p.lower() for p in hs.requested_subprotocols]
        if (hs.subprotocol or "").lower() not in ("", *self.subprotocols):
            return 0.0  # the server chose another one (a binary variant)
        if any(p in self.subprotocols for p in offered):
            return 1.0
        return super().detect(hs)

    def url_score(self, hs: Handshake) -> float:
        return 0.8 if hs.path.rstrip("/").lower().endswith("/cable") else 0.0

    def sniff(self, payload: bytes, opcode: int, side: Side) -> float:
        if opcode != Opcode.TEXT:
            return 0.0
        head = payload[:200]
        if head.startswith((b'{"type":"welcome"', b'{"type":"ping","message":')):
            # only Action Cable's own shapes: a chat app's {"type":"welcome","motd":...}
            # or {"type":"ping","message":"hi"} is not Action Cable
            try:
                v = json.loads(payload)
            except ValueError:
                return 0.0
            if not isinstance(v, dict):
                return 0.0
            if v.get("type") == "welcome" and set(v) <= {"type", "sid"}:
                return 0.9
            msg = v.get("message")
            if set(v) == {"type", "message"} and isinstance(msg, int) and not isinstance(msg, bool):
                return 0.9
            return 0.0
        if b'"command"' in head and b'"identifier"' in payload[:2048]:
            return 0.8
        return 0.0

    def decode(self, payload: bytes, opcode: int, side: Side, state: Any, seq: int = 0) -> Decoded:
        v = loads_json(payload)
        if not isinstance(v, dict):
            raise DecodeError("an Action Cable message is a JSON object")
        f = dict(v)
        ident = v.get("identifier")
        key = role = method = None
        if "command" in v:
            cmd = v["command"]
            if cmd not in _COMMANDS:
                raise DecodeError(f"unknown command {cmd!r}")
            summary = f"cable {cmd} {_channel(ident)}"
            if cmd == "message":
                data = v.get("data")
                try:
                    parsed = json.loads(data) if isinstance(data, str) else data
                except ValueError:
                    parsed = data
                action = parsed.get("action") if isinstance(parsed, dict) else None
                summary = f"cable {_channel(ident)}" + (f" {action}" if action else "")
                summary += f" {short_value(parsed, 80)}"
            elif cmd == "subscribe":
                key, role, method = f"sub:{ident}", "request", "subscribe"
        elif "type" in v:
            t = v["type"]
            if t not in _TYPES:
                raise DecodeError(f"unknown type {t!r}")
            summary = f"cable {t}"
            if t == "ping":
                role = "beat"
            elif t in ("confirm_subscription", "reject_subscription"):
                key, role = f"sub:{ident}", "reply"
                summary += f" {_channel(ident)}"
            elif t == "disconnect":
                summary += f" {short_value(v.get('reason'))}"
        elif "identifier" in v and "message" in v:
            summary = f"cable {_channel(ident)} {short_value(v['message'], 80)}"
        else:
            raise DecodeError("neither a command, a type nor a broadcast")
        return Decoded(self.name, (Packet(summary, f, key, role, method),))

    def encode(self, fields: Mapping[str, Any], state: Any = None) -> list[Frame]:
        if "command" not in fields and "type" not in fields and "message" not in fields:
            raise ValueError("an Action Cable message needs a command, a type or a message")
        return [(Opcode.TEXT, compact_json(dict(fields)).encode())]
