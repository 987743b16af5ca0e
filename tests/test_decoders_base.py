from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from devconsole.decoders.base import (
    Decoded,
    DecodeError,
    Packet,
    ProtocolDecoder,
    decode_message,
    from_jsonable,
    jsonable,
    short_value,
)
from devconsole.model import Opcode


class Crashy(ProtocolDecoder):
    name = "crashy"

    def decode(self, payload: bytes, opcode: int, side: Any, state: Any, seq: int = 0) -> Decoded:
        if payload == b"deep":
            raise RecursionError
        if payload == b"bad":
            raise DecodeError("bad packet")
        if payload == b"wrong":
            return "oops"  # type: ignore[return-value]
        raise KeyError("x")


def test_decode_message_turns_any_failure_into_a_reason() -> None:
    c = Crashy()
    assert decode_message(c, b"bad", Opcode.TEXT, "client").error == "bad packet"
    assert decode_message(c, b"deep", Opcode.TEXT, "client").error == "nested too deeply"
    assert decode_message(c, b"x", Opcode.TEXT, "client").error == "'x'"
    assert decode_message(c, b"wrong", Opcode.TEXT, "client").error == "decoder returned str"
    assert decode_message(c, b"", Opcode.PING, "client").error == "not a data message"


def test_decoded_value_summary_and_json() -> None:
    one = Decoded("p", (Packet("a", {"x": b"\x00"}),))
    assert one.value == {"x": b"\x00"} and one.summary == "a"
    assert one.to_json() == {"protocol": "p", "decoded": {"x": {"$b64": "AA=="}}}
    two = Decoded("p", (Packet("a", {"n": 1}), Packet("b", {"n": 2})), note="batch")
    assert two.summary == "a | b" and two.value == {"packets": [{"n": 1}, {"n": 2}]}
    waiting = Decoded("p", note="3 bytes continue")
    assert waiting.summary == "3 bytes continue"
    failed = Decoded("p", error="bad")
    assert failed.to_json() == {"protocol": "p", "error": "bad"} and not failed.ok


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.binary(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=10,
)


@given(json_like)
def test_jsonable_roundtrip(value: Any) -> None:
    out = jsonable(value)
    json.dumps(out)
    assert from_jsonable(json.loads(json.dumps(out))) == value


def test_jsonable_odd_values() -> None:
    assert jsonable({1: (1, 2), "f": float("nan")}) == {"1": [1, 2], "f": "nan"}
    assert short_value(b"abc") == "<3 bytes>" and short_value("x" * 100, 10) == '"xxxxxxxx…'
