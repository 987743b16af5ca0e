from __future__ import annotations

import threading

from textual.widgets import Input

from devconsole import filters
from devconsole.model import CLIENT, SERVER
from devconsole.tui import main as main_module
from devconsole.tui import make_app
from devconsole.tui.filterbar import FilterBar
from devconsole.tui.stream import StreamView
from tests.tui_fixtures import (
    EVIL_TEXT,
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
    return source, make_app(source, clock=kw.pop("clock", frozen_clock), tz=UTC, **kw)


def seqs(app) -> list[int]:
    return list(app.main.stream.view.seqs)


async def type_filter(pilot, expr: str) -> None:
    """What Enter in the filter bar does (the keys themselves are tested once, below)."""
    bar = pilot.app.main.filter_bar
    bar.input.value = expr
    bar.on_input_submitted(Input.Submitted(bar.input, expr))
    await pilot.pause()


async def test_slash_focuses_enter_applies_escape_leaves() -> None:
    _, app = app_with(demo_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert len(seqs(app)) == 12
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"from:client")
        assert app.main.filter_bar.input.value == "from:client"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.focused, StreamView)
        client = [s for s in seqs(app) if app.session.get(s).side == CLIENT]
        assert seqs(app) == client and client
        assert "active: from:client" in screen_text(app)
        assert app.main.query_one("#status").info.filtered
        # an invalid expression keeps the focus in the bar, to fix it
        await pilot.press("slash", "ctrl+u", "(", "enter")
        assert isinstance(app.focused, Input)
        assert app.main.filter_bar.error_shown
        # escape leaves the bar, the last valid filter stays
        await pilot.press("escape")
        assert isinstance(app.focused, StreamView)
        assert app.main.filter_expr == "from:client"


async def test_empty_filter_shows_everything() -> None:
    _, app = app_with(demo_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await type_filter(pilot, "type:ping")
        assert len(seqs(app)) == 1
        await type_filter(pilot, "   ")
        assert len(seqs(app)) == 12
        assert app.main.filter is filters.MATCH_ALL
        assert "no filter: everything" in screen_text(app)


async def test_invalid_filter_shows_column_and_keeps_last_valid() -> None:
    _, app = app_with(demo_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await type_filter(pilot, "from:server")
        before = seqs(app)
        await type_filter(pilot, "type:foo")
        bar = app.main.filter_bar
        assert bar.error_shown
        shown = screen_text(app)
        assert "column 6: unknown type 'foo'" in shown
        assert "still active: from:server" in shown
        assert seqs(app) == before
        assert app.main.filter_expr == "from:server"
        assert bar.input.cursor_position == 5  # on the offending column
        # a corrected expression clears the error
        await type_filter(pilot, "type:ping")
        assert not bar.error_shown
        assert len(seqs(app)) == 1


async def test_filter_expressions_never_render_as_markup() -> None:
    _, app = app_with(demo_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await type_filter(pilot, '"[bold]x[/bold]"')
        assert 'active: "[bold]x[/bold]"' in screen_text(app)
        await type_filter(pilot, "(" + EVIL_TEXT)
        shown = screen_text(app)
        assert "\x1b" not in shown
        assert "\x9b" not in shown


async def test_filter_applies_to_live_arrivals_and_history() -> None:
    t = Traffic()
    t.open("1")
    t.text("1", CLIENT, "ping-1")
    source, app = app_with(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await type_filter(pilot, "from:server")
        assert seqs(app) == []
        shown = screen_text(app)
        assert "No buffered message matches the filter." in shown
        source.push([t.text("1", SERVER, "a"), t.text("1", CLIENT, "b"), t.text("1", SERVER, "c")])
        await settle(pilot)
        assert seqs(app) == [2, 4]
        await type_filter(pilot, "c")
        bar = app.main.filter_bar
        assert bar.history == ["from:server", "c"]
        await pilot.press("slash", "up")
        assert bar.input.value == "c"
        await pilot.press("up")
        assert bar.input.value == "from:server"
        await pilot.press("down", "down")
        assert bar.input.value == ""


class Gate(filters.Filter):
    """Blocks on its first item until released: makes a rescan observably slow."""

    def __init__(self, side: str, release: threading.Event) -> None:
        self.side = side
        self.release = release
        super().__init__()

    def _compile(self):
        side, release = self.side, self.release

        def pred(item) -> bool:
            release.wait(5)
            return item.side == side

        return pred

    def __str__(self) -> str:
        return f"gate:{self.side}"


async def test_big_rescan_runs_in_a_thread_with_progress_and_cancels_superseded(
    monkeypatch,
) -> None:
    monkeypatch.setattr(main_module, "SYNC_SCAN_LIMIT", 100)
    now = [0.0]
    t = Traffic()
    t.open("1")
    t.burst("1", 300, side=SERVER)
    t.burst("1", 300, side=CLIENT)
    release_first = threading.Event()
    release_second = threading.Event()
    gates = {"first": Gate(SERVER, release_first), "second": Gate(CLIENT, release_second)}
    real_parse = filters.parse
    monkeypatch.setattr(filters, "parse", lambda e, **kw: gates.get(e) or real_parse(e, **kw))
    _, app = app_with(t.take(), clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        await type_filter(pilot, "first")
        assert screen.scanning
        first_worker = screen._scan_worker
        assert len(seqs(app)) == 600  # the old view stays until the new one is ready
        now[0] = 0.1
        await settle(pilot)
        assert "filtering…" not in screen_text(app)  # quick scans show no progress
        now[0] = 0.2
        await settle(pilot)
        assert "filtering…" in screen_text(app)
        await type_filter(pilot, "second")  # supersedes the first scan
        assert first_worker.is_cancelled
        second_worker = screen._scan_worker
        assert second_worker is not None and second_worker is not first_worker
        release_first.set()
        await pilot.pause(0.1)
        assert len(seqs(app)) == 600  # the cancelled result was dropped
        release_second.set()
        await second_worker.wait()
        await settle(pilot)
        assert not screen.scanning
        assert len(seqs(app)) == 300
        assert all(app.session.get(s).side == CLIENT for s in seqs(app))
        assert "active: second" in screen_text(app)


async def test_filterbar_bindings_have_ids_and_tooltips() -> None:
    for b in FilterBar.BINDINGS:
        assert b.id and b.tooltip
