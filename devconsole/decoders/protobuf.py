"""Protocol Buffers messages, decoded from a user-given descriptor set: the built-in use of
the decoder plugin interface.

Core module: no network or terminal I/O (``load_descriptor_set`` reads the file it is
given). Needs the ``protobuf`` package (``pip install devconsole[protobuf]``)::

    protoc --include_imports --descriptor_set_out=app.desc app.proto
    devconsole tail --proto-desc app.desc --proto-type '/live/*=app.Update'

Each binary message of a matching connection is one ``pkg.Message``; its fields are
``json_format.MessageToDict``'s (camelCase names as in proto3 JSON, 64-bit integers as
strings, bytes as base64), and ``encode`` takes the same dict back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from devconsole.decoders.base import (
    Decoded,
    DecodeError,
    Frame,
    Packet,
    ProtocolDecoder,
    short_value,
)
from devconsole.model import Opcode, Side

PREFIX = "protobuf"
_pool: Any = None
_loaded: list[str] = []


def _require() -> Any:
    try:
        from google.protobuf import descriptor_pool
    except ImportError:
        raise ValueError("the protobuf package is not installed (pip install protobuf)") from None
    return descriptor_pool


def load_descriptor_set(path: str | os.PathLike[str]) -> list[str]:
    """Add the messages of a ``FileDescriptorSet`` (``protoc --descriptor_set_out``) to
    the pool ``protobuf:NAME`` decoders use; returns the message names it defines. Raises
    ValueError (not a descriptor set, protobuf missing) or OSError."""
    global _pool
    descriptor_pool = _require()
    from google.protobuf import descriptor_pb2

    with open(path, "rb") as fh:
        data = fh.read()
    fds = descriptor_pb2.FileDescriptorSet()
    try:
        fds.ParseFromString(data)
    except Exception as e:
        raise ValueError(f"{os.fspath(path)}: not a protobuf descriptor set ({e})") from None
    if not fds.file:
        raise ValueError(f"{os.fspath(path)}: an empty descriptor set")
    if _pool is None:
        _pool = descriptor_pool.DescriptorPool()
    names: list[str] = []
    for fd in fds.file:
        try:
            _pool.Add(fd)
        except TypeError as e:  # already added (the same file twice): fine if identical
            if "duplicate" not in str(e).lower() and "conflict" not in str(e).lower():
                raise ValueError(f"{os.fspath(path)}: {e}") from None
        pkg = f"{fd.package}." if fd.package else ""
        names.extend(pkg + m.name for m in fd.message_type)
    _loaded.append(os.fspath(path))
    return names


class ProtobufDecoder(ProtocolDecoder):
    """``protobuf:pkg.Message``: one protobuf message per binary WebSocket message."""

    short = "pb"
    title = "Protocol Buffers (from a descriptor set)"

    def __init__(self, type_name: str) -> None:
        _require()
        if _pool is None:
            raise ValueError(f"no descriptor set loaded (--proto-desc) to find {type_name}")
        from google.protobuf import message_factory

        try:
            desc = _pool.FindMessageTypeByName(type_name)
        except KeyError:
            raise ValueError(
                f"{type_name} is not in the descriptor sets ({', '.join(_loaded)})"
            ) from None
        self.type_name = type_name
        self.name = f"{PREFIX}:{type_name}"  # type: ignore[misc]
        self._cls = message_factory.GetMessageClass(desc)

    def decode(self, payload: bytes, opcode: int, side: Side, state: Any, seq: int = 0) -> Decoded:
        from google.protobuf import json_format
        from google.protobuf.message import DecodeError as PbError

        msg = self._cls()
        try:
            msg.ParseFromString(payload)
        except PbError as e:
            raise DecodeError(f"not a {self.type_name}: {e}") from None
        fields = json_format.MessageToDict(msg, preserving_proto_field_name=False)
        summary = f"pb {self.type_name.rsplit('.', 1)[-1]} {short_value(fields, 80)}"
        return Decoded(self.name, (Packet(summary, fields),))

    def encode(self, fields: Mapping[str, Any], state: Any = None) -> list[Frame]:
        from google.protobuf import json_format

        msg = self._cls()
        try:
            json_format.ParseDict(dict(fields), msg)
        except json_format.ParseError as e:
            raise ValueError(f"not a {self.type_name}: {e}") from None
        return [(Opcode.BINARY, msg.SerializeToString())]


def _factory(arg: str) -> ProtocolDecoder:
    if not arg:
        raise ValueError("name the message type: protobuf:pkg.Message")
    return ProtobufDecoder(arg)


def install() -> None:
    """Make ``protobuf:NAME`` decoders available (the registry calls it on import)."""
    from devconsole.decoders.protocols import register_factory

    register_factory(PREFIX, _factory)
