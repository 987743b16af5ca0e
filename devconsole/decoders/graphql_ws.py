"""GraphQL over WebSocket: ``graphql-transport-ws`` (graphql-ws, the current protocol) and
the legacy ``graphql-ws`` of subscriptions-transport-ws.

Core module: no I/O. Every message is a JSON object ``{"type", "id"?, "payload"?}``.
Current: connection_init, connection_ack, ping, pong, subscribe, next, error, complete.
Legacy: connection_init, connection_ack, connection_error, ka, start, data, error,
complete, stop, connection_terminate.

Fields: ``type``, ``id``, ``payload``; ``operation`` (derived from the subscribe/start
payload: operationName or the operation's name) is not part of the message.
"""

from __future__ import annotations

import re
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

TYPES = frozenset(
    {
        "connection_init",
        "connection_ack",
        "ping",
        "pong",
        "subscribe",
        "next",
        "error",
        "complete",
        "connection_error",
        "ka",
        "start",
        "data",
        "stop",
        "connection_terminate",
    }
)
_OP = re.compile(r"^\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)")
_FIELD = re.compile(r"^\s*(?:(query|mutation|subscription)\b[^{]*)?\{\s*([_A-Za-z][_0-9A-Za-z]*)")


def operation_name(payload: Any) -> str | None:
    """The operation a subscribe/start payload runs: its operationName, the operation's
    own name, or its first field (``subscription { messages }`` -> ``messages``)."""
    if not isinstance(payload, dict):
        return None
    name = payload.get("operationName")
    if isinstance(name, str) and name:
        return name
    q = payload.get("query")
    if not isinstance(q, str):
        return None
    m = _OP.match(q)
    if m:
        return m.group(1)
    m = _FIELD.match(q)
    return m.group(2) if m else None


class GraphQLWSDecoder(ProtocolDecoder):
    name = "graphql-ws"
    title = "GraphQL over WebSocket (graphql-transport-ws and legacy graphql-ws)"
    short = "gql"
    subprotocols = ("graphql-transport-ws", "graphql-ws")

    def url_score(self, hs: Handshake) -> float:
        p = hs.path.lower()
        return 0.6 if "graphql" in p or p.endswith("/subscriptions") else 0.0

    def sniff(self, payload: bytes, opcode: int, side: Side) -> float:
        if opcode != Opcode.TEXT or b'"type"' not in payload[:4096]:
            return 0.0
        for t in (b'"connection_init"', b'"connection_ack"', b'"subscribe"', b'"start"'):
            if t in payload[:4096]:
                try:
                    v = loads_json(payload)
                except DecodeError:
                    return 0.0
                if isinstance(v, dict) and v.get("type") in TYPES:
                    return 0.9 if t != b'"start"' or "id" in v else 0.3
        return 0.0

    def decode(self, payload: bytes, opcode: int, side: Side, state: Any, seq: int = 0) -> Decoded:
        v = loads_json(payload)
        if not isinstance(v, dict):
            raise DecodeError("a GraphQL over WebSocket message is a JSON object")
        t = v.get("type")
        if not isinstance(t, str):
            raise DecodeError('missing "type"')
        if t not in TYPES:
            raise DecodeError(f"unknown message type {t!r}")
        fields = dict(v)
        mid = v.get("id")
        ids = "" if mid is None else f" id={mid}"
        payload_v = v.get("payload")
        key = None if mid is None else f"op:{mid}"
        role: str | None = None
        method: str | None = None
        summary = f"gql {t}{ids}"
        if t in ("subscribe", "start"):
            role, method = "request", operation_name(payload_v) or "operation"
            summary += f" {method}"
            variables = payload_v.get("variables") if isinstance(payload_v, dict) else None
            if variables:
                summary += f" {short_value(variables)}"
        elif t in ("next", "data"):
            role = "partial"
            if payload_v is not None:
                summary += f" {short_value(payload_v, 80)}"
        elif t == "error":
            role = "reply"
            summary += f" {short_value(payload_v, 80)}"
        elif t == "complete":
            # the server: the operation is done; the client: it stops listening
            role = "reply" if side == "server" else "cancel"
        elif t == "stop":
            role = "cancel"
        elif t == "connection_init":
            key, role, method = "init", "request", "connection_init"
        elif t in ("connection_ack", "connection_error"):
            key, role = "init", "reply"
        elif t in ("ping", "pong"):
            role = t
        elif t == "ka":
            role = "beat"
        return Decoded(self.name, (Packet(summary, fields, key, role, method),))

    def encode(self, fields: Mapping[str, Any], state: Any = None) -> list[Frame]:
        t = fields.get("type")
        if t not in TYPES:
            raise ValueError(f"unknown GraphQL over WebSocket type {t!r}")
        if t in ("subscribe", "start", "next", "data", "complete", "stop") and "id" not in fields:
            raise ValueError(f"{t} needs an id")
        return [(Opcode.TEXT, compact_json(dict(fields)).encode())]
