"""Rules files: parsing, errors with line and column, decisions, handshake edits, dry
runs. No I/O."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from devconsole.filters import parse
from devconsole.model import (
    CLIENT,
    SERVER,
    ControlFrame,
    Handshake,
    HandshakeEvent,
    Message,
    Opcode,
    Shape,
)
from devconsole.rules import (
    HeaderEdit,
    HoldAction,
    RulesError,
    decide,
    dry_run,
    hold_of_action,
    load,
)

ROOT = Path(__file__).resolve().parent.parent


def msg(text: str, side: str = CLIENT, seq: int = 1, conn: str = "1") -> Message:
    b = text.encode()
    return Message(seq, conn, 1.0, side, Opcode.TEXT, b, len(b), len(b) + 2)  # type: ignore[arg-type]


def test_the_example_rules_file_loads() -> None:
    rs = load((ROOT / "examples" / "rules.toml").read_text(), "examples/rules.toml")
    assert len(rs.messages) >= 9 and len(rs.handshakes) >= 4 and rs.shapes
    actions = set()
    for r in rs.messages:
        actions |= {
            a
            for a in (
                "rewrite",
                "set",
                "delete",
                "drop",
                "delay",
                "duplicate",
                "respond",
                "close",
                "hold",
                "shape",
            )
            if getattr(r, a)
        }
    assert actions == {
        "rewrite", "set", "delete", "drop", "delay", "duplicate", "respond", "close", "hold",
        "shape",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ('[[rule]]\nmatch = "x"\ndelay = "soon"\n', 3, 9, "expected a duration"),
        ('[[rule]]\nmatch = "from:client (a"\ndrop = true\n', 2, 22, "unclosed"),
        ('[[rule]]\nmatch = "type:blob"\ndrop = true\n', 2, 15, "type"),
        ('[[rule]]\nname = "x"\nmatch = "a"\n', 1, 1, "no action"),
        ('[[rule]]\nmatch = "a"\ndorp = true\n', 3, 8, "unknown key 'dorp'"),
        ('[[rule]]\nmatch = "a"\nclose = 1005\n', 3, 9, "not a close code"),
        ('[[rule]]\nmatch = "a"\nrewrite = { regex = "(", replace = "" }\n', 3, 21, "bad regex"),
        (
            '[[rule]]\nmatch = "a"\ndrop = true\n[[rule]]\nmatch = "b"\nnth = 0\ndrop = true\n',
            6,
            7,
            "nth",
        ),
        ('[[handshake]]\npath = "feed"\nrefuse = 503\n', 2, 8, "must start with /"),
        ("[[handshake]]\nrefuse = { status = 101 }\n", 2, 10, "not 101"),
        ('[[shape]]\npath = "/x"\nlatency = "fast"\n', 3, 11, "expected a duration"),
        ('[[rule]]\nmatch = "a"\ndrop = true\nnonsense\n', 4, 9, "Expected"),
        ("[rules]\nx = 1\n", 1, 1, "unknown table"),
        ('[[rule]]\nmatch = "a"\ncontrol = true\nrespond = "x"\n', 4, 11, "control frames"),
    ],
)
def test_errors_say_line_and_column(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(RulesError) as exc:
        load(text, "my.toml")
    e = exc.value
    assert message in e.message
    assert (e.line, e.column) == (line, col)
    assert str(e).startswith(f"my.toml:{line}:{col}: ")


def test_a_rule_without_match_matches_every_data_message_not_control_frames() -> None:
    rs = load("[[rule]]\ndrop = true\n")
    ping = ControlFrame(2, "1", 1.0, CLIENT, Opcode.PING, b"", 2)
    counts: dict[int, int] = {}
    assert decide(rs.messages, msg("anything"), counts, random.Random()) is not None
    assert decide(rs.messages, ping, counts, random.Random()) is None


def test_direction_of_a_rule_comes_from_its_filter() -> None:
    rs = load('[[rule]]\nmatch = "from:server x"\ndrop = true\n[[rule]]\nmatch = "x"\ndrop = true')
    assert [r.side for r in rs.messages] == [SERVER, None]


def test_nth_times_and_probability() -> None:
    rs = load(
        """
        [[rule]]
        match = "a"
        nth = 2
        drop = true
        [[rule]]
        match = "b"
        times = 2
        drop = true
        [[rule]]
        match = "c"
        probability = 0.5
        drop = true
        """
    )
    rng = random.Random(1)
    counts: dict[int, int] = {}

    def dropped(text: str) -> bool:
        d = decide(rs.messages, msg(text), counts, rng)
        return d is not None and d.drop

    assert [dropped("a") for _ in range(4)] == [False, True, False, False]
    assert [dropped("b") for _ in range(4)] == [True, True, False, False]
    coin = [dropped("c") for _ in range(400)]
    assert 150 < sum(coin) < 250


def test_respond_templates() -> None:
    rs = load(
        """
        [[rule]]
        match = "json:op=get"
        respond = [
            '{"re": ${json.id}, "who": "${json.user.name}"}',
            { json = { re = "${json.id}", missing = "${json.nope}" } },
        ]
        """
    )
    d = decide(
        rs.messages, msg('{"op": "get", "id": 7, "user": {"name": "al"}}'), {}, random.Random()
    )
    assert d is not None and d.drop
    assert [b for _, b in d.respond] == [b'{"re": 7, "who": "al"}', b'{"re":7,"missing":null}']


def test_shape_in_a_rule_and_endpoint_shapes() -> None:
    rs = load(
        """
        [[rule]]
        match = "json:type=subscribe"
        shape = { to = "client", rate = "64kbit" }
        [[shape]]
        path = "/ticker"
        latency = "100ms"
        [[shape]]
        path = "/ticker"
        to = "server"
        latency = "300ms"
        """
    )
    d = decide(rs.messages, msg('{"type": "subscribe"}'), {}, random.Random())
    assert d is not None and d.shape == [(CLIENT, Shape(rate=8000))]
    assert rs.shapes_for("ws://h/ticker", "/ticker") == {
        CLIENT: (Shape(latency=0.1), "shape 1"),
        SERVER: (Shape(latency=0.3), "shape 2"),
    }
    assert rs.shapes_for("ws://h/chat", "/chat") == {}


def test_custom_filter_parser_for_decoded_fields() -> None:
    """A caller can match on more than the base filter language (decoded protocols)."""
    seen: list[str] = []

    def my_parse(expr: str):  # type: ignore[no-untyped-def]
        seen.append(expr)
        return parse(expr.replace("d:", "json:"))

    rs = load('[[rule]]\nmatch = "d:event=ping"\ndrop = true', parse_filter=my_parse)
    assert seen == ["d:event=ping"]
    assert decide(rs.messages, msg('{"event": "ping"}'), {}, random.Random()) is not None


# --------------------------------------------------------------------------- handshakes


def test_header_edits() -> None:
    e = HeaderEdit(add=[("X-A", "1")], remove=["cookie"], replace=[("Origin", "https://x")])
    headers, done = e.apply(
        [("Host", "h"), ("Cookie", "a=1"), ("Origin", "http://o"), ("Cookie", "b")]
    )
    assert headers == [("Host", "h"), ("Origin", "https://x"), ("X-A", "1")]
    assert done == [
        "removed cookie: a=1, b",
        "replaced Origin: http://o -> https://x",
        "added X-A: 1",
    ]


def test_strip_extension_and_subprotocol_from_the_offer() -> None:
    rs = load(
        """
        [[handshake]]
        path = "/chat"
        strip_extension = "permessage-deflate"
        strip_subprotocol = ["v2.chat"]
        times = 1
        """
    )
    [h] = rs.handshake_rules("ws://h/chat", "/chat")
    headers, done = h.edit_request(
        [
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits, x-other"),
            ("Sec-WebSocket-Protocol", "v2.chat, v1.chat"),
        ]
    )
    assert headers == [
        ("Sec-WebSocket-Extensions", "x-other"),
        ("Sec-WebSocket-Protocol", "v1.chat"),
    ]
    assert done == [
        "removed extension permessage-deflate; client_max_window_bits from the offer",
        "removed subprotocol v2.chat from the offer",
    ]
    h.used += 1
    assert rs.handshake_rules("ws://h/chat", "/chat") == []  # times = 1
    assert rs.handshake_rules("ws://h/other", "/other") == []


# --------------------------------------------------------------------------- dry run


def test_dry_run_over_captured_events() -> None:
    rs = load(
        """
        [[rule]]
        name = "third"
        match = "from:server"
        nth = 3
        drop = true
        [[rule]]
        name = "chat only"
        path = "/chat"
        match = "hi"
        delay = "1s"
        """
    )
    hs = Handshake("1", 0.0, "c", "s", "ws", "ws://h/chat", "GET", "/chat", [], "1.1", [], [], 101)
    hs2 = Handshake("2", 0.0, "c", "s", "ws", "ws://h/feed", "GET", "/feed", [], "1.1", [], [], 101)
    events = [
        HandshakeEvent(hs),
        HandshakeEvent(hs2),
        msg("hi", CLIENT, 1, "1"),
        msg("hi", CLIENT, 2, "2"),
        *(msg(f"s{i}", SERVER, 10 + i, "2") for i in range(5)),
    ]
    got = [(m.item.seq, m.decision.rule, m.decision.action) for m in dry_run(rs, events)]
    assert got == [(1, "chat only", "delay 1s"), (12, "third", "drop")]


def test_a_hold_says_its_timeout_in_the_action_and_viewers_read_it_back() -> None:
    """The message a rule holds carries ``hold 30s then drop`` in its action: the one
    place a viewer learns the timeout (rules live on the proxy), for its countdown."""
    rules = load('[[rule]]\nmatch = "buy"\nhold = { timeout = "1.5m", on_timeout = "drop" }')
    dec = decide(rules.messages, msg("buy 1"), {}, random.Random(0))
    assert dec is not None and dec.action == "hold 90s then drop"
    assert hold_of_action(dec.action) == HoldAction(90.0, "drop")
    assert hold_of_action("rewrite (3 -> 5 bytes); hold 250ms then forward") == HoldAction(
        0.25, "forward"
    )
    for other in ("hold", "delay 1s", "", "hold 99999h then drop", "hold 5s then maybe"):
        assert hold_of_action(other) is None, other
