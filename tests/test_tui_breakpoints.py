"""The breakpoint dialog (b): a breakpoint from the stream's filter, with its timeout,
what happens then, control frames and its scope; checked before anything is sent."""

from __future__ import annotations

import pytest

from devconsole.model import BreakpointCommand
from devconsole.samples import intercept_traffic
from devconsole.tui import make_app
from devconsole.tui.breakpoints import BreakpointDialog, build_breakpoint, parse_timeout
from tests.tui_fixtures import UTC, frozen_clock, live_source, screen_text, settle

SIZE = (100, 30)


def test_build_breakpoint_checks_what_the_relay_checks() -> None:
    assert build_breakpoint(" from:client ", "", "forward", False) == BreakpointCommand(
        "from:client", "", 120.0, "forward", False
    )
    assert build_breakpoint("x", "2.5s", "drop", True, "3") == BreakpointCommand(
        "x", "3", 2.5, "drop", True
    )
    with pytest.raises(ValueError, match="a breakpoint needs a filter"):
        build_breakpoint("  ", "", "forward", False)
    with pytest.raises(ValueError, match=r"column 6: unclosed"):
        build_breakpoint("a or (b", "", "forward", False)
    for bad in ("0", "-1", "inf", "nan", "soon"):
        with pytest.raises(ValueError, match="timeout"):
            parse_timeout(bad)


async def until_sent(pilot, source) -> None:
    for _ in range(100):
        if source.commands:
            break
        await pilot.pause()


async def test_b_asks_and_sends_the_breakpoint() -> None:
    source = live_source(intercept_traffic().events, command_error=None)
    app = make_app(source, clock=frozen_clock, tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.main.apply_filter("json:type=msg")
        await settle(pilot)
        await pilot.press("b")  # with All connections: every connection, no choice
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, BreakpointDialog)
        shown = screen_text(app)
        assert "● every connection" in shown and "● forward it" in shown
        assert "holds json:type=msg on every connection, 120 s then forward" in shown
        filt = dialog.query_one("#breakpoint-filter")
        filt.value = "json:type=(msg"
        await pilot.pause()
        assert "✗ column 11" in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog and source.commands == []
        filt.value = "json:type=msg"
        dialog.query_one("#breakpoint-timeout").value = "30"
        await pilot.press("ctrl+t")  # no connection to choose: nothing changes
        await pilot.press("ctrl+s")
        await until_sent(pilot, source)
        assert source.commands == [BreakpointCommand("json:type=msg", "", 30.0, "forward")]


async def test_the_scope_is_the_stream_connection_and_can_be_every_one() -> None:
    source = live_source(intercept_traffic().events, command_error=None)
    app = make_app(source, clock=frozen_clock, tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("2")
        await settle(pilot)
        await pilot.press("b")
        await pilot.pause()
        shown = screen_text(app)
        assert "a breakpoint needs a filter" in shown  # no filter in the stream
        assert "● #2 /prices" in shown and "○ every connection" in shown
        app.screen.query_one("#breakpoint-filter").value = "type:binary"
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert "● every connection" in screen_text(app)
        await pilot.press("ctrl+t", "ctrl+l", "enter")
        await until_sent(pilot, source)
        assert source.commands == [BreakpointCommand("type:binary", "2", 120.0, "forward", True)]
