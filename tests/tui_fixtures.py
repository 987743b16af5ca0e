"""Helpers of the TUI tests: a live in-memory source, the redraw ``settle``, the screen
as text and the notifications shown, all through Textual's public API. The traffic
builders are ``devconsole.samples`` (re-exported here)."""

from __future__ import annotations

import html
import re
import weakref
from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len

from devconsole.model import Event
from devconsole.samples import (
    EVIL_TEXT,
    FAULT_NOW,
    FEED,
    T0,
    UTC,
    Traffic,
    demo_traffic,
    fault_traffic,
    handshake,
)
from devconsole.source import MemorySource

__all__ = [
    "EVIL_TEXT",
    "FAULT_NOW",
    "FEED",
    "T0",
    "UTC",
    "Traffic",
    "demo_traffic",
    "fault_traffic",
    "focus_stream",
    "frozen_clock",
    "handshake",
    "live_source",
    "notifications",
    "open_detail",
    "screen_text",
    "settle",
]


def frozen_clock() -> float:
    return 0.0


def live_source(
    events: Sequence[Event] = (),
    description: str = "live test",
    command_error: str | None = None,
) -> MemorySource:
    """A source the test pushes batches into (``push``), like the live tap delivers them;
    commands succeed unless ``command_error`` is given (the addon's answer)."""
    return MemorySource(events, description, command_error)


async def settle(pilot: Any) -> None:
    """Let the source deliver, run a redraw tick, and let the screen update."""
    await pilot.pause()
    pilot.app.sync()
    await pilot.pause()
    assert pilot.app.redraw_errors == 0, "the redraw timer failed (see the app log)"


async def focus_stream(pilot: Any) -> None:
    """Focus the stream (the screen starts in the connections list)."""
    pilot.app.main.stream.focus()
    await pilot.pause()


async def open_detail(pilot: Any, seq: int) -> Any:
    """Select ``seq`` in the stream and open it in the detail pane (as Enter does)."""
    screen = pilot.app.main
    if not screen.stream.row_count:
        await settle(pilot)
    assert screen.stream.select_seq(seq)
    screen.set_detail_open(True)
    await pilot.pause()
    return screen.detail


_SVG_TEXT = re.compile(
    r'<text class="[^"]*" x="([0-9.]+)" y="[0-9.]+" textLength="([0-9.]+)"'
    r' clip-path="url\(#[^"]*-line-(\d+)\)">(.*?)</text>',
    re.DOTALL,
)


def screen_text(app: Any) -> str:
    """What the terminal shows now, as plain text: ``app.export_screenshot()``'s SVG with
    the styles left out (each line padded to the screen's width)."""
    width, height = app.size
    rows: list[list[tuple[int, str]]] = [[] for _ in range(height)]
    for x, length, line, content in _SVG_TEXT.findall(app.export_screenshot()):
        text = html.unescape(content).replace("\xa0", " ")
        char_width = float(length) / max(1, len(text))
        if int(line) < height:
            rows[int(line)].append((round(float(x) / char_width), text))
    lines = []
    for spans in rows:
        out = ""
        for col, text in sorted(spans):
            out += " " * max(0, col - cell_len(out)) + text
        lines.append(out + " " * max(0, width - cell_len(out)))
    return "\n".join(lines)


_RECORDED: weakref.WeakKeyDictionary[Any, list[tuple[str, str, str]]] = weakref.WeakKeyDictionary()


def notifications(app: Any) -> list[tuple[str, str, str]]:
    """The app's notifications as (title, message, severity), recorded from the first
    call on (it wraps the public ``App.notify``); later calls return the same list."""
    if app in _RECORDED:
        return _RECORDED[app]
    shown = _RECORDED[app] = []
    notify = app.notify

    def recording(message: str, *, title: str = "", severity: str = "information", **kw: Any):
        shown.append((title, str(message), severity))
        return notify(message, title=title, severity=severity, **kw)

    app.notify = recording
    return shown
