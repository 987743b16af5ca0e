"""The connections list: a Line API widget with a first "All connections" row.

Rows are rendered on demand from the Session's ``Connection`` objects (only the visible
ones), so a reconnect storm of thousands of connections costs nothing per tick.
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

from devconsole.decoders import safe_text
from devconsole.model import close_code_meaning
from devconsole.session import Connection, Session
from devconsole.tui.fmt import (
    STATE_STYLES,
    close_code_of,
    fmt_count,
    fmt_rate,
    killed,
    short_bytes,
)

ALL = "*all*"  # the rate key of the merged row


@dataclass(frozen=True, slots=True)
class Columns:
    number: int = 5
    state: int = 11
    client: int = 21
    msgs: int = 15
    bytes: int = 15
    rate: int = 8
    close: int = 30
    path: int = 20

    @classmethod
    def for_width(cls, width: int) -> Columns:
        fixed = 5 + 11 + 21 + 15 + 15 + 8 + 30 + 7  # + separators
        path = width - fixed
        if path >= 20:
            return cls(path=path)
        # Narrow terminal: drop the client column, then shrink the close column.
        path = width - (fixed - 22)
        if path >= 16:
            return cls(client=0, path=path)
        return cls(client=0, close=0, path=max(8, width - (fixed - 22 - 31)))


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


def header_text(width: int) -> Text:
    c = Columns.for_width(width)
    t = Text(no_wrap=True, style="bold", end="")
    _cell(t, "#", c.number, right=True)
    _cell(t, "state", c.state)
    _cell(t, "host / path", c.path)
    _cell(t, "client", c.client)
    _cell(t, "msgs → / ←", c.msgs, right=True)
    _cell(t, "bytes → / ←", c.bytes, right=True)
    _cell(t, "rate", c.rate, right=True)
    _cell(t, "close", c.close)
    return t


def close_text(conn: Connection, code: int | None = None) -> Text:
    """The close column; ``code``: the close code devconsole sent when it killed ``conn``
    (see ``fmt.close_code_of``)."""
    t = Text(no_wrap=True)
    hs = conn.handshake
    if conn.refused:
        if hs.status is None:
            t.append("no response", "red")
        else:
            t.append(f"HTTP {hs.status} ", "bold red")
            t.append(safe_text(hs.reason), "red")
        return t
    if code is None:
        code = conn.close_code
    if code is not None:
        t.append(f"{code} ", "bold")
        t.append(close_code_meaning(code), "dim")
    elif killed(conn):
        t.append("aborted", "magenta")
    elif conn.ts_end is not None:
        t.append("no close frame" if not conn.clean else "closed", "dim")
    if conn.closed_by:
        t.append(f" by {conn.closed_by}", "dim")
    return t


class ConnectionList(ScrollView, can_focus=True, inherit_bindings=False):
    """Connections in order of appearance; row 0 merges them all."""

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
            "enter",
            "open",
            "Stream",
            id="connections.open",
            tooltip="Go to the stream of the selected connection",
        ),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "connections--cursor",
        "connections--cursor-blurred",
        "connections--number",
        "connections--dim",
        "connections--all",
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

    def __init__(
        self,
        session: Session,
        *,
        number: Callable[[str], int],
        rate: Callable[[str], float],
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.session = session
        self.number = number
        self.rate = rate
        self.ids: list[str] = []
        self.cursor = 0  # 0 = All connections
        self._shape: tuple[int, int] = (-1, -1)
        self._styles: dict[str, Style] = {}
        self._totals_cache: tuple[int, float, tuple[int, int, int, int, int]] | None = None

    @property
    def selected(self) -> str | None:
        if self.cursor == 0 or self.cursor > len(self.ids):
            return None
        return self.ids[self.cursor - 1]

    def update_rows(self) -> None:
        """Pick up new (and forgotten) connections; called on the redraw timer."""
        s = self.session
        shape = (len(s.connections), s.evicted_connections)
        if shape != self._shape:
            selected = self.selected
            self._shape = shape
            self.ids = list(s.connections)
            if selected is not None:
                try:
                    self.cursor = self.ids.index(selected) + 1
                except ValueError:  # forgotten: fall back to all
                    self.cursor = 0
                    self.post_message(self.Selected(None))
            self.virtual_size = Size(
                max(1, self.scrollable_content_region.width), len(self.ids) + 1
            )
        self.refresh()

    def select(self, conn: str | None) -> None:
        if conn is None:
            self._set_cursor(0)
        elif conn in self.ids:
            self._set_cursor(self.ids.index(conn) + 1)

    # ------------------------------------------------------------------ rendering

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(name)
        return style

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

    def row_text(self, row: int, width: int) -> Text:
        c = Columns.for_width(width)
        t = Text(no_wrap=True, end="")
        s = self.session
        if row == 0:
            live, msgs_out, msgs_in, bytes_out, bytes_in = self._totals()
            _cell(t, "", c.number)
            _cell(t, Text(" ALL ", style="bold reverse"), c.state)
            label = Text("All connections", style=self._style("connections--all"))
            label.append(f" ({live}/{len(s.connections)} live)", self._style("connections--dim"))
            _cell(t, label, c.path)
            _cell(t, "", c.client)
            _cell(t, f"{fmt_count(msgs_out)} / {fmt_count(msgs_in)}", c.msgs, right=True)
            _cell(t, f"{short_bytes(bytes_out)} / {short_bytes(bytes_in)}", c.bytes, right=True)
            _cell(t, fmt_rate(self.rate(ALL)), c.rate, right=True)
            _cell(t, "", c.close)
            return t
        conn = s.connections.get(self.ids[row - 1])
        if conn is None:
            return t
        hs = conn.handshake
        _cell(t, f"#{self.number(conn.id)}", c.number, self._style("connections--number"), True)
        _cell(t, Text(f" {conn.state} ", style=STATE_STYLES.get(conn.state, "bold")), c.state)
        host = hs.server.rsplit(":", 1)[0] if hs.server else ""
        where = Text()
        if host:
            where.append(safe_text(host), self._style("connections--dim"))
        where.append(safe_text(hs.path or "/"))
        if conn.shape:  # network conditions on it (docs/shaping.md)
            where.append(" ~shaped", self._style("connections--dim"))
        _cell(t, where, c.path)
        _cell(t, safe_text(hs.client), c.client, self._style("connections--dim"))
        _cell(t, f"{fmt_count(conn.msgs_out)} / {fmt_count(conn.msgs_in)}", c.msgs, right=True)
        _cell(
            t, f"{short_bytes(conn.bytes_out)} / {short_bytes(conn.bytes_in)}", c.bytes, right=True
        )
        _cell(t, fmt_rate(self.rate(conn.id)), c.rate, right=True)
        _cell(t, close_text(conn, close_code_of(s, conn)), c.close)
        return t

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        row = y + self.scroll_offset.y
        base = self.rich_style
        if row > len(self.ids):
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
        row = max(0, min(len(self.ids), row))
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

    def action_open(self) -> None:
        self.post_message(self.Opened(self.selected))

    def on_click(self, event: events.Click) -> None:
        row = event.y + self.scroll_offset.y
        if row <= len(self.ids):
            self._set_cursor(row)
            if event.chain >= 2:
                self.post_message(self.Opened(self.selected))

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(max(1, self.scrollable_content_region.width), len(self.ids) + 1)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
