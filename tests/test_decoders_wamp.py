"""WAMP: hand-built messages from the WAMP v2 basic profile (JSON and MessagePack
serializations); no WAMP router is packaged here (autobahn's would also replace
mitmproxy's cryptography)."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from devconsole.decoders.base import decode_message
from devconsole.decoders.wamp import SCHEMA, WampDecoder
from devconsole.model import Opcode

WAMP = WampDecoder()


def dec(data: str | bytes, side: str = "client") -> Any:
    op = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
    raw = data.encode() if isinstance(data, str) else data
    return decode_message(WAMP, raw, op, side, None)  # type: ignore[arg-type]


def test_call_result_error_and_session() -> None:
    call = dec('[48,7814135,{},"com.myapp.add2",[23,7]]')
    p = call.packets[0]
    assert p.fields == {
        "type": "CALL",
        "request": 7814135,
        "options": {},
        "procedure": "com.myapp.add2",
        "args": [23, 7],
        "encoding": "json",
    }
    assert (p.key, p.role, p.method) == ("req:7814135", "request", "com.myapp.add2")
    res = dec(b"\x94\x32\xce\x00\x77\x3c\xf7\x80\x91\x1e", "server").packets[0]
    assert res.fields["type"] == "RESULT" and res.fields["args"] == [30] and res.role == "reply"
    err = dec('[8,48,7814135,{},"wamp.error.no_such_procedure"]', "server").packets[0]
    assert err.fields["request_type"] == "CALL" and err.role == "reply"
    assert dec('[1,"realm1",{"roles":{}}]').packets[0].key == "session"
    assert dec('[2,9129137332,{"roles":{}}]', "server").packets[0].role == "reply"
    pub = dec('[16,239714735,{},"com.myapp.mytopic1",["Hello, world!"]]').packets[0]
    assert pub.role is None  # not acknowledged: no reply will come
    ack = dec('[16,1,{"acknowledge":true},"t"]').packets[0]
    assert ack.role == "request"


def test_errors() -> None:
    assert dec("[99]").error == "unknown WAMP message code 99"
    assert dec("[48,1]").error == "CALL has 1 elements, expected 3-5"
    assert dec('{"a":1}').error == "a WAMP message is an array starting with its code"


@given(st.sampled_from(sorted(SCHEMA)), st.sampled_from(["json", "msgpack"]), st.integers(0, 2))
def test_decode_encode_roundtrip(code: int, encoding: str, optional: int) -> None:
    name, names = SCHEMA[code]
    fields: dict[str, Any] = {"type": name}
    for i, n in enumerate(names):
        if (n == "args" and optional < 1) or (n == "kwargs" and optional < 2):
            continue
        fields[n] = {
            "args": [1, "a"],
            "kwargs": {"k": 1},
            "details": {},
            "options": {},
            "extra": {},
            "request_type": "CALL",
        }.get(
            n,
            f"x{i}"
            if n in ("realm", "topic", "procedure", "error", "reason", "authmethod", "signature")
            else i + 1,
        )
    fields["encoding"] = encoding
    [(op, raw)] = WAMP.encode(fields)
    if encoding == "msgpack":
        assert isinstance(msgpack.unpackb(raw), list)
    d = decode_message(WAMP, raw, op, "client", None)
    assert d.ok and d.packets[0].fields == fields


@given(st.binary(max_size=64), st.sampled_from([Opcode.TEXT, Opcode.BINARY]))
def test_fuzzed_input_never_raises(data: bytes, op: int) -> None:
    assert decode_message(WAMP, data, op, "client", None).protocol == "wamp"
