from __future__ import annotations

from devconsole.model import CLIENT, SERVER
from devconsole.source import MemorySource
from devconsole.tui import make_app
from devconsole.tui.main import MainScreen
from tests.tui_fixtures import (
    UTC,
    Traffic,
    demo_traffic,
    focus_stream,
    frozen_clock,
    live_source,
    open_detail,
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
        for title in ("Connections", "Stream · all connections"):
            assert title in shown
        assert "╭─ Detail" not in shown  # opens with a message
        for key in ("? Help", "q Quit", "/ Filter", "space Pause", "h Handshake", "l Live"):
            assert key in shown
        await focus_stream(pilot)
        await pilot.press("enter")  # opens the newest message
        shown = screen_text(app)
        assert "╭─ Detail" in shown and "v View" in shown


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
        await focus_stream(pilot)
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


async def test_z_zooms_the_focused_pane_to_the_whole_screen() -> None:
    """Issue 16.5: `z` zoomed the pane to the full height but not the width."""
    t = Traffic()
    t.open("1")
    t.binary("1", SERVER, bytes(range(48)))
    _, app = app_with(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        pane = screen.query_one("#connections-pane")
        height = pane.outer_size.height
        await pilot.press("z")  # the connections list, where the screen starts
        await pilot.pause()
        assert screen.maximized is pane and pane.outer_size.width == SIZE[0]
        assert pane.outer_size.height == SIZE[1] - 3  # all but the bars at the bottom
        await pilot.press("z")
        await pilot.pause()
        assert pane.outer_size.height == height
        await focus_stream(pilot)
        await pilot.press("z")
        assert screen.maximized is screen.query_one("#stream-pane")
        await pilot.pause()
        assert screen.maximized.outer_size.width == SIZE[0]
        await pilot.press("z", "home", "enter", "z")
        assert screen.maximized is screen.detail
        await pilot.pause()
        assert screen.detail.outer_size.width == SIZE[0]
        shown = screen_text(app)
        assert "|................|" in shown  # the hex dump's ASCII column fits now
        assert "Connections" not in shown
        await pilot.press("z")
        assert screen.maximized is None


async def test_space_says_resume_while_paused_and_resume_follows_if_at_the_end() -> None:
    """Issue 16.8: after resuming the view stayed scrolled until End; space still said
    Pause while paused."""
    t = Traffic()
    t.open("1")
    t.burst("1", 100)
    source, app = app_with(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await focus_stream(pilot)
        stream = app.main.stream
        # at the end but not following (the wheel brought it back down, say)
        stream.following = False
        stream.scroll_to(y=stream.max_scroll_y, animate=False, force=True)
        await pilot.pause()
        await pilot.press("space")
        await settle(pilot)
        shown = screen_text(app)
        assert "space Resume" in shown and "space Pause" not in shown
        source.push(t.burst("1", 50))
        await settle(pilot)
        await pilot.press("space")
        await settle(pilot)
        assert "space Pause" in screen_text(app)
        assert stream.following and stream.scroll_offset.y == stream.max_scroll_y
        assert stream.seq_at(stream.row_count - 1) == 150
        # scrolled away from the end when paused: it stays where it was
        await pilot.press("home", "space")
        source.push(t.burst("1", 5))
        await settle(pilot)
        await pilot.press("space")
        await settle(pilot)
        assert not stream.following and stream.scroll_offset.y == 0


async def test_the_detail_never_shows_a_message_the_stream_no_longer_has() -> None:
    """Issue 16.9: the detail pane kept an old message after the filter or the connection
    changed."""
    _, app = app_with(demo_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        await open_detail(pilot, 2)  # a message of #1
        assert screen.detail.item is not None and screen.detail.item.conn == "1"
        screen.connections.select("2")
        await settle(pilot)
        assert screen.detail.item is None
        assert "Select a message" in screen_text(app)
        screen.connections.select(None)
        await settle(pilot)
        await open_detail(pilot, 3)  # a msgpack message of #2
        screen.apply_filter("type:text")
        await settle(pilot)
        assert screen.detail.item is None
        await open_detail(pilot, 6)
        screen.apply_filter("hello")  # still in the view: it stays
        await settle(pilot)
        assert screen.detail.item is not None and screen.detail.item.seq == 6
        await focus_stream(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert screen.detail.item is None


async def test_a_filter_chosen_while_paused_applies_to_what_was_there() -> None:
    """Issue 16.9: a filter applied while paused also showed what arrived after the pause,
    while the status still said PAUSED +73."""
    t = Traffic()
    t.open("1")
    for i in range(20):
        t.text("1", SERVER, f"tick {i}")
    source, app = app_with(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        await focus_stream(pilot)
        await pilot.press("space")
        source.push([t.text("1", SERVER, f"tick {i}") for i in range(20, 93)])
        await settle(pilot)
        assert "PAUSED +73" in screen_text(app)
        screen.apply_filter("tick")
        await settle(pilot)
        assert screen.stream.row_count == 20  # what was there at the pause
        shown = screen_text(app)
        assert "PAUSED +73" in shown
        assert "active: tick (until the pause)" in shown
        await pilot.press("space")
        await settle(pilot)
        assert screen.stream.row_count == 93
        assert "until the pause" not in screen_text(app)


async def test_q_in_a_dialog_closes_the_dialog() -> None:
    """Issue 8.8: q inside a modal quit the whole app."""
    from devconsole.tui.faults import FaultMenu
    from devconsole.tui.handshake import HandshakeScreen
    from devconsole.tui.help import HelpScreen
    from devconsole.tui.report import ReportScreen

    source, app = app_with(demo_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("2")
        await settle(pilot)
        for key, dialog in (("h", HandshakeScreen), ("x", FaultMenu), ("r", ReportScreen),
                            ("question_mark", HelpScreen)):  # fmt: skip
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, dialog), key
            await pilot.press("q")
            await pilot.pause()
            assert isinstance(app.screen, MainScreen), key
        assert not source.closed
        await pilot.press("q")  # on the main screen q quits
        await pilot.pause()
        assert source.closed


async def test_help_and_quit_always_show_in_the_footer() -> None:
    """Issue 16.10: at 120 columns the footer ended in "q Qui▏" and "? Help" was hidden."""
    for size in ((80, 24), (120, 40)):
        _, app = app_with(demo_traffic().events)
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            footer = screen_text(app).splitlines()[-1]
            assert "? Help" in footer and "q Quit" in footer, (size, footer)
            await focus_stream(pilot)
            footer = screen_text(app).splitlines()[-1]
            assert "? Help" in footer and "q Quit" in footer, (size, footer)


def test_snapshot_at_80x24(snap_compare) -> None:
    """Issue 8.6: a standard terminal shows every connection's row, the stream with its
    previews, and a status bar that fits; a message opened stacks its detail below."""
    app = make_app(MemorySource(demo_traffic().events), clock=frozen_clock, tz=UTC)

    async def run_before(pilot) -> None:
        await settle(pilot)
        await focus_stream(pilot)
        await pilot.press("up", "up", "enter")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_at_200x50(snap_compare) -> None:
    app = make_app(MemorySource(demo_traffic().events), clock=frozen_clock, tz=UTC)

    async def run_before(pilot) -> None:
        await settle(pilot)
        await focus_stream(pilot)
        await pilot.press("up", "up", "enter")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(200, 50), run_before=run_before)


async def test_a_busy_stream_is_redrawn_less_often_and_keys_at_once() -> None:
    """Redraw pacing (issue 19): a change after a quiet quarter second (5 ticks) is drawn
    at the next tick;
    while changes keep coming, each redraw waits one tick more, up to 5 ticks (4 a
    second); a key shows its effect at once; the last message is shown within 5 ticks."""
    t = Traffic()
    t.open("1")
    source, app = app_with(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        main = app.main
        app.cpu_budget = None  # the pacing alone, whatever this process's CPU use
        main.max_wait = 4
        for _ in range(5):  # a quiet quarter second
            app.tick()
        drawn = []
        for i in range(20):  # a message on every tick (the app's timer is not awaited)
            source.push([t.text("1", SERVER, f"m{i}")])
            before = main.redraws
            app.tick()
            drawn.append(main.redraws - before)
        assert drawn == [1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0]
        assert main.stream.row_count < 20  # the last ones are not drawn yet
        for _ in range(5):  # the traffic stopped: everything is shown within 5 ticks
            app.tick()
        assert main.stream.row_count == 20
        # a key is not paced: PAUSED shows with the key, while the traffic goes on
        for i in range(3):
            source.push([t.text("1", SERVER, f"n{i}")])
            app.tick()
        await pilot.press("space")
        assert "PAUSED" in screen_text(app)
        await pilot.press("space")
        await settle(pilot)
        assert main.stream.row_count == 23
        # after a quiet quarter second, a new message is drawn at the next tick
        for _ in range(5):
            app.tick()
        source.push([t.text("1", SERVER, "after a pause")])
        before = main.redraws
        app.tick()
        assert main.redraws == before + 1 and main.stream.row_count == 24
        # a gap of one tick in a steady stream (40 msgs/s has them) does not restart the
        # pacing at 20 redraws a second: the next message waits its turn...
        for i in range(6):
            source.push([t.text("1", SERVER, f"k{i}")])
            app.tick()
        while main.drawn_version != app.session.version:
            app.tick()
        app.tick()  # one quiet tick
        source.push([t.text("1", SERVER, "after one quiet tick")])
        before = main.redraws
        app.tick()
        assert main.redraws == before and main.stream.row_count == 30
        for _ in range(5):  # ...and is shown within the pacing's wait
            app.tick()
        assert main.stream.row_count == 31


def test_pacing_slows_down_over_the_cpu_budget_and_back() -> None:
    screen = MainScreen.__new__(MainScreen)  # adapt_pacing reads and writes max_wait only
    screen.max_wait = 4
    for _ in range(30):
        screen.adapt_pacing(0.30, 0.05)  # a third of a core
    assert screen.max_wait == 19  # 1 redraw a second at most
    screen.adapt_pacing(0.04, 0.05)  # within the budget: stays
    assert screen.max_wait == 19
    for _ in range(30):
        screen.adapt_pacing(0.01, 0.05)
    assert screen.max_wait == 4
