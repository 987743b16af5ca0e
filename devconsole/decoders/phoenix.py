"""Phoenix channels (Elixir) over WebSocket: the v1 JSON object and v2 JSON array
serializers, and v2's binary push/reply/broadcast messages.

Core module: no I/O. v1 (``vsn=1.0.0``): ``{"topic", "event", "payload", "ref",
"join_ref"}``; v2 (``vsn=2.0.0``): ``[join_ref, ref, topic, event, payload]``. A client
push with a ``ref`` is answered by a ``phx_reply`` with the same ref; ``heartbeat`` on
the ``phoenix`` topic is the client's heartbeat (every 30 s by default).

Fields: ``join_ref``, ``ref``, ``topic``, ``event``, ``payload`` (bytes for a binary
push), ``vsn`` (``1`` or ``2``: the serializer).
"""

from __future__ import annotations

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

_KINDS = {0: "push", 1: "reply", 2: "broadcast"}


class PhoenixDecoder(ProtocolDecoder):
    name = "phoenix"
    title = "Phoenix channels"
    short = "phx"

    def url_score(self, hs: Handshake) -> float:
        vsn = any(k == "vsn" for k, _ in hs.query)
        if hs.path.lower().endswith("/websocket") and (vsn or "/socket" in hs.path.lower()):
            return 0.9 if vsn else 0.6
        return 0.0

    def sniff(self, payload: bytes, opcode: int, side: Side) -> float:
        if opcode != Opcode.TEXT:
            return 0.0
        head = payload[:2048]
        if b'"phx_' in head or b'"phoenix"' in head:
            try:
                self.decode(payload, opcode, side, None)
            except Exception:
                return 0.0
            return 0.9
        return 0.0

    def decode(self, payload: bytes, opcode: int, side: Side, state: Any, seq: int = 0) -> Decoded:
        if opcode == Opcode.BINARY:
            return Decoded(self.name, (self._packet(_binary(payload), side),))
        v = loads_json(payload)
        if isinstance(v, list):
            if len(v) != 5:
                raise DecodeError("a v2 message is [join_ref, ref, topic, event, payload]")
            f = dict(zip(("join_ref", "ref", "topic", "event", "payload"), v, strict=True))
            f["vsn"] = 2
        elif isinstance(v, dict):
            if not isinstance(v.get("topic"), str) or not isinstance(v.get("event"), str):
                raise DecodeError("a v1 message needs a topic and an event")
            f = {k: v.get(k) for k in ("join_ref", "ref", "topic", "event", "payload")}
            f.update({k: x for k, x in v.items() if k not in f})
            f["vsn"] = 1
        else:
            raise DecodeError("a Phoenix message is a JSON array (v2) or object (v1)")
        if not isinstance(f["topic"], str) or not isinstance(f["event"], str):
            raise DecodeError("topic and event must be strings")
        return Decoded(self.name, (self._packet(f, side),))

    def _packet(self, f: dict[str, Any], side: Side) -> Packet:
        topic, event, ref = f["topic"], f["event"], f.get("ref")
        payload = f.get("payload")
        summary = f"phx {topic} {event}"
        if ref is not None:
            summary += f" ref={ref}"
        key = role = method = None
        if event == "phx_reply" and isinstance(payload, dict) and "status" in payload:
            summary += f" {payload['status']}"
            resp = payload.get("response")
            if resp not in (None, {}):
                summary += f" {short_value(resp, 80)}"
        elif payload not in (None, {}):
            summary += f" {short_value(payload, 80)}"
        if topic == "phoenix" and event == "heartbeat":
            role = "ping"
        elif topic == "phoenix" and event == "phx_reply":
            role = "pong"
        elif ref is not None and event == "phx_reply":
            key, role = f"ref:{ref}", "reply"
        elif ref is not None and side == "client":
            key, role, method = f"ref:{ref}", "request", event
        return Packet(summary, f, key, role, method)

    def encode(self, fields: Mapping[str, Any], state: Any = None) -> list[Frame]:
        topic, event = fields.get("topic"), fields.get("event")
        if not isinstance(topic, str) or not isinstance(event, str):
            raise ValueError("a Phoenix message needs a string topic and event")
        vsn = fields.get("vsn", 2)
        if isinstance(fields.get("payload"), bytes | bytearray):
            return [(Opcode.BINARY, _encode_binary(fields))]
        if vsn == 1:
            body = {k: v for k, v in fields.items() if k != "vsn"}
            return [(Opcode.TEXT, compact_json(body).encode())]
        arr = [fields.get("join_ref"), fields.get("ref"), topic, event, fields.get("payload")]
        return [(Opcode.TEXT, compact_json(arr).encode())]


def _binary(data: bytes) -> dict[str, Any]:
    if not data:
        raise DecodeError("an empty binary message")
    kind = _KINDS.get(data[0])
    if kind is None:
        raise DecodeError(f"unknown binary message kind {data[0]}")
    sizes_n = 2 if kind == "broadcast" else 4
    if len(data) < 1 + sizes_n:
        raise DecodeError("binary header cut short")
    sizes = list(data[1 : 1 + sizes_n])
    pos = 1 + sizes_n
    parts = []
    for n in sizes:
        if pos + n > len(data):
            raise DecodeError("binary header cut short")
        try:
            parts.append(data[pos : pos + n].decode("utf-8"))
        except UnicodeDecodeError:
            raise DecodeError("binary header strings are not UTF-8") from None
        pos += n
    rest = data[pos:]
    if kind == "broadcast":
        return {
            "join_ref": None,
            "ref": None,
            "topic": parts[0],
            "event": parts[1],
            "payload": rest,
            "vsn": 2,
        }
    join_ref, ref, topic, ev = parts
    if kind == "reply":
        return {
            "join_ref": join_ref or None,
            "ref": ref,
            "topic": topic,
            "event": "phx_reply",
            "payload": {"status": ev, "response": rest},
            "vsn": 2,
        }
    return {
        "join_ref": join_ref or None,
        "ref": ref or None,
        "topic": topic,
        "event": ev,
        "payload": rest,
        "vsn": 2,
    }


def _encode_binary(f: Mapping[str, Any]) -> bytes:
    def b(v: Any) -> bytes:
        raw = ("" if v is None else str(v)).encode()
        if len(raw) > 255:
            raise ValueError("binary header strings are at most 255 bytes")
        return raw

    join_ref, ref, topic, event = (
        b(f.get("join_ref")),
        b(f.get("ref")),
        b(f["topic"]),
        b(f["event"]),
    )
    payload = bytes(f["payload"])
    if not ref and not join_ref:
        return bytes([2, len(topic), len(event)]) + topic + event + payload
    return (
        bytes([0, len(join_ref), len(ref), len(topic), len(event)])
        + join_ref
        + ref
        + topic
        + event
        + payload
    )
