from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from devconsole import filters
from devconsole.filters import (
    MATCH_ALL,
    And,
    Filter,
    FilterError,
    JsonPath,
    Not,
    Or,
    Regex,
    Size,
    Word,
    parse,
)
from devconsole.model import ControlFrame, Item, Message, Opcode

# --------------------------------------------------------------------------- helpers


def msg(
    payload: bytes | str,
    *,
    opcode: int = Opcode.TEXT,
    side: str = "client",
    conn: str = "conn-1",
    size: int | None = None,
    seq: int = 1,
) -> Message:
    p = payload.encode() if isinstance(payload, str) else payload
    return Message(
        seq=seq,
        conn=conn,
        ts=0.0,
        side=side,  # type: ignore[arg-type]
        opcode=opcode,
        payload=p,
        size=len(p) if size is None else size,
        wire_size=len(p) + 2,
    )


def ctrl(opcode: int, payload: bytes = b"", *, side: str = "server", conn: str = "conn-1") -> Item:
    code = int.from_bytes(payload[:2], "big") if opcode == Opcode.CLOSE and payload else None
    return ControlFrame(
        seq=2,
        conn=conn,
        ts=0.0,
        side=side,  # type: ignore[arg-type]
        opcode=opcode,
        payload=payload,
        wire_size=len(payload) + 2,
        code=code,
        reason=payload[2:].decode(errors="replace"),
    )


def matches(expr: str, item: Item) -> bool:
    f = parse(expr)
    result = f(item)
    assert f.predicate(item) == result  # the bare closure agrees with the safe call
    assert f.scan([item]) == ([item] if result else [])
    return result


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("expr", "normalised"),
    [
        ("", ""),
        ("   ", ""),
        ("foo", "foo"),
        ("Foo  BAR", "Foo BAR"),
        ("a and b", "a b"),
        ("a AND b Or c", "a b or c"),
        ("a (b or c)", "a (b or c)"),
        ("(a b) or c", "a b or c"),
        ("x or (y or z)", "x or y or z"),
        ("a (b c)", "a b c"),
        ("-foo", "-foo"),
        ("not foo", "-foo"),
        ("NOT (a b)", "-(a b)"),
        ("--a", "a"),
        ("-(-a)", "a"),
        ("not not a", "a"),
        ('"two words"', '"two words"'),
        ('"plain"', "plain"),
        ("'single'", "single"),
        ('"say \\"hi\\""', '"say \\"hi\\""'),
        ('"or"', '"or"'),
        ('"-1"', '"-1"'),
        ('"/api/v1"', '"/api/v1"'),
        ('"f(x)"', '"f(x)"'),
        ('"localhost:8080"', '"localhost:8080"'),
        ("http://example.com/ws", '"http://example.com/ws"'),
        ('{"a":1}', '"{\\"a\\":1}"'),
        ("12:30", "12:30"),
        ("it's", '"it\'s"'),
        ("/fo+/", "/fo+/"),
        ("/fo+/is", "/fo+/is"),
        ("/a b/", "/a b/"),
        ("FROM:Client", "from:client"),
        ("from:server", "from:server"),
        ("type:TEXT", "type:text"),
        ("type:ping,pong", "type:ping,pong"),
        ("type:control", "type:control"),
        ("conn:ab12", "conn:ab12"),
        ('conn:"a b"', 'conn:"a b"'),
        ("size>1k", "size>1k"),
        ("size:>=1.5MB", "size>=1.5mb"),
        ("size:10", "size=10"),
        ("size==10", "size=10"),
        ("SIZE<2KiB", "size<2kib"),
        ("json:a.b", "json:a.b"),
        ("json:a.b=3", "json:a.b=3"),
        ("json:a=", "json:a="),
        ('json:msg="hello world"', 'json:"msg=hello world"'),
        ("json:items.0.id=7", "json:items.0.id=7"),
    ],
)
def test_parse_normalises_and_round_trips(expr: str, normalised: str) -> None:
    f = parse(expr)
    assert str(f) == normalised
    assert parse(str(f)) == f


def test_empty_expression_is_match_all() -> None:
    assert parse("") is MATCH_ALL
    assert parse(" \t\n") is MATCH_ALL
    assert MATCH_ALL(msg("anything"))
    items = [msg("a"), ctrl(Opcode.PING)]
    assert MATCH_ALL.scan(items) == items


def test_tree_shape() -> None:
    f = parse("a b or -c d")
    assert isinstance(f, Or)
    left, right = f.children
    assert isinstance(left, And)
    assert [str(c) for c in left.children] == ["a", "b"]
    assert isinstance(right, And)
    assert isinstance(right.children[0], Not)
    assert isinstance(parse("/x/i"), Regex)
    assert isinstance(parse("size<3"), Size)
    assert isinstance(parse("json:a"), JsonPath)
    assert isinstance(parse('"a b"'), Word)


def test_huge_numbers() -> None:
    assert parse("size>" + "9" * 24)(msg("x")) is False
    f = parse("json:a." + "9" * 5000)  # too long for an index: an object key only
    assert f(msg('{"a": {"' + "9" * 5000 + '": 1}}'))
    assert not parse("json:n=" + "9" * 400)(msg('{"n": 1}'))
    assert parse("json:n=1e999")(msg('{"n": 1e999}'))  # both infinite


def test_size_units() -> None:
    def value(expr: str) -> int:
        f = parse(expr)
        assert isinstance(f, Size)
        return f.value

    assert value("size>100") == 100
    assert value("size>1k") == 1024
    assert value("size>1K") == 1024
    assert value("size>2kb") == 2048
    assert value("size>1.5k") == 1536
    assert value("size>1M") == 1 << 20
    assert value("size>1mb") == 1 << 20
    assert value("size>1g") == 1 << 30
    assert value("size>10b") == 10
    assert value("size>.5k") == 512
    assert value("size>1.k") == 1024


@pytest.mark.parametrize(
    ("expr", "column", "fragment"),
    [
        ("(", 1, "unclosed '('"),
        ("(a", 1, "unclosed '('"),
        ("a (b (c)", 3, "unclosed '('"),
        (")", 1, "unmatched ')'"),
        ("a)", 2, "unmatched ')'"),
        ("(a))", 4, "unmatched ')'"),
        ("()", 1, "empty parentheses"),
        ("a ( )", 3, "empty parentheses"),
        ("a or", 3, "expected a term after 'or'"),
        ("a or or b", 3, "expected a term after 'or'"),
        ("or a", 1, "'or' needs a term on both sides"),
        ("a and", 3, "expected a term after 'and'"),
        ("and", 1, "'and' needs a term"),
        ("(a or)", 4, "expected a term after 'or'"),
        ("not", 1, "expected a term after 'not'"),
        ("a not", 3, "expected a term after 'not'"),
        ("-", 1, "'-' must be followed"),
        ("a - b", 3, "'-' must be followed"),
        ("-)", 1, "'-' must be followed"),
        ('"abc', 1, "unterminated quote"),
        ('a "b', 3, "unterminated quote"),
        ("'abc", 1, "unterminated quote"),
        ('"a"b', 4, "expected a space after the closing quote"),
        ("/abc", 1, "unterminated regex"),
        ("x /a\\/", 3, "unterminated regex"),
        ("//", 1, "empty regex"),
        ("/a/q", 4, "unknown regex flag 'q'"),
        ("/api/v1", 6, "unknown regex flag 'v'"),
        ("/(/", 2, "bad regex"),
        ("a /x(?P<1>y)/", 9, "bad regex"),
        ("foo:bar", 1, "unknown key 'foo:'"),
        ("a Host:x", 3, "unknown key 'Host:'"),
        ("from:", 6, "missing value after 'from:'"),
        ("from:x", 6, "from: expects client or server"),
        ("type:foo", 6, "unknown type 'foo'"),
        ("type:text,", 6, "unknown type ''"),
        ("conn:", 6, "missing value"),
        ("size>", 5, "bad size"),
        ("size>x", 5, "bad size"),
        ("size>1q", 5, "bad size"),
        ("size>-1", 5, "bad size"),
        ("size:", 6, "bad size"),
        ("size>" + "9" * 400, 5, "too large"),
        ("json:", 6, "missing value"),
        ("json:a..b", 6, "empty part in json path"),
        ("json:.a", 6, "empty part in json path"),
        ("json:=3", 6, "json: expects a path"),
        ('json:a="b', 8, "unterminated quote"),
    ],
)
def test_errors_have_columns(expr: str, column: int, fragment: str) -> None:
    with pytest.raises(FilterError) as info:
        parse(expr)
    assert fragment in info.value.message
    assert info.value.column == column
    assert f"(column {column})" in str(info.value)


def test_error_pointer() -> None:
    with pytest.raises(FilterError) as info:
        parse("a or")
    assert info.value.pointer("a or") == "a or\n  ^"


def test_nesting_limit() -> None:
    parse("(" * 40 + "a" + ")" * 40)
    with pytest.raises(FilterError, match="nested too deeply"):
        parse("(" * 1000 + "a" + ")" * 1000)
    # negations collapse instead of nesting
    assert str(parse("-" * 10_001 + "a")) == "-a"


def test_many_terms_do_not_recurse() -> None:
    f = parse(" ".join(f"w{i}" for i in range(3000)))
    assert not f(msg("w1 w2"))
    f = parse(" or ".join(f"/w{i}x/" for i in range(3000)))
    assert f(msg("w2999x"))


# --------------------------------------------------------------------------- semantics


def test_words_are_case_insensitive_substrings() -> None:
    m = msg('{"Type": "PING", "user": "Alice"}')
    assert matches("ping", m)
    assert matches("PING", m)
    assert matches("alic", m)
    assert matches('\'"type": "ping"\'', m)  # a phrase, case-insensitive too
    assert not matches("pong", m)
    assert matches("ping alice", m)
    assert not matches("ping bob", m)


def test_non_ascii_words() -> None:
    m = msg("Привет, МИР ÉCLAIR")
    assert matches("привет", m)
    assert matches("мир", m)
    assert matches("éclair", m)
    assert not matches("пока", m)
    assert matches("привет мир", m)


def test_words_on_invalid_utf8_and_binary() -> None:
    m = msg(b"\xff\xfeHello\x00World\x80", opcode=Opcode.BINARY)
    assert matches("hello", m)
    assert matches("WORLD", m)
    assert not matches("héllo", m)
    assert matches("\ufffdhello", m)  # errors='replace' semantics for non-ASCII words


def test_escaped_quotes_in_phrases() -> None:
    m = msg('say "hi" \\o/')
    assert matches('"say \\"hi\\""', m)
    assert matches("'say \"hi\"'", m)
    assert matches('"\\\\o/"', m)


def test_quoted_keywords_are_words() -> None:
    assert matches('"or"', msg("this or that"))
    assert not matches('"or"', msg("this and that"))
    assert matches('"not"', msg("not me"))


def test_regex() -> None:
    m = msg("Hello\nworld 42")
    assert matches("/wor+ld/", m)
    assert not matches("/HELLO/", m)
    assert matches("/HELLO/i", m)
    assert not matches("/hello.world/", m)
    assert matches("/hello.world/is", m)
    assert not matches("/^world/", m)
    assert matches("/^world/m", m)
    assert matches(r"/\d{2}$/", m)
    assert matches("/a\\/b/", msg("a/b"))
    assert matches("/é+/", msg("caféé"))  # text, not bytes


def test_from_type_conn() -> None:
    c = msg("x", side="client", conn="abc123")
    s = msg("x", side="server", conn="abd", opcode=Opcode.BINARY)
    ping = ctrl(Opcode.PING, b"p")
    pong = ctrl(Opcode.PONG)
    close = ctrl(Opcode.CLOSE, b"\x03\xe8bye")
    assert matches("from:client", c)
    assert not matches("from:client", s)
    assert matches("from:server", s)
    assert matches("from:server", ping)
    assert matches("type:text", c)
    assert not matches("type:text", s)
    assert matches("type:binary", s)
    assert matches("type:ping", ping)
    assert not matches("type:ping", pong)
    assert matches("type:pong", pong)
    assert matches("type:close", close)
    assert all(matches("type:control", i) for i in (ping, pong, close))
    assert not any(matches("type:control", i) for i in (c, s))
    assert all(matches("type:data", i) for i in (c, s))
    assert matches("type:ping,pong", pong)
    assert not matches("type:ping,pong", close)
    assert matches("conn:abc123", c)
    assert matches("conn:ab", c)
    assert matches("conn:ab", s)
    assert not matches("conn:abc", s)
    assert not matches("conn:abc1234", c)


def test_size_uses_true_size() -> None:
    small = msg("x" * 100)
    big = msg(b"x" * 10, size=4096)  # truncated for display
    assert matches("size=100", small)
    assert matches("size:100", small)
    assert matches("size>=100", small)
    assert matches("size<=100", small)
    assert not matches("size>100", small)
    assert not matches("size<100", small)
    assert matches("size<1k", small)
    assert matches("size>1k", big)
    assert matches("size=4k", big)
    assert not matches("size>4k", big)
    assert matches("size<1", ctrl(Opcode.PING))


def test_close_reason_is_searchable() -> None:
    assert matches("going", ctrl(Opcode.CLOSE, b"\x03\xe9going away"))


@pytest.mark.parametrize(
    ("expr", "payload", "expected"),
    [
        ("json:type=ping", '{"type": "ping"}', True),
        ("json:type=ping", '{"type":"pong"}', False),
        ("json:type=ping", '{ "type" :\n "ping" }', True),
        ("json:type=ping", '{"type": "pinger"}', False),
        ("json:type=ping", '{"other": {"type": "ping"}}', False),
        ("json:type=ping", '{"ty\\u0070e": "ping"}', True),  # escapes skip the prefilter
        ("json:type=ping", '{"type": "\\u0070ing"}', True),
        ("json:type=ping", '["ping", {"type": 1}]', False),
        ("json:type=PING", '{"type": "ping"}', False),  # values are case-sensitive
        ("json:n=3", '{"n": 3}', True),
        ("json:n=3", '{"n": 3.0}', True),
        ("json:n=3", '{"n": "3"}', True),  # compared as the text of the scalar
        ("json:n=3", '{"n": 30}', False),
        ("json:n=3", '{"n": 13}', False),
        ("json:n=1000", '{"n": 1e3}', True),
        ("json:n=-1.5", '{"n": -1.5}', True),
        ("json:n=3", '{"n": [3]}', False),
        ("json:ok=true", '{"ok": true}', True),
        ("json:ok=true", '{"ok": "true"}', True),
        ("json:ok=true", '{"ok": false}', False),
        ("json:ok=false", '{"ok": false}', True),
        ("json:ok=true", '{"ok": 1}', False),
        ("json:x=null", '{"x": null}', True),
        ("json:x=null", '{"y": null}', False),
        ("json:x=", '{"x": ""}', True),
        ("json:x=", '{"x": null}', False),
        ("json:a.b.c=deep", '{"a": {"b": {"c": "deep"}}}', True),
        ("json:a.b", '{"a": {"b": null}}', True),
        ("json:a.b", '{"a": {"c": 1}}', False),
        ("json:a.b", '{"a": [1, 2]}', False),
        ("json:a", '{"a": 1}', True),
        ("json:items.0.id=7", '{"items": [{"id": 7}, {"id": 8}]}', True),
        ("json:items.1.id=7", '{"items": [{"id": 7}, {"id": 8}]}', False),
        ("json:items.-1.id=8", '{"items": [{"id": 7}, {"id": 8}]}', True),
        ("json:items.5", '{"items": [1]}', False),
        ("json:0=a", '["a", "b"]', True),
        ("json:0=a", '{"0": "a"}', True),  # numeric parts are keys of objects
        ('json:msg="hello world"', '{"msg": "hello world"}', True),
        ("json:msg=é", '{"msg": "é"}', True),
        ("json:type", "not json", False),
        ("json:type", '{"type": "ping"', False),  # truncated
        ("json:type", '"type"', False),
        ("json:type", "", False),
        ("json:type", '  {"type": 1}', True),
        ("json:type=ping", '{"type": "ping", "type": "pong"}', False),  # last key wins
    ],
)
def test_json(expr: str, payload: str, expected: bool) -> None:
    assert matches(expr, msg(payload)) is expected


def test_json_on_binary_and_bad_payloads() -> None:
    assert matches("json:a=1", msg(b'{"a": 1}', opcode=Opcode.BINARY))
    assert not matches("json:a", msg(b'{"a": \xff}', opcode=Opcode.BINARY))
    assert not matches("json:a", msg(b"[" * 100_000 + b"]" * 100_000))  # RecursionError
    assert not matches("json:a=1", msg('{"a": 1' + "0" * 5000 + "}"))  # int digits limit


def test_boolean_operators() -> None:
    m = msg("alpha beta")
    assert matches("alpha beta", m)
    assert matches("alpha and beta", m)
    assert not matches("alpha gamma", m)
    assert matches("alpha or gamma", m)
    assert matches("gamma or alpha", m)
    assert not matches("gamma or delta", m)
    assert matches("-gamma", m)
    assert not matches("-alpha", m)
    assert matches("not gamma", m)
    assert matches("alpha -gamma", m)
    assert not matches("alpha -beta", m)
    # AND binds tighter than OR
    assert matches("gamma alpha or beta", m)
    assert not matches("gamma (alpha or beta)", m)
    assert matches("-(gamma or delta)", m)
    assert not matches("-(gamma or alpha)", m)
    assert matches("(alpha or gamma) (beta or delta) -epsilon", m)


def test_mixed_terms() -> None:
    c = msg('{"type": "ping"}', side="client", conn="c1")
    s = msg('{"type": "pong"}', side="server", conn="c2")
    f = parse("from:client json:type=ping or from:server size<100 -zebra")
    assert f(c)
    assert f(s)
    assert parse("type:text -from:server").scan([c, s]) == [c]
    assert parse("(conn:c1 or conn:c2) pong").scan([c, s]) == [s]


def test_scan() -> None:
    items: list[Item] = [msg(f"n{i} {'even' if i % 2 == 0 else 'odd'}", seq=i) for i in range(20)]
    items.append(ctrl(Opcode.PING, b"even ping"))
    for expr in ("even", "EVEN -n4", "/n1\\d/", "odd or ping", "type:ping", "size>5", "é"):
        f = parse(expr)
        assert f.scan(items) == [m for m in items if f(m)]
        assert f.scan(iter(items)) == [m for m in items if f(m)]  # an iterator, walked once
        assert f.scan(m for m in items) == [m for m in items if f(m)]


def test_never_raises_on_foreign_objects() -> None:
    for expr in ("word", "é", "/x/", "from:client", "size>1", "json:a=1", "a b or -c"):
        f = parse(expr)
        assert f(object()) is False  # type: ignore[arg-type]
        assert f(None) is False  # type: ignore[arg-type]
        weird = [msg("word"), object(), msg("nope")]
        assert len(f.scan(weird)) <= 2  # type: ignore[arg-type]


def test_filters_are_hashable_and_comparable() -> None:
    assert parse("a  b") == parse("a and b")
    assert parse("a b") != parse("a or b")
    assert len({parse("x"), parse("x"), parse("y")}) == 2
    assert repr(parse("a b")) == "And('a b')"


# --------------------------------------------------------------------------- properties

_FRAGMENTS = [
    "a",
    "B",
    "é",
    "or",
    "and",
    "not",
    "OR",
    "-",
    "(",
    ")",
    '"',
    "'",
    "\\",
    "/",
    "/x/i",
    "/[/",
    ":",
    "=",
    ">",
    "<",
    "from:",
    "client",
    "type:",
    "ping,pong",
    "conn:",
    "size",
    "size>",
    "1k",
    "1.5mb",
    "json:",
    "a.b",
    ".0",
    "=3",
    '"x y"',
    "'q'",
    "*",
    "\t",
]

fragments_expr = st.lists(
    st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=3)), max_size=12
).flatmap(lambda parts: st.sampled_from(["", " "]).map(lambda sep: sep.join(parts)))

payloads = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=40).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["a", "b", "type", "0"]), inner, max_size=3)
        ),
        max_leaves=8,
    ).map(lambda v: json.dumps(v).encode()),
)

messages = st.builds(
    Message,
    seq=st.integers(0, 10**9),
    conn=st.text(max_size=8),
    ts=st.floats(allow_nan=False),
    side=st.sampled_from(["client", "server"]),
    opcode=st.sampled_from([Opcode.TEXT, Opcode.BINARY]),
    payload=payloads,
    size=st.integers(0, 1 << 40),
    wire_size=st.integers(0, 1 << 40),
)
control_frames = st.builds(
    ControlFrame,
    seq=st.integers(0, 10**9),
    conn=st.text(max_size=8),
    ts=st.floats(allow_nan=False),
    side=st.sampled_from(["client", "server"]),
    opcode=st.sampled_from([Opcode.PING, Opcode.PONG, Opcode.CLOSE]),
    payload=payloads,
    wire_size=st.integers(0, 1 << 20),
    code=st.none() | st.integers(0, 70000),
    reason=st.text(max_size=10),
)
items_st = st.one_of(messages, control_frames)


def _parse_or_none(expr: str) -> Filter | None:
    try:
        f = parse(expr)
    except FilterError as e:
        assert 1 <= e.column <= len(expr) + 1
        return None
    assert isinstance(f, Filter)
    return f


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_any_string_parses_or_raises_filter_error(expr: str) -> None:
    _parse_or_none(expr)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fragments_expr, st.lists(items_st, max_size=5))
def test_filter_like_strings(expr: str, items: list[Item]) -> None:
    f = _parse_or_none(expr)
    if f is None:
        return
    again = parse(str(f))  # the normalised form parses back to the same filter
    assert str(again) == str(f)
    for item in items:
        result = f.predicate(item)  # the bare closure never raises on model items
        assert isinstance(result, bool)
        assert again(item) == result
    assert f.scan(items) == [i for i in items if f(i)]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        ["ping", "json:type=ping", "json:a.0", "json:n=3", "/p.ng/i", "size>3", "é -x", "a or b"]
    ),
    items_st,
)
def test_parsed_filters_never_raise_on_items(expr: str, item: Item) -> None:
    f = parse(expr)
    assert isinstance(f(item), bool)
    assert isinstance(f.predicate(item), bool)


# A random boolean tree of words, evaluated directly and through the parser: checks
# precedence, negation and the shared-lower() optimisations of And/Or.
Tree = tuple[str, object]

word_leaf = st.sampled_from(["alpha", "beta", "gamma", "Beta", "é", "from:client", "/a.p/"])
trees = st.recursive(
    word_leaf.map(lambda w: ("leaf", w)),
    lambda inner: st.one_of(
        inner.map(lambda t: ("not", t)),
        st.lists(inner, min_size=2, max_size=4).map(lambda ts: ("and", ts)),
        st.lists(inner, min_size=2, max_size=4).map(lambda ts: ("or", ts)),
    ),
    max_leaves=10,
)


def _render(t: Tree) -> str:
    kind, val = t
    if kind == "leaf":
        assert isinstance(val, str)
        return val
    if kind == "not":
        return f"-({_render(val)})"  # type: ignore[arg-type]
    joiner = " " if kind == "and" else " or "
    return "(" + joiner.join(_render(c) for c in val) + ")"  # type: ignore[attr-defined]


def _evaluate(t: Tree, item: Message) -> bool:
    kind, val = t
    if kind == "leaf":
        if val == "from:client":
            return item.side == "client"
        if val == "/a.p/":
            return "a" in item.payload.decode() and _regex_ap(item.payload.decode())
        return str(val).lower() in item.payload.decode().lower()
    if kind == "not":
        return not _evaluate(val, item)  # type: ignore[arg-type]
    results = [_evaluate(c, item) for c in val]  # type: ignore[attr-defined]
    return all(results) if kind == "and" else any(results)


def _regex_ap(text: str) -> bool:
    import re

    return re.search("a.p", text) is not None


@settings(max_examples=300, deadline=None)
@given(
    trees,
    st.lists(st.sampled_from(["alpha", "BETA", "gamma", "É", "x", "alp"]), max_size=4),
    st.sampled_from(["client", "server"]),
)
def test_boolean_semantics_match_reference(tree: Tree, words: list[str], side: str) -> None:
    item = msg(" ".join(words), side=side)
    expr = _render(tree)
    f = parse(expr)
    assert f(item) == _evaluate(tree, item), expr
    assert parse(str(f))(item) == f(item)


_ascii_safe_text = st.text(
    alphabet=st.characters(
        blacklist_characters="\u0130\u212a",  # lowercase to ASCII letters: not bytes-equal
        blacklist_categories=("Cs",),  # lone surrogates are not text a peer can send
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(_ascii_safe_text, st.text(alphabet="abcABCé ", min_size=1, max_size=3))
def test_word_matches_reference(text: str, needle: str) -> None:
    item = msg(text)
    assume(needle.strip() == needle)
    expected = needle.lower() in text.lower()
    check: Callable[[str], bool] = lambda e: parse(e)(item)  # noqa: E731
    assert check('"' + needle + '"') == expected


# --------------------------------------------------------------------------- protocols


_SEQ = iter(range(1000, 10**9))


def _sio(payload: str, conn: str = "c1") -> Message:
    p = payload.encode()
    return Message(next(_SEQ), conn, 0.0, "client", Opcode.TEXT, p, len(p), len(p) + 2)


def test_proto_and_decoded_paths() -> None:
    from devconsole.decoders.tracker import ProtocolTracker
    from devconsole.model import HandshakeEvent
    from tests.factories import make_handshake

    tracker = ProtocolTracker()
    tracker.on_event(HandshakeEvent(make_handshake("c1", path="/socket.io/", query=[("EIO", "4")])))
    chat = _sio('42["chat",{"text":"hi"}]')
    other = _sio('42["typing"]')
    plain = _sio('{"event":"chat"}', conn="c2")
    f = filters.parse("proto:socket.io d:event=chat", decode=tracker.decoded)
    assert f(chat) and not f(other) and not f(plain)
    assert filters.parse("d:args.0.text=hi", decode=tracker.decoded)(chat)
    assert filters.parse("d:ack", decode=tracker.decoded)(chat) is False
    assert filters.parse("-proto:socket.io", decode=tracker.decoded)(plain)
    assert str(filters.parse("proto:MQTT d:topic=sensors/1")) == "proto:mqtt d:topic=sensors/1"


def test_decoded_paths_without_a_tracker_use_content() -> None:
    rpc = _sio(
        '[{"jsonrpc":"2.0","method":"a","id":1},{"jsonrpc":"2.0","method":"eth_subscribe","id":2}]'
    )
    # a batch: one packet matching is enough
    assert filters.parse("d:method=eth_subscribe")(rpc)
    assert filters.parse("proto:jsonrpc")(rpc)
    assert not filters.parse("proto:stomp")(rpc)


def test_unknown_protocol_is_an_error() -> None:
    with pytest.raises(filters.FilterError, match="unknown protocol 'nope'"):
        filters.parse("proto:nope")
    with pytest.raises(filters.FilterError, match="d: expects a path"):
        filters.parse("d:=x")
    assert filters.parse("proto:protobuf")  # every protobuf:pkg.Message


def test_instance_matches_the_connections_of_one_proxy_instance() -> None:
    f = parse("instance:app-1")
    assert str(f) == "instance:app-1"

    def on(conn: str) -> bool:
        return f(Message(1, conn, 0.0, "server", Opcode.TEXT, b"x", 1, 3))

    assert on("app-1/3") and on("app-1~2/3")  # a later run of the same instance
    assert not on("app-10/3") and not on("app-2/1") and not on("3") and not on("app-1~2")
    assert parse("instance:app-1~2")(Message(1, "app-1~2/3", 0.0, "server", 1, b"", 0, 2))
    with pytest.raises(FilterError, match="missing value after 'instance:'"):
        parse("instance:")
