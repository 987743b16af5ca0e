"""Session: applying every Event, counters, snapshots and re-syncs, FilteredView."""

from __future__ import annotations

import threading
import time

import pytest

from devconsole.model import (
    Breakpoint,
    BreakpointsEvent,
    Connection,
    ConnState,
    ControlFrame,
    EndEvent,
    Event,
    GapEvent,
    Handshake,
    HandshakeEvent,
    Item,
    Message,
    Opcode,
    OutcomeEvent,
    ProtocolErrorEvent,
    RefusedEvent,
    Side,
    StateEvent,
)
from devconsole.session import FilteredView, Session
from tests.factories import make_handshake


def hs(conn: str = "c1", ts: float = 1.0, **kw: object) -> Handshake:
    return make_handshake(conn, ts, **kw)


def msg(
    seq: int,
    conn: str = "c1",
    side: Side = "client",
    payload: bytes = b"hello",
    size: int | None = None,
    **kw: object,
) -> Message:
    size = len(payload) if size is None else size
    return Message(seq, conn, 10.0 + seq, side, Opcode.TEXT, payload, size, size + 6, **kw)  # type: ignore[arg-type]


def close(
    seq: int,
    conn: str = "c1",
    side: Side = "client",
    code: int | None = 1000,
    reason: str = "bye",
    **kw: object,
) -> ControlFrame:
    payload = b"" if code is None else code.to_bytes(2, "big") + reason.encode()
    return ControlFrame(
        seq,
        conn,
        10.0 + seq,
        side,
        Opcode.CLOSE,
        payload,
        len(payload) + 2,
        code,
        reason,
        **kw,  # type: ignore[arg-type]
    )


def ping(seq: int, conn: str = "c1", side: Side = "client", **kw: object) -> ControlFrame:
    return ControlFrame(seq, conn, 10.0 + seq, side, Opcode.PING, b"p", 3, **kw)  # type: ignore[arg-type]


def opened(*conns: str) -> Session:
    s = Session()
    for c in conns:
        s.apply(HandshakeEvent(hs(c)))
    return s


# ------------------------------------------------------------------ applying events


def test_handshake_opens_a_live_connection_and_notifies_observers() -> None:
    s = Session()
    seen: list[Event] = []
    s.observers.append(seen.append)
    ev = HandshakeEvent(hs("c1", ts=5.0))
    s.apply(ev)
    c = s.connections["c1"]
    assert c.state == ConnState.OPEN
    assert c.live and not c.refused
    assert (c.url, c.path, c.client, c.ts_start) == (
        "ws://example.com/c1",
        "/c1",
        "127.0.0.1:5000",
        5.0,
    )
    assert seen == [ev]
    assert s.version == 1


def test_refused_upgrade_is_recorded_as_ended_and_refused() -> None:
    s = Session()
    s.apply(RefusedEvent(hs("r1", status=401, reason="Unauthorized", ts_response=2.5)))
    c = s.connections["r1"]
    assert c.refused
    assert c.state == ConnState.REFUSED
    assert not c.live
    assert c.ts_end == 2.5
    assert c.handshake.status == 401


def test_messages_count_in_and_out_with_true_sizes() -> None:
    s = opened("c1")
    s.apply(msg(1, side="client", payload=b"abc"))
    s.apply(msg(2, side="server", payload=b"0123456789"))
    s.apply(msg(3, side="server", payload=b"trunc", size=5000))  # truncated for display
    c = s.connections["c1"]
    assert (c.msgs_out, c.bytes_out) == (1, 3)
    assert (c.msgs_in, c.bytes_in) == (2, 5010)
    assert c.largest_message == 5000
    assert c.last_out == 11.0 and c.last_in == 13.0
    assert (s.total_messages, s.total_bytes) == (3, 5013)
    assert s.last_seq == 3
    got = s.get(2)
    assert got is not None and got.payload == b"0123456789"
    assert [it.seq for it in s.items("c1")] == [1, 2, 3]


def test_items_of_an_unknown_connection_are_buffered_without_counting() -> None:
    s = Session()
    s.apply(msg(1, conn="ghost"))
    assert s.get(1) is not None
    assert s.connections == {}
    assert s.total_messages == 0


def test_pings_are_shown_but_not_counted_as_messages() -> None:
    s = opened("c1")
    s.apply(ping(1, side="server"))
    c = s.connections["c1"]
    assert c.msgs_in == 0 and c.msgs_out == 0
    assert c.last_in == 11.0
    assert c.state == ConnState.OPEN
    assert [it.seq for it in s.items()] == [1]


def test_close_code_and_closed_by_come_from_the_first_close_frame() -> None:
    s = opened("c1")
    s.apply(close(1, side="server", code=4001, reason="go away"))
    c = s.connections["c1"]
    assert c.state == ConnState.CLOSING
    assert (c.close_code, c.close_reason, c.closed_by) == (4001, "go away", "server")
    s.apply(close(2, side="client", code=1000, reason="ok"))  # the reply
    s.apply(EndEvent("c1", 20.0, clean=True, closed_by="server"))
    assert (c.close_code, c.close_reason, c.closed_by) == (4001, "go away", "server")
    assert c.state == ConnState.CLOSED
    assert c.clean is True
    assert c.ts_end == 20.0
    assert not c.live


def test_close_frame_without_status_code_still_records_who_closed() -> None:
    s = opened("c1")
    s.apply(close(1, side="client", code=None, reason=""))
    s.apply(close(2, side="server", code=1000))
    c = s.connections["c1"]
    assert c.close_code is None
    assert c.closed_by == "client"


def test_injected_close_is_attributed_to_the_proxy_and_a_dropped_close_is_recorded() -> None:
    s = opened("c1", "c2", "c3")
    s.apply(close(1, conn="c1", side="server", code=4000, injected=True))
    c1 = s.connections["c1"]
    assert (c1.closed_by, c1.close_code, c1.injected) == ("proxy", 4000, 1)

    # Half-open: the client closed with 1001; devconsole did not forward it. The code is
    # what the client did (issue 16.2: the timeline left it out); the state stays.
    s.apply(close(2, conn="c2", side="client", code=1001, dropped=True))
    c2 = s.connections["c2"]
    assert c2.close_code == 1001 and c2.closed_by == "client"
    assert c2.state == ConnState.OPEN
    assert c2.dropped == 1

    # A kill: the peers' answering close frames are consumed (dropped), not the code.
    s.apply(StateEvent("c3", 3.0, ConnState.KILLED))
    s.apply(close(3, conn="c3", side="server", code=1012, injected=True))
    s.apply(close(4, conn="c3", side="client", code=1000, dropped=True))
    c3 = s.connections["c3"]
    assert (c3.close_code, c3.closed_by) == (1012, "proxy")


def test_injected_and_dropped_counters() -> None:
    s = opened("c1")
    s.apply(msg(1, injected=True))
    s.apply(msg(2, side="server", dropped=True))
    s.apply(msg(3, side="server", dropped=True))
    s.apply(ping(4, injected=True))
    s.apply(msg(5))
    c = s.connections["c1"]
    assert (c.injected, c.dropped) == (2, 2)
    assert c.msgs_out == 2 and c.msgs_in == 2


def test_end_without_close_frames() -> None:
    s = opened("c1")
    s.apply(EndEvent("c1", 3.0, clean=False, closed_by=None, error="connection reset"))
    s.apply(EndEvent("c1", 3.0, clean=False, closed_by=None, error="connection reset"))
    c = s.connections["c1"]
    assert c.state == ConnState.CLOSED
    assert c.clean is False
    assert c.closed_by is None
    assert c.errors == ["connection reset"]


def test_end_for_an_unknown_connection_is_ignored() -> None:
    s = Session()
    s.apply(EndEvent("nope", 1.0, clean=True, closed_by="client"))
    assert s.connections == {}


def test_half_open_then_release() -> None:
    s = opened("c1")
    s.apply(StateEvent("c1", 2.0, ConnState.HALF_OPEN))
    c = s.connections["c1"]
    assert c.state == ConnState.HALF_OPEN and c.half_open
    assert c.live
    s.apply(StateEvent("c1", 3.0, ConnState.OPEN, "released"))
    assert c.state == ConnState.OPEN and not c.half_open


def test_killed_connection_stays_killed_after_its_end() -> None:
    s = opened("c1")
    s.apply(StateEvent("c1", 2.0, ConnState.HALF_OPEN))
    s.apply(StateEvent("c1", 3.0, ConnState.KILLED, "abort"))
    c = s.connections["c1"]
    assert c.state == ConnState.KILLED
    assert c.closed_by == "proxy"
    assert not c.half_open
    s.apply(EndEvent("c1", 4.0, clean=False, closed_by="proxy"))
    assert c.state == ConnState.KILLED
    assert c.ts_end == 4.0
    assert not c.live


def test_state_event_does_not_reopen_an_ended_connection() -> None:
    s = opened("c1")
    s.apply(EndEvent("c1", 4.0, clean=True, closed_by="client"))
    s.apply(StateEvent("c1", 5.0, ConnState.OPEN))
    assert s.connections["c1"].state == ConnState.CLOSED


def test_protocol_error_is_kept_per_direction_with_offset() -> None:
    s = opened("c1")
    s.apply(ProtocolErrorEvent("c1", 2.0, "server", 1234, "reserved opcode 3"))
    assert s.connections["c1"].errors == ["server stream at byte 1234: reserved opcode 3"]
    s.apply(ProtocolErrorEvent("ghost", 2.0, "server", 1, "x"))  # unknown: ignored


def test_gap_events_add_up() -> None:
    s = Session()
    s.apply(GapEvent(10, "evicted"))
    s.apply(GapEvent(5, "slow"))
    assert s.missed == 15


# ------------------------------------------------------------------ snapshots


def conn_snapshot(conn: str, **kw: object) -> Connection:
    c = Connection(conn, hs(conn))
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def test_late_attach_snapshot_counts_are_not_doubled_by_the_backlog() -> None:
    # The proxy's session: 3 messages seen, the viewer attaches with a Snapshot at seq 3.
    proxy = opened("c1")
    for ev in (msg(1), msg(2, side="server", payload=b"xyz"), msg(3)):
        proxy.apply(ev)
    snap = proxy.snapshot("127.0.0.1:8080")
    assert snap.seq == 3

    viewer = Session()
    viewer.apply(snap)
    viewer.apply_all(list(proxy.items()))  # the backlog, seq <= 3
    c = viewer.connections["c1"]
    assert (c.msgs_out, c.msgs_in, c.bytes_out, c.bytes_in) == (2, 1, 10, 3)
    assert (viewer.total_messages, viewer.total_bytes) == (3, 13)
    assert viewer.proxy == "127.0.0.1:8080"
    assert [it.seq for it in viewer.items()] == [1, 2, 3]

    viewer.apply(msg(4, side="server", payload=b"1234"))  # live: counted
    assert (c.msgs_in, c.bytes_in) == (2, 7)
    assert viewer.total_messages == 4


def test_close_frames_in_the_backlog_do_not_override_the_snapshot() -> None:
    proxy = opened("c1")
    proxy.apply(close(1, side="server", code=4002, reason="first"))
    proxy.apply(close(2, side="client", code=1000, reason="reply"))
    viewer = Session()
    viewer.apply(proxy.snapshot())
    viewer.apply_all(list(proxy.items()))
    c = viewer.connections["c1"]
    assert (c.close_code, c.close_reason, c.closed_by) == (4002, "first", "server")


def test_snapshot_records_upstream_evictions() -> None:
    proxy = Session(max_items=2)
    proxy.apply(HandshakeEvent(hs("c1")))
    for i in range(1, 6):
        proxy.apply(msg(i))
    snap = proxy.snapshot()
    assert snap.evicted_messages == 3
    viewer = Session()
    viewer.apply(snap)
    viewer.apply_all(list(proxy.items()))
    assert viewer.evicted == 3
    assert viewer.connections["c1"].msgs_out == 5  # counters cover evicted messages too


def test_resync_snapshot_replaces_counters_instead_of_adding() -> None:
    viewer = opened("c1", "c2")
    viewer.apply(msg(1, conn="c1"))
    viewer.apply(msg(2, conn="c2", side="server", size=100))
    assert viewer.total_messages == 2

    # The viewer was too slow: it missed seq 3..9, then gets a Gap and a fresh Snapshot.
    proxy = opened("c1", "c2")
    proxy.apply(msg(1, conn="c1"))
    proxy.apply(msg(2, conn="c2", side="server", size=100))
    for i in range(3, 10):
        proxy.apply(msg(i, conn="c1"))
    viewer.apply(GapEvent(7, "tap client too slow"))
    viewer.apply(proxy.snapshot())
    c1 = viewer.connections["c1"]
    assert c1.msgs_out == 8
    assert viewer.connections["c2"].bytes_in == 100
    assert viewer.total_messages == 9
    assert viewer.total_bytes == 8 * 5 + 100
    assert viewer.missed == 7
    viewer.apply(msg(10, conn="c1"))
    assert c1.msgs_out == 9
    assert viewer.total_messages == 10


def test_events_replayed_after_a_resync_snapshot_are_not_counted_twice() -> None:
    # After a gap the tap sends [Gap, Snapshot, *events queued after the overflow]; the
    # snapshot already includes those events. Replaying them must not change any counter.
    proxy = Session()
    viewer = Session()
    early: list[Event] = [HandshakeEvent(hs("c1")), msg(1)]
    proxy.apply_all(early)
    viewer.apply_all(early)
    pending: list[Event] = [
        HandshakeEvent(hs("c2")),
        msg(2, conn="c2", side="server", payload=b"abcdef"),
        ProtocolErrorEvent("c2", 3.0, "server", 99, "bad frame"),
        msg(3, conn="c1"),
    ]
    skipped: list[Event] = [msg(4, conn="c1")]
    proxy.apply_all(pending)
    proxy.apply_all(skipped)  # skipped for the viewer: counted only through the snapshot
    viewer.apply(GapEvent(1, "slow"))
    viewer.apply(proxy.snapshot())
    viewer.apply_all(pending)
    for cid in ("c1", "c2"):
        assert viewer.connections[cid].snapshot() == proxy.connections[cid].snapshot()
    assert viewer.connections["c2"].msgs_in == 1
    assert viewer.connections["c2"].errors == ["server stream at byte 99: bad frame"]
    assert viewer.total_messages == proxy.total_messages == 4


def test_resync_keeps_the_counters_a_snapshot_does_not_carry() -> None:
    viewer = opened("c1")
    viewer.apply(msg(1, payload=b"x" * 300, injected=True))
    viewer.apply(msg(2, side="server", dropped=True))
    proxy = opened("c1")
    proxy.apply(msg(1, payload=b"x" * 300, injected=True))
    proxy.apply(msg(2, side="server", dropped=True))
    proxy.apply(msg(3))
    viewer.apply(GapEvent(1, "slow"))
    viewer.apply(proxy.snapshot())
    c = viewer.connections["c1"]
    assert (c.injected, c.dropped, c.largest_message) == (1, 1, 300)
    assert c.last_in == 12.0 and c.last_out == 11.0
    assert c.msgs_out == 2


def test_a_snapshot_carries_each_counter_in_its_own_field() -> None:
    # every counter a different value, so swapping two of them anywhere between the
    # proxy's Session and a viewer's shows
    proxy = opened("c1")
    proxy.apply(msg(1, payload=b"x" * 300, injected=True))
    proxy.apply(msg(2, side="server", payload=b"y" * 7, dropped=True))
    proxy.apply(msg(3, side="server", payload=b"z" * 11, dropped=True))
    proxy.apply(msg(4, side="server", payload=b"w" * 13, dropped=True))
    proxy.apply(ping(5, injected=True))
    proxy.apply(StateEvent("c1", 9.0, ConnState.HALF_OPEN))
    [cs] = proxy.snapshot().connections
    assert (cs.msgs_in, cs.msgs_out, cs.bytes_in, cs.bytes_out) == (3, 1, 31, 300)
    assert (cs.largest_message, cs.injected, cs.dropped) == (300, 2, 3)
    assert (cs.state, cs.half_open, cs.clean) == (ConnState.HALF_OPEN, True, None)
    viewer = Session()
    viewer.apply(proxy.snapshot())
    c = viewer.connections["c1"]
    assert (c.msgs_in, c.msgs_out, c.bytes_in, c.bytes_out) == (3, 1, 31, 300)
    assert (c.largest_message, c.injected, c.dropped) == (300, 2, 3)
    assert (c.state, c.half_open, c.clean) == (ConnState.HALF_OPEN, True, None)


def test_snapshot_round_trip_reproduces_connection_state() -> None:
    proxy = opened("c1", "c2")
    proxy.apply(RefusedEvent(hs("r1", status=403)))
    proxy.apply(msg(1, conn="c1"))
    proxy.apply(close(2, conn="c2", side="server", code=4000, reason="x"))
    proxy.apply(EndEvent("c2", 9.0, clean=False, closed_by="server", error="reset"))
    proxy.apply(StateEvent("c1", 9.0, ConnState.HALF_OPEN))
    viewer = Session()
    viewer.apply(proxy.snapshot())
    assert set(viewer.connections) == {"c1", "c2", "r1"}
    for cid, c in proxy.connections.items():
        assert viewer.connections[cid].snapshot() == c.snapshot()
    assert viewer.connections["r1"].refused
    assert viewer.counted_seq == viewer.last_seq == 2


def test_max_connections_forgets_the_oldest_ended_and_keeps_live_ones() -> None:
    s = Session(max_connections=3)
    s.apply(HandshakeEvent(hs("live1")))
    s.apply(HandshakeEvent(hs("ended1")))
    s.apply(EndEvent("ended1", 2.0, clean=True, closed_by="client"))
    s.apply(RefusedEvent(hs("refused1")))
    s.apply(HandshakeEvent(hs("live2")))
    assert set(s.connections) == {"live1", "refused1", "live2"}
    assert s.evicted_connections == 1
    s.apply(HandshakeEvent(hs("live3")))
    assert set(s.connections) == {"live1", "live2", "live3"}
    assert s.evicted_connections == 2
    # only live connections left: none is forgotten, even over the limit
    s.apply(HandshakeEvent(hs("live4")))
    assert set(s.connections) == {"live1", "live2", "live3", "live4"}
    assert s.evicted_connections == 2


# ------------------------------------------------------------------ FilteredView


def texts(pred_payload: bytes) -> object:
    return lambda it: isinstance(it, Message) and pred_payload in it.payload


def view_seqs(v: FilteredView) -> list[int]:
    return list(v.seqs)


def test_catch_up_matches_only_new_items() -> None:
    s = opened("c1")
    calls: list[int] = []

    def pred(it: Item) -> bool:
        calls.append(it.seq)
        return it.payload.startswith(b"yes")

    v = FilteredView(s, pred)
    s.apply(msg(1, payload=b"yes 1"))
    s.apply(msg(2, payload=b"no"))
    assert v.catch_up() == 1
    assert view_seqs(v) == [1]
    s.apply(msg(3, payload=b"yes 3"))
    assert v.catch_up() == 1
    assert v.catch_up() == 0
    assert view_seqs(v) == [1, 3]
    assert calls == [1, 2, 3]  # every item matched exactly once
    assert len(v) == 2
    first = v.item_at(0)
    assert first is not None and first.seq == 1
    assert v.item_at(2) is None


def test_view_of_one_connection() -> None:
    s = opened("a", "b")
    for i, conn in enumerate(["a", "b", "a", "b"], start=1):
        s.apply(msg(i, conn=conn))
    v = FilteredView(s, None, conn="b")
    v.catch_up()
    assert view_seqs(v) == [2, 4]


def test_view_trims_evicted_items() -> None:
    s = Session(max_items=5)
    s.apply(HandshakeEvent(hs("c1")))
    v = FilteredView(s)
    for i in range(1, 4):
        s.apply(msg(i))
    v.catch_up()
    for i in range(4, 12):
        s.apply(msg(i))
    v.catch_up()
    assert view_seqs(v) == [7, 8, 9, 10, 11]
    assert all(v.item_at(i) is not None for i in range(len(v)))
    # even without new items, evictions are trimmed on the next catch_up
    v2 = FilteredView(s)
    v2.catch_up()
    s.buffer.clear()
    assert v2.catch_up() == 0
    assert len(v2) == 0


def test_clear_hides_what_was_seen_and_keeps_showing_new_items() -> None:
    s = opened("c1")
    v = FilteredView(s)
    s.apply(msg(1))
    s.apply(msg(2))
    v.catch_up()
    s.apply(msg(3))  # arrived but not yet caught up when the user clears
    v.clear()
    assert len(v) == 0
    assert v.catch_up() == 0
    s.apply(msg(4))
    assert v.catch_up() == 1
    assert view_seqs(v) == [4]
    assert s.get(1) is not None  # the buffer keeps everything


def test_rescan_switches_predicate_and_connection() -> None:
    s = opened("a", "b")
    for i in range(1, 21):
        s.apply(msg(i, conn="a" if i % 2 else "b", payload=b"even" if i % 4 == 0 else b"x"))
    v = FilteredView(s)
    v.catch_up()
    assert len(v) == 20
    assert v.rescan(texts(b"even"))  # type: ignore[arg-type]
    assert view_seqs(v) == [4, 8, 12, 16, 20]
    assert v.rescan(None, conn="a")
    assert view_seqs(v) == list(range(1, 21, 2))
    assert v.conn == "a"
    s.apply(msg(21, conn="b"))
    s.apply(msg(23, conn="a"))
    v.catch_up()
    assert view_seqs(v)[-1] == 23 and 21 not in v.seqs


def test_rescan_with_a_whole_buffer_source_still_honours_the_connection() -> None:
    s = opened("a", "b")
    for i in range(1, 11):
        s.apply(msg(i, conn="a" if i % 2 else "b"))
    v = FilteredView(s)
    assert v.rescan(None, conn="b", source=v.snapshot_items())
    assert view_seqs(v) == [2, 4, 6, 8, 10]


def test_rescan_progress_and_cancel() -> None:
    s = opened("c1")
    for i in range(1, 1001):
        s.apply(msg(i))
    v = FilteredView(s, texts(b"nothing matches"))  # type: ignore[arg-type]
    v.catch_up()
    progress: list[tuple[int, int]] = []
    assert v.rescan(None, progress=lambda d, t: progress.append((d, t)), chunk=300)
    assert progress == [(300, 1000), (600, 1000), (900, 1000), (1000, 1000)]
    assert len(v) == 1000

    # cancelled after the first chunk: the view keeps its old predicate and rows
    progress.clear()
    assert not v.rescan(
        texts(b"zzz"),  # type: ignore[arg-type]
        progress=lambda d, t: progress.append((d, t)),
        cancelled=lambda: bool(progress),
        chunk=300,
    )
    assert progress == [(300, 1000)]
    assert v.predicate is None
    assert len(v) == 1000
    s.apply(msg(1001))
    assert v.catch_up() == 1


def test_rescan_in_a_worker_thread_while_events_keep_arriving() -> None:
    s = Session(max_items=55_000)
    s.apply(HandshakeEvent(hs("c1")))
    seq = 0

    def feed(n: int) -> None:
        nonlocal seq
        for _ in range(n):
            seq += 1
            s.apply(msg(seq, payload=b"odd" if seq % 2 else b"even"))

    feed(50_000)
    view = FilteredView(s)
    view.catch_up()

    def is_even(it: Item) -> bool:
        return it.payload == b"even"

    progress: list[tuple[int, int]] = []
    result: list[bool] = []

    def on_progress(done: int, total: int) -> None:
        progress.append((done, total))
        time.sleep(0.002)  # a slow scan: give the event thread time to interleave

    source = view.snapshot_items()  # taken on the event thread
    worker = threading.Thread(
        target=lambda: result.append(
            view.rescan(is_even, progress=on_progress, chunk=997, source=source)
        )
    )
    worker.start()
    deadline = time.monotonic() + 20
    rounds_during_scan = 0
    while worker.is_alive():
        assert time.monotonic() < deadline
        feed(200)  # the main thread keeps applying (and evicting) ...
        view.catch_up()  # ... and catching up while the worker scans
        rounds_during_scan += 1
    worker.join()
    feed(200)
    assert result == [True]
    assert rounds_during_scan > 5
    dones = [d for d, _ in progress]
    assert dones == sorted(dones) and progress[-1] == (50_000, 50_000)
    assert {t for _, t in progress} == {50_000}
    view.catch_up()
    expected = [it.seq for it in s.items() if is_even(it)]
    assert view_seqs(view) == expected  # nothing lost, nothing twice, nothing evicted
    assert seq > 50_000 and s.buffer.evicted_items > 0


@pytest.mark.parametrize("conn", [None, "c1"])
def test_snapshot_items_reach_the_last_seq(conn: str | None) -> None:
    s = opened("c1", "c2")
    s.apply(msg(1, conn="c1"))
    s.apply(msg(2, conn="c2"))
    items, upto = FilteredView(s).snapshot_items(conn)
    assert upto == 2
    assert [it.seq for it in items] == ([1, 2] if conn is None else [1])


def test_a_resent_seq_is_ignored_not_fatal() -> None:
    """A re-sync after a gap may resend items the viewer already has: the viewer must keep
    running and must not count them twice."""
    s = opened("c1")
    s.apply(msg(1))
    s.apply(msg(2))
    s.apply(msg(2))  # resent
    s.apply(msg(1))  # older
    c = s.connections["c1"]
    assert c.msgs_out == 2 and len(s.buffer) == 2 and s.duplicates == 2
    s.apply(msg(3))
    assert c.msgs_out == 3


def test_upgrade_request_is_connecting_until_answered() -> None:
    s = Session()
    s.apply(HandshakeEvent(hs("c1", status=None, reason="", ts_response=None)))
    s.apply(HandshakeEvent(hs("c2", status=None, reason="", ts_response=None)))
    assert s.connections["c1"].state == ConnState.CONNECTING
    s.apply(HandshakeEvent(hs("c1")))
    assert s.connections["c1"].state == ConnState.OPEN
    s.apply(RefusedEvent(hs("c2", status=401, reason="Unauthorized", ts_response=2.0)))
    c2 = s.connections["c2"]
    assert c2.state == ConnState.REFUSED and c2.ts_end == 2.0 and c2.handshake.status == 401


def test_a_kill_with_a_code_records_that_code() -> None:
    s = opened("c1")
    s.apply(StateEvent("c1", 5.0, ConnState.KILLED, "close 4000"))
    s.apply(close(2, side="server", code=4000, reason="kicked", injected=True))
    s.apply(close(3, side="client", code=1000, reason="", dropped=True))
    c = s.connections["c1"]
    assert (c.close_code, c.close_reason, c.closed_by) == (4000, "kicked", "proxy")


# ------------------------------------------------------------------ intercept


def test_an_invalid_close_frame_does_not_decide_the_close_code() -> None:
    """Client: a close with a reason that is not UTF-8; server: 1007; client: a second
    close. The connection closed with the server's 1007, and not cleanly."""
    s = opened("c1")
    s.apply(close(1, side="client", code=1000, reason="\ufffd", error="close reason not UTF-8"))
    c = s.connections["c1"]
    assert c.state == ConnState.CLOSING and c.close_code is None
    s.apply(close(2, side="server", code=1007, reason="invalid"))
    s.apply(close(3, side="client", code=1000, reason="", error="a second close frame"))
    s.apply(EndEvent("c1", 20.0, clean=False, closed_by="server"))
    assert (c.close_code, c.closed_by, c.clean) == (1007, "server", False)


def test_held_messages_and_their_outcomes() -> None:
    s = opened("c1", "c2")
    s.apply(BreakpointsEvent([Breakpoint(1, "x"), Breakpoint(2, "y", "c2")]))
    assert [b.id for b in s.breakpoints] == [1, 2]
    m1 = msg(1, held=5, breakpoint=1)
    m2 = msg(2, conn="c2", held=6, breakpoint=2)
    s.apply(m1)
    s.apply(m2)
    s.apply(msg(3))
    assert list(s.held) == [5, 6] and s.held_count("c2") == 1 and s.held_count() == 2
    assert m1.on_hold
    s.apply(OutcomeEvent("c1", 30.0, 1, 5, "edited", Opcode.BINARY, b"new", 3))
    assert (m1.outcome, m1.edited, m1.edited_opcode, m1.edited_size) == (
        "edited", b"new", Opcode.BINARY, 3,
    )  # fmt: skip
    assert not m1.on_hold and m1.payload == b"hello"  # the original is kept
    s.apply(OutcomeEvent("c2", 31.0, 2, 6, "timeout-dropped"))
    assert s.held == {} and s.connections["c2"].dropped == 1
    # a late viewer gets the decided item with its outcome, and what is still held
    s.apply(msg(4, held=7, breakpoint=1))
    snap = s.snapshot()
    assert [b.id for b in snap.breakpoints] == [1, 2] and [i.held for i in snap.held] == [7]
    late = Session()
    late.apply(snap)
    assert list(late.held) == [7] and [b.filter for b in late.breakpoints] == ["x", "y"]
    s.apply(OutcomeEvent("c1", 32.0, 4, 7, "forwarded"))
    s.apply(OutcomeEvent("c1", 32.0, 4, 7, "forwarded"))  # replayed: no effect
    assert s.get(4).outcome == "forwarded"  # type: ignore[union-attr]


def test_backlog_puts_fault_states_in_their_place_in_time() -> None:
    """A late viewer (`devconsole report`) must learn when a half-open began: the Snapshot
    only says that it is half-open. Replayed, an old state changes no ended connection."""
    s = opened("c1", "c2")
    s.apply(msg(1, conn="c1"))
    s.apply(StateEvent("c1", 11.5, ConnState.HALF_OPEN))  # between the two messages
    s.apply(msg(2, conn="c1"))
    s.apply(StateEvent("c2", 99.0, ConnState.KILLED))
    s.apply(EndEvent("c2", 99.0, clean=False, closed_by="proxy"))
    backlog = s.backlog()
    kinds = [type(e).__name__ for e in backlog]
    assert kinds == ["Message", "StateEvent", "Message", "StateEvent"]
    assert backlog[1].conn == "c1" and backlog[0].ts <= 11.5 <= backlog[2].ts

    late = Session()
    late.apply(s.snapshot())
    late.apply_all(backlog)
    assert late.connections["c1"].half_open and late.connections["c1"].state == "half-open"
    assert not late.connections["c2"].half_open
    assert late.connections["c2"].state == ConnState.KILLED
