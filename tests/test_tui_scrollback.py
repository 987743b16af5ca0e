"""Scrolling back past the ring buffer into the recording (``devconsole.tui.scrollback``):
the rows and markers of a ``ScrollbackView``, the scans, and the screen on real
recordings (written by the recorder's ``SegmentWriter``, opened with ``devconsole open``'s
``FileSource``, and written live by a real proxy with ``--record``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devconsole.filters import parse
from devconsole.model import CLIENT, SERVER
from devconsole.session import Session
from devconsole.store.capture import FileSource
from devconsole.store.segments import SegmentIndex, SegmentWriter
from devconsole.tui import make_app
from devconsole.tui.scrollback import (
    PAGE,
    TOP,
    ScrollbackStream,
    ScrollbackView,
    open_index,
    recording_of,
    scan_newer,
    scan_older,
)
from tests.tui_fixtures import UTC, Traffic, focus_stream, frozen_clock, screen_text, settle

BUFFER = 200  # items the screen keeps in these tests


def chat_traffic(n: int) -> Traffic:
    t = Traffic()
    t.open("1", path="/chat")
    t.open("2", path="/feed", cookies=())
    for i in range(1, n + 1):
        conn = "2" if i % 3 == 1 else "1"
        t.json(conn, SERVER if i % 2 else CLIENT, {"n": i, "text": f"message {i}"}, dt_=0.01)
    return t


def write_recording(path: Path, n: int, **kw: Any) -> SegmentWriter:
    """A recording as ``proxy --record`` writes it: segments that rotate, each starting
    with a Snapshot of the connections (``--record-max``: the oldest removed)."""
    session = Session(max_items=1_000_000)
    w = SegmentWriter(path, segment_bytes=64 << 10, **kw)
    for ev in chat_traffic(n).events:
        session.apply(ev)
        w.write([ev])
        if w.full:
            w.rotate(session.snapshot())
    w.close()
    return w


def app_on(path: Path, size_limit: int = BUFFER):
    source = FileSource(str(path), description="recording rec")  # the same in every run
    return make_app(source, max_items=size_limit, clock=frozen_clock, tz=UTC)


async def loaded(pilot: Any) -> None:
    """Let the file load (batches) and a scrollback load finish."""
    for _ in range(40):
        await settle(pilot)
        stream = pilot.app.main.stream
        view = stream.view
        if (
            pilot.app.state.recording is not None
            and isinstance(view, ScrollbackView)
            and view.index is not None
            and not view.loading
            and pilot.app.source.done
        ):
            return
        await pilot.pause(0.05)
    raise AssertionError("the recording did not load")


async def until_loaded(pilot: Any) -> None:
    view = pilot.app.main.stream.view
    for _ in range(200):
        await pilot.pause(0.02)
        if not view.loading:
            await settle(pilot)
            return
    raise AssertionError("the scrollback load did not finish")


# --------------------------------------------------------------------------- the view


def test_a_view_without_a_recording_is_a_plain_filtered_view() -> None:
    s = Session(max_items=10)
    s.apply_all(chat_traffic(30).events)
    v = ScrollbackView(s)
    v.catch_up()
    assert list(v.seqs) == list(range(21, 31)) and v.marker(TOP) is None


def test_rows_markers_and_loads(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    write_recording(rec, 3000)
    index = SegmentIndex(rec)
    s = Session(max_items=BUFFER)
    s.apply_all(chat_traffic(3000).events)
    v = ScrollbackView(s, index=index)
    v.catch_up()
    rows = list(v.seqs)
    assert rows[0] == TOP and rows[1:] == list(range(2801, 3001))
    assert v.marker(TOP).text.startswith("▲ 2,800 older messages in the recording")
    lo, hi = v.older_range()
    items, bound = scan_older(index, lo, hi, None, None)
    assert [it.seq for it in items] == list(range(2301, 2801)) and bound == 2301
    v.add_older(items, bound)
    assert list(v.seqs)[:3] == [TOP, 2301, 2302] and v.window_item(2301).payload.startswith(b'{"n"')
    # the buffer evicts more: the range between is a gap marker
    t = Traffic(ts=1e10)
    t.seq = 3000
    for i in range(50):
        t.json("1", SERVER, {"n": 3001 + i})
    s.apply_all(t.events)
    v.catch_up()
    assert v.mid_seq() == 2801
    assert v.marker(2801).text == "▼ seq 2,801–2,850 not loaded (in the recording) · ↓ loads"
    items, bound = scan_newer(index, *v.newer_range(), None, None)
    v.add_newer(items, bound)
    assert v.mid_seq() is None  # 2801-2850 are in the recording too (this one ends at 3000)


def test_scans_with_a_filter_and_a_connection(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    write_recording(rec, 3000)
    index = SegmentIndex(rec)
    pred = parse("json:n=7 or json:n=2500")
    items, bound = scan_older(index, 1, 2800, None, pred)
    assert [it.seq for it in items] == [7, 2500] and bound == 1
    items, bound = scan_older(index, 1, 2800, "2", None)
    assert all(it.conn == "2" for it in items) and len(items) == PAGE
    items, bound = scan_newer(index, 1, 2800, "2", None)
    assert items[0].seq == 1 and len(items) == PAGE


def test_the_window_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from devconsole.tui import scrollback

    monkeypatch.setattr(scrollback, "MAX_WINDOW", 600)
    rec = tmp_path / "rec"
    write_recording(rec, 3000)
    index = SegmentIndex(rec)
    s = Session(max_items=BUFFER)
    s.apply_all(chat_traffic(3000).events)
    v = ScrollbackView(s, index=index)
    v.catch_up()
    for _ in range(2):
        items, bound = scan_older(index, *v.older_range(), None, None)
        v.add_older(items, bound)
    assert len(v.window) == 600 and v.window[0].seq == 1801
    assert v.mid_seq() == 2401  # the far end was dropped: a gap to load again


def test_recording_of_a_source() -> None:
    class Tap:
        recording = "/var/rec"

    class File:
        kind = "recording"
        path = "/tmp/rec"

    assert recording_of(Tap()) == "/var/rec" and recording_of(File()) == "/tmp/rec"
    assert recording_of(object()) is None and open_index("/nonexistent") is None


# --------------------------------------------------------------------------- the screen


async def test_up_past_the_buffer_loads_the_page_above(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    write_recording(rec, 3000)
    app = app_on(rec)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        stream = app.main.stream
        assert isinstance(stream, ScrollbackStream)
        await focus_stream(pilot)
        stream.select_seq(2801)  # the oldest buffered message
        await pilot.press("up")  # onto the marker: loads
        await until_loaded(pilot)
        assert stream.cursor_seq == 2800  # the message just above, from the recording
        assert app.main.detail.item is None or app.main.detail.item.seq == 2800
        await pilot.press("enter")
        await settle(pilot)
        assert app.main.detail.item.seq == 2800
        assert '{"n":2800,"text":"message 2800"}' in screen_text(app)
        # Home: the top; Home again: the first message of the recording
        await focus_stream(pilot)
        await pilot.press("home")
        await until_loaded(pilot)
        assert stream.cursor_seq == TOP
        assert "▲ 1,800 older messages in the recording" in screen_text(app)
        await pilot.press("home")
        await until_loaded(pilot)
        assert stream.cursor_seq == 1
        assert '{"n":1,"text":"message 1"}' in screen_text(app)
        # PgDn stops at the gap between the window and the buffer, which loads
        mid = stream.view.mid_seq()
        assert mid == PAGE + 1
        for _ in range(200):
            await pilot.press("pagedown")
            if stream.cursor_seq == mid:
                break
        await until_loaded(pilot)
        assert stream.cursor_seq == mid  # the first of the page loaded
        # End: live again, on the newest
        await pilot.press("end")
        await settle(pilot)
        assert stream.following and stream.cursor_seq == 3000


async def test_scrollback_keeps_the_filter_and_the_connection(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    write_recording(rec, 3000)
    app = app_on(rec)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        screen = app.main
        screen.connections.select("2")
        await settle(pilot)
        assert screen.apply_filter("from:client")
        await settle(pilot)
        stream = screen.stream
        marker = stream.view.marker(TOP)
        assert marker.text.endswith("in the recording, evicted from the buffer · ↑ searches")
        await pilot.press("home")
        await until_loaded(pilot)
        window = stream.view.window
        assert len(window) == 500 - 33  # conn 2's client messages older than the buffer
        assert all(it.conn == "2" and it.side == CLIENT for it in window)
        assert window[0].seq == 4 and stream.cursor_seq == 4  # nothing older: no marker
        assert "searches" not in screen_text(app)


async def test_removed_segments_show_as_a_gap(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    w = write_recording(rec, 20_000, max_bytes=400 << 10)
    assert w.removed_events
    app = app_on(rec)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        await focus_stream(pilot)
        await pilot.press("home")
        await until_loaded(pilot)
        await pilot.press("home")
        await until_loaded(pilot)
        text = screen_text(app)
        removed = f"── {w.removed_events:,} events removed from the recording (--record-max) ──"
        assert removed in text
        first = SegmentIndex(rec).first_seq
        assert app.main.stream.cursor_seq == first


def _snapshot_before(homes: int):
    async def run_before(pilot) -> None:
        await loaded(pilot)
        await focus_stream(pilot)
        for _ in range(homes):
            await pilot.press("home")
            await until_loaded(pilot)
        await settle(pilot)

    return run_before


@pytest.fixture(scope="module")
def snapshot_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rec = tmp_path_factory.mktemp("sb") / "rec"
    write_recording(rec, 20_000, max_bytes=400 << 10)
    return rec


def test_snapshot_scrollback_marker_80x24(snap_compare, snapshot_recording: Path) -> None:
    assert snap_compare(
        app_on(snapshot_recording), terminal_size=(80, 24), run_before=_snapshot_before(1)
    )


def test_snapshot_scrollback_removed_gap_200x50(snap_compare, snapshot_recording: Path) -> None:
    assert snap_compare(
        app_on(snapshot_recording), terminal_size=(200, 50), run_before=_snapshot_before(2)
    )


# --------------------------------------------------------------------------- real proxy


@pytest.mark.slow
async def test_a_screen_on_a_recording_proxy_scrolls_back_into_the_recording(
    short_tmp: Path,
) -> None:
    """``devconsole attach`` to a proxy run with ``--record``: the proxy tells the tap
    where it records, and the screen, keeping only 50 messages, reads the older ones back
    from the segments the proxy is still writing."""
    from websockets.asyncio.client import connect

    from devconsole.tap import TapClient
    from tests.conftest import running_proxy, wait_until, ws_server

    rec = short_tmp / "rec"
    async with (
        ws_server() as (_, sport),
        running_proxy(f"reverse:http://127.0.0.1:{sport}", short_tmp, record=str(rec)) as p,
    ):
        app = make_app(TapClient(p.tap), max_items=50)
        async with app.run_test(size=(100, 30)) as pilot:
            async with connect(f"ws://127.0.0.1:{p.port}/echo") as ws:
                for i in range(300):
                    await ws.send(f"m{i}")
                    await ws.recv()

            def caught_up() -> bool:
                app.sync()
                return app.session.last_seq >= 600 and app.state.recording is not None

            await wait_until(caught_up, 20)
            await settle(pilot)
            assert app.state.recording.path == str(rec)
            stream = app.main.stream
            await focus_stream(pilot)
            oldest = list(stream.view.seqs)[1]
            stream.select_seq(oldest)
            # the writer flushes every 0.2 s: what the buffer evicted is on disk by now
            await wait_until(lambda: SegmentIndex(rec).items(1, oldest - 1) != [], 10)
            await pilot.press("up")
            await until_loaded(pilot)
            above = stream.item_for(stream.cursor_seq)
            assert stream.cursor_seq == oldest - 1 and above is not None
            assert above.payload in {f"m{i}".encode() for i in range(300)}
