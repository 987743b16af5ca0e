"""Merging many instances into one view (the core behind the Redis source): no I/O."""

from __future__ import annotations

import pytest

from devconsole import wire
from devconsole.instances import (
    KIND_BYE,
    KIND_EVENTS,
    KIND_HEARTBEAT,
    KIND_SNAPSHOT,
    Entry,
    EntryError,
    InstanceMerger,
    SnapshotRecord,
    decode_entry,
    decode_snapshot_record,
    encode_entry,
    encode_events,
    encode_snapshot_record,
    valid_instance_name,
)
from devconsole.model import (
    Breakpoint,
    BreakpointsEvent,
    ControlFrame,
    EndEvent,
    Event,
    GapEvent,
    HandshakeEvent,
    InstanceEvent,
    Message,
    Outcome,
    OutcomeEvent,
    RuleEvent,
    Shape,
    ShapeEvent,
)
from devconsole.session import Session
from tests.factories import make_handshake


def msg(seq: int, conn: str, ts: float, side: str = "client", text: str = "x") -> Message:
    p = text.encode()
    return Message(seq, conn, ts, side, 1, p, len(p), len(p) + 2)  # type: ignore[arg-type]


def entry(
    name: str, count: int, ts: float, events: list[Event] | None = None, *, run: str = "r1",
    kind: str = KIND_EVENTS, eid: str = "1-0", data: object = None,
) -> Entry:  # fmt: skip
    blob = encode_entry(run, kind, count, ts, encode_events(events) if events else data)
    return decode_entry({b"i": name.encode(), b"m": blob}, eid)


def items(evs: list[Event]) -> list[tuple[str, int, str]]:
    return [
        (e.conn, e.seq, e.payload.decode()) for e in evs if isinstance(e, Message | ControlFrame)
    ]


def test_entry_round_trip_and_malformed_entries() -> None:
    e = entry("app-1", 7, 12.5, [msg(3, "1", 12.4)], eid="1700000000123-0")
    assert (e.name, e.run, e.kind, e.count, e.ts) == ("app-1", "r1", KIND_EVENTS, 7, 12.5)
    assert e.redis_ms == 1700000000123
    (m,) = e.events()
    assert (m.seq, m.conn, m.payload) == (3, "1", b"x")
    with pytest.raises(EntryError):
        decode_entry({b"i": b"x", b"m": b"\xc1"})
    with pytest.raises(EntryError):
        decode_entry({b"x": b"y"})
    with pytest.raises(EntryError):
        decode_entry({b"i": b"a/b", b"m": encode_entry("r", KIND_BYE, 0, 1.0, None)})
    with pytest.raises(EntryError):
        decode_entry({b"i": b"a", b"m": encode_entry("r", "?", 0, 1.0, None)})
    bad = decode_entry({b"i": b"a", b"m": encode_entry("r", KIND_EVENTS, 0, 1.0, [[99]])})
    with pytest.raises(EntryError):
        bad.events()
    assert valid_instance_name("web-1:8080") is None
    assert valid_instance_name("a b") and valid_instance_name("") and valid_instance_name("a~2")


def test_two_instances_merge_in_time_order_with_prefixed_ids() -> None:
    m = InstanceMerger(hold=10.0)
    m.feed(entry("a", 0, 1.3, [msg(1, "1", 1.0), msg(2, "1", 1.2)]), now=0.0)
    m.feed(entry("b", 0, 1.15, [msg(1, "1", 1.1)]), now=0.0)
    out = m.release(now=0.0)
    # b has published up to 1.15: a's 1.2 waits for b (or for the hold time)
    assert items(out) == [("a/1", 1, "x"), ("b/1", 2, "x")]
    assert [e.name for e in out if isinstance(e, InstanceEvent)] == ["a", "b"]
    m.feed(entry("b", 1, 1.5, data={"proxy": "p", "commands": True}, kind=KIND_HEARTBEAT), 0.1)
    assert items(m.release(now=0.1)) == [("a/1", 3, "x")]
    assert m.instances() == [("a", "up", False), ("b", "up", True)]


def test_an_event_waits_at_most_the_hold_time_for_a_slow_instance() -> None:
    m = InstanceMerger(hold=0.25)
    m.feed(entry("a", 0, 1.0, [msg(1, "1", 1.0)]), now=0.0)
    m.feed(entry("b", 0, 0.5, data={}, kind=KIND_HEARTBEAT), now=0.0)
    assert items(m.release(now=0.1)) == []
    assert items(m.release(now=0.3)) == [("a/1", 1, "x")]


def test_duplicates_are_dropped_and_a_lost_entry_is_a_gap() -> None:
    m = InstanceMerger(hold=0)
    m.feed(entry("a", 0, 1.0, [msg(1, "1", 1.0), msg(2, "1", 1.0)]), 0.0)
    m.feed(entry("a", 0, 1.0, [msg(1, "1", 1.0), msg(2, "1", 1.0)]), 0.0)  # sent again
    m.feed(entry("a", 1, 1.1, [msg(2, "1", 1.0), msg(3, "1", 1.1)]), 0.0)  # overlaps
    out = m.release(0.0)
    assert [s for _, s, _ in items(out)] == [1, 2, 3]
    m.feed(entry("a", 10, 2.0, [msg(11, "1", 2.0)]), 0.0)  # events 3..9 never came
    out = m.release(0.0)
    gaps = [e for e in out if isinstance(e, GapEvent)]
    assert len(gaps) == 1 and gaps[0].missed == 7 and gaps[0].instance == "a"
    assert m.resync_wanted == {"a"}
    assert items(out) == [("a/1", 4, "x")]


def test_a_snapshot_after_a_gap_resets_the_counters() -> None:
    m = InstanceMerger(hold=0)
    s = Session()
    hs = make_handshake("1")
    m.feed(entry("a", 0, 1.0, [HandshakeEvent(hs), msg(1, "1", 1.0)]), 0.0)
    s.apply_all(m.release(0.0))
    assert s.connections["a/1"].msgs_out == 1
    # 50 events lost; the publisher's snapshot says 51 messages so far
    pub = Session()
    pub.apply(HandshakeEvent(make_handshake("1")))
    for i in range(1, 52):
        pub.apply(msg(i, "1", 1.0 + i / 100))
    snap = wire.encode_event(pub.snapshot("p"))
    m.feed(entry("a", 52, 2.0, kind=KIND_SNAPSHOT, data=snap), 0.0)
    m.feed(entry("a", 52, 2.1, [msg(52, "1", 2.1), msg(51, "1", 2.0)]), 0.0)
    s.apply_all(m.release(0.0))
    c = s.connections["a/1"]
    assert c.msgs_out == 52  # 51 from the snapshot, then 52; the stale 51 is dropped


def test_a_restarted_instance_is_a_new_run_and_commands_route_by_run() -> None:
    m = InstanceMerger(hold=0)
    m.feed(entry("a", 0, 1.0, [msg(1, "1", 1.0)], run="r1"), 0.0)
    m.feed(entry("a", 0, 2.0, [msg(1, "1", 2.0)], run="r2"), 0.0)
    out = m.release(0.0)
    assert items(out) == [("a/1", 1, "x"), ("a~2/1", 2, "x")]
    stopped = [e for e in out if isinstance(e, InstanceEvent) and e.state == "stopped"]
    assert stopped[0].name == "a" and "a~2" in stopped[0].detail
    assert m.route("a/1") == ("a", "r1", "1")
    assert m.route("a~2/1") == ("a", "r2", "1")
    assert m.route("c/4") == ("c", "", "4")  # not seen here: any run of c
    with pytest.raises(KeyError):
        m.route("4")


def test_quiet_instances_are_gone_and_come_back_and_goodbye_is_stopped() -> None:
    m = InstanceMerger(hold=0, gone_after=3.0)
    m.feed(entry("a", 0, 1.0, data={}, kind=KIND_HEARTBEAT), now=0.0)
    m.feed(entry("b", 0, 1.0, data={}, kind=KIND_HEARTBEAT), now=0.0)
    m.release(0.0)
    m.feed(entry("b", 0, 4.0, kind=KIND_BYE), now=2.0)
    out = m.release(3.5)
    states = {e.name: e.state for e in out if isinstance(e, InstanceEvent)}
    assert states == {"a": "gone", "b": "stopped"}
    m.feed(entry("a", 0, 9.0, data={}, kind=KIND_HEARTBEAT), now=9.0)
    out = m.release(9.0)
    assert [(e.name, e.state) for e in out if isinstance(e, InstanceEvent)] == [("a", "up")]


def test_late_viewer_gets_one_snapshot_with_right_counters_then_the_backlog() -> None:
    # the publisher "a": a connection with 5 messages; its snapshot record was taken
    # after 3 of them; the stream still holds all of them and then 2 more
    pub = Session()
    hs = make_handshake("1")
    evs: list[Event] = [HandshakeEvent(hs)] + [msg(i, "1", 1.0 + i) for i in range(1, 6)]
    for e in evs[:4]:
        pub.apply(e)
    rec_blob = encode_snapshot_record("r1", 4, 4.5, pub.snapshot("p"))
    rec = decode_snapshot_record("a", rec_blob)
    assert isinstance(rec, SnapshotRecord) and rec.count == 4
    entries = [
        entry("a", 0, 4.5, evs[:4], eid="1000-0"),
        entry("a", 4, 6.5, evs[4:], eid="1001-0"),
        entry("b", 0, 6.0, [HandshakeEvent(make_handshake("7")), msg(1, "7", 5.5)], eid="1002-0"),
        entry("b", 2, 6.1, [EndEvent("7", 6.1, True, "client")], eid="1003-0"),
    ]
    m = InstanceMerger(backlog_limit=3)
    out = m.load([rec], entries, now=100.0, redis_now_ms=1004)
    s = Session()
    s.apply_all(out)
    assert (s.connections["a/1"].msgs_out, s.connections["b/7"].msgs_out) == (5, 1)
    assert s.connections["b/7"].ts_end == 6.1
    assert s.total_messages == 6
    assert len(s.buffer) == 3  # the backlog limit
    assert [it.seq for it in s.buffer] == [4, 5, 6]
    snap = out[0]
    assert snap.seq == 6  # type: ignore[union-attr]
    assert {e.name: e.state for e in out if isinstance(e, InstanceEvent)} == {
        "a": "up",
        "b": "up",
    }
    # live events continue the numbering and count
    m.feed(entry("a", 6, 7.0, [msg(6, "1", 7.0)]), now=100.0)
    m.feed(entry("b", 3, 7.0, data={}, kind=KIND_HEARTBEAT), now=100.0)
    s.apply_all(m.release(100.0))
    assert s.connections["a/1"].msgs_out == 6
    assert s.buffer.last_seq == 7


def test_late_viewer_of_an_instance_long_gone() -> None:
    pub = Session()
    pub.apply(HandshakeEvent(make_handshake("1")))
    rec = decode_snapshot_record("old", encode_snapshot_record("r9", 1, 1.0, pub.snapshot()))
    m = InstanceMerger()
    out = m.load([rec], [], now=50.0, redis_now_ms=10**9)
    s = Session()
    s.apply_all(out)
    assert "old/1" in s.connections
    assert s.instances["old"].state == "gone"


def test_rule_and_shape_events_keep_their_instance() -> None:
    """A merged view shows each instance's network conditions on its connections and says
    whose rules file was loaded (docs/rules.md, docs/shaping.md)."""
    m = InstanceMerger(hold=0)
    hs = make_handshake(conn="1", ts=1.0)
    shape = {"client": Shape(latency=0.2)}
    m.feed(
        entry("a", 0, 1.3, [
            HandshakeEvent(hs),
            ShapeEvent("1", 1.1, shape, "cli"),
            RuleEvent("1", 1.2, "slow", "request", "removed x"),
            RuleEvent("", 1.3, "", "loaded", "slow"),
        ]),
        now=0.0,
    )  # fmt: skip
    out = m.release(now=0.0)
    assert [e.conn for e in out if isinstance(e, ShapeEvent)] == ["a/1"]
    rules = [(e.conn, e.detail) for e in out if isinstance(e, RuleEvent)]
    assert rules == [("a/1", "removed x"), ("", "a: slow")]
    s = Session()
    s.apply_all(out)
    assert s.connections["a/1"].shape == shape


# --------------------------------------------------------------------------- intercept


def held(seq: int, conn: str, ts: float, hid: int, bp: int = 1, text: str = "h") -> Message:
    m = msg(seq, conn, ts, text=text)
    m.held, m.breakpoint = hid, bp
    return m


def test_held_messages_of_two_instances_with_the_same_id_do_not_collide() -> None:
    m = InstanceMerger(hold=0)
    s = Session()
    a_bps = [Breakpoint(1, "text:h")]
    b_bps = [Breakpoint(1, "text:h", conn="1"), Breakpoint(2, "to:client")]
    m.feed(entry("a", 0, 1.0, [BreakpointsEvent(a_bps), held(1, "1", 1.0, 1, text="ha")]), 0.0)
    m.feed(entry("b", 0, 1.1, [BreakpointsEvent(b_bps), held(1, "1", 1.1, 1, text="hb")]), 0.0)
    s.apply_all(m.release(0.0))
    # held ids are the proxies' own: both are 1, told apart by the instance
    assert sorted(s.held) == ["a/1", "b/1"]  # type: ignore[type-var]
    assert s.held["b/1"].payload == b"hb" and s.held["b/1"].conn == "b/1"
    # every instance's breakpoints, named INSTANCE/ID, a connection's with its merged id
    assert [(b.ref, b.conn) for b in s.breakpoints] == [("a/1", ""), ("b/1", "b/1"), ("b/2", "")]
    # b forwards its message: a's stays held, the outcome names the merged seq
    m.feed(entry("b", 3, 1.2, [OutcomeEvent("1", 1.2, 1, 1, Outcome.FORWARDED)]), 0.0)
    out = m.release(0.0)
    (oc,) = [e for e in out if isinstance(e, OutcomeEvent)]
    assert (oc.conn, oc.seq, oc.held) == ("b/1", s.held["b/1"].seq, 1)
    s.apply_all(out)
    assert list(s.held) == ["a/1"]
    assert [it.outcome for it in s.buffer] == ["", Outcome.FORWARDED]
    # a goes away: its breakpoints with it, b's stay
    m.feed(entry("a", 2, 1.3, kind=KIND_BYE), 0.0)
    s.apply_all(m.release(0.0))
    assert [b.ref for b in s.breakpoints] == ["b/1", "b/2"]


def test_a_snapshot_of_one_instance_keeps_the_others_breakpoints_and_held() -> None:
    m = InstanceMerger(hold=0)
    s = Session()
    m.feed(entry("a", 0, 1.0, [BreakpointsEvent([Breakpoint(1, "x")]), held(1, "1", 1.0, 4)]), 0)
    m.feed(entry("b", 0, 1.0, [BreakpointsEvent([Breakpoint(3, "y")]), held(1, "2", 1.0, 4)]), 0)
    s.apply_all(m.release(0.0))
    assert sorted(s.held) == ["a/4", "b/4"]  # type: ignore[type-var]
    # a re-syncs after a gap: its snapshot holds 4 and 5 (5 was lost in the gap)
    pub = Session()
    pub.apply(HandshakeEvent(make_handshake("1")))
    pub.apply(BreakpointsEvent([Breakpoint(1, "x"), Breakpoint(2, "z")]))
    pub.apply(held(1, "1", 1.0, 4))
    pub.apply(held(2, "1", 1.5, 5))
    snap = wire.encode_event(pub.snapshot("p"))
    m.feed(entry("a", 9, 2.0, kind=KIND_SNAPSHOT, data=snap), 0.0)
    s.apply_all(m.release(0.0))
    assert sorted(s.held) == ["a/4", "a/5", "b/4"]  # type: ignore[type-var]
    assert s.held["a/5"].conn == "a/1" and s.held["a/5"].seq > 0
    assert [b.ref for b in s.breakpoints] == ["a/1", "a/2", "b/3"]


def test_late_viewer_gets_every_instances_breakpoints_and_held_messages() -> None:
    # a's record: breakpoint 1 and held message 1; then the stream: a holds 2, forwards 1
    pub = Session()
    pub.apply(HandshakeEvent(make_handshake("1")))
    pub.apply(BreakpointsEvent([Breakpoint(1, "x")]))
    pub.apply(held(1, "1", 1.0, 1))
    rec = decode_snapshot_record("a", encode_snapshot_record("r1", 3, 1.5, pub.snapshot("p")))
    entries = [
        entry("a", 3, 2.0, [held(2, "1", 2.0, 2)], eid="1000-0"),
        entry("a", 4, 2.1, [OutcomeEvent("1", 2.1, 1, 1, Outcome.DROPPED)], eid="1001-0"),
        entry(
            "b", 0, 2.2,
            [HandshakeEvent(make_handshake("1")), BreakpointsEvent([Breakpoint(1, "y")]),
             held(1, "1", 2.2, 1)],
            eid="1002-0",
        ),
    ]  # fmt: skip
    m = InstanceMerger()
    out = m.load([rec], entries, now=10.0, redis_now_ms=1003)
    s = Session()
    s.apply_all(out)
    assert sorted(s.held) == ["a/2", "b/1"]  # type: ignore[type-var]
    assert [(b.ref, b.filter) for b in s.breakpoints] == [("a/1", "x"), ("b/1", "y")]
    assert s.connections["a/1"].dropped == 1


def test_an_instance_that_dies_takes_its_held_messages_with_it() -> None:
    """SIGKILLed (no goodbye, restarted as a new run): what it held is "lost", not listed
    as held for ever; the other instance's held message stays."""
    m = InstanceMerger(hold=0)
    s = Session()
    m.feed(entry("a", 0, 1.0, [HandshakeEvent(make_handshake("1")), held(1, "1", 1.0, 7)]), 0.0)
    m.feed(entry("b", 0, 1.0, [held(1, "1", 1.0, 7)]), 0.0)
    s.apply_all(m.release(0.0))
    assert sorted(s.held) == ["a/7", "b/7"]  # type: ignore[type-var]
    m.feed(entry("a", 0, 2.0, data={}, kind=KIND_HEARTBEAT, run="r2"), 0.5)
    out = m.release(0.5)
    lost = [(e.conn, e.held, e.outcome) for e in out if isinstance(e, OutcomeEvent)]
    assert lost == [("a/1", 7, Outcome.LOST)]
    s.apply_all(out)
    assert list(s.held) == ["b/7"]
    assert {it.conn: it.outcome for it in s.buffer} == {"a/1": Outcome.LOST, "b/1": ""}
    # a goodbye with something still held (its shutdown could not drop it): lost too
    m.feed(entry("b", 1, 3.0, kind=KIND_BYE), 1.0)
    s.apply_all(m.release(1.0))
    assert s.held == {}


def test_held_messages_of_a_quiet_instance_are_lost_then_held_again() -> None:
    m = InstanceMerger(hold=0, gone_after=3.0)
    s = Session()
    m.feed(
        entry("a", 0, 1.0, [
            HandshakeEvent(make_handshake("1")), held(1, "1", 1.0, 1), held(2, "1", 1.1, 2),
        ]),
        0.0,
    )  # fmt: skip
    m.feed(entry("b", 0, 1.0, [held(1, "1", 1.0, 1)]), 0.0)
    s.apply_all(m.release(0.0))
    m.feed(entry("b", 1, 4.0, data={}, kind=KIND_HEARTBEAT), 3.2)
    out = m.release(3.5)  # a: nothing for 3.5 s
    assert [(e.name, e.state) for e in out if isinstance(e, InstanceEvent)] == [("a", "gone")]
    s.apply_all(out)
    assert list(s.held) == ["b/1"]
    assert [it.outcome for it in s.buffer if it.conn == "a/1"] == [Outcome.LOST] * 2
    counted = (s.total_messages, s.connections["a/1"].msgs_out)
    # a is heard again; its entries from the quiet time say it forwarded message 1
    m.feed(entry("a", 3, 5.0, [OutcomeEvent("1", 4.0, 1, 1, Outcome.FORWARDED)]), 6.0)
    s.apply_all(m.release(6.0))
    assert sorted(s.held) == ["a/2", "b/1"]  # type: ignore[type-var]
    assert [it.outcome for it in s.buffer if it.conn == "a/1"] == [Outcome.FORWARDED, ""]
    assert (s.total_messages, s.connections["a/1"].msgs_out) == counted


def test_late_viewer_does_not_list_what_a_gone_instance_held() -> None:
    entries = [
        entry("a", 0, 1.0, [HandshakeEvent(make_handshake("1")), held(1, "1", 1.0, 3)],
              eid="1000-0"),
        entry("b", 0, 1.0, [HandshakeEvent(make_handshake("1")), held(1, "1", 1.0, 3)],
              eid="9000-0"),
    ]  # fmt: skip
    m = InstanceMerger(hold=0)
    s = Session()
    s.apply_all(m.load([], entries, now=10.0, redis_now_ms=9500))
    assert {n: e.state for n, e in s.instances.items()} == {"a": "gone", "b": "up"}
    assert list(s.held) == ["b/3"]
    assert {it.conn: it.outcome for it in s.buffer} == {"a/1": Outcome.LOST, "b/1": ""}
    m.feed(entry("a", 2, 12.0, data={}, kind=KIND_HEARTBEAT), 11.0)
    s.apply_all(m.release(11.0))
    assert sorted(s.held) == ["a/3", "b/3"]  # type: ignore[type-var]
