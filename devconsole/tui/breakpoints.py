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
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, RadioButton, RadioSet, Static

from devconsole import filters
from devconsole.decoders import safe_text
from devconsole.filters import FilterError
from devconsole.model import BreakpointCommand, Connection
from devconsole.text import conn_tag

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
            "ctrl+t",
            "toggle_scope",
            "Scope",
            id="breakpoint.scope",
            tooltip="Hold on this connection only, or on every connection",
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
                yield Static("s, then", classes="breakpoint-then")
                with RadioSet(id="breakpoint-on-timeout"):
                    yield RadioButton("forward", value=True, id="breakpoint-forward")
                    yield RadioButton("drop", id="breakpoint-drop")
            with Horizontal(classes="breakpoint-row"):
                yield Static("on", classes="breakpoint-label")
                with RadioSet(id="breakpoint-scope"):
                    if self.conn is not None:
                        yield RadioButton(
                            f"{conn_tag(self.conn.id)} {safe_text(self.conn.path or '/')}",
                            value=True,
                            id="breakpoint-this",
                        )
                    yield RadioButton(
                        "every connection", value=self.conn is None, id="breakpoint-all"
                    )
            yield Checkbox(
                "control frames too (ping, pong and close wait behind a held message)",
                id="breakpoint-control",
            )
            with Horizontal(id="breakpoint-bottom"):
                yield Static(id="breakpoint-info")
                yield Button("Add", id="breakpoint-add", variant="primary", compact=True)

    def on_mount(self) -> None:
        dialog = self.query_one("#breakpoint-dialog")
        dialog.border_title = "New breakpoint"
        dialog.border_subtitle = "enter add · ^t scope · tab field · esc cancel"
        self.query_one("#breakpoint-filter", Input).focus()
        self.validate()

    # ---------------------------------------------------------------- state

    @property
    def scope_conn(self) -> str:
        if self.conn is None:
            return ""
        return self.conn.id if self.query_one("#breakpoint-this", RadioButton).value else ""

    def command(self) -> BreakpointCommand:
        on_timeout = "drop" if self.query_one("#breakpoint-drop", RadioButton).value else "forward"
        return build_breakpoint(
            self.query_one("#breakpoint-filter", Input).value,
            self.query_one("#breakpoint-timeout", Input).value,
            on_timeout,
            self.query_one("#breakpoint-control", Checkbox).value,
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
        info.update(t)
        return cmd

    @on(Input.Changed)
    @on(RadioSet.Changed)
    @on(Checkbox.Changed)
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

    def action_toggle_scope(self) -> None:
        if self.conn is None:
            self.app.bell()
            return
        this = self.query_one("#breakpoint-this", RadioButton)
        if this.value:
            self.query_one("#breakpoint-all", RadioButton).value = True
        else:
            this.value = True

    def action_cancel(self) -> None:
        self.dismiss(None)
