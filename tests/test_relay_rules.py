"""Rules as a stage of the relay core: no sockets, a fake clock, websockets' sans-I/O
peers on both ends (``tests.test_relay.Pipe``)."""

from __future__ import annotations

import pytest

from devconsole.model import CLIENT, SERVER, ControlFrame, Message, OutcomeEvent, RuleEvent
from devconsole.rules import load
from tests.test_relay import Deflate, Pipe, compressible


def with_rules(text: str, **kw) -> Pipe:  # type: ignore[no-untyped-def]
    p = Pipe(**kw)
    for _, out in p.intercept.set_rules(load(text), p.now):
        p.apply(out)
    return p


def advance(p: Pipe, dt: float) -> None:
    """Move the fake clock on by ``dt``, ticking the relay whenever it asks."""
    end = p.now + dt
    while True:
        t = p.relay.next_deadline()
        if t is None or t > end:
            break
        p.now = max(p.now, t)
        p.apply(p.relay.tick(p.now))
    p.now = end
    p.apply(p.relay.tick(p.now))


def test_rewrite_changes_text_records_rule_and_keeps_original() -> None:
    p = with_rules(
        """
        [[rule]]
        name = "shout"
        match = "from:client hello"
        rewrite = { regex = "hello", replace = "HELLO" }
        """
    )
    p.send(CLIENT, "hello world", "bye")
    p.deliver()
    assert p.messages(SERVER) == ["HELLO world", "bye"]
    m = p.msgs()[0]
    assert m.payload == b"hello world"  # the original stays in the record
    assert (m.outcome, m.edited, m.rule) == ("edited", b"HELLO world", "shout")
    assert m.action.startswith("rewrite")
    assert not p.msgs()[1].rule
    assert p.healthy(SERVER)


def test_set_and_delete_json_fields() -> None:
    p = with_rules(
        """
        [[rule]]
        match = "json:type=login"
        set = { "user.name" = "mallory", "admin" = true }
        delete = ["token"]
        """
    )
    p.send(CLIENT, '{"type": "login", "user": {"name": "alice"}, "token": "s3cret"}', "{not json")
    p.deliver()
    assert p.messages(SERVER) == [
        '{"type":"login","user":{"name":"mallory"},"admin":true}',
        "{not json",
    ]


def test_drop_the_third_server_message() -> None:
    p = with_rules(
        """
        [[rule]]
        name = "lose one"
        match = "from:server"
        nth = 3
        drop = true
        """
    )
    p.send(SERVER, *(f"m{i}" for i in range(1, 6)))
    p.send(CLIENT, "c1", "c2", "c3")
    p.deliver()
    assert p.messages(CLIENT) == ["m1", "m2", "m4", "m5"]
    assert p.messages(SERVER) == ["c1", "c2", "c3"]
    dropped = [m for m in p.msgs() if m.dropped]
    assert [(m.payload, m.outcome, m.rule) for m in dropped] == [(b"m3", "dropped", "lose one")]


def test_delay_keeps_order_and_uses_the_drivers_clock() -> None:
    p = with_rules('[[rule]]\nmatch = "slow"\ndelay = "300ms"')
    p.send(CLIENT, "first slow", "second", "third")
    p.deliver()
    assert p.messages(SERVER) == []
    assert p.relay.next_deadline() == pytest.approx(p.now + 0.3)
    advance(p, 0.299)
    p.deliver()
    assert p.messages(SERVER) == []
    advance(p, 0.002)
    p.deliver()
    assert p.messages(SERVER) == ["first slow", "second", "third"]


def test_delay_range_and_reorder() -> None:
    p = with_rules(
        """
        [[rule]]
        match = "late"
        delay = ["100ms", "200ms"]
        reorder = true
        """
    )
    p.relay.rng.seed(7)
    p.send(CLIENT, "late one", "on time")
    p.deliver()
    assert p.messages(SERVER) == ["on time"]  # overtook the delayed one
    advance(p, 0.099)
    p.deliver()
    assert p.messages(SERVER) == ["on time"]
    advance(p, 0.102)
    p.deliver()
    assert p.messages(SERVER) == ["on time", "late one"]
    [late] = [m for m in p.msgs() if m.payload == b"late one"]
    assert late.action.startswith("delay ") and 0.1 <= float(late.action[6:-2]) / 1000 <= 0.2


def test_duplicate_sends_copies_shown_as_injected() -> None:
    p = with_rules('[[rule]]\nmatch = "twice"\nduplicate = 2')
    p.send(SERVER, "say twice", "once")
    p.deliver()
    assert p.messages(CLIENT) == ["say twice", "say twice", "say twice", "once"]
    copies = [m for m in p.msgs() if m.injected]
    assert len(copies) == 2 and all(m.action == "duplicate" for m in copies)


def test_respond_instead_mocks_a_reply_with_the_request_id() -> None:
    p = with_rules(
        """
        [[rule]]
        name = "deny"
        match = "from:client json:method=subscribe"
        respond = { json = { jsonrpc = "2.0", id = "${json.id}", error = { code = -1 } } }
        """
    )
    p.send(CLIENT, '{"jsonrpc": "2.0", "id": 42, "method": "subscribe"}', '{"id": 43}')
    p.deliver()
    assert p.messages(CLIENT) == ['{"jsonrpc":"2.0","id":42,"error":{"code":-1}}']
    assert p.messages(SERVER) == ['{"id": 43}']
    orig, reply = [m for m in p.msgs() if m.rule]
    assert orig.dropped and orig.action == "respond instead"
    assert reply.injected and reply.side == SERVER and reply.rule == "deny"


def test_respond_as_well_as_forward() -> None:
    p = with_rules('[[rule]]\nmatch = "ping-app"\nrespond = "pong-app"\nforward = true')
    p.send(CLIENT, "ping-app")
    p.deliver()
    assert p.messages(SERVER) == ["ping-app"]
    assert p.messages(CLIENT) == ["pong-app"]


def test_close_action_closes_both_peers_with_the_code() -> None:
    p = with_rules('[[rule]]\nmatch = "bye"\nclose = { code = 4001, reason = "rule says bye" }')
    p.send(CLIENT, "hello", "bye", "after")
    p.deliver()
    assert p.messages(SERVER) == ["hello"]
    assert p.client.close_rcvd is not None and p.client.close_rcvd.code == 4001
    assert p.server.close_rcvd is not None and p.server.close_rcvd.reason == "rule says bye"
    assert any(isinstance(e, RuleEvent) and e.action == "close" for e in p.events)


def test_hold_action_is_a_breakpoint() -> None:
    p = with_rules('[[rule]]\nname = "look"\nmatch = "inspect"\nhold = { timeout = "5s" }')
    p.send(CLIENT, "inspect me", "next")
    p.deliver()
    assert p.messages(SERVER) == []
    [held] = p.held()
    assert held.rule == "look" and held.breakpoint == 0
    assert held.action == "hold 5s then forward"  # what a viewer counts down from
    advance(p, 5.01)  # the rule's timeout: forwarded
    p.deliver()
    assert p.messages(SERVER) == ["inspect me", "next"]
    assert [o.outcome for o in p.events if isinstance(o, OutcomeEvent)] == ["timeout-forwarded"]


def test_control_rule_drops_pongs() -> None:
    p = with_rules('[[rule]]\nmatch = "type:pong from:server"\ncontrol = true\ndrop = true')
    p.client.send_ping(b"hb1")
    p.feed(CLIENT, b"".join(p.client.data_to_send()))
    p.deliver()  # the server answers with a pong
    p.feed(SERVER, b"".join(p.server.data_to_send()))
    p.deliver()
    assert p.controls(CLIENT) == []
    [pong] = [e for e in p.items() if isinstance(e, ControlFrame) and e.side == SERVER]
    assert pong.dropped and pong.rule


def test_rules_follow_the_connection_path() -> None:
    text = '[[rule]]\npath = "/chat*"\nmatch = "x"\ndrop = true'
    chat = with_rules(text)
    chat.relay.path = "/chat/room1"
    chat.relay._rules_changed(chat.now)
    chat.send(CLIENT, "x")
    other = with_rules(text)
    other.send(CLIENT, "x")
    chat.deliver()
    other.deliver()
    assert chat.messages(SERVER) == [] and other.messages(SERVER) == ["x"]


def test_rules_reload_mid_connection_and_hot_path_after() -> None:
    p = with_rules('[[rule]]\nmatch = "a"\ndrop = true')
    p.send(CLIENT, "a")
    for _, out in p.intercept.set_rules(load('[[rule]]\nmatch = "b"\ndrop = true'), p.now):
        p.apply(out)
    p.send(CLIENT, "a", "b")
    p.deliver()
    assert p.messages(SERVER) == ["a"]
    for _, out in p.intercept.set_rules(load(""), p.now):
        p.apply(out)
    p.client.send_text(b"c")
    chunk = b"".join(p.client.data_to_send())
    assert p.relay.feed(CLIENT, chunk, p.now) is chunk  # nothing to do: the hot path


@pytest.mark.parametrize(
    "rule",
    [
        'match = "m2"\ndrop = true',
        'match = "m2"\nrewrite = { regex = "m2", replace = "M-TWO" }',
        'match = "m2"\ndelay = "50ms"\nreorder = true',
        'match = "m2"\nduplicate = true',
        'match = "m2"\nrespond = "r"',
    ],
)
def test_compressed_direction_with_context_takeover_stays_decodable(rule: str) -> None:
    """Every rule that changes, drops, reorders or repeats a compressed message makes the
    relay take over compression for that direction: the receiver decodes everything."""
    p = with_rules(f"[[rule]]\n{rule}", deflate=Deflate())
    p.send(CLIENT, *(f"m{i} {compressible(i)}" for i in range(1, 7)))
    advance(p, 0.1)
    p.deliver()
    got = p.messages(SERVER)
    assert p.healthy(SERVER), p.server.close_rcvd
    assert [g.split()[0] for g in got if isinstance(g, str)] == _expected(rule)
    assert all(
        isinstance(g, str) and g.endswith(compressible(int(g[1]))) for g in got if g[0] == "m"
    )


def _expected(rule: str) -> list[str]:
    names = [f"m{i}" for i in range(1, 7)]
    if "drop" in rule or "respond" in rule:
        return [n for n in names if n != "m2"]
    if "rewrite" in rule:
        return ["m1", "M-TWO", *names[2:]]
    if "reorder" in rule:
        return ["m1", *names[2:], "m2"]
    return ["m1", "m2", "m2", *names[2:]]


def test_rules_see_what_earlier_rules_rewrote() -> None:
    p = with_rules(
        """
        [[rule]]
        match = "alpha"
        rewrite = { regex = "alpha", replace = "beta" }
        [[rule]]
        match = "beta"
        drop = true
        """
    )
    p.send(CLIENT, "alpha", "gamma")
    p.deliver()
    assert p.messages(SERVER) == ["gamma"]
    m = p.msgs()[0]
    assert m.rule == "rule 1, rule 2" and m.dropped


def test_message_events_carry_rule_fields_over_the_wire() -> None:
    from devconsole import wire

    p = with_rules('[[rule]]\nmatch = "x"\ndelay = "10ms"')
    p.send(CLIENT, "x")
    [m] = p.msgs()
    back = wire.decode_event(wire.encode_event(m))
    assert isinstance(back, Message) and (back.rule, back.action) == (m.rule, m.action)
