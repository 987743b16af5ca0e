"""The handshake inspector: the screen showing one upgrade exchange and the flags of
its lint (``devconsole.analysis.handshake``) next to the lines they are about."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import ClassVar

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from devconsole.analysis.handshake import Flag, lint_handshake
from devconsole.analysis.secrets import is_secret_name
from devconsole.decoders import safe_text
from devconsole.model import Connection, close_code_meaning
from devconsole.text import conn_tag, fmt_bytes, fmt_datetime, fmt_duration
from devconsole.tui.fmt import STATE_STYLES

LEVEL_STYLES: dict[str, str] = {
    "error": "bold white on red3",
    "warning": "bold black on yellow",
    "info": "bold white on blue",
}
LEVEL_ICONS: dict[str, str] = {"error": "✗", "warning": "⚠", "info": "i"}

# header name -> flag topic, to mark the header rows a flag is about
_HEADER_TOPICS: dict[str, str] = {
    "sec-websocket-protocol": "subprotocol",
    "sec-websocket-extensions": "extensions",
    "sec-websocket-version": "version",
    "origin": "origin",
    "cookie": "auth",
    "authorization": "auth",
}


def _t(value: str, style: str = "") -> Text:
    """Untrusted text (header values, paths, bodies), escaped, never parsed as markup."""
    return Text(safe_text(value), style=style)


def _section(title: str) -> Text:
    return Text(f"\n{title}", style="bold underline")


def _kv_table(
    rows: Iterable[tuple[str, str]], flagged: dict[str, Flag] | None = None
) -> Table | Text:
    rows = list(rows)
    if not rows:
        return Text("  (none)", style="dim")
    table = Table(box=box.SIMPLE_HEAD, show_header=False, pad_edge=False, expand=False)
    table.add_column("mark", width=1, no_wrap=True)
    table.add_column("name", style="bold", no_wrap=True, max_width=40)
    table.add_column("value", overflow="fold")
    for name, value in rows:
        flag = (flagged or {}).get(_HEADER_TOPICS.get(name.lower(), ""))
        mark = Text(LEVEL_ICONS[flag.level], style=LEVEL_STYLES[flag.level]) if flag else Text()
        table.add_row(mark, _t(name), _t(value))
    return table


def _flags_table(flags: list[Flag]) -> Table:
    """Badge + message, the message wrapping under itself (a hanging indent)."""
    grid = Table.grid(padding=(0, 1), pad_edge=True)
    grid.add_column(no_wrap=True, min_width=11)
    grid.add_column(ratio=1)
    for flag in flags:
        grid.add_row(
            Text(f" {LEVEL_ICONS[flag.level]} {flag.level.upper()} ", LEVEL_STYLES[flag.level]),
            Text(safe_text(flag.message)),
        )
    return grid


def _state_text(conn: Connection) -> Text:
    text = Text()
    text.append(f" {conn.state} ", STATE_STYLES.get(conn.state, "bold"))
    if conn.close_code is not None or conn.closed_by:
        text.append("  close ")
        if conn.close_code is not None:
            text.append(f"{conn.close_code} {close_code_meaning(conn.close_code)}")
        if conn.close_reason:
            text.append(" reason ")
            text.append(_t(repr(conn.close_reason)))
        if conn.closed_by:
            text.append(f" (by {conn.closed_by})")
    return text


def handshake_renderable(conn: Connection, tz: _dt.tzinfo | None = None) -> RenderableType:
    """Everything about one upgrade exchange, as Rich renderables built from Text objects
    (never markup strings: header values and bodies are untrusted)."""
    hs = conn.handshake
    flags = lint_handshake(hs)
    by_topic: dict[str, Flag] = {}
    for f in flags:
        by_topic.setdefault(f.topic, f)
    parts: list[RenderableType] = []

    title = Text()
    title.append(f"{conn_tag(conn.id)} ", "bold")
    title.append(_t(hs.url, "bold"))
    parts.append(title)
    summary = Text()
    summary.append_text(_state_text(conn))
    summary.append("  client ")
    summary.append(_t(hs.client, "bold"))
    summary.append("  server ")
    summary.append(_t(hs.server, "bold"))
    summary.append(f"  started {fmt_datetime(hs.ts, tz)}")
    if hs.ts_response is not None:
        summary.append(f"  answered in {fmt_duration(max(0.0, hs.ts_response - hs.ts))}")
    parts.append(summary)
    for err in conn.errors:
        parts.append(_t(f"  protocol error: {err}", "red"))

    parts.append(_section(f"Flags ({len(flags)})"))
    if flags:
        parts.append(_flags_table(flags))
    else:
        parts.append(Text("  ✓ nothing to report", style="green"))

    request_at = len(parts)
    parts.append(_section("Request"))
    line = Text("  ")
    line.append(_t(hs.method, "bold"))
    line.append(" ")
    target = hs.path
    if hs.query:
        target += "?" + "&".join(f"{k}={v}" if v else k for k, v in hs.query)
    line.append(_t(target))
    line.append(" ")
    line.append(_t(hs.http_version))
    parts.append(line)
    parts.append(_kv_table(hs.request_headers, by_topic))

    parts.append(_section(f"Query parameters ({len(hs.query)})"))
    if hs.query:
        qtable = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        qtable.add_column("name", style="bold", no_wrap=True, max_width=40)
        qtable.add_column("value", overflow="fold")
        qtable.add_column("", no_wrap=True)
        for k, v in hs.query:
            note = Text("credential?", style="yellow") if is_secret_name(k) else Text()
            qtable.add_row(_t(k), _t(v), note)
        parts.append(qtable)
    else:
        parts.append(Text("  (none)", style="dim"))

    parts.append(_section(f"Cookies ({len(hs.cookies)})"))
    if hs.cookies:
        ctable = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        ctable.add_column("name", style="bold", no_wrap=True, max_width=40)
        ctable.add_column("value", overflow="fold")
        ctable.add_column("size", justify="right", no_wrap=True)
        for k, v in hs.cookies:
            ctable.add_row(_t(k), _t(v), Text(str(len(v))))
        parts.append(ctable)
    else:
        parts.append(Text("  (none)", style="dim"))

    parts.append(_section("WebSocket negotiation"))
    neg = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    neg.add_column("", width=1, no_wrap=True)
    neg.add_column("", style="bold", no_wrap=True)
    neg.add_column("requested", overflow="fold")
    neg.add_column("accepted", overflow="fold")

    def mark(topic: str) -> Text:
        f = by_topic.get(topic)
        return Text(LEVEL_ICONS[f.level], style=LEVEL_STYLES[f.level]) if f else Text()

    def joined(values: list[str]) -> Text:
        return _t(", ".join(values)) if values else Text("-", style="dim")

    origin = hs.request_header("origin")
    neg.add_row(mark("origin"), Text("Origin"), _t(origin) if origin else Text("-"), Text(""))
    neg.add_row(
        mark("subprotocol"),
        Text("Subprotocol"),
        joined(hs.requested_subprotocols),
        _t(hs.subprotocol) if hs.subprotocol else Text("-", style="dim"),
    )
    neg.add_row(
        mark("extensions"),
        Text("Extensions"),
        joined(hs.requested_extensions),
        joined(hs.extensions),
    )
    version = hs.request_header("sec-websocket-version")
    neg.add_row(mark("version"), Text("Version"), _t(version) if version else Text("-"), Text(""))
    neg.add_row(mark("scheme"), Text("Scheme"), _t(hs.scheme), Text(""))
    parts.append(neg)

    response_at = len(parts)
    parts.append(_section("Response"))
    if hs.status is None:
        parts.append(_t(f"  no response{': ' + hs.error if hs.error else ''}", "red"))
    else:
        status = Text("  ")
        style = "bold green" if hs.status == 101 else "bold red"
        status.append(f"{hs.status} ", style)
        status.append(_t(hs.reason, style))
        parts.append(status)
        parts.append(_kv_table(hs.response_headers))
        if hs.body or hs.body_size:
            shown = len(hs.body)
            heading = f"Body ({fmt_bytes(hs.body_size)}"
            if shown < hs.body_size:
                heading += f", first {fmt_bytes(shown)} shown"
            parts.append(_section(heading + ")"))
            body = hs.body.decode("utf-8", errors="replace")
            parts.append(Text(safe_text(body, keep_newlines=True)))
    if hs.status != 101:
        # A refused upgrade: what the server answered matters most, show it first.
        parts = parts[:request_at] + parts[response_at:] + parts[request_at:response_at]
    return Group(*parts)


class HandshakeScreen(ModalScreen[None]):
    """Request line, headers in order, cookies, query, negotiation, response and flags."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape,h",
            "dismiss",
            "Close",
            id="handshake.close",
            tooltip="Close the handshake inspector",
        ),
    ]

    def __init__(self, conn: Connection, tz: _dt.tzinfo | None = None) -> None:
        super().__init__()
        self.conn = conn
        self.tz = tz

    def compose(self) -> ComposeResult:
        with Vertical(id="handshake-dialog"), VerticalScroll(id="handshake-body"):
            yield Static(handshake_renderable(self.conn, self.tz), id="handshake-content")

    def on_mount(self) -> None:
        dialog = self.query_one("#handshake-dialog")
        dialog.border_title = "Handshake"
        dialog.border_subtitle = "esc close"
        self.query_one("#handshake-body").focus()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
