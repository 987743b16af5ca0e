"""Held messages for the panes (tui/held.py): counts per connection, the oldest-first
list, the seqs to re-render when outcomes arrive, and the words for what became of a
held message."""

from __future__ import annotations

from devconsole.model import CLIENT, Breakpoint, Opcode, Outcome, OutcomeEvent, Snapshot
from devconsole.samples import INTERCEPT_NOW, Traffic, intercept_traffic
from devconsole.session import Session
from devconsole.tui.held import (
    HeldTracker,
    as_sent,
    deadline_text,
    held_by,
    held_for,
    hold_spec,
    outcome_words,
)


def session() -> Session:
    s = Session()
    s.apply_all(intercept_traffic().events)
    return s


def test_one_tracker_per_session_counts_and_orders_the_held_messages() -> None:
    s = session()
    tracker = HeldTracker.of(s)
    assert HeldTracker.of(s) is tracker and HeldTracker.of(Session()) is not tracker
    assert tracker.count() == 3 and tracker.count("1") == 1 and tracker.count("2") == 2
    assert tracker.count("9") == 0 and tracker.connections() == 2
    assert [it.held for it in tracker.ordered()] == [3, 4, 5]
    s.apply(OutcomeEvent("2", INTERCEPT_NOW, 10, 4, Outcome.FORWARDED))
    assert tracker.count("2") == 1 and [it.held for it in tracker.ordered()] == [3, 5]


def test_outcomes_name_the_rows_to_render_again() -> None:
    s = session()
    tracker = HeldTracker.of(s)
    tracker.take_changed()
    s.apply(OutcomeEvent("1", INTERCEPT_NOW, 8, 3, Outcome.DROPPED))
    s.apply(OutcomeEvent("2", INTERCEPT_NOW, 11, 5, Outcome.TIMEOUT_FORWARDED))
    assert tracker.take_changed() == [8, 11]
    assert tracker.take_changed() == []


def test_messages_held_again_after_lost_name_their_rows_and_words() -> None:
    """A merged view's instance heard from again: the Snapshot that holds its messages
    again re-renders their rows, which said "lost with its instance" meanwhile."""
    s = session()
    tracker = HeldTracker.of(s)
    tracker.take_changed()
    (it,) = [x for x in s.held.values() if x.held == 3]
    s.apply(OutcomeEvent("1", INTERCEPT_NOW, it.seq, 3, Outcome.LOST))
    assert outcome_words(it).endswith("lost with its instance")
    assert tracker.take_changed() == [it.seq] and tracker.count() == 2
    it.outcome = ""
    s.apply(Snapshot(s.last_seq, [], "", 0, list(s.breakpoints), [*s.held.values(), it]))
    assert sorted(tracker.take_changed()) == sorted(x.seq for x in s.held.values())
    assert tracker.count() == 3


def test_nothing_held_costs_nothing() -> None:
    s = Session()
    tracker = HeldTracker.of(s)
    t = Traffic()
    t.open("1")
    s.apply_all(t.burst("1", 100))
    assert tracker.count() == 0 and tracker.count("1") == 0 and tracker.ordered() == []
    assert tracker._version == -1  # never computed: nothing was held


def test_words_times_and_the_body_as_sent() -> None:
    t = Traffic()
    m = t.text("1", CLIENT, '{"a":1}', held=2, breakpoint=1)
    bp = Breakpoint(1, "x", timeout=30.0, on_timeout="drop")
    assert outcome_words(m) == "held by breakpoint 1"
    assert held_for(m, m.ts + 12.5) == 12.5 and held_for(m, m.ts - 1) == 0.0
    assert deadline_text(m, bp, m.ts + 12.5) == "drops in 17s"
    assert deadline_text(m, None, m.ts) == ""
    assert as_sent(m) is m
    m.outcome = Outcome.EDITED
    m.edited, m.edited_opcode, m.edited_size = b"\x01\x02", Opcode.BINARY, 2
    assert outcome_words(m) == "breakpoint 1: forwarded edited"
    sent = as_sent(m)
    assert (sent.payload, sent.opcode, sent.size) == (b"\x01\x02", Opcode.BINARY, 2)
    assert m.payload == b'{"a":1}'  # the original is kept
    assert outcome_words(t.text("1", CLIENT, "plain")) == ""


def test_a_message_a_rule_held_names_the_rule_not_breakpoint_0() -> None:
    """A rules file's ``hold`` (docs/rules.md) holds with breakpoint id 0 and the rule's
    name on the message: the panes say which rule, not "breakpoint 0"."""
    t = Traffic()
    m = t.text("1", CLIENT, "buy", held=7, breakpoint=0, rule="catch buys", action="hold")
    assert held_by(m) == "rule catch buys"
    assert outcome_words(m) == "held by rule catch buys"
    m.outcome = Outcome.DROPPED
    assert outcome_words(m) == "rule catch buys: dropped"
    bp_held = t.text("1", CLIENT, "sell", held=8, breakpoint=2, rule="slow", action="delay 1s")
    assert held_by(bp_held) == "breakpoint 2"  # a breakpoint held it after a rule's delay
    # an older proxy said a bare "hold": the rule's timeout is the proxy's to keep
    tracker = HeldTracker(Session())
    assert hold_spec(tracker, m) is None and deadline_text(m, None, m.ts + 1) == ""
    m = t.text("1", CLIENT, "buy", held=9, rule="catch buys", action="rewrite; hold 30s then drop")
    assert deadline_text(m, hold_spec(tracker, m), m.ts + 5) == "drops in 25s"


def test_a_flood_of_held_messages_is_counted_at_most_twice_a_second() -> None:
    """With tens of thousands held, a redraw tick does not recount them every time."""
    from devconsole.tui.held import MANY_HELD

    now = [0.0]
    s = Session()
    tracker = HeldTracker(s, clock=lambda: now[0])
    t = Traffic()
    t.open("1")
    for i in range(MANY_HELD + 10):
        s.apply(t.text("1", CLIENT, "x", held=i + 1, breakpoint=1))
    assert tracker.count("1") == MANY_HELD + 10
    s.apply(t.text("1", CLIENT, "x", held=MANY_HELD + 11, breakpoint=1))
    assert tracker.count("1") == MANY_HELD + 10  # within half a second: as it was
    assert tracker.count() == MANY_HELD + 11  # the total is always exact
    now[0] += 0.5
    assert tracker.count("1") == MANY_HELD + 11
