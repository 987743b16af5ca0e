"""The backoff timeline of one endpoint: how its clients came back after each end.

``timeline_lines()`` is a pure function from an ``EndpointReport`` (reconnects and the
judged backoff, ``devconsole.analysis.backoff``) and the Session's connections to Rich
``Text`` lines; ``BackoffTimeline`` is the small Line API widget showing them.

Per lineage (one browser tab, one app instance) the attempts are drawn in order::

    #4 ━━━━━━━━━━━━✕1012 ╌0.5s╌╌ #5 ✗503 ╌╌1.1s╌╌ #6 ━━━━━━━━━━━▶

A connection is a bar whose length grows with the logarithm of its lifetime, ended by
how it ended (``✕`` killed by devconsole, ``┤`` closing handshake, ``!`` no close frame,
``▶`` still open) and its close code; a refused upgrade is ``✗`` and its HTTP status.
Between them the reconnect delay is labelled in seconds; the dashes around the label
grow with the logarithm of the delay, so an exponential backoff reads as gaps growing
by a constant step. Nothing here is to scale; no payload is ever shown, and the few
strings that come from the traffic (path, origin, user agent, client address) are
escaped with ``safe_text`` and put in ``Text`` objects, never parsed as markup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from devconsole.analysis.backoff import STORM_BELOW, Backoff, EndpointReport, LineageReport
from devconsole.decoders import safe_text
from devconsole.model import Connection, ConnState
from devconsole.text import conn_tag, fmt_delay

INDENT = "   "
MAX_CONNS = 300  # per lineage, the most recent
MAX_LINEAGES = 4
MAX_ROWS = 4  # wrapped rows per lineage; older attempts are summarised

STYLE_NUMBER = "bold cyan"
STYLE_BAR = "green"
STYLE_BAR_KILLED = "magenta"
STYLE_BAR_HALF_OPEN = "yellow"
STYLE_BAR_LIVE = "bold green"
STYLE_GAP = "bright_black"
STYLE_DELAY = "bold yellow"
STYLE_DELAY_STORM = "bold red"
STYLE_KILL = "bold magenta"
STYLE_REFUSED = "bold red"

LEGEND = (
    ("━", STYLE_BAR, " connection (longer: lived longer)  "),
    ("╌1.2s╌", STYLE_DELAY, " reconnect delay  "),
    ("✕", STYLE_KILL, " killed  "),
    ("┤", "bold", " closed  "),
    ("!", "bold red", " no close frame  "),
    ("✗", STYLE_REFUSED, " refused  "),
    ("▶", STYLE_BAR_LIVE, " open"),
)


def pattern_text(b: Backoff) -> Text:
    """The judged backoff pattern, in words."""
    t = Text()
    jitter = "jitter" if b.jitter else "no jitter"
    if b.pattern == "exponential":
        t.append("exponential", "bold green")
        if b.factor:
            t.append(f" ×{b.factor:.2f}", "bold green")
        t.append(f", {jitter}")
        if b.cap is not None:
            t.append(f", cap {fmt_delay(b.cap)}")
    elif b.pattern == "linear":
        t.append("linear", "bold green")
        if b.step is not None:
            t.append(f" +{fmt_delay(b.step)} per attempt", "bold green")
        t.append(f", {jitter}")
    elif b.pattern == "fixed":
        t.append("fixed interval", "bold yellow")
        if b.median is not None:
            t.append(f" ~{fmt_delay(b.median)}", "bold yellow")
        t.append(f", {jitter}, no growth")
    elif b.pattern == "storm":
        t.append("reconnect STORM", "bold white on red")
        if b.min is not None:
            t.append(f": retries after {fmt_delay(b.min)}, no backoff", "bold red")
    elif b.pattern == "irregular":
        t.append("irregular", "bold yellow")
        if b.min is not None and b.max is not None:
            t.append(f" ({fmt_delay(b.min)} to {fmt_delay(b.max)})")
    elif b.pattern == "single":
        t.append("one reconnect: too few to judge", "dim")
    elif b.pattern == "mixed":
        t.append("several clients, each judged below", "bold")
    else:
        t.append("no reconnect yet", "dim")
    if b.runs > 1:
        t.append(f" · {b.runs} runs (the client reset its backoff)", "dim")
    return t


def lineage_label(lin: LineageReport) -> Text:
    """The client's short key (agent and cookie names, ``analysis.clients``) and its
    address; cookie values are never shown."""
    parts = lin.key.split("\x1f")
    t = Text()
    t.append(safe_text(lin.label or "?"), "bold")
    if len(parts) == 3 and parts[2]:
        t.append(" · ")
        t.append(safe_text(parts[2]), "dim")
    return t


def refused_text(lin: LineageReport) -> Text:
    """A client refused every time: its retries, not a backoff."""
    t = Text()
    statuses = ", ".join(f"{st}" for st in lin.statuses)
    t.append(f"never connected: refused ×{lin.refused} ({statuses})", "bold red")
    if lin.delays:
        mid = sorted(lin.delays)[len(lin.delays) // 2]
        t.append(f", retries every ~{fmt_delay(mid)}", "red")
    return t


def bar_width(lifetime: float) -> int:
    return max(1, min(24, round(1 + 3 * math.log2(1 + max(lifetime, 0.0)))))


def gap_width(delay: float) -> int:
    return max(1, min(8, round(math.log2(max(delay, 0.01) / 0.05))))


def conn_segment(c: Connection, now: float) -> Text:
    t = Text(no_wrap=True, end="")
    t.append(conn_tag(c.id), STYLE_NUMBER)
    hs = c.handshake
    if c.refused:
        t.append(" ✗", STYLE_REFUSED)
        t.append(str(hs.status) if hs.status is not None else "err", STYLE_REFUSED)
        return t
    end = c.ts_end
    lifetime = (end if end is not None else now) - c.ts_start
    live = end is None and c.state not in (ConnState.CLOSED, ConnState.KILLED)
    if c.killed:
        style = STYLE_BAR_KILLED
    elif c.half_open or c.state == ConnState.HALF_OPEN:
        style = STYLE_BAR_HALF_OPEN
    elif live:
        style = STYLE_BAR_LIVE
    else:
        style = STYLE_BAR
    t.append(" ")
    t.append("━" * bar_width(lifetime), style)
    if c.killed:
        t.append("✕", STYLE_KILL)
    elif live:
        t.append("▶", STYLE_BAR_LIVE)
    elif c.close_code is not None or c.clean:
        t.append("┤", "bold")
    else:
        t.append("!", "bold red")
    if c.close_code is not None:
        t.append(str(c.close_code), "dim")
    if c.half_open and live:
        t.append(" half-open", STYLE_BAR_HALF_OPEN)
    return t


def gap_segment(delay: float | None) -> Text:
    """`` ╌0.3s╌╌ `` before a reconnect; `` · `` between attempts that are not one."""
    t = Text(no_wrap=True, end="")
    if delay is None:
        t.append(" · ", STYLE_GAP)
        return t
    k = gap_width(delay)
    left = k // 2
    t.append(" " + "╌" * left, STYLE_GAP)
    t.append(fmt_delay(delay), STYLE_DELAY_STORM if delay < STORM_BELOW else STYLE_DELAY)
    t.append("╌" * (k - left) + " ", STYLE_GAP)
    return t


def _wrap(segments: Sequence[Text], avail: int) -> list[list[Text]]:
    rows: list[list[Text]] = [[]]
    used = 0
    for seg in segments:
        n = seg.cell_len
        if rows[-1] and used + n > avail:
            rows.append([])
            used = 0
        rows[-1].append(seg)
        used += n
    return [r for r in rows if r]


def lineage_rows(
    lin: LineageReport,
    conns: Mapping[str, Connection],
    now: float,
    width: int,
    max_rows: int = MAX_ROWS,
) -> list[Text]:
    """The attempts of one lineage, wrapped to ``width`` in at most ``max_rows`` rows: the
    newest are kept, the oldest left out (``… 17 earlier``, at the start of the first row)."""
    by_conn = {r.conn: r.delay for r in lin.reconnects}
    ids = lin.conn_ids[-MAX_CONNS:]
    skipped = len(lin.conn_ids) - len(ids)
    segments: list[Text] = []
    for cid in ids:
        c = conns.get(cid)
        if c is None:
            skipped += 1
            continue
        seg = Text(no_wrap=True, end="")
        if segments:
            seg.append_text(gap_segment(by_conn.get(cid)))
        seg.append_text(conn_segment(c, now))
        segments.append(seg)
    avail = max(10, width - len(INDENT))
    rows = _wrap(segments, avail)
    if len(rows) > max_rows or skipped:
        kept = segments[sum(len(r) for r in rows[: max(0, len(rows) - max_rows)]) :]
        while True:
            left_out = skipped + len(segments) - len(kept)
            head = Text(f"… {left_out} earlier ", style="dim", no_wrap=True, end="")
            rows = _wrap([head, *kept], avail)
            if len(rows) <= max_rows or len(kept) <= 1:
                break
            kept = kept[1:]
    out: list[Text] = []
    for row in rows[-max_rows:]:
        line = Text(INDENT, no_wrap=True, end="")
        for seg in row:
            line.append_text(seg)
        line.truncate(width, overflow="ellipsis")
        out.append(line)
    return out


def timeline_lines(
    ep: EndpointReport | None,
    conns: Mapping[str, Connection],
    now: float,
    width: int,
    *,
    max_lineages: int = MAX_LINEAGES,
    max_rows: int = MAX_ROWS,
    max_lines: int | None = None,
) -> list[Text]:
    """Every line of the timeline of ``ep`` for a widget ``width`` cells wide. With
    ``max_lines``, fewer rows per client, then fewer clients, then no legend: the newest
    attempts of the busiest clients are what stays."""
    if max_lines is None:
        return _timeline(ep, conns, now, width, max_lineages, max_rows, True)
    # every client first (with the legend, then without it), then fewer clients
    tries = [(max_lineages, rows, True) for rows in range(max_rows, 1, -1)]
    tries += [(max_lineages, rows, False) for rows in range(max_rows, 0, -1)]
    tries += [(n, rows, False) for n in range(max_lineages - 1, 0, -1) for rows in (2, 1)]
    lines: list[Text] = []
    for lineages, rows, legend in tries:
        lines = _timeline(ep, conns, now, width, lineages, rows, legend)
        if len(lines) <= max_lines:
            return lines
    return lines[:max_lines]


def _timeline(
    ep: EndpointReport | None,
    conns: Mapping[str, Connection],
    now: float,
    width: int,
    max_lineages: int,
    max_rows: int,
    legend: bool,
) -> list[Text]:
    width = max(20, width)
    if ep is None:
        return [Text("No endpoint yet: nothing has connected.", style="dim")]
    head = Text(no_wrap=True, end="")
    head.append("Backoff timeline ", "bold")
    head.append(safe_text(ep.path), "bold")
    if ep.origin:
        head.append("  origin ", "dim")
        head.append(safe_text(ep.origin))
    head.append(
        f"  {ep.connections} attempt(s)"
        + (f", {ep.refused} refused" if ep.refused else "")
        + f", {len(ep.reconnect_delays)} reconnect(s)",
        "dim",
    )
    judged = Text("judged: ", style="dim", no_wrap=True, end="")
    judged.append_text(pattern_text(ep.backoff))
    lines = [head, judged]
    lineages: Sequence[LineageReport] = sorted(
        ep.lineages,
        key=lambda lin: (len(lin.reconnects), lin.reconnects[-1].ts if lin.reconnects else 0.0),
        reverse=True,
    )
    for lin in lineages[:max_lineages]:
        label = Text("client ", style="dim", no_wrap=True, end="")
        label.append_text(lineage_label(lin))
        label.append(f"  {len(lin.conn_ids)} attempt(s)", "dim")
        if lin.never_connected and len(lin.conn_ids) > 1:
            label.append("  ")
            label.append_text(refused_text(lin))
        elif len(ep.lineages) > 1:
            label.append("  ")
            label.append_text(pattern_text(lin.backoff))
        lines.append(label)
        lines.extend(lineage_rows(lin, conns, now, width, max_rows))
    if len(lineages) > max_lineages:
        more = len(lineages) - max_lineages
        lines.append(Text(f"+ {more} more client(s) with fewer reconnects", style="dim"))
    if legend:
        key = Text(no_wrap=True, end="")
        for sym, style, words in LEGEND:
            key.append(sym, style)
            key.append(words, "dim")
        lines.append(key)
    for line in lines:
        line.no_wrap = True
        line.truncate(width, overflow="ellipsis")
    return lines


class BackoffTimeline(Widget):
    """Shows ``timeline_lines()`` of one endpoint; call ``show()`` with new data."""

    DEFAULT_CSS = """
    BackoffTimeline {
        height: auto;
        width: 1fr;
    }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = set()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._args: tuple[
            EndpointReport | None,
            Mapping[str, Connection],
            float,
        ] = (None, {}, 0.0)
        self._lines: list[Text] = []
        self._width = -1
        self._budget = 12

    def show(
        self,
        ep: EndpointReport | None,
        conns: Mapping[str, Connection],
        now: float,
    ) -> None:
        self._args = (ep, conns, now)
        self._width = -1
        old = len(self._lines)
        self._compute(self.size.width or 80)
        if len(self._lines) != old:
            self.refresh(layout=True)
        else:
            self.refresh()

    def _compute(self, width: int, height: int | None = None) -> None:
        # half the screen, less the pane's top padding and its bottom rule
        budget = self._budget if height is None else max(4, height // 2 - 2)
        if width == self._width and budget == self._budget:
            return
        self._width = width
        self._budget = budget
        ep, conns, now = self._args
        self._lines = timeline_lines(ep, conns, now, width, max_lines=budget)

    @property
    def lines(self) -> list[Text]:
        return self._lines

    @property
    def plain(self) -> str:
        return "\n".join(line.plain for line in self._lines)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        # At most half the screen: an 80x24 terminal keeps the newest attempts in sight
        # (and room for the checklist) rather than the oldest.
        self._compute(width, viewport.height)
        return max(1, len(self._lines))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        self._compute(width)
        base = self.rich_style
        if y >= len(self._lines):
            return Strip.blank(width, base)
        text = self._lines[y].copy()
        text.stylize_before(Style.from_color(base.color, base.bgcolor))
        segments = list(text.render(self.app.console))
        return Strip(segments, text.cell_len).crop_extend(0, width, base)
