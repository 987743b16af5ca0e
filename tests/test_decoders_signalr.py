"""SignalR: no SignalR server runs here (it is ASP.NET Core), so the decoder is tested
against pysignalr's own codec, both ways: pysignalr encodes, devconsole decodes; devconsole
encodes, pysignalr decodes. Hand-built frames from the hub protocol spec cover the rest."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st
from pysignalr import messages as m
from pysignalr.protocol.json import JSONProtocol
from pysignalr.protocol.messagepack import MessagepackProtocol

from devconsole.decoders.base import decode_message
from devconsole.decoders.signalr import RS, SignalRDecoder
from devconsole.model import Opcode

SR = SignalRDecoder()


def dec(data: str | bytes, side: str = "client") -> Any:
    if isinstance(data, str):
        return decode_message(SR, data.encode(), Opcode.TEXT, side, None)  # type: ignore[arg-type]
    return decode_message(SR, data, Opcode.BINARY, side, None)  # type: ignore[arg-type]


MESSAGES = [
    (
        m.InvocationMessage("1", "SendMessage", ["alice", "hi"]),
        {
            "type": "invocation",
            "invocationId": "1",
            "target": "SendMessage",
            "arguments": ["alice", "hi"],
        },
    ),
    (
        m.CompletionMessage("1", result={"ok": True}),
        {"type": "completion", "invocationId": "1", "result": {"ok": True}},
    ),
    (
        m.CompletionMessage("2", error="boom"),
        {"type": "completion", "invocationId": "2", "error": "boom"},
    ),
    (
        m.StreamInvocationMessage("3", "Counter", [10, 500]),
        {
            "type": "stream_invocation",
            "invocationId": "3",
            "target": "Counter",
            "arguments": [10, 500],
        },
    ),
    (m.StreamItemMessage("3", 7), {"type": "stream_item", "invocationId": "3", "item": 7}),
    (m.CancelInvocationMessage("3"), {"type": "cancel_invocation", "invocationId": "3"}),
    (m.PingMessage(), {"type": "ping"}),
]


def _core(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields both encodings share (pysignalr adds empty headers/streamIds)."""
    return {
        k: v
        for k, v in fields.items()
        if k != "encoding" and (v or k not in ("headers", "streamIds"))
    }


def test_pysignalr_json_frames_decode() -> None:
    proto = JSONProtocol()
    for msg, expected in MESSAGES:
        d = dec(proto.encode(msg))
        assert d.ok, (msg, d.error)
        assert _core(d.packets[0].fields) == expected
        assert d.packets[0].fields["encoding"] == "json"
    hs = dec(proto.encode(m.HandshakeRequestMessage("json", 1)))
    assert hs.packets[0].fields == {
        "type": "handshake",
        "protocol": "json",
        "version": 1,
        "encoding": "json",
    }
    assert dec("{}" + RS.decode(), "server").packets[0].role == "reply"


def test_pysignalr_messagepack_frames_decode() -> None:
    proto = MessagepackProtocol()
    for msg, expected in MESSAGES:
        d = dec(proto.encode(msg))
        assert d.ok, (msg, d.error)
        assert _core(d.packets[0].fields) == expected


def test_devconsole_frames_decode_in_pysignalr() -> None:
    for encoding, proto in (("json", JSONProtocol()), ("messagepack", MessagepackProtocol())):
        fields = {
            "type": "invocation",
            "invocationId": "9",
            "target": "Echo",
            "arguments": [1, "x"],
            "encoding": encoding,
        }
        [(_op, payload)] = SR.encode(fields)
        [msg] = proto.decode(payload if encoding == "messagepack" else payload.decode())
        assert (msg.invocation_id, msg.target, list(msg.arguments)) == ("9", "Echo", [1, "x"])
        [(_op, payload)] = SR.encode(
            {"type": "completion", "invocationId": "9", "result": 3, "encoding": encoding}
        )
        [msg] = proto.decode(payload if encoding == "messagepack" else payload.decode())
        assert (msg.invocation_id, msg.result) == ("9", 3)


def test_several_records_pairing_and_summaries() -> None:
    d = dec('{"type":1,"invocationId":"5","target":"Send","arguments":["hi"]}\x1e{"type":6}\x1e')
    assert [p.role for p in d.packets] == ["request", "beat"]
    assert d.summary == 'signalr invocation Send id=5 ["hi"] | signalr ping'
    assert d.packets[0].key == "inv:5" and d.packets[0].method == "Send"
    assert dec('{"type":2,"invocationId":"5","item":1}\x1e', "server").packets[0].role == "partial"
    close = dec('{"type":7,"error":"bye","allowReconnect":true}\x1e', "server").packets[0]
    assert close.fields["allowReconnect"] is True


def test_errors_say_why() -> None:
    assert dec('{"type":1}').error == "a JSON hub message must end with the record separator 0x1E"
    assert dec('{"type":42}\x1e').error == "unknown message type 42"
    assert "record of 9 bytes" in (dec(b"\x09\x91\x06").error or "")
    assert dec(b"\x02" + msgpack.packb([99])).error == "unknown message type 99"


values = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5)


@given(
    st.sampled_from(["json", "messagepack"]),
    st.sampled_from(
        [
            "invocation",
            "stream_invocation",
            "stream_item",
            "completion",
            "cancel_invocation",
            "ping",
            "close",
        ]
    ),
    st.text(min_size=1, max_size=5),
    st.lists(values, max_size=3),
)
def test_decode_encode_roundtrip(encoding: str, t: str, inv: str, args: list[Any]) -> None:
    fields: dict[str, Any] = {"type": t}
    if t in ("invocation", "stream_invocation"):
        fields.update(invocationId=inv, target="T", arguments=args)
    elif t == "stream_item":
        fields.update(invocationId=inv, item=args)
    elif t == "completion":
        fields.update(invocationId=inv, result=args)
    elif t == "cancel_invocation":
        fields.update(invocationId=inv)
    elif t == "close":
        fields.update(error="e", allowReconnect=False)
    fields["encoding"] = encoding
    [(op, payload)] = SR.encode(fields)
    d = decode_message(SR, payload, op, "client", None)
    assert d.ok and d.packets[0].fields == fields


@given(st.binary(max_size=64), st.sampled_from([Opcode.TEXT, Opcode.BINARY]))
def test_fuzzed_input_never_raises(data: bytes, op: int) -> None:
    assert decode_message(SR, data, op, "client", None).protocol == "signalr"
