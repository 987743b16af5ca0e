"""protobuf by descriptor set: the descriptor set is built here with protobuf's own
descriptor_pb2 (what ``protoc --descriptor_set_out`` writes), so no protoc is needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devconsole.decoders.base import decode_message
from devconsole.decoders.protobuf import ProtobufDecoder, load_descriptor_set
from devconsole.decoders.protocols import get_protocol, parse_rules
from devconsole.decoders.tracker import ProtocolTracker
from devconsole.model import HandshakeEvent, Message, Opcode
from tests.factories import make_handshake


def write_desc(path: Path) -> Path:
    from google.protobuf import descriptor_pb2

    fd = descriptor_pb2.FileDescriptorProto(name="live.proto", package="live", syntax="proto3")
    msg = fd.message_type.add(name="Update")
    F = descriptor_pb2.FieldDescriptorProto
    msg.field.add(name="symbol", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    msg.field.add(name="price", number=2, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    msg.field.add(name="seq", number=3, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    msg.field.add(name="raw", number=4, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL)
    fds = descriptor_pb2.FileDescriptorSet(file=[fd])
    path.write_bytes(fds.SerializeToString())
    return path


@pytest.fixture(scope="module")
def desc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = write_desc(tmp_path_factory.mktemp("pb") / "live.desc")
    assert load_descriptor_set(p) == ["live.Update"]
    return p


def test_decode_encode_through_the_registry(desc: Path) -> None:
    dec = get_protocol("protobuf:live.Update")
    assert isinstance(dec, ProtobufDecoder)
    [(op, raw)] = dec.encode({"symbol": "ACME", "price": 12.5, "seq": 3})
    assert op == Opcode.BINARY
    d = decode_message(dec, raw, op, "server", None)
    assert d.packets[0].fields == {"symbol": "ACME", "price": 12.5, "seq": 3}
    assert d.summary == 'pb Update {"symbol":"ACME","price":12.5,"seq":3}'
    assert "not a live.Update" in (
        decode_message(dec, b"\xff\xff\xff", op, "server", None).error or ""
    )


def test_rules_pick_protobuf_per_path(desc: Path) -> None:
    tracker = ProtocolTracker(parse_rules(["/live/*=protobuf:live.Update"]))
    tracker.on_event(HandshakeEvent(make_handshake("c1", path="/live/quotes")))
    tracker.on_event(HandshakeEvent(make_handshake("c2", path="/other")))
    raw = get_protocol("protobuf:live.Update").encode({"symbol": "X"})[0][1]  # type: ignore[union-attr]
    m1 = Message(1, "c1", 1.0, "server", Opcode.BINARY, raw, len(raw), len(raw) + 2)
    m2 = Message(2, "c2", 1.0, "server", Opcode.BINARY, raw, len(raw), len(raw) + 2)
    tracker.on_event(m1)
    tracker.on_event(m2)
    assert tracker.decoded(m1).packets[0].fields == {"symbol": "X"}  # type: ignore[union-attr]
    assert tracker.decoded(m2) is None
    assert tracker.reason_of("c1") == "--decoder /live/*=protobuf:live.Update"


def test_unknown_types_and_bad_files(tmp_path: Path, desc: Path) -> None:
    with pytest.raises(ValueError, match=r"live\.Nope is not in the descriptor sets"):
        get_protocol("protobuf:live.Nope")
    with pytest.raises(ValueError, match="not in the descriptor sets"):
        parse_rules(["/x=protobuf:live.Nope"])
    bad = tmp_path / "bad.desc"
    bad.write_bytes(b"\xff\x00junk")
    with pytest.raises(ValueError, match="not a protobuf descriptor set"):
        load_descriptor_set(bad)


@given(st.text(max_size=8), st.integers(-(2**31), 2**31 - 1), st.binary(max_size=8))
def test_decode_encode_roundtrip(desc: Path, symbol: str, seq: int, raw: bytes) -> None:
    import base64

    dec = get_protocol("protobuf:live.Update")
    assert dec is not None

    fields: dict[str, Any] = {}
    if symbol:
        fields["symbol"] = symbol
    if seq:
        fields["seq"] = seq
    if raw:
        fields["raw"] = base64.b64encode(raw).decode()
    [(op, payload)] = dec.encode(fields)
    assert decode_message(dec, payload, op, "client", None).packets[0].fields == fields


@given(st.binary(max_size=64))
def test_fuzzed_input_never_raises(desc: Path, data: bytes) -> None:
    dec = get_protocol("protobuf:live.Update")
    assert dec is not None
    assert (
        decode_message(dec, data, Opcode.BINARY, "client", None).protocol == "protobuf:live.Update"
    )
