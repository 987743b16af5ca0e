"""The connections list: a Line API widget with a first "All connections" row.

Rows are rendered on demand from the Session's ``Connection`` objects (only the visible
ones), so a reconnect storm of thousands of connections costs nothing per tick. The rows
are rebuilt only when a connection appears, ends or is refused (checking the ones still
open each tick, not all of them). Consecutive refused attempts of one client (the
backoff analysis' lineage: User-Agent, cookies, address) share one row, ``#4–#49 ×40``;
each row shows the client's short key (``analysis.clients``) so clients can be told apart
without the address column.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from devconsole.analysis.backoff import default_lineage_key
from devconsole.analysis.clients import ClientLabels
from devconsole.analysis.fanout import is_backplane
from devconsole.decoders import safe_text
from devconsole.model import Connection, close_code_meaning, conn_instance
from devconsole.session import Session
from devconsole.text import conn_tag, fmt_bytes_short, fmt_count, fmt_rate
from devconsole.tui.fmt import STATE_STYLES
from devconsole.tui.held import HeldTracker

ALL = "*all*"  # the rate key of the merged row
BACKPLANE_LABEL = "backplane "  # before a backplane pseudo-connection's Redis and pattern
BACKPLANE_CLIENT = "redis pub/sub"


@dataclass(frozen=True, slots=True)
class Columns:
    """Cell widths of the columns (0: not shown). ``for_width`` gives the width to what
    tells connections apart: the path as long as the paths are, the client key below 200
    columns where the address does not fit, the close column the rest; counters, bytes
    and rate are shortened or left out on narrow screens."""

    marker: int = 2  # "▸ " on the cursor's row: seen without colours, and by tmux
    host: bool = True  # the server's host before the path (narrow: the path alone)
    number: int = 4
    state: int = 11
    path: int = 20
    key: int = 22  # the client's short key (agent and cookie names, or the port)
    client: int = 21  # the client's address
    msgs: int = 15
    bytes: int = 15
    rate: int = 8
    close: int = 30

    @classmethod
    def for_width(
        cls, width: int, path_need: int = 30, number: int = 4, key_need: int = 22
    ) -> Columns:
        key = 0 if width < 64 else max(8, min(key_need, 22 if width < 100 else 26))
        client = 21 if width >= 170 else 0
        msgs = 15 if width >= 110 else 9
        nbytes = 15 if width >= 130 else 0
        rate = 8 if width >= 96 else 0
        fixed = 2 + number + 1 + 11 + 1
        fixed += sum(w + 1 for w in (key, client, msgs, nbytes, rate) if w)
        rest = max(0, width - fixed)
        close_min = 14 if width < 100 else 30
        path = max(10, min(path_need, rest - 1 - close_min))
        close = max(0, rest - 1 - path)
        return cls(2, width >= 120, number, 11, path, key, client, msgs, nbytes, rate, close)


def _cell(t: Text, value: str | Text, width: int, style: str | Style = "", right=False) -> None:
    if width <= 0:
        return
    cell = value if isinstance(value, Text) else Text(value, style=style)
    cell.truncate(width, overflow="ellipsis", pad=False)
    pad = width - cell.cell_len
    if right:
        t.append(" " * pad)
        t.append_text(cell)
    else:
        t.append_text(cell)
        t.append(" " * pad)
    t.append(" ")


def header_text(width: int, columns: Columns | None = None) -> Text:
    c = columns or Columns.for_width(width)
    t = Text(no_wrap=True, style="bold", end="")
    t.append(" " * c.marker)
    _cell(t, "#", c.number, right=True)
    _cell(t, "state", c.state)
    _cell(t, "host / path" if c.host else "path", c.path)
    _cell(t, "client", c.key)
    _cell(t, "address", c.client)
    _cell(t, "msgs → / ←" if c.msgs > 9 else "msgs", c.msgs, right=True)
    _cell(t, "bytes → / ←", c.bytes, right=True)
    _cell(t, "rate", c.rate, right=True)
    _cell(t, "close", c.close)
    return t


@dataclass(frozen=True, slots=True)
class Row:
    """A row of the list: one connection, or consecutive refused attempts of one client
    (``#4–#49 refused ×40``: a client retrying without its cookie would fill the list)."""

    ids: tuple[str, ...]

    @property
    def newest(self) -> str:
        return self.ids[-1]

    @property
    def group(self) -> bool:
        return len(self.ids) > 1


def close_text(conn: Connection, width: int | None = None) -> Text:
    """The close column: the refusal, the close code and who closed. Where ``width`` is
    too small for the code's meaning, the code and who closed come first."""
    full = _close_text(conn, meaning=True)
    if width is None or full.cell_len <= width:
        return full
    return _close_text(conn, meaning=False)


def _close_text(conn: Connection, meaning: bool) -> Text:
    t = Text(no_wrap=True)
    hs = conn.handshake
    if conn.refused:
        if hs.status is None:
            t.append("no response", "red")
        else:
            t.append(f"HTTP {hs.status} ", "bold red")
            t.append(safe_text(hs.reason), "red")
        return t
    code = conn.close_code
    if code is not None:
        t.append(f"{code}", "bold")
        if meaning:
            t.append(" " + close_code_meaning(code), "dim")
    elif conn.killed:
        t.append("aborted", "magenta")
    elif conn.ts_end is not None:
        t.append("no close frame" if not conn.clean else "closed", "dim")
    if conn.closed_by:
        t.append(f" by {conn.closed_by}", "dim")
    return t


class ConnectionList(ScrollView, can_focus=True, inherit_bindings=False):
    """Connections in order of appearance; row 0 merges them all. Consecutive refused
    attempts of one client share a row (Enter shows them one by one); ``l`` hides what is
    not live. The cursor's row is marked ``▸``, in colour or not."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "up,k",
            "cursor_up",
            "Up",
            show=False,
            id="connections.up",
            tooltip="Previous connection",
        ),
        Binding(
            "down,j",
            "cursor_down",
            "Down",
            show=False,
            id="connections.down",
            tooltip="Next connection",
        ),
        Binding(
            "pageup",
            "page_up",
            "Page up",
            show=False,
            id="connections.page_up",
            tooltip="One page of connections up",
        ),
        Binding(
            "pagedown",
            "page_down",
            "Page down",
            show=False,
            id="connections.page_down",
            tooltip="One page of connections down",
        ),
        Binding(
            "home,g",
            "first",
            "All",
            show=False,
            id="connections.all",
            tooltip="Select 'All connections'",
        ),
        Binding(
            "end,G",
            "last",
            "Last",
            show=False,
            id="connections.last",
            tooltip="The last (newest) connection",
        ),
        Binding(
            "enter",
            "open",
            "Stream",
            id="connections.open",
            tooltip="Go to the stream of the selected connection; on refused retries, "
            "show them one by one (Enter again folds them)",
        ),
        Binding(
            "l",
            "toggle_live",
            "Live",
            id="connections.live_only",
            tooltip="Hide closed and refused connections (again: show everything)",
        ),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "connections--cursor",
        "connections--cursor-blurred",
        "connections--number",
        "connections--dim",
        "connections--all",
        "connections--marker",
    }

    DEFAULT_CSS = """
    ConnectionList {
        overflow-x: hidden;
        overflow-y: auto;
        & > .connections--cursor { background: $accent 45%; text-style: bold; }
        & > .connections--cursor-blurred { background: $accent 20%; }
        & > .connections--number { color: $secondary; }
        & > .connections--dim { color: $text-muted; }
        & > .connections--all { text-style: bold; }
        & > .connections--marker { color: $accent; text-style: bold; }
    }
    """

    class Selected(Message):
        """The highlighted connection changed (``conn`` None: all connections)."""

        def __init__(self, conn: str | None) -> None:
            super().__init__()
            self.conn = conn

    class Opened(Message):
        """Enter on a connection: go to its stream."""

        def __init__(self, conn: str | None) -> None:
            super().__init__()
            self.conn = conn

    class RowsChanged(Message):
        """Rows were added, folded, unfolded or hidden: the pane may fit them again."""

    def __init__(
        self,
        session: Session,
        *,
        rate: Callable[[str], float],
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.session = session
        self.rate = rate
        self.rows: list[Row] = []
        self.cursor = 0  # 0 = All connections
        self.live_only = False  # hide what is closed or refused
        self.expanded: set[str] = set()  # runs of refused attempts shown one by one
        self._shape: tuple[int, int] = (-1, -1)
        self._watch: dict[str, tuple[str, bool]] = {}  # not final yet: (state, ended)
        self._lineages: dict[str, str] = {}  # conn id -> lineage key
        self._labels = ClientLabels(default_lineage_key)
        self._path_need = 20
        self._path_need_narrow = 10
        self._number = 3
        self._key_need = 22
        self._columns: tuple[int, Columns] | None = None
        self._styles: dict[str, Style] = {}
        self._totals_cache: tuple[int, float, tuple[int, int, int, int, int]] | None = None
        self._held = HeldTracker.of(session)

    @property
    def selected(self) -> str | None:
        if self.cursor == 0 or self.cursor > len(self.rows):
            return None
        return self.rows[self.cursor - 1].newest

    @property
    def ids(self) -> list[str]:
        """The connections that have a row of their own, or lead their run, in order."""
        return [row.newest for row in self.rows]

    @property
    def row_count(self) -> int:
        return len(self.rows) + 1

    def client_key(self, conn: Connection) -> str:
        if is_backplane(conn.handshake):
            return BACKPLANE_CLIENT  # devconsole's own subscriber, not a client
        return self._labels.label(conn)

    # ------------------------------------------------------------------ rows

    def _lineage(self, conn: Connection) -> str:
        key = self._lineages.get(conn.id)
        if key is None:
            key = self._lineages[conn.id] = default_lineage_key(conn)
        return key

    def _changed(self) -> bool:
        s = self.session
        shape = (len(s.connections), s.evicted_connections)
        if shape != self._shape:
            return True
        conns = s.connections
        for cid, seen in self._watch.items():  # only what can still change: O(live)
            c = conns.get(cid)
            if c is None or (c.state, c.ts_end is not None) != seen:
                return True
        return False

    def update_rows(self) -> bool:
        """Pick up new, ended, refused (and forgotten) connections; called on the redraw
        timer. True when the rows changed."""
        if not self._changed():
            self.refresh()
            return False
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        s = self.session
        conns = s.connections
        self._shape = (len(conns), s.evicted_connections)
        selected = self.selected
        if len(self._lineages) > 2 * len(conns) + 100:  # forgotten connections
            self._lineages = {k: v for k, v in self._lineages.items() if k in conns}
        runs: dict[str, list[str]] = {}  # lineage -> its current run of refused attempts
        built: list[list[str]] = []
        watch: dict[str, tuple[str, bool]] = {}
        for cid, c in conns.items():
            self._labels.label(c)  # in order of appearance: labels never change
            if not (c.refused or c.ts_end is not None):
                watch[cid] = (c.state, c.ts_end is not None)
            lin = self._lineage(c)
            if c.refused:
                run = runs.get(lin)
                if run is not None:
                    run.append(cid)
                    continue
                run = runs[lin] = [cid]
                built.append(run)
            else:
                runs.pop(lin, None)  # it connected: the next refusal starts a new run
                built.append([cid])
        rows: list[Row] = []
        for ids in built:
            if len(ids) > 1 and ids[0] in self.expanded:
                rows.extend(Row((cid,)) for cid in ids)
            else:
                rows.append(Row(tuple(ids)))
        if self.live_only:
            rows = [
                r
                for r in rows
                if selected in r.ids or any(self._shown_live(conns.get(cid)) for cid in r.ids)
            ]
        self._watch = watch
        old = self.rows
        self.rows = rows
        self._path_need = max((self._path_len(r) for r in rows[-200:]), default=20)
        self._path_need_narrow = max(
            (self._path_len(r, host=False) for r in rows[-200:]), default=10
        )
        self._number = max([3, *(len(conn_tag(r.newest)) for r in rows[-200:])])
        shown = [conns[r.newest] for r in rows[-200:] if r.newest in conns]
        self._key_need = max([8, *(len(self._labels.label(c)) for c in shown)])
        self._columns = None
        if selected is not None:
            index = self._row_of(selected)
            if index is None:  # forgotten: fall back to all
                self.cursor = 0
                self.post_message(self.Selected(None))
            else:
                self.cursor = index + 1
        elif self.cursor > len(rows):
            self.cursor = 0
        self.virtual_size = Size(max(1, self.scrollable_content_region.width), len(rows) + 1)
        if [r.ids for r in old] != [r.ids for r in rows]:
            self.post_message(self.RowsChanged())
        self.refresh()

    @staticmethod
    def _shown_live(conn: Connection | None) -> bool:
        return conn is not None and conn.live

    def _path_len(self, row: Row, host: bool = True) -> int:
        c = self.session.connections.get(row.newest)
        if c is None:
            return 0
        hs = c.handshake
        n = len(hs.path or "/")
        if is_backplane(hs):  # "backplane 127.0.0.1:6379 chat:*", narrow "⇄ chat:*"
            n += len(BACKPLANE_LABEL) + len(hs.server) + 1 if host else 2
        elif host and hs.server:
            n += len(hs.server.rsplit(":", 1)[0])
        if row.group:
            n += len(conn_tag(row.ids[0])) + len(conn_tag(row.newest)) + 8
        inst = conn_instance(c.id)
        if inst:  # a Redis source: "app-1 ", or "app-1 (gone) "
            n += len(inst) + 1
            ie = self.session.instances.get(inst)
            if ie is not None and ie.state != "up":
                n += len(ie.state) + 3
        return n

    def _row_of(self, conn: str) -> int | None:
        for i, row in enumerate(self.rows):
            if conn in row.ids:
                return i
        return None

    def select(self, conn: str | None) -> None:
        if conn is None:
            self._set_cursor(0)
            return
        index = self._row_of(conn)
        if index is not None:
            self._set_cursor(index + 1)

    def set_live_only(self, live_only: bool) -> None:
        """Hide closed and refused connections (the selected one stays)."""
        self.live_only = live_only
        self._rebuild()

    def toggle_run(self, conn: str) -> bool:
        """Show the refused attempts of ``conn``'s run one by one, or fold them again;
        False when ``conn`` is in no run."""
        index = self._row_of(conn)
        if index is None:
            return False
        row = self.rows[index]
        if row.group:
            self.expanded.add(row.ids[0])
        else:
            first = self._run_first(conn)
            if first is None:
                return False
            self.expanded.discard(first)
        self._rebuild()
        self.select(conn)
        return True

    def _run_first(self, conn: str) -> str | None:
        """The first attempt of the expanded run ``conn`` belongs to."""
        c = self.session.connections.get(conn)
        if c is None or not c.refused:
            return None
        lin = self._lineage(c)
        run: list[str] = []
        for cid, other in self.session.connections.items():
            if self._lineage(other) != lin:
                continue
            if other.refused:
                run.append(cid)
                if cid == conn:
                    break
            else:
                run = []
        return run[0] if len(run) > 1 or (run and run[0] in self.expanded) else None

    # ------------------------------------------------------------------ rendering

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(name)
        return style

    def columns(self, width: int | None = None) -> Columns:
        width = self.scrollable_content_region.width if width is None else width
        cached = self._columns
        if cached is not None and cached[0] == width:
            return cached[1]
        need = self._path_need if width >= 120 else self._path_need_narrow
        cols = Columns.for_width(width, min(need, 48), self._number, self._key_need)
        self._columns = (width, cols)
        return cols

    def header(self) -> Text:
        """The column titles, aligned with the rows (the screen shows them above)."""
        width = self.scrollable_content_region.width or self.size.width
        return header_text(width, self.columns(width))

    def _totals(self) -> tuple[int, int, int, int, int]:
        """Live connections and counters summed over all connections. With thousands of
        connections the sum is refreshed at most twice a second, not on every tick."""
        s = self.session
        now = time.monotonic()
        if self._totals_cache is not None:
            version, at, totals = self._totals_cache
            if version == s.version or (len(s.connections) > 1000 and now - at < 0.5):
                return totals
        live = msgs_out = msgs_in = bytes_out = bytes_in = 0
        for conn in s.connections.values():
            live += conn.live
            msgs_out += conn.msgs_out
            msgs_in += conn.msgs_in
            bytes_out += conn.bytes_out
            bytes_in += conn.bytes_in
        totals = (live, msgs_out, msgs_in, bytes_out, bytes_in)
        self._totals_cache = (s.version, now, totals)
        return totals

    def _counts(self, c: Columns, out: int, in_: int) -> str:
        return f"{fmt_count(out)} / {fmt_count(in_)}" if c.msgs > 9 else f"{out}/{in_}"

    def row_text(self, row: int, width: int) -> Text:
        c = self.columns(width)
        t = Text(no_wrap=True, end="")
        marker = "▸ " if row == self.cursor else "  "
        t.append(marker, self._style("connections--marker"))
        s = self.session
        if row == 0:
            live, msgs_out, msgs_in, bytes_out, bytes_in = self._totals()
            _cell(t, "", c.number)
            _cell(t, Text(" ALL ", style="bold reverse"), c.state)
            if self.live_only:
                label = Text("Live connections", style=self._style("connections--all"))
                label.append(f" ({live} of {len(s.connections)})", self._style("connections--dim"))
            else:
                label = Text("All connections", style=self._style("connections--all"))
                label.append(
                    f" ({live}/{len(s.connections)} live)", self._style("connections--dim")
                )
            held = self._held.count()
            if held:  # messages held by breakpoints: impossible to miss
                label = Text(f" ⏸ {held} held ", style="bold black on yellow").append_text(
                    Text(" ").append_text(label)
                )
            # the label spans the path, client and address columns
            span = sum(w + 1 for w in (c.path, c.key, c.client) if w) - 1
            _cell(t, label, span)
            _cell(t, self._counts(c, msgs_out, msgs_in), c.msgs, right=True)
            _cell(
                t,
                f"{fmt_bytes_short(bytes_out)} / {fmt_bytes_short(bytes_in)}",
                c.bytes,
                right=True,
            )
            _cell(t, fmt_rate(self.rate(ALL)), c.rate, right=True)
            _cell(t, "", c.close)
            return t
        r = self.rows[row - 1]
        conn = s.connections.get(r.newest)
        if conn is None:
            return t
        hs = conn.handshake
        _cell(t, conn_tag(conn.id), c.number, self._style("connections--number"), True)
        state = Text(f" {conn.state} ", style=STATE_STYLES.get(conn.state, "bold"))
        _cell(t, state, c.state)
        host = hs.server.rsplit(":", 1)[0] if hs.server else ""
        where = Text()
        inst = conn_instance(conn.id)  # a Redis source: which proxy instance
        if inst:
            ie = s.instances.get(inst)
            if ie is not None and ie.state != "up":
                where.append(f"{safe_text(inst)} ({ie.state}) ", "bold red")
            else:
                where.append(f"{safe_text(inst)} ", "bold")
        if r.group:
            where.append(f"{conn_tag(r.ids[0])}–{conn_tag(r.newest)} ×{len(r.ids)} ", "bold red")
        held = self._held.count(conn.id)
        if held:  # messages held by breakpoints on this connection
            where.append(f" ⏸{held} ", "bold black on yellow")
            where.append(" ")
        if inst and where.cell_len + len(host) + len(hs.path or "/") > c.path:
            host = ""  # the instance and the path tell connections apart, not the host
        if is_backplane(hs):
            # the app's Redis pub/sub, recorded by the proxy: the server and the pattern
            if c.host:
                where.append(BACKPLANE_LABEL, "bold magenta")
                where.append(safe_text(hs.server) + " ", self._style("connections--dim"))
            else:
                where.append("⇄ ", "bold magenta")
        elif host and c.host:
            where.append(safe_text(host), self._style("connections--dim"))
        where.append(safe_text(hs.path or "/"))
        if conn.shape:  # network conditions on it (docs/shaping.md)
            where.append(" ~shaped", self._style("connections--dim"))
        _cell(t, where, c.path)
        _cell(t, safe_text(self.client_key(conn)), c.key)
        _cell(t, safe_text(hs.client), c.client, self._style("connections--dim"))
        _cell(t, self._counts(c, conn.msgs_out, conn.msgs_in), c.msgs, right=True)
        _cell(
            t,
            f"{fmt_bytes_short(conn.bytes_out)} / {fmt_bytes_short(conn.bytes_in)}",
            c.bytes,
            right=True,
        )
        _cell(t, fmt_rate(self.rate(conn.id)), c.rate, right=True)
        _cell(t, close_text(conn, c.close), c.close)
        return t

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        row = y + self.scroll_offset.y
        base = self.rich_style
        if row > len(self.rows):
            return Strip.blank(width, base)
        text = self.row_text(row, width)
        text.stylize_before(base)
        strip = Strip(text.render(self.app.console), text.cell_len).crop_extend(0, width, base)
        if row == self.cursor:
            name = "connections--cursor" if self.has_focus else "connections--cursor-blurred"
            strip = Strip(
                Segment.apply_style(list(strip), post_style=self._style(name)), strip.cell_length
            )
        return strip

    # ------------------------------------------------------------------ cursor

    @property
    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height)

    def _set_cursor(self, row: int) -> None:
        row = max(0, min(len(self.rows), row))
        top = self.scroll_offset.y
        if row < top:
            self.scroll_to(y=row, animate=False, force=True)
        elif row >= top + self._page:
            self.scroll_to(y=row - self._page + 1, animate=False, force=True)
        if row == self.cursor:
            return
        self.cursor = row
        self.refresh()
        self.post_message(self.Selected(self.selected))

    def action_cursor_up(self) -> None:
        self._set_cursor(self.cursor - 1)

    def action_cursor_down(self) -> None:
        self._set_cursor(self.cursor + 1)

    def action_page_up(self) -> None:
        self._set_cursor(self.cursor - self._page)

    def action_page_down(self) -> None:
        self._set_cursor(self.cursor + self._page)

    def action_first(self) -> None:
        self._set_cursor(0)

    def action_last(self) -> None:
        self._set_cursor(len(self.rows))

    def action_open(self) -> None:
        conn = self.selected
        if conn is not None and self.toggle_run(conn):
            return
        self.post_message(self.Opened(conn))

    def action_toggle_live(self) -> None:
        self.set_live_only(not self.live_only)

    def on_click(self, event: events.Click) -> None:
        row = event.y + self.scroll_offset.y
        if row <= len(self.rows):
            self._set_cursor(row)
            if event.chain >= 2:
                self.action_open()

    def on_resize(self, event: events.Resize) -> None:
        self._columns = None
        self.virtual_size = Size(max(1, self.scrollable_content_region.width), len(self.rows) + 1)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
