from __future__ import annotations

import datetime
import json
import math

import cbor2
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devconsole.decoders.views import (
    MAX_LINES,
    MAX_NODES,
    PARSE_LIMIT,
    CborView,
    CloseView,
    HexView,
    JsonView,
    MsgpackView,
    Node,
    Rendered,
    TextView,
    compact,
    decode_prefix,
    hexdump,
    pretty,
    to_tree,
)
from devconsole.model import ControlFrame, Message, Opcode


def msg(payload: bytes, opcode: int = Opcode.TEXT, size: int | None = None) -> Message:
    return Message(
        seq=1,
        conn="c",
        ts=0.0,
        side="client",
        opcode=opcode,
        payload=payload,
        size=len(payload) if size is None else size,
        wire_size=len(payload) + 2,
    )


def close_frame(code: int | None, reason: str = "", error: str | None = None) -> ControlFrame:
    payload = b"" if code is None else code.to_bytes(2, "big") + reason.encode()
    return ControlFrame(
        seq=2,
        conn="c",
        ts=0.0,
        side="server",
        opcode=Opcode.CLOSE,
        payload=payload,
        wire_size=len(payload) + 2,
        code=code,
        reason=reason,
        error=error,
    )


def find(node: Node, *labels: str) -> Node:
    for label in labels:
        node = next(c for c in node.children if c.label == label)
    return node


# --------------------------------------------------------------------------- json

DOC = {"type": "ping", "n": [1, 2.5, {"x": None}], "ok": True, "s": "é ✓", "empty": {}}


def test_json_render_is_json_dumps() -> None:
    payload = json.dumps(DOC).encode()
    r = JsonView().render(payload, msg(payload))
    assert r == Rendered("json", json.dumps(DOC, indent=2, ensure_ascii=False), r.tree)
    assert r.error is None
    assert r.note is None
    tree = r.tree
    assert tree is not None
    assert tree.label == "root"
    assert tree.value_repr == "{5 keys}"
    assert [c.label for c in tree.children] == ["type", "n", "ok", "s", "empty"]
    assert find(tree, "type").value_repr == '"ping"'
    assert find(tree, "n").value_repr == "[3 items]"
    assert find(tree, "n", "[1]").value_repr == "2.5"
    assert find(tree, "n", "[2]", "x").value_repr == "null"
    assert find(tree, "ok").value_repr == "true"
    assert find(tree, "empty").value_repr == "{0 keys}"
    assert find(tree, "empty").children == []


def test_json_scores() -> None:
    v = JsonView()
    obj = b'{"a": 1}'
    assert v.score(obj, msg(obj)) == 0.9
    assert v.score(b" [1, 2] ", msg(b"")) == 0.9
    assert v.score(obj, msg(obj, Opcode.BINARY)) == 0.9
    assert 0 < v.score(b"3", msg(b"3")) < TextView().score(b"3", msg(b"3"))
    assert v.score(b"hello", msg(b"hello")) == 0
    assert v.score(b'{"a": 1', msg(b"")) == 0
    assert v.score(b"", msg(b"")) == 0
    assert v.score(b'{"a": "\xff"}', None) == 0  # not UTF-8
    assert v.score(b"\xef\xbb\xbf{}", None) == 0  # a BOM is not JSON
    assert v.score(obj, close_frame(1000)) == 0


def test_json_invalid_renders_raw_text_with_error() -> None:
    r = JsonView().render(b'{"a": 1,,}', None)
    assert r.text == '{"a": 1,,}'
    assert r.error is not None
    assert r.error.startswith("invalid JSON")
    assert r.tree is None


def test_json_truncated_payload() -> None:
    payload = b'{"a": "' + b"x" * 20
    r = JsonView().render(payload, msg(payload, size=1000))
    assert r.error is not None
    assert r.note == f"payload truncated by capture: {len(payload)} of 1000 bytes"


def test_json_lone_surrogates_are_escaped() -> None:
    r = JsonView().render(b'{"s": "\\ud800x"}', None)
    assert '"\\ud800x"' in r.text
    r.text.encode("utf-8")  # encodable: no lone surrogate left in the text


def test_json_nan_and_big_numbers() -> None:
    r = JsonView().render(b"[NaN, Infinity, -Infinity, 123456789012345678901234567890]", None)
    assert r.text.split("\n")[1:5] == [
        "  NaN,",
        "  Infinity,",
        "  -Infinity,",
        "  123456789012345678901234567890",
    ]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(blacklist_categories=["Cs"])),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(blacklist_categories=["Cs"])), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(deadline=None)
@given(json_values)
def test_pretty_equals_json_dumps(value: object) -> None:
    text, cut = pretty(value)
    assert not cut
    assert text == json.dumps(value, indent=2, ensure_ascii=False)


@settings(deadline=None)
@given(json_values)
def test_compact_equals_json_dumps(value: object) -> None:
    assert compact(value, 10**6) == json.dumps(value, ensure_ascii=False)


# --------------------------------------------------------------------------- msgpack


def test_msgpack_render() -> None:
    doc = {
        "type": "ping",
        "blob": b"\x00\x01\xff",
        3: [1.5, True, None],
        "ts": msgpack.Timestamp(1_700_000_000, 5),
        "ext": msgpack.ExtType(7, b"\xab"),
    }
    payload = msgpack.packb(doc)
    item = msg(payload, Opcode.BINARY)
    view = MsgpackView()
    assert view.score(payload, item) == 0.8
    r = view.render(payload, item)
    assert r.error is None
    assert r.text == "\n".join(
        [
            "{",
            '  "type": "ping",',
            '  "blob": <3 bytes 0001ff>,',
            "  3: [",
            "    1.5,",
            "    true,",
            "    null",
            "  ],",
            '  "ts": <timestamp 2023-11-14T22:13:20.000000005Z>,',
            '  "ext": <ext 7 1 byte ab>',
            "}",
        ]
    )


def test_msgpack_render_tree_and_keys() -> None:
    payload = msgpack.packb({1: {"a": b"x" * 100}, "k": [1, 2]})
    r = MsgpackView().render(payload, msg(payload, Opcode.BINARY))
    assert r.tree is not None
    assert [c.label for c in r.tree.children] == ["1", "k"]
    blob = find(r.tree, "1", "a").value_repr
    assert blob is not None
    assert blob.startswith("<100 bytes 7878")
    assert blob.endswith("…>")


def test_msgpack_timestamp_out_of_range_and_invalid_utf8() -> None:
    payload = msgpack.packb([msgpack.Timestamp(2**60, 0)]) + b""
    r = MsgpackView().render(payload, None)
    assert "<timestamp" in r.text
    bad_str = b"\x91\xa2\xff\xfe"  # [str of 2 invalid UTF-8 bytes]
    r = MsgpackView().render(bad_str, None)
    assert r.error is None
    assert '"\\udcff\\udcfe"' in r.text


def test_msgpack_scores() -> None:
    v = MsgpackView()
    packed = msgpack.packb({"a": 1})
    assert v.score(packed, msg(packed, Opcode.TEXT)) == 0.2
    assert v.score(packed, None) == 0.8
    assert v.score(msgpack.packb(5), None) == 0.05  # a scalar: a weak guess
    assert v.score(msgpack.packb([]), None) == 0.05
    assert v.score(packed + b"\x00", None) == 0  # extra data
    assert v.score(b"", None) == 0
    assert v.score(b"\x81\x91\x01\x02", None) > 0  # an array as a map key
    assert v.score(b"\x81\x81\x01\x01\x02", None) == 0  # a map as a key: unhashable
    r = v.render(b"\xc1", None)
    assert r.error is not None
    assert r.error.startswith("invalid msgpack")


# --------------------------------------------------------------------------- cbor


def test_cbor_render() -> None:
    doc = {
        "a": 1,
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "tagged": cbor2.CBORTag(4000, [1, "x"]),
        "scalar_tag": cbor2.CBORTag(4001, "y"),
        "b": b"xyz",
        "u": cbor2.undefined,
        "s": cbor2.CBORSimpleValue(99),
    }
    payload = cbor2.dumps(doc)
    v = CborView()
    assert v.score(payload, msg(payload, Opcode.BINARY)) == 0.75
    r = v.render(payload, None)
    assert r.error is None
    assert r.text == "\n".join(
        [
            "{",
            '  "a": 1,',
            '  "when": <datetime 2024-01-02T03:04:05+00:00>,',
            '  "tagged": 4000([',
            "    1,",
            '    "x"',
            "  ]),",
            '  "scalar_tag": 4001("y"),',
            '  "b": <3 bytes 78797a>,',
            '  "u": undefined,',
            '  "s": simple(99)',
            "}",
        ]
    )
    assert r.tree is not None
    assert find(r.tree, "tagged").value_repr == "tag 4000: [2 items]"
    assert find(r.tree, "scalar_tag").value_repr == 'tag 4001: "y"'
    assert compact(cbor2.loads(payload), 1000).startswith('{"a": 1, "when": <datetime')


def test_cbor_cycles_and_sharing() -> None:
    cyclic = bytes.fromhex("d81c81d81d00")  # shareable([sharedref(0)]): a list in itself
    r = CborView().render(cyclic, None)
    assert r.error is None
    assert "<cycle>" in r.text
    assert r.tree is not None
    assert "<cycle>" in compact(cbor2.loads(cyclic))


def test_cbor_rejects_trailing_data_and_garbage() -> None:
    v = CborView()
    assert v.score(cbor2.dumps([1]) + b"\x01", None) == 0
    assert v.score(b"", None) == 0
    assert v.score(b"\x5b\x0f\xff\xff\xff\xff\xff\xff\xff", None) == 0  # huge length
    r = v.render(b"\xff", None)
    assert r.error is not None
    assert r.error.startswith("invalid CBOR")


# --------------------------------------------------------------------------- text, hex


def test_text_view() -> None:
    v = TextView()
    assert v.score(b"hi", msg(b"hi")) == 0.5
    assert v.score(b"hello\n", msg(b"", Opcode.BINARY)) == 0.4
    assert v.score(b"\x00\x01", msg(b"", Opcode.BINARY)) == 0.01
    assert v.score(b"", msg(b"", Opcode.BINARY)) == 0.01
    r = v.render("héllo\n\x1b[1m".encode(), msg(b""))
    assert r == Rendered("text", "héllo\n\x1b[1m")  # plain: escaping is the TUI's job


def test_text_view_flags_invalid_utf8() -> None:
    r = TextView().render(b"ab\xffcd", msg(b"ab\xffcd"))
    assert r.text == "ab\ufffdcd"
    assert r.error == "invalid UTF-8 at byte 2 (shown as U+FFFD)"
    r = TextView().render(b"ab\xe2\x82", None)  # ends in the middle of a character
    assert r.error is not None


def test_text_view_truncated_and_capped() -> None:
    payload = "é".encode() * 10 + b"\xc3"  # cut inside a character by the capture
    r = TextView().render(payload, msg(payload, size=100))
    assert r.text == "é" * 10
    assert r.error is None
    assert r.note is not None
    assert "truncated by capture" in r.note
    big = "é".encode() * (TextView.max_bytes // 2 + 10)
    r = TextView().render(big[1:] + b"", None)  # odd offset: the cap falls inside a char
    assert r.error is not None  # the stray continuation byte at the start
    r = TextView().render(big, None)
    assert r.error is None
    assert len(r.text) == TextView.max_bytes // 2
    assert r.note == f"showing the first 1,048,576 of {len(big):,} bytes"


def test_decode_prefix() -> None:
    assert decode_prefix(b"abc", 10) == ("abc", None)
    assert decode_prefix("aé".encode(), 2) == ("a", None)  # the cap cuts the é
    assert decode_prefix("aé".encode()[:2], 10) == ("a\ufffd", 1)
    assert decode_prefix("aé".encode()[:2], 10, truncated=True) == ("a", None)


def test_hexdump_layout() -> None:
    data = bytes(range(0x41, 0x41 + 20)) + b"\x00\x7f\x80\xff"
    assert hexdump(data).split("\n") == [
        "00000000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|",
        "00000010  51 52 53 54 00 7f 80 ff                           |QRST....|",
    ]
    assert hexdump(b"") == ""
    assert hexdump(b"a" * 3, offset=0x100) == (
        "00000100  61 61 61                                          |aaa|"
    )


def test_hex_view() -> None:
    v = HexView()
    assert v.score(b"\x00", msg(b"", Opcode.BINARY)) == 0.1
    assert v.score(b"x", msg(b"x")) == 0.05
    r = v.render(b"\x00" * 32, None)
    assert r.text.count("\n") == 1
    assert v.render(b"", None).note == "empty payload"
    r = v.render(b"\x00" * (HexView.max_bytes + 1), None)
    assert r.text.count("\n") == HexView.max_bytes // 16 - 1
    assert r.note == "showing the first 65,536 of 65,537 bytes"
    assert v.render(b"\x00" * 2 * HexView.max_bytes, None).note == (
        "showing the first 64 KiB of 128 KiB"
    )


# --------------------------------------------------------------------------- close


def test_close_view_from_frame_fields() -> None:
    v = CloseView()
    f = close_frame(1001, "bye now")
    assert v.score(f.payload, f) == 1.0
    assert v.score(b"\x03\xe8", msg(b"\x03\xe8", Opcode.BINARY)) == 0
    r = v.render(f.payload, f)
    assert r.text == "code:    1001\nmeaning: Going Away\nreason:  bye now"
    assert r.error is None
    assert r.tree is not None
    assert find(r.tree, "reason").value_repr == '"bye now"'


def test_close_view_errors_and_edge_cases() -> None:
    v = CloseView()
    r = v.render(b"", close_frame(None))
    assert r.text.startswith("code:    none\nmeaning: no status code")
    r = v.render(b"\x03\xed", close_frame(1005))
    assert r.error is not None
    assert "1005" in r.error
    r = v.render(b"", close_frame(4000, "", error="bad close frame"))
    assert r.error == "bad close frame"
    assert "private use" in r.text
    # no ControlFrame: parsed from the payload
    r = v.render(b"\x0f\xa0app", None)
    assert r.text == "code:    4000\nmeaning: private use (application-defined)\nreason:  app"
    assert v.render(b"\x03", None).error is not None
    assert v.render(b"\x03\xe8\xff", None).error is not None


# --------------------------------------------------------------------------- limits


def test_pretty_and_tree_budgets() -> None:
    big = list(range(MAX_LINES * 2))
    text, cut = pretty(big)
    assert cut
    assert text.count("\n") == MAX_LINES - 1
    tree, cut = to_tree(big)
    assert cut
    assert len(tree.children) == MAX_NODES
    assert tree.children[-1].label == "…"
    assert tree.children[-1].value_repr == f"{len(big) - MAX_NODES + 1} more not shown"
    payload = json.dumps(big).encode()
    r = JsonView().render(payload, None)
    assert r.note == f"text cut at {MAX_LINES} lines; tree cut at {MAX_NODES} nodes"


def test_deep_nesting_is_elided() -> None:
    deep = msgpack.packb(json.loads("[" * 500 + "]" * 500))
    r = MsgpackView().render(deep, None)
    assert r.error is None
    assert "[1 item]" in r.text
    tree = r.tree
    depth = 0
    while tree is not None and tree.children:
        tree = tree.children[0]
        depth += 1
    assert depth == 100
    assert JsonView().score(b"[" * 100_000 + b"]" * 100_000, None) == 0  # RecursionError


def test_large_payloads_are_not_parsed() -> None:
    payload = b"[" + b"1," * (PARSE_LIMIT // 2) + b"1]"
    assert JsonView().score(payload, None) == 0
    r = JsonView().render(payload, None)
    assert r.error is not None
    assert "too large" in r.error
    assert len(r.text) == TextView.max_bytes


def test_compact_budget() -> None:
    s = compact({"a": list(range(1000))}, 20)
    assert len(s) == 20
    assert s.endswith("…")
    assert compact(b"\x01", 100) == "<1 byte 01>"
    assert compact(float("nan")) == "NaN"
    assert compact(10**5000).startswith("<int of 16610 bits 0x")
    assert compact(math.inf) == "Infinity"


# --------------------------------------------------------------------------- robustness

VIEWS = [JsonView(), MsgpackView(), CborView(), TextView(), HexView(), CloseView()]


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.name)
@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300), opcode=st.sampled_from(list(Opcode)))
def test_any_bytes_never_raise(view: object, payload: bytes, opcode: int) -> None:
    from devconsole.decoders.views import View

    assert isinstance(view, View)
    for item in (None, msg(payload, opcode), msg(payload, opcode, size=len(payload) + 5)):
        s = view.score(payload, item)
        assert 0.0 <= s <= 1.0
        r = view.render(payload, item)
        assert isinstance(r, Rendered)
        assert r.view == view.name
        r.text.encode("utf-8")  # never a lone surrogate


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(max_size=80)
)
structures = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.integers(-(2**63), 2**63) | st.text(max_size=4) | st.binary(max_size=4),
            inner,
            max_size=4,
        )
    ),
    max_leaves=15,
)


@settings(max_examples=200, deadline=None)
@given(structures | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=9)))
def test_any_msgpack_value_renders(value: object) -> None:
    payload = msgpack.packb(value)
    r = MsgpackView().render(payload, msg(payload, Opcode.BINARY))
    assert r.error is None
    r.text.encode("utf-8")
    assert r.tree is not None


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        structures,
        lambda inner: (
            st.builds(cbor2.CBORTag, st.integers(6, 20) | st.integers(40000, 50000), inner)
            | st.lists(inner, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_any_cbor_value_renders(value: object) -> None:
    payload = cbor2.dumps(value)
    r = CborView().render(payload, msg(payload, Opcode.BINARY))
    assert r.error is None
    r.text.encode("utf-8")
    assert r.tree is not None
    compact(cbor2.loads(payload), 50)
