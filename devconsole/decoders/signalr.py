"""ASP.NET Core SignalR hub protocols: JSON (text) and MessagePack (binary).

Core module: no I/O. JSON records end with the record separator 0x1E; MessagePack
records are msgpack arrays, each prefixed with its length as a 7-bit varint. The
handshake (``{"protocol":"json"|"messagepack","version":1}`` and the server's ``{}`` or
``{"error"}``) is JSON in both cases. A message may hold several records.

Fields, the same for both encodings: ``type`` (handshake, handshake_response,
invocation, stream_item, completion, stream_invocation, cancel_invocation, ping, close,
ack, sequence), ``invocationId``, ``target``, ``arguments``, ``streamIds``, ``headers``,
``item``, ``result``, ``error``, ``allowReconnect``, ``sequenceId``; the handshake's
``protocol`` and ``version``. ``encoding`` says json or messagepack.
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
from devconsole.model import Handshake, Opcode, Side

RS = b"\x1e"
TYPES = {
    1: "invocation",
    2: "stream_item",
    3: "completion",
    4: "stream_invocation",
    5: "cancel_invocation",
    6: "ping",
    7: "close",
    8: "ack",
    9: "sequence",
}
_NUM = {v: k for k, v in TYPES.items()}
MAX_RECORDS = 10_000


class SignalRDecoder(ProtocolDecoder):
    name = "signalr"
    title = "SignalR (JSON and MessagePack hub protocols)"
    short = "signalr"

    def url_score(self, hs: Handshake) -> float:
        p = hs.path.lower()
        if "/signalr" in p:
            return 0.9
        if p.endswith("hub") and any(k == "id" for k, _ in hs.query):
            return 0.7  # /chathub?id=<connection token>
        return 0.0

    def sniff(self, payload: bytes, opcode: int, side: Side) -> float:
        if opcode == Opcode.TEXT and payload.endswith(RS):
            if b'"protocol"' in payload[:200] or b'"type"' in payload[:200]:
                return 0.95
            if payload == b"{}" + RS:
                return 0.9
        return 0.0

    def decode(self, payload: bytes, opcode: int, side: Side, state: Any, seq: int = 0) -> Decoded:
        if opcode == Opcode.TEXT:
            packets = self._json_records(payload)
        else:
            packets = self._msgpack_records(payload)
        return Decoded(self.name, tuple(packets))

    # ----------------------------------------------------------------- JSON

    def _json_records(self, payload: bytes) -> list[Packet]:
        if not payload.endswith(RS):
            raise DecodeError("a JSON hub message must end with the record separator 0x1E")
        records = payload[:-1].split(RS)
        if len(records) > MAX_RECORDS:
            raise DecodeError("too many records")
        out: list[Packet] = []
        for raw in records:
            v = loads_json(raw)
            if not isinstance(v, dict):
                raise DecodeError("a record must be a JSON object")
            out.append(self._packet(self._from_json(v), "json"))
        return out

    @staticmethod
    def _from_json(v: dict[str, Any]) -> dict[str, Any]:
        if "type" not in v:
            if "protocol" in v:
                return {"type": "handshake", **v}
            return {"type": "handshake_response", **v}
        t = v["type"]
        if not isinstance(t, int) or isinstance(t, bool) or t not in TYPES:
            raise DecodeError(f"unknown message type {t!r}")
        out = dict(v)
        out["type"] = TYPES[t]
        return out

    # ----------------------------------------------------------------- MessagePack

    def _msgpack_records(self, payload: bytes) -> list[Packet]:
        out: list[Packet] = []
        pos = 0
        n = len(payload)
        while pos < n:
            if len(out) >= MAX_RECORDS:
                raise DecodeError("too many records")
            size, shift = 0, 0
            for i in range(5):
                if pos >= n:
                    raise DecodeError("a record length is cut short")
                b = payload[pos]
                pos += 1
                size |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
                if i == 4:
                    raise DecodeError("a record length longer than 5 bytes")
            if pos + size > n:
                raise DecodeError(f"a record of {size} bytes but {n - pos} left")
            try:
                arr = msgpack.unpackb(
                    payload[pos : pos + size], raw=False, strict_map_key=False, timestamp=0
                )
            except Exception as e:
                raise DecodeError(f"bad MessagePack: {e}") from None
            pos += size
            out.append(self._packet(self._from_msgpack(arr), "messagepack"))
        if not out:
            raise DecodeError("an empty message")
        return out

    @staticmethod
    def _from_msgpack(arr: Any) -> dict[str, Any]:
        if not isinstance(arr, list) or not arr or not isinstance(arr[0], int):
            raise DecodeError("a MessagePack record is an array starting with its type")
        t = TYPES.get(arr[0])
        if t is None:
            raise DecodeError(f"unknown message type {arr[0]!r}")
        f: dict[str, Any] = {"type": t}

        def at(i: int) -> Any:
            if i >= len(arr):
                raise DecodeError(f"{t}: missing element {i}")
            return arr[i]

        if t in (
            "invocation",
            "stream_invocation",
            "stream_item",
            "completion",
            "cancel_invocation",
        ):
            if at(1):
                f["headers"] = at(1)
            if at(2) is not None:
                f["invocationId"] = at(2)
        if t in ("invocation", "stream_invocation"):
            f["target"] = at(3)
            f["arguments"] = at(4)
            if len(arr) > 5 and arr[5]:
                f["streamIds"] = arr[5]
        elif t == "stream_item":
            f["item"] = at(3)
        elif t == "completion":
            kind = at(3)
            if kind == 1:
                f["error"] = at(4)
            elif kind == 3:
                f["result"] = at(4)
            elif kind != 2:
                raise DecodeError(f"completion: unknown result kind {kind!r}")
        elif t == "close":
            if at(1) is not None:
                f["error"] = at(1)
            if len(arr) > 2:
                f["allowReconnect"] = arr[2]
        elif t in ("ack", "sequence"):
            f["sequenceId"] = at(1)
        return f

    # ----------------------------------------------------------------- packets

    def _packet(self, f: dict[str, Any], encoding: str) -> Packet:
        f["encoding"] = encoding
        t = f["type"]
        inv = f.get("invocationId")
        key = None if inv is None else f"inv:{inv}"
        ids = "" if inv is None else f" id={inv}"
        summary = f"signalr {t}{ids}"
        role = method = None
        if t in ("invocation", "stream_invocation"):
            target = f.get("target")
            method = str(target)
            summary = f"signalr {t} {target}{ids} {short_value(f.get('arguments'), 80)}"
            role = "request" if key else None
        elif t == "stream_item":
            role = "partial"
            summary += f" {short_value(f.get('item'), 80)}"
        elif t == "completion":
            role = "reply"
            if "error" in f:
                summary += f" error {short_value(f['error'])}"
            elif "result" in f:
                summary += f" {short_value(f['result'], 80)}"
        elif t == "cancel_invocation":
            role = "cancel"
        elif t == "ping":
            role = "beat"
        elif t == "handshake":
            key, role, method = "handshake", "request", "handshake"
            summary = f"signalr handshake {f.get('protocol')} v{f.get('version')}"
        elif t == "handshake_response":
            key, role = "handshake", "reply"
            if "error" in f:
                summary += f" error {short_value(f['error'])}"
        elif t == "close" and "error" in f:
            summary += f" {short_value(f['error'])}"
        return Packet(summary, f, key, role, method)

    # ----------------------------------------------------------------- encode

    def encode(self, fields: Mapping[str, Any], state: Any = None) -> list[Frame]:
        t = fields.get("type")
        encoding = fields.get("encoding", "json")
        body = {k: v for k, v in fields.items() if k not in ("type", "encoding")}
        if t in ("handshake", "handshake_response"):
            return [(Opcode.TEXT, compact_json(body).encode() + RS)]
        if t not in _NUM:
            raise ValueError(f"unknown SignalR message type {t!r}")
        if encoding == "json":
            return [(Opcode.TEXT, compact_json({"type": _NUM[t], **body}).encode() + RS)]
        if encoding != "messagepack":
            raise ValueError("encoding must be json or messagepack")
        arr: list[Any] = [_NUM[t]]
        if t in (
            "invocation",
            "stream_invocation",
            "stream_item",
            "completion",
            "cancel_invocation",
        ):
            arr += [body.get("headers") or {}, body.get("invocationId")]
        if t in ("invocation", "stream_invocation"):
            arr += [body.get("target"), body.get("arguments", [])]
            if body.get("streamIds"):
                arr.append(body["streamIds"])
        elif t == "stream_item":
            arr.append(body.get("item"))
        elif t == "completion":
            if "error" in body:
                arr += [1, body["error"]]
            elif "result" in body:
                arr += [3, body["result"]]
            else:
                arr.append(2)
        elif t == "close":
            arr.append(body.get("error"))
            if "allowReconnect" in body:
                arr.append(body["allowReconnect"])
        elif t in ("ack", "sequence"):
            arr.append(body.get("sequenceId", 0))
        packed: bytes = msgpack.packb(arr, use_bin_type=True)
        size = len(packed)
        prefix = bytearray()
        while True:
            b = size & 0x7F
            size >>= 7
            prefix.append(b | (0x80 if size else 0))
            if not size:
                break
        return [(Opcode.BINARY, bytes(prefix) + packed)]
