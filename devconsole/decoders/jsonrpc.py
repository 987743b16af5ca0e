"""JSON-RPC 2.0 over WebSocket: requests, notifications, responses and batches.

Core module: no I/O. Fields: ``jsonrpc``, ``method``, ``id``, ``params`` (requests and
notifications), ``result`` / ``error`` (responses). A batch (a JSON array) decodes to one
packet per element (``{"packets": [...]}``, which ``encode`` also takes).
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

_MEMBERS = ("jsonrpc", "method", "params", "id", "result", "error")


class JsonRpcDecoder(ProtocolDecoder):
    name = "jsonrpc"
    title = "JSON-RPC 2.0"
    short = "rpc"
    subprotocols = ("jsonrpc", "json-rpc", "jsonrpc-2.0", "json-rpc-2.0")

    def url_score(self, hs: Handshake) -> float:
        p = hs.path.lower()
        return 0.5 if "jsonrpc" in p or "json-rpc" in p or p.endswith("/rpc") else 0.0

    def sniff(self, payload: bytes, opcode: int, side: Side) -> float:
        if opcode != Opcode.TEXT or b'"jsonrpc"' not in payload[:4096]:
            return 0.0
        head = payload.lstrip()[:1]
        return 0.95 if head in (b"{", b"[") else 0.0

    def decode(self, payload: bytes, opcode: int, side: Side, state: Any, seq: int = 0) -> Decoded:
        value = loads_json(payload)
        if isinstance(value, list):
            if not value:
                raise DecodeError("an empty batch")
            packets = [self._one(v) for v in value]
            return Decoded(self.name, tuple(packets), note=f"batch of {len(packets)}")
        return Decoded(self.name, (self._one(value),))

    def _one(self, v: Any) -> Packet:
        if not isinstance(v, dict):
            raise DecodeError("a JSON-RPC message must be an object")
        if v.get("jsonrpc") != "2.0":
            raise DecodeError('missing "jsonrpc": "2.0"')
        fields: dict[str, Any] = {k: v[k] for k in _MEMBERS if k in v}
        for k, x in v.items():  # extension members are kept
            if k not in fields:
                fields[k] = x
        rid = v.get("id")
        ids = "" if rid is None else f" id={short_value(rid)}"
        key = None if rid is None else f"id:{compact_json(rid)}"
        if "method" in v:
            method = v["method"]
            if not isinstance(method, str):
                raise DecodeError("method must be a string")
            params = v.get("params")
            shown = "" if params is None else f" {short_value(params)}"
            if "id" in v:
                return Packet(f"rpc {method}{ids}{shown}", fields, key, "request", method)
            return Packet(f"rpc {method}{shown} (notification)", fields, method=method)
        if "error" in v:
            err = v["error"]
            what = short_value(err.get("message") if isinstance(err, dict) else err)
            code = err.get("code") if isinstance(err, dict) else None
            return Packet(
                f"rpc error{ids} {code if code is not None else ''} {what}".replace("  ", " "),
                fields,
                key,
                "reply",
            )
        if "result" in v:
            return Packet(f"rpc result{ids} {short_value(v['result'])}", fields, key, "reply")
        raise DecodeError("neither a request (method) nor a response (result/error)")

    def encode(self, fields: Mapping[str, Any], state: Any = None) -> list[Frame]:
        if "packets" in fields:  # a batch
            items = fields["packets"]
            if not isinstance(items, list) or not items:
                raise ValueError("packets must be a non-empty list")
            body = [self._obj(f) for f in items]
            return [(Opcode.TEXT, compact_json(body).encode())]
        return [(Opcode.TEXT, compact_json(self._obj(fields)).encode())]

    def _obj(self, fields: Any) -> dict[str, Any]:
        if not isinstance(fields, Mapping):
            raise ValueError("a JSON-RPC message is an object")
        out = {"jsonrpc": "2.0"}
        out.update({k: v for k, v in fields.items() if k != "jsonrpc"})
        if "method" not in out and "result" not in out and "error" not in out:
            raise ValueError("needs a method (request) or a result/error (response)")
        return out


def request(method: str, params: Any = None, id: Any = None) -> dict[str, Any]:
    """The fields of a request (or a notification when ``id`` is None)."""
    out: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        out["params"] = params
    if id is not None:
        out["id"] = id
    return out
