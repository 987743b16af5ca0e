"""Regenerate the TUI screenshots in docs/img/ (run from anywhere):

    .venv/bin/python docs/make_screenshots.py

The traffic is the fixed demo session the TUI tests use too (``devconsole.samples``),
with a frozen clock and UTC timestamps, so the pictures only change when the screen does.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devconsole.samples import (  # noqa: E402
    FAULT_NOW,
    INTERCEPT_NOW,
    UTC,
    demo_traffic,
    fault_traffic,
    intercept_traffic,
    refusal_traffic,
    retry_traffic,
)
from devconsole.source import MemorySource  # noqa: E402
from devconsole.tui import make_app  # noqa: E402

OUT = ROOT / "docs" / "img"
SIZE = (140, 40)


def frozen_clock() -> float:
    return 0.0


async def settle(pilot: Any) -> None:
    """Let the source deliver, run a redraw tick now, and let the screen update."""
    await pilot.pause()
    pilot.app.sync()
    await pilot.pause()


async def shot(
    name: str,
    steps: Callable[[Any], Awaitable[None]],
    size=SIZE,
    traffic=demo_traffic,
    now: float = FAULT_NOW,
) -> None:
    app = make_app(
        MemorySource(traffic().events),
        clock=frozen_clock,
        wall_clock=lambda: now,
        tz=UTC,
    )
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await steps(pilot)
        await pilot.pause()
        app.save_screenshot(filename=f"{name}.svg", path=str(OUT))
    print(OUT / f"{name}.svg")


async def open_message(pilot: Any, seq: int) -> None:
    """Select ``seq`` in the stream and open it in the detail pane, as Enter does."""
    screen = pilot.app.main
    screen.stream.focus()
    screen.stream.select_seq(seq)
    screen.set_detail_open(True)
    await pilot.pause()


async def main_screen(pilot: Any) -> None:
    pilot.app.main.stream.select_seq(2)


async def at_80x24(pilot: Any) -> None:
    await open_message(pilot, 1)


async def at_200x50(pilot: Any) -> None:
    await open_message(pilot, 1)


async def retries(pilot: Any) -> None:
    pilot.app.main.connections.select("1")


async def json_tree(pilot: Any) -> None:
    await open_message(pilot, 1)
    pilot.app.main.detail.focus_target().focus()


async def msgpack(pilot: Any) -> None:
    await open_message(pilot, 3)


async def frames(pilot: Any) -> None:
    await open_message(pilot, 9)
    while pilot.app.main.detail.view_name != "frames":
        await pilot.press("v")


async def hex_zoomed(pilot: Any) -> None:
    await open_message(pilot, 8)
    pilot.app.main.detail.focus_target().focus()
    await pilot.press("z")


async def handshake(pilot: Any) -> None:
    pilot.app.main.connections.select("1")
    await settle(pilot)
    await pilot.press("h")


async def refused(pilot: Any) -> None:
    pilot.app.main.connections.select("3")
    await settle(pilot)
    await pilot.press("h")


async def handshake_diff(pilot: Any) -> None:
    # nothing selected: h opens the newest upgrade, the refusal, on its diff
    await pilot.press("h")


async def filtered_paused(pilot: Any) -> None:
    screen = pilot.app.main
    screen.apply_filter("from:server type:text")
    await settle(pilot)
    await pilot.press("space")


async def filter_error(pilot: Any) -> None:
    await pilot.press("slash")
    pilot.app.main.filter_bar.input.value = "json:type=msg and (from:client"
    await pilot.press("enter")


async def help_screen(pilot: Any) -> None:
    await pilot.press("question_mark")


async def fault_menu(pilot: Any) -> None:
    pilot.app.main.connections.select("5")
    await settle(pilot)
    await pilot.press("x")


async def custom_close(pilot: Any) -> None:
    pilot.app.main.connections.select("1")
    await settle(pilot)
    await pilot.press("x", "t", "c")
    menu = pilot.app.screen
    menu.query_one("#fault-code").value = "1005"
    menu.query_one("#fault-reason").value = "maintenance window"
    await pilot.press("enter")


async def inject(pilot: Any) -> None:
    pilot.app.main.connections.select("1")
    await settle(pilot)
    await pilot.press("i", "ctrl+o")
    pilot.app.screen.query_one("#inject-payload").value = "7b 22 74 79 70 65 22 3a 7d"


async def report(pilot: Any) -> None:
    pilot.app.main.connections.select("5")
    await settle(pilot)
    await pilot.press("r")
    await settle(pilot)


async def intercept_stream(pilot: Any) -> None:
    screen = pilot.app.main
    screen.stream.focus()
    screen.stream.select_seq(8)


async def intercept_view(pilot: Any) -> None:
    await pilot.press("I")


async def intercept_edit(pilot: Any) -> None:
    await intercept_stream(pilot)
    await settle(pilot)
    await pilot.press("e")
    await pilot.pause()
    pilot.app.screen.set_text(
        '{\n  "type": "msg",\n  "room": "ops",\n  "text": "on it, in 5 min"\n}'
    )


async def intercept_edited(pilot: Any) -> None:
    await open_message(pilot, 3)


async def breakpoint_dialog(pilot: Any) -> None:
    screen = pilot.app.main
    screen.connections.select("1")
    await settle(pilot)
    screen.apply_filter("from:client json:type=msg")
    await settle(pilot)
    await pilot.press("b")


async def run() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    await shot("tui-main", main_screen)
    await shot("tui-80x24", at_80x24, size=(80, 24))
    await shot("tui-200x50", at_200x50, size=(200, 50))
    await shot("tui-retries", retries, size=(120, 30), traffic=retry_traffic)
    await shot("tui-json-tree", json_tree)
    await shot("tui-msgpack", msgpack)
    await shot("tui-frames", frames)
    await shot("tui-hex-zoomed", hex_zoomed)
    await shot("tui-handshake", handshake)
    await shot("tui-refused", refused)
    await shot("tui-handshake-diff", handshake_diff, traffic=refusal_traffic)
    await shot("tui-handshake-diff-80x24", handshake_diff, size=(80, 24), traffic=refusal_traffic)
    await shot("tui-filter-paused", filtered_paused)
    await shot("tui-filter-error", filter_error)
    await shot("tui-help", help_screen, size=(140, 48))
    await shot("tui-fault-menu", fault_menu, traffic=fault_traffic)
    await shot("tui-fault-custom", custom_close, traffic=fault_traffic)
    await shot("tui-inject", inject, traffic=fault_traffic)
    await shot("tui-report", report, size=(140, 48), traffic=fault_traffic)
    held: dict[str, Any] = {"traffic": intercept_traffic, "now": INTERCEPT_NOW}
    await shot("tui-intercept-stream", intercept_stream, size=(100, 26), **held)
    await shot("tui-intercept", intercept_view, **held)
    await shot("tui-intercept-80x24", intercept_view, size=(80, 24), **held)
    await shot("tui-intercept-edit", intercept_edit, size=(100, 30), **held)
    await shot("tui-intercept-edited", intercept_edited, size=(100, 34), **held)
    await shot("tui-breakpoint", breakpoint_dialog, size=(100, 30), **held)


if __name__ == "__main__":
    asyncio.run(run())
