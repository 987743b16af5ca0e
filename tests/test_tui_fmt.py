"""Styling helpers of the TUI: text cursors that stay steady."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult
from textual.widgets import Input, TextArea

from devconsole.tui.fmt import steady_cursors


class _Form(App[None]):
    def compose(self) -> ComposeResult:
        yield Input(id="i")
        yield TextArea("x", id="t")

    def on_mount(self) -> None:
        steady_cursors(self.screen)
        self.query_one("#t", TextArea).focus()


async def test_cursors_do_not_blink_so_a_still_screen_stays_still() -> None:
    app = _Form()
    async with app.run_test(size=(40, 8)) as pilot:
        area = app.query_one("#t", TextArea)
        assert not app.query_one("#i", Input).cursor_blink and not area.cursor_blink
        seen = set()
        for _ in range(8):  # two blink periods (0.5 s each)
            await asyncio.sleep(0.15)
            await pilot.pause()
            seen.add(area._cursor_visible)
        assert seen == {True}  # drawn all the time, never toggled off
