from __future__ import annotations

import json
import random
import re

import cbor2
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devconsole import decoders
from devconsole.decoders import (
    VIEWS,
    Rendered,
    View,
    best_view,
    get_view,
    preview,
    register,
    render,
    safe_text,
    views_for,
)
from devconsole.decoders.views import HexView
from devconsole.model import ControlFrame, Item, Message, Opcode


def msg(payload: bytes | str, opcode: int = Opcode.TEXT, size: int | None = None) -> Message:
    p = payload.encode() if isinstance(payload, str) else payload
    return Message(
        seq=1,
        conn="c",
        ts=0.0,
        side="client",
        opcode=opcode,
        payload=p,
        size=len(p) if size is None else size,
        wire_size=len(p) + 2,
    )


def ctrl(opcode: int, payload: bytes = b"", code: int | None = None, reason: str = "") -> Item:
    return ControlFrame(
        seq=2,
        conn="c",
        ts=0.0,
        side="server",
        opcode=opcode,
        payload=payload,
        wire_size=len(payload) + 2,
        code=code,
        reason=reason,
    )


RANDOM_BINARY = random.Random(0).randbytes(256)


# --------------------------------------------------------------------------- registry


def test_get_view() -> None:
    assert [v.name for v in VIEWS] == ["close", "json", "msgpack", "cbor", "text", "hex"]
    for v in VIEWS:
        assert get_view(v.name) is v
    assert get_view("nope") is None


def test_register_replaces_by_name() -> None:
    class Upper(View):
        name = "upper"

        def _score(self, payload: bytes, item: Item | None) -> float:
            return 0.99 if payload.startswith(b"UP:") else 0.0

        def _render(self, payload: bytes, item: Item | None) -> Rendered:
            return Rendered(self.name, payload.decode().upper())

    saved = list(VIEWS)
    try:
        register(Upper())
        assert best_view(msg("UP:x")).name == "upper"
        assert render(msg("UP:x")).text == "UP:X"
        hex2 = HexView()
        register(hex2)
        assert get_view("hex") is hex2
        assert len(VIEWS) == len(saved) + 1
    finally:
        VIEWS[:] = saved


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (msg(json.dumps({"type": "ping", "n": 1})), "json"),
        (msg(json.dumps([1, 2]), Opcode.BINARY), "json"),
        (msg("hello world"), "text"),
        (msg("42"), "text"),  # a JSON scalar reads better as text
        (msg(""), "text"),
        (msg(b"\xff\xfe not utf-8"), "text"),  # a text message stays text, flagged
        (msg(msgpack.packb({"type": "ping", "data": b"\x00\x01"}), Opcode.BINARY), "msgpack"),
        (msg(msgpack.packb([1, 2, 3]), Opcode.BINARY), "msgpack"),
        (msg(cbor2.dumps({"type": "ping", "n": [1, 2]}), Opcode.BINARY), "cbor"),
        (msg(cbor2.dumps(cbor2.CBORTag(1234, "x")), Opcode.BINARY), "cbor"),
        (msg(RANDOM_BINARY, Opcode.BINARY), "hex"),
        (msg(b"\x01", Opcode.BINARY), "hex"),  # msgpack 1: too weak a guess
        (msg(b"", Opcode.BINARY), "hex"),
        (msg("plain text in a binary frame", Opcode.BINARY), "text"),
        (ctrl(Opcode.CLOSE, b"\x03\xe8bye", 1000, "bye"), "close"),
        (ctrl(Opcode.CLOSE), "close"),
        (ctrl(Opcode.PING, b"heartbeat"), "text"),
        (ctrl(Opcode.PONG, b"\x00\x01\x02\x03"), "hex"),
        (ctrl(Opcode.PING), "hex"),
    ],
)
def test_best_view(item: Item, expected: str) -> None:
    assert best_view(item).name == expected
    views = views_for(item)
    assert views[0] is best_view(item)
    assert "hex" in [v.name for v in views]  # always available
    assert render(item).view == expected


def test_random_binary_is_rarely_structured() -> None:
    rng = random.Random(42)
    names = [
        best_view(msg(rng.randbytes(rng.randrange(8, 200)), Opcode.BINARY)).name for _ in range(500)
    ]
    assert names.count("hex") >= 490


def test_views_for_order() -> None:
    item = msg(json.dumps({"a": 1}))
    names = [v.name for v in views_for(item)]
    assert names == ["json", "text", "hex"]
    item = msg(msgpack.packb({"a": 1}), Opcode.BINARY)
    assert [v.name for v in views_for(item)] == ["msgpack", "hex", "text"]


def test_render_by_name() -> None:
    item = msg(json.dumps({"a": 1}))
    assert render(item, "hex").view == "hex"
    assert render(item, "text").text == '{"a": 1}'
    assert render(item, "no-such-view").view == "json"
    r = render(item, "msgpack")
    assert r.error is not None  # asked for it explicitly: shown with an error


# --------------------------------------------------------------------------- safe_text


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("plain", "plain"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("\x9b31m", "\\x9b31m"),  # C1 CSI
        ("\x85", "\\x85"),
        ("a\x00b\x7f", "a\\x00b\\x7f"),
        ("line1\nline2\r\n", "line1\\nline2\\r\\n"),
        ("tab\there", "tab\\there"),
        ("abc\u202edcba", "abc\\u202edcba"),  # right-to-left override
        ("\u2066x\u2069", "\\u2066x\\u2069"),
        ("\u200f\u061c", "\\u200f\\u061c"),
        ("a\u2028b", "a\\u2028b"),
        ("lone \ud800", "lone \\ud800"),
        ("[bold]not markup[/bold]", "[bold]not markup[/bold]"),
        ("é ✓ 日本 😀", "é ✓ 日本 😀"),
        ("\\x1b literal", "\\x1b literal"),
    ],
)
def test_safe_text(raw: str, safe: str) -> None:
    assert safe_text(raw) == safe


def test_safe_text_keep_newlines() -> None:
    assert safe_text("a\nb\tc\r\n\x1b", keep_newlines=True) == "a\nb\tc\\r\n\\x1b"


_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@given(st.text())
def test_safe_text_property(s: str) -> None:
    out = safe_text(s)
    assert not _UNSAFE.search(out)
    out.encode("utf-8")  # no lone surrogates
    assert safe_text(out) == out  # idempotent: escapes are printable ASCII
    kept = safe_text(s, keep_newlines=True)
    assert not _UNSAFE.search(kept.replace("\n", "").replace("\t", ""))


# --------------------------------------------------------------------------- preview


def test_preview_text() -> None:
    assert preview(msg("hello\nworld\r\nagain"), 80) == "hello⏎world⏎again"
    assert preview(msg("\x1b[2J\x9b\u202e"), 80) == "\\x1b[2J\\x9b\\u202e"
    assert preview(msg("tab\tcr\r"), 80) == "tab\\tcr\\r"
    assert preview(msg('{"a": 1}'), 80) == '{"a": 1}'
    assert preview(msg(b"bad \xff utf8"), 80) == "bad \ufffd utf8"
    assert preview(msg(""), 80) == ""


def test_preview_width() -> None:
    assert preview(msg("x" * 100), 10) == "x" * 9 + "…"
    assert preview(msg("x" * 10), 10) == "x" * 10
    assert preview(msg("日本" * 100), 5) == "日本日本…"
    assert preview(msg("abc"), 0) == ""
    assert preview(msg("abc"), 1) == "…"


def test_preview_close() -> None:
    assert preview(ctrl(Opcode.CLOSE, b"\x03\xe8bye", 1000, "bye")) == "1000 Normal Closure: bye"
    assert preview(ctrl(Opcode.CLOSE, b"\x03\xe9", 1001)) == "1001 Going Away"
    assert preview(ctrl(Opcode.CLOSE)) == "no status code"
    assert preview(ctrl(Opcode.CLOSE, b"\x03\xed", 1005)).startswith("1005 No Status Received (")
    evil = ctrl(Opcode.CLOSE, b"", 4000, "\x1b[31m")
    assert preview(evil) == "4000 private use (application-defined): \\x1b[31m"


def test_preview_binary() -> None:
    packed = msgpack.packb({"type": "ping", "data": b"\x01"})
    assert (
        preview(msg(packed, Opcode.BINARY), 80) == 'msgpack {"type": "ping", "data": <1 byte 01>}'
    )
    assert preview(msg(cbor2.dumps([1, "x"]), Opcode.BINARY), 80) == 'cbor [1, "x"]'
    assert preview(msg(b"\x00\x01\xff", Opcode.BINARY), 80) == "00 01 ff"
    assert preview(msg(RANDOM_BINARY, Opcode.BINARY), 12) == RANDOM_BINARY[:4].hex(" ") + "…"
    assert preview(msg("json in binary", Opcode.BINARY), 80) == "json in binary"
    assert preview(msg(b"", Opcode.BINARY), 80) == ""
    assert preview(ctrl(Opcode.PING, b"beat"), 80) == "beat"
    assert preview(msg(msgpack.packb({"s": "\x1b\u202e"}), Opcode.BINARY), 80) == (
        'msgpack {"s": "\\u001b\\u202e"}'
    )


def test_preview_large_payloads_are_cheap() -> None:
    big = b"x" * (64 << 20)
    assert preview(msg(big), 40) == "x" * 39 + "…"
    big_bin = b"\x00" * (1 << 20)
    assert preview(msg(big_bin, Opcode.BINARY), 8) == "00 00…"


# --------------------------------------------------------------------------- robustness

items_st = st.one_of(
    st.builds(
        msg,
        st.binary(max_size=200),
        st.sampled_from([Opcode.TEXT, Opcode.BINARY]),
        st.none() | st.integers(0, 10**9),
    ),
    st.builds(
        ctrl,
        st.sampled_from([Opcode.PING, Opcode.PONG, Opcode.CLOSE]),
        st.binary(max_size=125),
        st.none() | st.integers(0, 70000),
        st.text(max_size=20),
    ),
)


@settings(max_examples=300, deadline=None)
@given(items_st, st.integers(0, 120))
def test_any_item_previews_and_renders(item: Item, width: int) -> None:
    line = preview(item, width)
    assert len(line) <= width
    assert "\n" not in line
    assert not _UNSAFE.search(line)
    line.encode("utf-8")
    views = views_for(item)
    assert views
    assert all(isinstance(v, View) for v in views)
    for v in views:
        r = v.render(item.payload, item)
        assert r.view == v.name
        r.text.encode("utf-8")


def test_module_exports() -> None:
    for name in decoders.__all__:
        assert hasattr(decoders, name)


# --------------------------------------------------------------------------- protocols


def test_preview_shows_the_decoded_summary_or_the_raw_with_why() -> None:
    from devconsole.decoders.base import decode_message
    from devconsole.decoders.protocols import get_protocol

    sio = get_protocol("socket.io")
    assert sio is not None
    m = msg('4212["chat",{"text":"hi"}]')
    d = decode_message(sio, m.payload, m.opcode, "client", sio.new_state())
    assert preview(m, 80, d) == 'sio "chat" {"text":"hi"} ack 12'
    assert preview(m, 10, d) == 'sio "chat…'
    bad = msg("42[oops\x1b[31m")
    d = decode_message(sio, bad.payload, bad.opcode, "client", sio.new_state())
    line = preview(bad, 120, d)
    assert line.startswith("[socket.io: bad JSON") and line.endswith("42[oops\\x1b[31m")
    assert "\x1b" not in line


def test_views_put_the_protocol_first_and_keep_the_raw_ones() -> None:
    from devconsole.decoders.base import decode_message
    from devconsole.decoders.protocols import get_protocol

    rpc = get_protocol("jsonrpc")
    assert rpc is not None
    m = msg('{"jsonrpc":"2.0","method":"eth_subscribe","id":7,"params":["newHeads"]}')
    d = decode_message(rpc, m.payload, m.opcode, "client", None)
    names = [v.name for v in views_for(m, d)]
    assert names[0] == "jsonrpc" and "json" in names and "text" in names and "hex" in names
    r = render(m, "jsonrpc", d)
    assert r.tree is not None and r.tree.label == 'rpc eth_subscribe id=7 ["newHeads"]'
    assert [c.label for c in r.tree.children] == ["jsonrpc", "method", "params", "id"]
    assert r.text.startswith("# rpc eth_subscribe id=7")
    assert best_view(m, d).name == "jsonrpc"
    assert render(m, "hex", d).view == "hex"
    # a message that did not decode: the raw views come first, the reason is kept
    bad = msg("not rpc")
    failed = decode_message(rpc, bad.payload, bad.opcode, "client", None)
    assert best_view(bad, failed).name == "text"
    r = render(bad, "jsonrpc", failed)
    assert r.error is not None and r.error.startswith("jsonrpc: bad JSON") and r.text == "not rpc"
