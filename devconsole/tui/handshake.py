"""The handshake inspector (``h``): one upgrade exchange, the flags of its lint
(``devconsole.analysis.handshake``) next to the lines they are about, and the diff against
an accepted upgrade on the same endpoint (``devconsole.analysis.handshake_diff``).

Two views of the same connection: the **diff** (what this request lacks, adds or changes
compared with the reference, the likely cause of a refusal, then the answer) and the
**full** handshake. A refused or credential-less upgrade opens on the diff. ``r`` picks
another reference, ``s`` shows the secrets (by default a secret is its name and a
fingerprint), ``d`` switches views.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import ClassVar, Literal

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from devconsole.analysis.handshake import Flag, credentials_sent, lint_handshake
from devconsole.analysis.handshake_diff import (
    Change,
    HandshakeDiff,
    diff_connections,
    diff_summary,
    endpoint_of,
    likely_cause,
    mask_handshake,
    reference_candidates,
    reference_for,
    shown,
)
from devconsole.analysis.secrets import is_secret_name
from devconsole.decoders import safe_text
from devconsole.model import Connection, close_code_meaning
from devconsole.text import conn_tag, fmt_bytes, fmt_datetime, fmt_duration, fmt_time
from devconsole.tui.fmt import STATE_STYLES
from devconsole.tui.state import ViewState

View = Literal["diff", "full"]

LEVEL_STYLES: dict[str, str] = {
    "error": "bold white on red3",
    "warning": "bold black on yellow",
    "info": "bold white on blue",
}
LEVEL_ICONS: dict[str, str] = {"error": "✗", "warning": "⚠", "info": "i"}
# the change column of the diff: a word (readable in monochrome) and a colour
CHANGE_STYLES: dict[str, str] = {
    "missing": "bold white on red3",
    "different": "bold black on yellow",
    "extra": "bold white on blue",
}
CAUSE_STYLE = "bold"

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


def _head(conn: Connection, url: str, tz: _dt.tzinfo | None) -> list[RenderableType]:
    """The title (id and URL) and the one-line summary of both views."""
    hs = conn.handshake
    title = Text()
    title.append(f"{conn_tag(conn.id)} ", "bold")
    title.append(_t(url, "bold"))
    summary = Text()
    summary.append_text(_state_text(conn))
    if hs.status is not None and hs.status != 101:
        summary.append(f"  HTTP {hs.status} ", "bold red")
        summary.append(_t(hs.reason, "bold red"))
    summary.append("  client ")
    summary.append(_t(hs.client, "bold"))
    summary.append("  server ")
    summary.append(_t(hs.server, "bold"))
    summary.append(f"  started {fmt_datetime(hs.ts, tz)}")
    if hs.ts_response is not None:
        summary.append(f"  answered in {fmt_duration(max(0.0, hs.ts_response - hs.ts))}")
    parts: list[RenderableType] = [title, summary]
    for err in conn.errors:
        parts.append(_t(f"  protocol error: {err}", "red"))
    return parts


def _brief_head(conn: Connection, url: str, tz: _dt.tzinfo | None) -> list[RenderableType]:
    """The diff view's two lines: id and URL; state, status, client and time."""
    hs = conn.handshake
    title = Text()
    title.append(f"{conn_tag(conn.id)} ", "bold")
    title.append(_t(url, "bold"))
    summary = _state_text(conn)
    if hs.status is not None and hs.status != 101:
        summary.append(f"  HTTP {hs.status} ", "bold red")
        summary.append(_t(hs.reason, "bold red"))
    elif hs.status is None and hs.error:
        summary.append("  ")
        summary.append(_t(hs.error, "red"))
    summary.append("  from ")
    summary.append(_t(hs.client, "bold"))
    summary.append(f" at {fmt_time(hs.ts, tz)}")
    return [title, summary]


def _cause(conn: Connection, diff: HandshakeDiff | None, gap: bool = True) -> Text | None:
    cause = likely_cause(conn, diff)
    if cause is None:
        return None
    text = Text("\n" if gap else "")
    text.append(" Likely cause ", "bold white on red3" if conn.refused else "bold black on yellow")
    text.append(" ")
    text.append(_t(cause, CAUSE_STYLE))
    return text


def _diff_heading(
    conn: Connection, ref: Connection, diff: HandshakeDiff, automatic: bool, tz: _dt.tzinfo | None
) -> Text:
    """``Diff against #1 (101 from 127.0.0.1:50001 at 12:00:01, the latest accepted
    upgrade of this endpoint): 1 missing, 1 different, 0 extra``."""
    hs = ref.handshake
    text = Text("\n")
    text.append(f"Diff against {conn_tag(ref.id)}", "bold underline")
    status = f"{hs.status}" if hs.status is not None else "no answer"
    text.append(f" ({status} from ")
    text.append(_t(hs.client))
    text.append(f" at {fmt_time(hs.ts, tz)}")
    if automatic and endpoint_of(hs) == endpoint_of(conn.handshake):
        text.append(", the latest accepted upgrade of this endpoint")
    text.append("): ")
    text.append(diff_summary(diff), "bold")
    return text


def _change_value(c: Change, value: str | None, show_secrets: bool) -> Text:
    if value is None:
        return Text("—", style="dim")
    return _t(
        shown(c, value, show_secrets) or "", "italic" if c.secret and not show_secrets else ""
    )


WIDE_DIFF = 100  # cells from which the diff has a column per side


class DiffTable:
    """One row per change: what (missing/different/extra), which item, this request's
    value and the reference's: side by side from ``WIDE_DIFF`` cells, else the two values
    stacked under each other (at 80 columns a URL then fits on one line)."""

    def __init__(self, diff: HandshakeDiff, show_secrets: bool = False) -> None:
        self.diff = diff
        self.show_secrets = show_secrets

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        diff = self.diff
        if not diff:
            yield Text("  ✓ no difference in what the client sent", style="green")
            return
        ref = conn_tag(diff.reference)
        wide = options.max_width >= WIDE_DIFF
        # narrow: the stacked values take what is left; wide: each side as wide as it needs
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=not wide)
        table.add_column("", no_wrap=True)
        table.add_column("item", style="bold", overflow="fold", max_width=32)
        if wide:
            table.add_column("this request", overflow="fold", ratio=1)
            table.add_column(f"{ref} (reference)", overflow="fold", ratio=1)
        else:
            table.add_column(f"this request / {ref}", overflow="fold", ratio=1)
        for c in diff.changes:
            badge = Text(f" {c.change} ", CHANGE_STYLES[c.change])
            mine = _change_value(c, c.value, self.show_secrets)
            theirs = _change_value(c, c.ref_value, self.show_secrets)
            if wide:
                table.add_row(badge, _t(c.label), mine, theirs)
                continue
            cell = Text()
            if c.value is not None:
                cell.append_text(mine)
            if c.ref_value is not None:
                if c.value is not None:
                    cell.append("\n")
                cell.append(f"{ref}: ", "dim")
                cell.append_text(theirs)
            table.add_row(badge, _t(c.label), cell)
        yield table


def diff_table(diff: HandshakeDiff, show_secrets: bool = False) -> RenderableType:
    return DiffTable(diff, show_secrets)


def _response_brief(conn: Connection) -> list[RenderableType]:
    """The status line and (for a refusal) the body: what the server answered."""
    hs = conn.handshake
    parts: list[RenderableType] = [_section("Response")]
    if hs.status is None:
        parts.append(_t(f"  no response{': ' + hs.error if hs.error else ''}", "red"))
        return parts
    status = Text("  ")
    style = "bold green" if hs.status == 101 else "bold red"
    status.append(f"{hs.status} ", style)
    status.append(_t(hs.reason, style))
    parts.append(status)
    if hs.body or hs.body_size:
        shown_n = len(hs.body)
        heading = f"  body ({fmt_bytes(hs.body_size)}"
        if shown_n < hs.body_size:
            heading += f", first {fmt_bytes(shown_n)} shown"
        parts.append(Text(heading + ")", style="dim"))
        body = hs.body.decode("utf-8", errors="replace")
        parts.append(Text(safe_text(body, keep_newlines=True)))
    return parts


def diff_renderable(
    conn: Connection,
    reference: Connection | None,
    diff: HandshakeDiff | None,
    tz: _dt.tzinfo | None = None,
    *,
    show_secrets: bool = False,
    automatic: bool = True,
) -> RenderableType:
    """The diff view: the likely cause, what this request lacks, adds or changes compared
    with ``reference``, then the flags and what the server answered."""
    hs = conn.handshake
    view_hs = hs if show_secrets else mask_handshake(hs)
    parts = _brief_head(conn, view_hs.url, tz)
    cause = _cause(conn, diff, gap=False)
    if cause is not None:
        parts.append(cause)
    if reference is None or diff is None:
        parts.append(_section("Diff"))
        parts.append(
            Text(
                f"  No other accepted upgrade on {hs.path or '/'} at {hs.server} to compare "
                "with. Press r to compare with any other connection.",
                style="yellow",
            )
        )
    else:
        parts.append(_diff_heading(conn, reference, diff, automatic, tz))
        parts.append(diff_table(diff, show_secrets))
        if diff.same:
            parts.append(Text(f"  {diff.same} identical item(s) not shown", style="dim"))
    flags = lint_handshake(hs)
    parts.append(_section(f"Flags ({len(flags)})"))
    parts.append(_flags_table(flags) if flags else Text("  ✓ nothing to report", style="green"))
    parts.extend(_response_brief(conn))
    parts.append(Text("\n  d: the full handshake", style="dim"))
    return Group(*parts)


def handshake_renderable(
    conn: Connection,
    tz: _dt.tzinfo | None = None,
    *,
    show_secrets: bool = False,
    diff: HandshakeDiff | None = None,
) -> RenderableType:
    """Everything about one upgrade exchange, as Rich renderables built from Text objects
    (never markup strings: header values and bodies are untrusted). Secret values are
    fingerprints unless ``show_secrets``; ``diff`` adds a one-line summary of it."""
    real = conn.handshake
    hs = real if show_secrets else mask_handshake(real)
    flags = lint_handshake(real)
    by_topic: dict[str, Flag] = {}
    for f in flags:
        by_topic.setdefault(f.topic, f)
    parts = _head(conn, hs.url, tz)
    cause = _cause(conn, diff)
    if cause is not None:
        parts.append(cause)
    if diff is not None:
        line = Text(f"  diff against {conn_tag(diff.reference)}: {diff_summary(diff)}")
        line.append(" · d shows it", "dim")
        parts.append(line)

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
        for (k, v), (_, real_v) in zip(hs.cookies, real.cookies, strict=True):
            ctable.add_row(_t(k), _t(v), Text(str(len(real_v))))
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
            shown_n = len(hs.body)
            heading = f"Body ({fmt_bytes(hs.body_size)}"
            if shown_n < hs.body_size:
                heading += f", first {fmt_bytes(shown_n)} shown"
            parts.append(_section(heading + ")"))
            body = hs.body.decode("utf-8", errors="replace")
            parts.append(Text(safe_text(body, keep_newlines=True)))
    if hs.status != 101:
        # A refused upgrade: what the server answered matters most, show it first.
        parts = parts[:request_at] + parts[response_at:] + parts[request_at:response_at]
    return Group(*parts)


def opens_on_diff(conn: Connection, reference: Connection | None) -> bool:
    """A refused or credential-less upgrade opens on the diff (when there is a reference
    to compare with)."""
    if reference is None:
        return False
    hs = conn.handshake
    refused = conn.refused or (hs.status is not None and hs.status != 101)
    return refused or not credentials_sent(hs)


class ReferencePicker(ModalScreen[str | None]):
    """The connections the inspected one can be compared with, best first."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape",
            "dismiss",
            "Cancel",
            id="reference.cancel",
            tooltip="Keep the current reference",
        ),
    ]

    LIMIT = 500

    def __init__(
        self,
        conn: Connection,
        candidates: list[Connection],
        current: str | None,
        tz: _dt.tzinfo | None,
    ) -> None:
        super().__init__()
        self.conn = conn
        self.candidates = candidates[: self.LIMIT]
        self.current = current
        self.tz = tz

    def _label(self, c: Connection) -> Text:
        hs = c.handshake
        text = Text()
        text.append(f"{conn_tag(c.id):>6} ", "bold")
        status = str(hs.status) if hs.status is not None else "…"
        text.append(f"{status:>3} ", "green" if hs.status == 101 else "red")
        text.append(f"{fmt_time(hs.ts, self.tz)} ")
        text.append(_t(hs.path or "/"))
        text.append("  ")
        text.append(_t(hs.client, "dim"))
        if c.id == self.current:
            text.append("  (current)", "bold")
        return text

    def compose(self) -> ComposeResult:
        with Vertical(id="reference-dialog"):
            yield OptionList(
                *(Option(self._label(c), id=c.id) for c in self.candidates),
                id="reference-options",
            )

    def on_mount(self) -> None:
        dialog = self.query_one("#reference-dialog")
        dialog.border_title = f"Compare {conn_tag(self.conn.id)} with"
        dialog.border_subtitle = "enter choose · esc cancel"
        options = self.query_one("#reference-options", OptionList)
        if self.current is not None:
            for i, c in enumerate(self.candidates):
                if c.id == self.current:
                    options.highlighted = i
                    break
        options.focus()

    @on(OptionList.OptionSelected, "#reference-options")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    async def action_dismiss(self, result: str | None = None) -> None:
        self.dismiss(result)


class HandshakeScreen(ModalScreen[None]):
    """The diff against a reference, and the full handshake: request line, headers in
    order, cookies, query, negotiation, response and flags."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape,h",
            "dismiss",
            "Close",
            id="handshake.close",
            tooltip="Close the handshake inspector",
        ),
        Binding(
            "d",
            "toggle_view",
            "Diff/full",
            id="handshake.toggle_view",
            tooltip="Switch between the diff against the reference and the full handshake",
        ),
        Binding(
            "r",
            "choose_reference",
            "Reference",
            id="handshake.reference",
            tooltip="Compare with another connection (default: the latest accepted upgrade "
            "of the same endpoint)",
        ),
        Binding(
            "s",
            "toggle_secrets",
            "Secrets",
            id="handshake.secrets",
            tooltip="Show secret values (cookies, tokens) in full instead of a fingerprint",
        ),
    ]

    def __init__(
        self,
        state: ViewState,
        conn: Connection,
        *,
        reference: str | None = None,
        view: View | None = None,
    ) -> None:
        super().__init__()
        self.state = state
        self.conn = conn
        self.tz = state.tz
        conns = state.session.connections
        self.automatic = reference is None
        self.reference: Connection | None = (
            conns.get(reference) if reference is not None else reference_for(conn, conns.values())
        )
        self.diff: HandshakeDiff | None = (
            diff_connections(conn, self.reference) if self.reference is not None else None
        )
        self.view: View = view or ("diff" if opens_on_diff(conn, self.reference) else "full")
        self.show_secrets = False

    def compose(self) -> ComposeResult:
        with Vertical(id="handshake-dialog"), VerticalScroll(id="handshake-body"):
            yield Static(self._renderable(), id="handshake-content")

    def _renderable(self) -> RenderableType:
        if self.view == "diff":
            return diff_renderable(
                self.conn,
                self.reference,
                self.diff,
                self.tz,
                show_secrets=self.show_secrets,
                automatic=self.automatic,
            )
        return handshake_renderable(
            self.conn, self.tz, show_secrets=self.show_secrets, diff=self.diff
        )

    def _titles(self) -> None:
        dialog = self.query_one("#handshake-dialog")
        title = f"Handshake {conn_tag(self.conn.id)}"
        if self.view == "diff":
            ref = conn_tag(self.reference.id) if self.reference is not None else "nothing"
            title += f" · diff against {ref}"
        if self.show_secrets:
            title += " · SECRETS SHOWN"
        dialog.border_title = title
        other = "full" if self.view == "diff" else "diff"
        secrets = "hide" if self.show_secrets else "show"
        dialog.border_subtitle = f"d {other} · r reference · s {secrets} secrets · esc close"

    def _show(self) -> None:
        self.query_one("#handshake-content", Static).update(self._renderable())
        self._titles()

    def on_mount(self) -> None:
        self._titles()
        self._fit()
        self.query_one("#handshake-body").focus()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """On a small terminal (80x24) the inspector takes the whole screen."""
        w, h = self.app.size
        self.query_one("#handshake-dialog").set_class(w < 100 or h < 30, "-compact")

    def action_toggle_view(self) -> None:
        self.view = "full" if self.view == "diff" else "diff"
        self._show()
        self.query_one("#handshake-body", VerticalScroll).scroll_home(animate=False)

    def action_toggle_secrets(self) -> None:
        self.show_secrets = not self.show_secrets
        self._show()

    def action_choose_reference(self) -> None:
        candidates = reference_candidates(self.conn, self.state.session.connections.values())
        if not candidates:
            self.notify(
                "No other connection to compare with.",
                title="Reference",
                severity="warning",
                markup=False,
            )
            return
        current = self.reference.id if self.reference is not None else None
        self.app.push_screen(
            ReferencePicker(self.conn, candidates, current, self.tz), self.set_reference
        )

    def set_reference(self, conn_id: str | None) -> None:
        """Compare with connection ``conn_id`` (None: keep the current reference)."""
        if conn_id is None:
            return
        ref = self.state.session.connections.get(conn_id)
        if ref is None or ref.id == self.conn.id:
            return
        self.reference = ref
        self.automatic = False
        self.diff = diff_connections(self.conn, ref)
        self.view = "diff"
        self._show()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
