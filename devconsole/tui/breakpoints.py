"""The breakpoint dialog (``b``): a breakpoint from the current filter.

It asks what the CLI's ``devconsole break add`` takes: the filter (the stream's, editable),
the timeout and what happens then, whether control frames are held too, and this
connection or all of them. Like the other dialogs it only builds the Command; the main
screen asks the app to send it. ``build_breakpoint`` holds the checks (the relay checks
again: a stale dialog can only make the command fail with its message).
"""

from __future__ import annotations

import math
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message as TMessage
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from devconsole import filters
from devconsole.decoders import safe_text
from devconsole.filters import FilterError
from devconsole.model import BreakpointCommand, Connection
from devconsole.text import conn_tag
from devconsole.tui.fmt import steady_cursors

DEFAULT_TIMEOUT = 120.0


def parse_timeout(text: str) -> float:
    """Seconds a message stays held (empty: the default); ValueError to show."""
    s = text.strip().removesuffix("s").strip()
    if not s:
        return DEFAULT_TIMEOUT
    try:
        value = float(s)
    except ValueError:
        raise ValueError(f"the timeout is a number of seconds, not {safe_text(s)!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise ValueError("the timeout must be a positive number of seconds")
    return value


def build_breakpoint(
    expr: str, timeout: str, on_timeout: str, control: bool, conn: str = ""
) -> BreakpointCommand:
    """The command for what the dialog holds; ValueError with a message to show."""
    if not expr.strip():
        raise ValueError(
            "a breakpoint needs a filter: e.g. from:client, json:type=subscribe, /regex/"
        )
    try:
        filters.parse(expr)
    except FilterError as e:
        raise ValueError(f"column {e.column}: {e.message}") from None
    if on_timeout not in ("forward", "drop"):
        raise ValueError(f"on timeout: forward or drop, not {on_timeout!r}")
    return BreakpointCommand(expr.strip(), conn, parse_timeout(timeout), on_timeout, control)


class Choice(Static):
    """One of a few values, all shown, the chosen one marked ● and highlighted (readable
    in any colour scheme and in ``tmux capture-pane``); a key or a click moves to the
    next."""

    class Changed(TMessage):
        def __init__(self, choice: Choice) -> None:
            super().__init__()
            self.choice = choice

    def __init__(
        self, label: str, choices: list[tuple[str, str]], key: str, *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.label = label
        self.choices = choices  # (value, shown)
        self.key = key
        self.index = 0

    @property
    def value(self) -> str:
        return self.choices[self.index][0]

    @value.setter
    def value(self, value: str) -> None:
        for i, (v, _) in enumerate(self.choices):
            if v == value:
                self.index = i
        self._show()

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"{self.label:<9}", "bold")
        for i, (_, shown) in enumerate(self.choices):
            chosen = i == self.index
            t.append(f" {'●' if chosen else '○'} {shown} ", "bold reverse" if chosen else "dim")
            t.append(" ")
        if len(self.choices) > 1:
            t.append(f"  {self.key} to change", "dim")
        self.update(t)

    def cycle(self) -> None:
        if len(self.choices) > 1:
            self.index = (self.index + 1) % len(self.choices)
            self._show()
            self.post_message(self.Changed(self))

    def on_click(self) -> None:
        self.cycle()


class BreakpointDialog(ModalScreen[BreakpointCommand | None]):
    """Add a breakpoint: filter, timeout, on-timeout, control frames, scope."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "ctrl+s",
            "add",
            "Add",
            id="breakpoint.add",
            tooltip="Add the breakpoint (Enter in a field does the same)",
        ),
        Binding(
            "ctrl+o",
            "cycle('on-timeout')",
            "Then",
            id="breakpoint.on_timeout",
            tooltip="When the timeout ends: forward the message or drop it",
        ),
        Binding(
            "ctrl+t",
            "cycle('scope')",
            "Scope",
            id="breakpoint.scope",
            tooltip="Hold on this connection only, or on every connection",
        ),
        Binding(
            "ctrl+l",
            "cycle('control')",
            "Control frames",
            id="breakpoint.control",
            tooltip="Hold matching control frames too, and queue ping, pong and close "
            "behind a held message",
        ),
        Binding(
            "escape",
            "cancel",
            "Cancel",
            id="breakpoint.cancel",
            tooltip="Close without adding a breakpoint",
        ),
    ]

    def __init__(self, expr: str = "", conn: Connection | None = None) -> None:
        """``expr``: the stream's filter; ``conn``: the connection the stream shows (the
        default scope), or None (every connection)."""
        super().__init__()
        self.expr = expr
        self.conn = conn

    def compose(self) -> ComposeResult:
        with Vertical(id="breakpoint-dialog"):
            yield Static(
                Text(
                    "Hold the messages that match, until you forward, edit or drop them.",
                    style="dim",
                ),
                id="breakpoint-about",
            )
            with Horizontal(classes="breakpoint-row"):
                yield Static("filter", classes="breakpoint-label")
                yield Input(
                    self.expr,
                    placeholder="from:client json:type=subscribe",
                    select_on_focus=False,  # typing adds to the stream's filter
                    id="breakpoint-filter",
                )
            with Horizontal(classes="breakpoint-row"):
                yield Static("timeout", classes="breakpoint-label")
                yield Input(
                    f"{DEFAULT_TIMEOUT:g}",
                    placeholder="seconds",
                    restrict=r"[0-9.]*s?",
                    id="breakpoint-timeout",
                )
                yield Static("seconds", classes="breakpoint-then")
            yield Choice(
                "then", [("forward", "forward it"), ("drop", "drop it")], "^o", id="on-timeout"
            )
            scopes = [("all", "every connection")]
            if self.conn is not None:
                tag = f"{conn_tag(self.conn.id)} {safe_text(self.conn.path or '/')}"
                scopes.insert(0, ("this", tag))
            yield Choice("on", scopes, "^t", id="scope")
            yield Choice(
                "control",
                [("no", "data messages only"), ("yes", "control frames too")],
                "^l",
                id="control",
            )
            with Horizontal(id="breakpoint-bottom"):
                yield Static(id="breakpoint-info")
                yield Button("Add", id="breakpoint-add", variant="primary", compact=True)

    def on_mount(self) -> None:
        dialog = self.query_one("#breakpoint-dialog")
        dialog.border_title = "New breakpoint"
        steady_cursors(self)
        dialog.border_subtitle = "enter add · tab field · esc cancel"
        self.query_one("#breakpoint-filter", Input).focus()
        self.validate()

    # ---------------------------------------------------------------- state

    def choice(self, name: str) -> Choice:
        return self.query_one(f"#{name}", Choice)

    @property
    def scope_conn(self) -> str:
        if self.conn is None or self.choice("scope").value != "this":
            return ""
        return self.conn.id

    def command(self) -> BreakpointCommand:
        return build_breakpoint(
            self.query_one("#breakpoint-filter", Input).value,
            self.query_one("#breakpoint-timeout", Input).value,
            self.choice("on-timeout").value,
            self.choice("control").value == "yes",
            self.scope_conn,
        )

    def validate(self) -> BreakpointCommand | None:
        info = self.query_one("#breakpoint-info", Static)
        try:
            cmd = self.command()
        except ValueError as e:
            info.update(Text(f"✗ {e}", style="bold red"))
            return None
        t = Text()
        t.append("holds ", "dim")
        t.append(safe_text(cmd.filter), "bold")
        t.append(f" on {conn_tag(cmd.conn) if cmd.conn else 'every connection'}", "dim")
        t.append(f", {cmd.timeout:g} s then {cmd.on_timeout}", "dim")
        if cmd.control:
            t.append(", control frames too", "dim")
        info.update(t)
        return cmd

    @on(Input.Changed)
    @on(Choice.Changed)
    def _changed(self) -> None:
        self.validate()

    @on(Input.Submitted)
    @on(Button.Pressed, "#breakpoint-add")
    def _submitted(self) -> None:
        self.action_add()

    # ---------------------------------------------------------------- actions

    def action_add(self) -> None:
        cmd = self.validate()
        if cmd is None:
            self.app.bell()
            self.query_one("#breakpoint-filter", Input).focus()
            return
        self.dismiss(cmd)

    def action_cycle(self, name: str) -> None:
        self.choice(name).cycle()

    def action_cancel(self) -> None:
        self.dismiss(None)
