from __future__ import annotations

from devconsole.model import CLIENT, SERVER
from devconsole.source import MemorySource
from devconsole.tui import make_app
from devconsole.tui.main import MainScreen
from tests.tui_fixtures import (
    UTC,
    Traffic,
    demo_traffic,
    frozen_clock,
    live_source,
    screen_text,
    settle,
)

SIZE = (140, 40)


def app_with(events, **kw):
    source = live_source(events)
    return source, make_app(source, clock=frozen_clock, tz=UTC, **kw)


async def test_layout_panes_titles_and_footer() -> None:
    _, app = app_with(demo_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        shown = screen_text(app)
        for title in ("Connections", "Stream · all connections", "Detail"):
            assert title in shown
        for key in ("/ Filter", "space Pause", "h Handshake", "v View", "c Clear", "q Quit"):
            assert key in shown
        assert "Select a message" in shown


async def test_space_pauses_without_loss_and_resumes() -> None:
    t = Traffic()
    t.open("1")
    t.open("2")
    t.burst("1", 10)
    source, app = app_with(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        await pilot.press("space")
        assert screen.paused and screen.stream.paused
        assert "PAUSED +0" in screen_text(app)
        source.push(t.burst("1", 25) + t.burst("2", 5))
        await settle(pilot)
        assert screen.stream.row_count == 10  # frozen
        assert len(app.session.buffer) == 40  # capture continued
        assert "PAUSED +30" in screen_text(app)
        assert "Stream" in screen_text(app)
        # the count follows the shown connection
        screen.connections.select("2")
        await settle(pilot)
        assert "PAUSED +0" in screen_text(app)
        source.push(t.burst("2", 3))
        await settle(pilot)
        assert "PAUSED +3" in screen_text(app)
        screen.connections.select(None)
        await settle(pilot)
        await pilot.press("space")
        await settle(pilot)
        assert not screen.paused
        assert screen.stream.row_count == 43
        assert screen.stream.following
        assert "PAUSED" not in screen_text(app)
        assert "43 " in screen_text(app)


async def test_c_clears_the_view_not_the_buffer() -> None:
    t = Traffic()
    t.open("1")
    t.burst("1", 20)
    source, app = app_with(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        await pilot.press("c")
        assert screen.stream.row_count == 0
        assert len(app.session.buffer) == 20
        assert "No messages yet." in screen_text(app)
        source.push([t.text("1", CLIENT, "after clear"), t.text("1", SERVER, "reply")])
        await settle(pilot)
        assert list(screen.stream.view.seqs) == [21, 22]
        assert "after clear" in screen_text(app)
        # a new filter rescans the buffer: cleared messages come back
        screen.apply_filter("")
        await settle(pilot)
        assert screen.stream.row_count == 22


async def test_end_follows_again() -> None:
    t = Traffic()
    t.open("1")
    t.burst("1", 100)
    source, app = app_with(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        stream = app.main.stream
        await pilot.press("home")
        assert not stream.following and stream.scroll_offset.y == 0
        await pilot.press("end")
        assert stream.following
        assert stream.cursor_seq == 100
        source.push(t.burst("1", 20))
        await settle(pilot)
        assert stream.scroll_offset.y == stream.max_scroll_y
        assert stream.seq_at(stream.row_count - 1) == 120


def test_snapshot_main_screen(snap_compare) -> None:
    app = make_app(MemorySource(demo_traffic().events), clock=frozen_clock, tz=UTC)

    async def run_before(pilot) -> None:
        await settle(pilot)
        app.main.stream.select_seq(2)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_z_zooms_the_focused_pane() -> None:
    t = Traffic()
    t.open("1")
    t.binary("1", SERVER, bytes(range(48)))
    _, app = app_with(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        await pilot.press("home", "enter", "z")
        assert screen.maximized is screen.detail
        shown = screen_text(app)
        assert "|................|" in shown  # the hex dump's ASCII column fits now
        assert "Connections" not in shown
        await pilot.press("z")
        assert screen.maximized is None
