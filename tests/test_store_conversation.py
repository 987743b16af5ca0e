"""Conversations of a recorded connection: structural JSON diff with ignored paths,
alignment of answers, and the mock script's matching and id substitution."""

from __future__ import annotations

import pytest

from devconsole.model import HandshakeEvent, Message, Opcode
from devconsole.session import Session
from devconsole.store.conversation import (
    ConversationError,
    MockScript,
    conversation,
    diff_answers,
    json_diff,
    parse_path,
    substitutions,
)
from tests.factories import make_handshake


def m(seq: int, side: str, text: str | bytes, ts: float | None = None) -> Message:
    data = text.encode() if isinstance(text, str) else text
    op = Opcode.TEXT if isinstance(text, str) else Opcode.BINARY
    return Message(seq, "1", ts if ts is not None else 10.0 + seq, side, op, data, len(data), 0)  # type: ignore[arg-type]


def session_of(*msgs: Message) -> Session:
    s = Session()
    s.apply(HandshakeEvent(make_handshake("1", ts=10.0)))
    s.apply_all(msgs)
    return s


def test_parse_path() -> None:
    assert parse_path("$.a.b[0].c") == ("a", "b", 0, "c")
    assert parse_path("items[*].id") == ("items", "*", "id")
    assert parse_path("*.ts") == ("*", "ts")
    with pytest.raises(ValueError):
        parse_path("$")


def test_json_diff_is_structural() -> None:
    assert json_diff({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}) == []
    assert json_diff({"a": 1}, {"a": 2, "c": 3}) == ["$.a: 1 -> 2", "$.c: added 3"]
    assert json_diff([1], [1, True]) == ["$[1]: added true"]
    assert json_diff({"a": 1}, {"a": 1.0}) == ["$.a: 1 -> 1.0"]


def test_diff_answers_added_missing_changed_and_ignored() -> None:
    rec = [
        m(1, "server", '{"t":"a","ts":1}'),
        m(2, "server", '{"t":"b","v":1}'),
        m(3, "server", "plain"),
    ]
    same = [
        m(1, "server", '{ "ts": 99, "t": "a" }'),
        m(2, "server", '{"v":1,"t":"b"}'),
        m(3, "server", "plain"),
    ]
    assert diff_answers(rec, same, ["ts"]) == []
    assert [c.kind for c in diff_answers(rec, same)] == ["changed"]
    other = [
        m(1, "server", '{"t":"a","ts":1}'),
        m(2, "server", '{"t":"b","v":2}'),
        m(3, "server", "plain"),
        m(4, "server", "extra"),
    ]
    changes = diff_answers(rec, other)
    assert [(c.kind, c.index) for c in changes] == [("changed", 1), ("added", 3)]
    assert changes[0].details == ["$.v: 1 -> 2"]
    missing = diff_answers(rec, rec[:1])
    assert [(c.kind, c.index) for c in missing] == [("missing", 1), ("missing", 2)]
    assert missing[0].lines()[0].startswith("- answer 2 missing")


def test_conversation_picks_the_connection() -> None:
    s = session_of(m(1, "client", "hi"), m(2, "server", "yo"))
    conv = conversation(s)
    assert conv.conn == "1" and [x.payload for x in conv.client_messages()] == [b"hi"]
    with pytest.raises(ConversationError, match="no connection '9'"):
        conversation(s, "9")
    with pytest.raises(ConversationError):
        conversation(Session())


def test_mock_script_by_order_with_pushes_and_delays() -> None:
    s = session_of(
        m(1, "server", "welcome", 10.5),
        m(2, "client", "a", 11.0),
        m(3, "server", "A1", 11.25),
        m(4, "server", "A2", 11.5),
        m(5, "client", "b", 12.0),
        m(6, "server", "B", 12.1),
    )
    script = MockScript(conversation(s))
    assert [(round(d, 2), x.payload) for d, x in script.pushes] == [(0.49, b"welcome")]
    assert [(round(d, 2), p) for d, _, p in script.answer(Opcode.TEXT, b"zzz")] == [
        (0.25, b"A1"),
        (0.5, b"A2"),
    ]
    assert [p for _, _, p in script.answer(Opcode.TEXT, b"b")] == [b"B"]
    assert script.finished and script.answer(Opcode.TEXT, b"c") == [] and script.unmatched == 1


def test_mock_script_by_json_structure_substitutes_ids() -> None:
    s = session_of(
        m(1, "client", '{"method":"subscribe","id":1,"params":{"ch":"prices"}}'),
        m(2, "server", '{"id":1,"result":"ok","ch":"prices"}'),
        m(3, "client", '{"method":"ping","id":2}'),
        m(4, "server", '{"id":2,"result":"pong"}'),
    )
    script = MockScript(conversation(s), "json")
    (ans,) = script.answer(Opcode.TEXT, b'{"method":"ping","id":42}')
    assert ans[2] == b'{"id":42,"result":"pong"}'
    (ans,) = script.answer(Opcode.TEXT, b'{"id":"x7","method":"subscribe","params":{"ch":"news"}}')
    assert ans[2] == b'{"id":"x7","result":"ok","ch":"news"}'


def test_substitutions_leave_booleans_and_clashes_alone() -> None:
    assert substitutions({"id": 1, "ok": True}, {"id": 2, "ok": False}) == {1: 2}
    assert substitutions({"a": 1, "b": 1}, {"a": 2, "b": 3}) == {}
