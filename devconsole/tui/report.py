"""The readiness report screen (``r``): the checklist of every endpoint, the backoff
timeline of the selected endpoint and the heartbeat of one of its connections.

Everything is computed by ``devconsole.analysis`` (``analyze_endpoints``,
``build_report`` and the view's ``HeartbeatMonitor``, which has seen every event since the
viewer started); this module only lays it out. The screen recomputes on the app's redraw
timer (``tick``), at most twice a second of the view's clock (less often when a
recomputation is slow), because the "seconds since" figures move even when no event
arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from devconsole.analysis.backoff import EndpointReport, analyze_endpoints, default_endpoint_key
from devconsole.analysis.fanout import is_backplane
from devconsole.analysis.heartbeat import HeartbeatReport, PingStats, ProtocolHeartbeat
from devconsole.analysis.readiness import build_report
from devconsole.decoders import safe_text
from devconsole.model import Connection, ConnState
from devconsole.text import conn_tag, fmt_duration
from devconsole.tui.decoding import DECODE_BUDGET
from devconsole.tui.fmt import STATE_STYLES
from devconsole.tui.state import ViewState
from devconsole.tui.timeline import BackoffTimeline

MIN_INTERVAL = 0.5  # seconds between two recomputations
MAX_METHODS = 30  # rows of the latency table
SLOW_FACTOR = 10  # ... or this many times what the last one took

CHECK_NAMES = {
    "heartbeat": "heartbeat",
    "pongs": "pongs",
    "reconnect": "reconnect backoff",
    "wss": "wss://",
    "auth": "authentication",
    "compression": "compression",
    "largest_message": "largest message",
    "close_codes": "close codes",
    "refused_upgrades": "refused upgrades",
    "backplane": "backplane",
    "replies": "replies",
}
BADGES: dict[bool | None, tuple[str, str]] = {
    True: (" ✓ ok ", "bold black on green"),
    False: (" ✗ FAIL ", "bold white on red"),
    None: (" ? -- ", "bold black on grey62"),
}

EndpointId = tuple[str, str | None]


def _t(value: object, style: str = "") -> Text:
    """Text from the traffic (paths, origins, signatures), escaped, never markup."""
    return Text(safe_text(str(value)), style=style)


def checklist_renderable(ep: Mapping[str, Any], selected: bool = False) -> RenderableType:
    """One endpoint of ``build_report()``: a title line and a row per checklist item."""
    title = Text(no_wrap=True, overflow="ellipsis")
    title.append("▶ " if selected else "  ", "bold")
    title.append_text(_t(ep.get("path", "/"), "bold underline" if selected else "bold"))
    if ep.get("origin"):
        title.append("  origin ", "dim")
        title.append_text(_t(ep["origin"]))
    title.append(f"  {ep.get('connections', 0)} connection(s)", "dim")
    checklist: Mapping[str, Mapping[str, Any]] = ep.get("checklist", {})
    counts = {True: 0, False: 0, None: 0}
    for item in checklist.values():
        counts[item.get("ok")] = counts.get(item.get("ok"), 0) + 1
    title.append(f"   {counts[True]} ok", "green")
    title.append(f" · {counts[False]} fail", "bold red" if counts[False] else "dim")
    title.append(f" · {counts[None]} unknown", "dim")
    grid = Table.grid(padding=(0, 1), pad_edge=True)
    grid.add_column(no_wrap=True, min_width=8)
    grid.add_column(no_wrap=True, min_width=17, style="bold")
    grid.add_column(ratio=1)
    for name, item in checklist.items():
        label, style = BADGES.get(item.get("ok"), BADGES[None])
        grid.add_row(
            Text(label, style=style),
            Text(CHECK_NAMES.get(name, name.replace("_", " "))),
            _t(item.get("detail", "")),
        )
    return Group(title, grid)


def _ping_line(p: PingStats, who: str) -> Text:
    t = Text()
    if not p.count:
        t.append(f"{who}: no pings", "dim")
        return t
    t.append(f"{who} pings", "bold")
    t.append(f" {p.count}×")
    if p.interval_mean is not None:
        t.append(f" every {fmt_duration(p.interval_mean)}")
        if p.interval_jitter is not None:
            t.append(f" ± {fmt_duration(p.interval_jitter)}")
    if p.rtt_count:
        t.append(f", pong RTT p50 {fmt_duration(p.rtt_p50)}")
        t.append(f" (mean {fmt_duration(p.rtt_mean)}, max {fmt_duration(p.rtt_max)})", "dim")
    t.append(", ")
    t.append(
        f"{p.unanswered} without pong",
        "bold red" if p.unanswered else "green",
    )
    if p.pending:
        t.append(f", {p.pending} waiting", "yellow")
    if p.last_ago is not None:
        t.append(f", last {fmt_duration(p.last_ago)} ago", "dim")
    return t


def _protocol_beat_line(p: ProtocolHeartbeat) -> Text:
    """``socket.io ping from server 12× every 25.00 s (negotiated 25.00 s, timeout
    20.00 s), pong RTT p50 2 ms``."""
    t = Text()
    t.append(f"{safe_text(p.protocol)} {p.kind} ", "bold")
    t.append(f"from {p.side} {p.count}×")
    if p.interval_p50 is not None:
        t.append(f" every {fmt_duration(p.interval_p50)}")
        if p.interval_jitter is not None:
            t.append(f" ± {fmt_duration(p.interval_jitter)}")
    if p.negotiated_interval is not None:
        nego = f" (negotiated {fmt_duration(p.negotiated_interval)}"
        if p.negotiated_timeout is not None:
            nego += f", timeout {fmt_duration(p.negotiated_timeout)}"
        t.append(nego + ")", "dim")
    if p.rtt_count:
        t.append(f", answered in {fmt_duration(p.rtt_p50)} (p50)")
    if p.kind == "ping":
        t.append(", ")
        t.append(f"{p.unanswered} unanswered", "bold red" if p.unanswered else "green")
    if p.late:
        t.append(f", {p.late} late", "bold red")
    if p.last_ago is not None:
        t.append(f", last {fmt_duration(p.last_ago)} ago", "dim")
    return t


def latency_renderable(ep: Mapping[str, Any], skipped: int = 0) -> RenderableType | None:
    """Request -> first answer per method or event (count, p50, p95, max), as ``devconsole
    report`` has it; None where no protocol pairs requests."""
    lat = ep.get("latency") or {}
    methods = lat.get("methods") or []
    if not methods:
        return None
    title = Text("Latency", style="bold")
    title.append("  request → first answer, per method or event", "dim")
    protos = ep.get("protocols") or []
    if protos:
        title.append("  (" + safe_text(", ".join(protos)) + ")", "dim")
    table = Table(box=None, pad_edge=True, show_edge=False, padding=(0, 1))
    table.add_column("method", no_wrap=True, overflow="ellipsis", max_width=40)
    for col in ("count", "p50", "p95", "max"):
        table.add_column(col, justify="right", no_wrap=True)
    for m in methods[:MAX_METHODS]:
        table.add_row(
            _t(m.get("method", "")),
            f"{m.get('count', 0):,}",
            fmt_duration(m.get("p50")),
            fmt_duration(m.get("p95")),
            fmt_duration(m.get("max")),
        )
    parts: list[RenderableType] = [title, table]
    if len(methods) > MAX_METHODS:
        parts.append(Text(f"  … {len(methods) - MAX_METHODS} more", style="dim"))
    if skipped:
        parts.append(
            Text(
                f"  sampled: {skipped:,} messages of a flood were not decoded as they "
                f"arrived (this screen decodes {DECODE_BUDGET:,} a second); devconsole "
                "report decodes them all",
                style="yellow",
            )
        )
    return Group(*parts)


def heartbeat_renderable(conn: Connection | None, rep: HeartbeatReport | None) -> RenderableType:
    """The heartbeat of one connection, as seen by the app's monitor."""
    title = Text("Heartbeat", style="bold")
    if conn is None or rep is None:
        title.append("  no accepted connection on this endpoint", "dim")
        return title
    title.append(f"  {conn_tag(conn.id)} ", "bold cyan")
    title.append_text(_t(conn.path or "/"))
    title.append(" ")
    title.append(f" {conn.state} ", STATE_STYLES.get(conn.state, "bold"))
    title.append("   [ ] other connection of the endpoint", "dim")
    grid = Table.grid(padding=(0, 1), pad_edge=True)
    grid.add_column(no_wrap=True, min_width=17, style="bold")
    grid.add_column(ratio=1)
    pinger = {
        "none": "nobody sends protocol pings",
        "both": "both sides ping",
        "client": "the client pings",
        "server": "the server pings",
    }[rep.pinger]
    grid.add_row(Text("who pings"), Text(pinger, style="dim" if rep.pinger == "none" else ""))
    grid.add_row(Text("protocol pings"), _ping_line(rep.server_pings, "server"))
    grid.add_row(Text(""), _ping_line(rep.client_pings, "client"))
    unsolicited = rep.unsolicited_pongs_client + rep.unsolicited_pongs_server
    if unsolicited:
        grid.add_row(
            Text("unsolicited pongs"),
            Text(
                f"client {rep.unsolicited_pongs_client} · server {rep.unsolicited_pongs_server}"
                " (a one-way heartbeat)"
            ),
        )
    if rep.app_heartbeats:
        for i, a in enumerate(rep.app_heartbeats):
            line = Text()
            line.append(f"{a.side} sends ")
            line.append_text(_t(a.signature, "bold"))
            every = fmt_duration(a.interval_mean)
            line.append(f" {a.count}× every {every} ± {fmt_duration(a.interval_jitter)}")
            if a.reply is not None:
                line.append(", answered by ")
                line.append_text(_t(a.reply, "bold"))
                if a.rtt_p50 is not None:
                    line.append(f" in {fmt_duration(a.rtt_p50)} (p50)")
            if a.unanswered:
                line.append(f", {a.unanswered} unanswered", "bold red")
            if a.last_ago is not None:
                line.append(f", last {fmt_duration(a.last_ago)} ago", "dim")
            grid.add_row(Text("app heartbeat" if i == 0 else ""), line)
    else:
        grid.add_row(Text("app heartbeat"), Text("none recognised", style="dim"))
    for i, p in enumerate(b for b in rep.protocol if b.count):
        grid.add_row(Text("protocol heartbeat" if i == 0 else ""), _protocol_beat_line(p))
    if rep.half_open is not None:
        grid.add_row(Text("after half-open"), Text(rep.half_open.summary, style="bold"))
    # for an ended connection the monitor measures up to its end
    ago = " before it ended" if rep.ended else " ago"

    def since(seconds: float | None) -> str:
        return "never" if seconds is None else fmt_duration(seconds) + ago

    grid.add_row(
        Text("last frame"),
        Text(
            f"client → server {since(rep.since_last_client)}"
            f" · server → client {since(rep.since_last_server)}"
        ),
    )
    return Group(title, grid)


class ReportScreen(ModalScreen[None]):
    """Production readiness per endpoint, with the backoff timeline and the heartbeat."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape,r",
            "dismiss",
            "Close",
            id="report.close",
            tooltip="Close the readiness report",
        ),
        Binding(
            "tab,right",
            "next_endpoint",
            "Next endpoint",
            id="report.next_endpoint",
            tooltip="Show the timeline and checklist of the next endpoint",
        ),
        Binding(
            "shift+tab,left",
            "previous_endpoint",
            "Previous endpoint",
            id="report.previous_endpoint",
            tooltip="Show the previous endpoint",
        ),
        Binding(
            "right_square_bracket",
            "next_connection",
            "Next connection",
            id="report.next_connection",
            tooltip="Heartbeat of the next connection of this endpoint",
        ),
        Binding(
            "left_square_bracket",
            "previous_connection",
            "Previous connection",
            id="report.previous_connection",
            tooltip="Heartbeat of the previous connection of this endpoint",
        ),
    ]

    def __init__(self, state: ViewState, conn: str | None = None) -> None:
        super().__init__()
        self.state = state
        self.conn_id = conn  # the connection whose heartbeat is shown
        self.endpoint: EndpointId | None = None
        self.endpoints: list[EndpointReport] = []
        self.report: dict[str, Any] = {"endpoints": []}
        self.computations = 0
        self._last = -1e9
        self._interval = MIN_INTERVAL
        self._initial_conn = conn
        self._mounted = False
        # Kept, not queried: the redraw timer may tick while the screen is being mounted
        # or dismissed ("Redraw failed NoMatches: #report-content" on a first r at 80x24).
        self._tabs = Static(id="report-endpoints")
        self._timeline = BackoffTimeline(id="report-timeline")
        self._body = VerticalScroll(id="report-body")
        self._content = Static(id="report-content")

    def compose(self) -> ComposeResult:
        with Vertical(id="report-dialog"):
            yield self._tabs
            yield self._timeline
            with self._body:
                yield self._content

    def on_mount(self) -> None:
        dialog = self.query_one("#report-dialog")
        dialog.border_title = "Readiness report"
        dialog.border_subtitle = "tab/←→ endpoint · [ ] connection · ↑↓ scroll · esc close"
        self._body.focus()
        self._mounted = True
        self.refresh_report(force=True)

    def on_unmount(self) -> None:
        self._mounted = False

    # ---------------------------------------------------------------- data

    @property
    def selected_index(self) -> int:
        for i, ep in enumerate(self.endpoints):
            if (ep.path, ep.origin) == self.endpoint:
                return i
        return 0

    @property
    def selected_endpoint(self) -> EndpointReport | None:
        return self.endpoints[self.selected_index] if self.endpoints else None

    def tick(self) -> None:
        """From the app's redraw timer: recompute when due."""
        self.refresh_report()

    def refresh_report(self, force: bool = False) -> None:
        # the timer can fire between the push and the mount, and after the dismissal
        if not self._mounted or not self._content.is_attached:
            return
        clock = self.state.clock
        started = clock()
        if not force and started - self._last < self._interval:
            return
        session = self.state.session
        now = self.state.wall_clock()
        live = self.state.live
        # the backplane's pseudo-connections are not an endpoint of the app
        self.endpoints = analyze_endpoints(
            c for c in session.connections.values() if not is_backplane(c.handshake)
        )
        self.report = build_report(
            session,
            self.state.heartbeat,
            now,
            endpoints=self.endpoints,
            fanout=live.fanout,
            analysis=live.analysis,
        )
        if self.endpoint is None and self.endpoints:
            self.endpoint = self._initial_endpoint()
        if self.endpoint not in {(e.path, e.origin) for e in self.endpoints}:
            self.endpoint = (
                (self.endpoints[0].path, self.endpoints[0].origin) if self.endpoints else None
            )
        self._pick_conn()
        self._show(now)
        self.computations += 1
        self._last = clock()
        self._interval = max(MIN_INTERVAL, SLOW_FACTOR * (self._last - started))

    def _initial_endpoint(self) -> EndpointId | None:
        conn = self.state.session.connections.get(self._initial_conn or "")
        if conn is not None:
            return default_endpoint_key(conn)
        # Nothing selected: the endpoint with the most reconnects says most.
        best = max(self.endpoints, key=lambda e: len(e.reconnect_delays))
        return best.path, best.origin

    def _accepted(self, ep: EndpointReport | None) -> list[str]:
        if ep is None:
            return []
        conns = self.state.session.connections
        return [
            cid for cid in ep.conn_ids if cid in conns and conns[cid].state != ConnState.REFUSED
        ]

    def _pick_conn(self) -> None:
        ids = self._accepted(self.selected_endpoint)
        if self.conn_id not in ids:
            self.conn_id = ids[-1] if ids else None

    # ---------------------------------------------------------------- rendering

    def _show(self, now: float) -> None:
        session = self.state.session
        eps = self.report.get("endpoints", [])
        sel = self.selected_index
        tabs = Text(no_wrap=True, overflow="ellipsis")
        if not eps:
            tabs.append("No connection seen yet.", "dim")
        for i, ep in enumerate(eps):
            fails = sum(1 for it in ep.get("checklist", {}).values() if it.get("ok") is False)
            label = _t(ep.get("path", "/"))
            if i == sel:
                label.stylize("bold reverse")
            tabs.append(" ")
            tabs.append_text(label)
            if fails:
                tabs.append(f"✗{fails}", "bold red")
            tabs.append(" ")
        self._tabs.update(tabs)
        self._timeline.show(
            self.selected_endpoint,
            session.connections,
            now,
        )
        parts: list[RenderableType] = []
        if eps:
            parts.append(Text("Checklist", style="bold underline"))
            parts.append(checklist_renderable(eps[sel], selected=True))
            parts.append(Text(""))
            latency = latency_renderable(eps[sel], self.state.live.skipped)
            if latency is not None:
                parts.append(latency)
                parts.append(Text(""))
            conn = session.connections.get(self.conn_id or "")
            rep = self.state.heartbeat.report(conn.id, now) if conn is not None else None
            parts.append(heartbeat_renderable(conn, rep))
            others = [ep for i, ep in enumerate(eps) if i != sel]
            if others:
                parts.append(Text("\nOther endpoints", style="bold underline"))
                for ep in others:
                    parts.append(checklist_renderable(ep))
        self._content.update(Group(*parts))

    @property
    def timeline(self) -> BackoffTimeline:
        return self._timeline

    # ---------------------------------------------------------------- actions

    def _step_endpoint(self, step: int) -> None:
        if not self.endpoints:
            return
        ep = self.endpoints[(self.selected_index + step) % len(self.endpoints)]
        self.endpoint = (ep.path, ep.origin)
        self.refresh_report(force=True)
        self._body.scroll_home(animate=False)

    def action_next_endpoint(self) -> None:
        self._step_endpoint(+1)

    def action_previous_endpoint(self) -> None:
        self._step_endpoint(-1)

    def _step_conn(self, step: int) -> None:
        ids = self._accepted(self.selected_endpoint)
        if not ids:
            return
        i = ids.index(self.conn_id) if self.conn_id in ids else len(ids) - 1
        self.conn_id = ids[(i + step) % len(ids)]
        self.refresh_report(force=True)

    def action_next_connection(self) -> None:
        self._step_conn(+1)

    def action_previous_connection(self) -> None:
        self._step_conn(-1)

    async def action_dismiss(self, result: None = None) -> None:
        self._mounted = False
        self.dismiss(result)
