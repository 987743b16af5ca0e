"""The filter bar: ``/`` focuses it, Enter applies, Escape goes back to the stream.

Parsing and scanning are the screen's business (``filters.parse`` and a rescan worker);
the bar only edits the expression, keeps a history, and shows the active filter, the
progress of a long rescan, or a parse error with its column.
"""

from __future__ import annotations

import re
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Static

from devconsole.decoders import safe_text
from devconsole.filters import FilterError
from devconsole.tui.fmt import steady_cursors

PLACEHOLDER = "word  /regex/  from:client  type:ping,pong  size>1k  json:type=ping  a or b  -term"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class FilterInput(Input):
    """An Input that never holds control characters: a pasted escape sequence would
    otherwise be written to the terminal as is. (Search for them with /\\x1b/.)"""

    def validate_value(self, value: str) -> str:
        return _CONTROL.sub("", value)


class FilterBar(Vertical):
    """One-line expression editor with a status/error area."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape",
            "leave",
            "Back",
            id="filter.leave",
            tooltip="Leave the filter bar (the active filter stays)",
        ),
        Binding(
            "up",
            "history(-1)",
            "Previous",
            show=False,
            id="filter.history_previous",
            tooltip="Previous filter expression",
        ),
        Binding(
            "down",
            "history(1)",
            "Next",
            show=False,
            id="filter.history_next",
            tooltip="Next filter expression",
        ),
    ]

    class Submitted(Message):
        def __init__(self, expr: str) -> None:
            super().__init__()
            self.expr = expr

    class Left(Message):
        """Escape: back to the stream."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.history: list[str] = []
        self._history_pos = 0
        self.active = ""

    def compose(self) -> ComposeResult:
        with Horizontal(id="filter-row"):
            yield Label("filter", id="filter-label")
            yield FilterInput(
                placeholder=PLACEHOLDER,
                id="filter-input",
                compact=True,
                select_on_focus=False,
            )
            yield Static(id="filter-state")
        yield Static(id="filter-error")

    @property
    def input(self) -> Input:
        return self.query_one("#filter-input", Input)

    def on_mount(self) -> None:
        steady_cursors(self)
        self.show_active("")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        expr = event.value.strip()
        if expr and (not self.history or self.history[-1] != expr):
            self.history.append(expr)
        self._history_pos = len(self.history)
        self.post_message(self.Submitted(expr))

    def action_leave(self) -> None:
        self.post_message(self.Left())

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self._history_pos = max(0, min(len(self.history), self._history_pos + step))
        value = self.history[self._history_pos] if self._history_pos < len(self.history) else ""
        self.input.value = value
        self.input.cursor_position = len(value)

    # ------------------------------------------------------------------ state display

    def show_active(self, expr: str, note: str = "") -> None:
        """The active filter; ``note`` qualifies it ("on what was there at the pause")."""
        self.active = expr
        state = Text()
        if expr:
            state.append("active: ", "dim")
            state.append(safe_text(expr), "bold")
            if note:
                state.append(f" ({note})", "bold yellow")
        else:
            state.append("no filter: everything", "dim")
        self.query_one("#filter-state", Static).update(state)
        self.clear_error()

    def show_progress(self, fraction: float) -> None:
        state = Text()
        state.append(f"filtering… {fraction * 100:3.0f}%", "bold yellow")
        self.query_one("#filter-state", Static).update(state)

    def show_error(self, error: FilterError, expr: str) -> None:
        """The message and column of a parse error; the last valid filter stays active."""
        column = max(1, error.column)
        msg = Text()
        msg.append(" ✗ ", "bold white on red3")
        msg.append(f" column {column}: ", "bold red")
        msg.append(safe_text(error.message), "red")
        msg.append("   ")
        before = safe_text(expr[: column - 1][-30:])
        at = safe_text(expr[column - 1 : column]) or " "
        after = safe_text(expr[column : column + 30])
        msg.append(before, "dim")
        msg.append(at, "bold reverse red")
        msg.append(after, "dim")
        if self.active:
            msg.append("   (still active: ", "dim")
            msg.append(safe_text(self.active), "dim bold")
            msg.append(")", "dim")
        error_line = self.query_one("#filter-error", Static)
        error_line.update(msg)
        error_line.display = True
        self.input.cursor_position = min(len(self.input.value), column - 1)

    def clear_error(self) -> None:
        error_line = self.query_one("#filter-error", Static)
        error_line.update("")
        error_line.display = False

    @property
    def error_shown(self) -> bool:
        return bool(self.query_one("#filter-error", Static).display)
