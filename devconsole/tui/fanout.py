"""The fan-out view (``o``): where one backplane publication went.

A proxy run with ``--backplane`` records each publication on the app's Redis pub/sub
channels; ``analysis.fanout.FanoutTracer`` matches it with the server-to-client frames
that carried it, on every connection of every instance. This screen shows one trace:
the publication, how many connections received it and on which instances, the delay
from publication to each delivery (p50, p95, max, per instance too), each delivery, and
the connections that **missed** it (they received the previous publication on that
channel, were still open, and did not receive this one). Opened on a publication, or on
a frame that carried one. ``[``/``]`` step through the publications, ``Enter`` on a
delivery (or a missed connection) goes to it in the stream.

It is recomputed on the app's redraw timer (``tick``): deliveries arrive after the
publication, and a connection counts as missed only after a while.
"""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from devconsole.analysis.fanout import PublicationTrace, percentile
from devconsole.decoders import preview, safe_text
from devconsole.model import split_conn
from devconsole.text import conn_tag, fmt_duration, fmt_time
from devconsole.tui.fmt import STATE_STYLES
from devconsole.tui.state import ViewState

MIN_INTERVAL = 0.5  # seconds between two recomputations


class FanoutScreen(ModalScreen[tuple[str, int] | None]):
    """One publication's fan-out. Dismisses with ``("seq", N)`` (go to that frame) or
    ``("conn", ID)`` (show that connection), or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,o", "close", "Close", id="fanout.close", tooltip="Close the fan-out view"),
        Binding(
            "right_square_bracket",
            "step(1)",
            "Next publication",
            id="fanout.next",
            tooltip="The fan-out of the next publication",
        ),
        Binding(
            "left_square_bracket",
            "step(-1)",
            "Previous publication",
            id="fanout.previous",
            tooltip="The fan-out of the previous publication",
        ),
    ]

    def __init__(self, state: ViewState, trace: PublicationTrace) -> None:
        super().__init__()
        self.state = state
        self.trace = trace
        self._last = -1e9
        self._rows: list[tuple[str, int | str]] = []
        self._summary = Static(id="fanout-summary")
        self._list = OptionList(id="fanout-rows")

    def compose(self) -> ComposeResult:
        with Vertical(id="fanout-dialog"):
            yield self._summary
            yield self._list

    def on_mount(self) -> None:
        dialog = self.query_one("#fanout-dialog")
        dialog.border_title = "Fan-out"
        dialog.border_subtitle = "enter go to · [ ] publication · esc close"
        self._list.focus()
        self.refresh_trace(force=True)

    # ---------------------------------------------------------------- data

    def tick(self) -> None:
        self.refresh_trace()

    def refresh_trace(self, force: bool = False) -> None:
        if not self.is_attached:
            return
        now = self.state.clock()
        if not force and now - self._last < MIN_INTERVAL:
            return
        self._last = now
        self._summary.update(self.summary(self.state.wall_clock()))
        self._fill(self.state.wall_clock())

    def summary(self, now: float) -> RenderableType:
        tr = self.trace
        live = self.state.live
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append("publication ", "bold")
        head.append(f"#{tr.seq}", "bold cyan")
        head.append(" on ")
        head.append(safe_text(tr.channel), "bold")
        head.append(f"  {fmt_time(tr.ts, self.state.tz)}", "dim")
        head.append(f"  {tr.size:,} B", "dim")
        if tr.copies:
            head.append(f"  (recorded {len(tr.copies) + 1}×)", "dim")
        item = self.state.session.get(tr.seq)
        body = Text(no_wrap=True, overflow="ellipsis")
        if item is not None:
            body.append(preview(item, 200))
        missed = live.fanout.missed(tr, now)
        line = Text()
        line.append(f"received by {tr.receivers} connection{'s' if tr.receivers != 1 else ''}")
        insts = [i for i in tr.instances if i]
        if insts:
            line.append(" on " + safe_text(", ".join(insts)))
        if tr.receivers:
            line.append(
                f" · delay p50 {fmt_duration(tr.delay_p50)}  p95 {fmt_duration(tr.delay_p95)}"
                f"  max {fmt_duration(tr.delay_max)}"
            )
        gone = Text()
        if missed:
            gone.append(f"{len(missed)} missed", "bold red")
            gone.append(": they received the previous publication on this channel", "dim")
        elif tr.prev is None:
            gone.append("missed: cannot tell (the first publication on this channel)", "dim")
        else:
            gone.append("none missed", "green")
        width = max(20, self.size.width - 4)  # one line each (the dialog's padding)
        head.truncate(width, overflow="ellipsis")
        body.truncate(width, overflow="ellipsis")
        parts: list[RenderableType] = [head, body, line, gone]
        per = self._per_instance()
        if len(per) > 1:
            table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 2))
            for col in ("instance", "deliveries", "p50", "p95", "max"):
                table.add_column(col, justify="left" if col == "instance" else "right")
            for name, delays in per.items():
                table.add_row(
                    Text(safe_text(name or "proxy")),
                    str(len(delays)),
                    fmt_duration(percentile(delays, 0.5)),
                    fmt_duration(percentile(delays, 0.95)),
                    fmt_duration(max(delays)),
                )
            parts.append(table)
        return Group(*parts)

    def _per_instance(self) -> dict[str, list[float]]:
        per: dict[str, list[float]] = {}
        for d in self.trace.deliveries.values():
            per.setdefault(d.instance, []).append(d.delay)
        return dict(sorted(per.items()))

    def _fill(self, now: float) -> None:
        tr = self.trace
        conns = self.state.session.connections
        rows: list[tuple[str, int | str]] = []
        options: list[Option] = []
        for d in sorted(tr.deliveries.values(), key=lambda d: (d.delay, d.conn)):
            t = Text(no_wrap=True, overflow="ellipsis")
            t.append("✓ ", "green")
            t.append(f"{conn_tag(d.conn):<12} ", "bold")
            t.append(f"{fmt_duration(d.delay):>8}", "bold" if d.delay >= 1.0 else "")
            t.append(f"  frame #{d.seq}", "dim")
            c = conns.get(d.conn)
            if c is not None:
                t.append("  " + safe_text(c.path or "/"))
            rows.append(("seq", d.seq))
            options.append(Option(t))
        for conn in live_missed(self.state, tr, now):
            t = Text(no_wrap=True, overflow="ellipsis")
            t.append("✗ ", "bold red")
            t.append(f"{conn_tag(conn):<12} ", "bold")
            t.append(f"{'missed':>8}", "bold red")
            c = conns.get(conn)
            if c is not None:
                t.append(f"  {c.state}", STATE_STYLES.get(c.state, ""))
                t.append("  " + safe_text(c.path or "/"))
            inst, _ = split_conn(conn)
            if inst:
                ie = self.state.session.instances.get(inst)
                if ie is not None and ie.state != "up":
                    t.append(f"  instance {ie.state}", "bold red")
            rows.append(("conn", conn))
            options.append(Option(t))
        if [r for r in rows] == self._rows:
            return
        highlighted = self._list.highlighted
        self._rows = rows
        self._list.clear_options()
        if options:
            self._list.add_options(options)
            self._list.highlighted = min(highlighted or 0, len(options) - 1)
        else:
            self._list.add_option(Option(Text("no delivery seen", style="dim"), disabled=True))

    # ---------------------------------------------------------------- actions

    @on(OptionList.OptionSelected, "#fanout-rows")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        i = event.option_index
        if 0 <= i < len(self._rows):
            kind, value = self._rows[i]
            self.dismiss((kind, value) if kind == "conn" else ("seq", int(value)))  # type: ignore[arg-type]

    def action_step(self, step: int) -> None:
        pubs = list(self.state.live.fanout.publications)
        if not pubs:
            return
        try:
            i = pubs.index(self.trace)
        except ValueError:
            i = len(pubs) - 1 if step < 0 else -1
        j = i + step
        if not 0 <= j < len(pubs):
            self.app.bell()
            return
        self.trace = pubs[j]
        self._rows = []
        self.refresh_trace(force=True)

    def action_close(self) -> None:
        self.dismiss(None)


def live_missed(state: ViewState, tr: PublicationTrace, now: float) -> list[str]:
    return state.live.fanout.missed(tr, now)
