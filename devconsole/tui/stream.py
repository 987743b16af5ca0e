"""The message stream: a Line API widget over a ``FilteredView`` (row -> seq -> item).

Like toolong's ``LogLines``: a ``ScrollView`` whose ``render_line(y)`` renders only the
visible rows, with an LRU cache of rendered rows keyed by seq (never by row number, so
eviction at the front and new rows at the end never invalidate it). The app calls
``update_rows()`` from its redraw timer; that costs O(new items), whatever the rate.
"""

from __future__ import annotations

import bisect
import datetime as _dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, scrollbar
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from devconsole.decoders import preview, safe_text
from devconsole.model import CLIENT, Item
from devconsole.session import FilteredView
from devconsole.text import arrow, badge, fmt_bytes_short, fmt_time, markers
from devconsole.tui.fmt import BADGE_STYLES
from devconsole.tui.held import as_sent

TIME_WIDTH = 12
BADGE_WIDTH = 5
MARK_WIDTH = 4
SIZE_WIDTH = 6
# Narrower than this, the stream is compact: the time without milliseconds, no marker
# column (INJ/DROP/ERR lead the preview instead), a narrower size: the preview keeps the
# width (80 columns leave it about 45 characters).
COMPACT_BELOW = 100


@dataclass(frozen=True, slots=True)
class RowLayout:
    """Column widths of the stream; the seq and conn columns grow with the numbers."""

    show_conn: bool = True
    seq_width: int = 4
    conn_width: int = 4
    compact: bool = False

    @property
    def time_width(self) -> int:
        return 8 if self.compact else TIME_WIDTH

    @property
    def mark_width(self) -> int:
        return 0 if self.compact else MARK_WIDTH

    @property
    def size_width(self) -> int:
        return 5 if self.compact else SIZE_WIDTH

    @property
    def prefix_width(self) -> int:
        width = self.seq_width + 1 + self.time_width + 1 + 2 + BADGE_WIDTH + 1
        width += (self.mark_width + 1 if self.mark_width else 0) + self.size_width + 1
        return width + (self.conn_width + 1 if self.show_conn else 0)

    def header(self) -> Text:
        """The column titles, aligned with the rows."""
        t = Text(no_wrap=True, style="bold")
        t.append(f"{'seq':>{self.seq_width}} {'time':<{self.time_width}} ")
        if self.show_conn:
            t.append(f"{'conn':>{self.conn_width}} ")
        t.append("  ")
        t.append(f"{'type':<{BADGE_WIDTH}} ")
        if self.mark_width:
            t.append(f"{'':<{self.mark_width}} ")
        t.append(f"{'size':>{self.size_width}} preview")
        return t


class StreamView(ScrollView, can_focus=True, inherit_bindings=False):
    """Chronological stream of one connection or of all of them merged."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False, id="stream.up", tooltip="Previous message"),
        Binding(
            "down,j", "cursor_down", "Down", show=False, id="stream.down", tooltip="Next message"
        ),
        Binding(
            "pageup",
            "page_up",
            "Page up",
            show=False,
            id="stream.page_up",
            tooltip="One page up (stops following)",
        ),
        Binding(
            "pagedown",
            "page_down",
            "Page down",
            show=False,
            id="stream.page_down",
            tooltip="One page down",
        ),
        Binding(
            "home,g",
            "first",
            "First",
            show=False,
            id="stream.first",
            tooltip="Oldest buffered message (stops following)",
        ),
        Binding(
            "enter",
            "open",
            "Open",
            id="stream.open",
            tooltip="Open the selected message in the detail pane",
        ),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "stream--cursor",
        "stream--cursor-blurred",
        "stream--seq",
        "stream--time",
        "stream--conn",
        "stream--client",
        "stream--server",
        "stream--size",
        "stream--marker",
        "stream--evicted",
        "stream--placeholder",
        "stream--held",
        "stream--rule",
    }

    DEFAULT_CSS = """
    StreamView {
        overflow-x: hidden;
        overflow-y: scroll;
        & > .stream--cursor { background: $accent 45%; text-style: bold; }
        & > .stream--cursor-blurred { background: $accent 20%; }
        & > .stream--seq { color: $text-muted; }
        & > .stream--time { color: $text-muted; }
        & > .stream--conn { color: $secondary; }
        & > .stream--client { color: $warning; text-style: bold; }
        & > .stream--server { color: $success; text-style: bold; }
        & > .stream--size { color: $text-muted; }
        & > .stream--marker { color: $error; text-style: bold; }
        & > .stream--evicted { color: $text-disabled; text-style: italic; }
        & > .stream--placeholder { color: $text-muted; text-style: italic; }
        & > .stream--held { background: $warning; color: $background; text-style: bold; }
        & > .stream--rule { color: $warning; }
    }
    """

    following: reactive[bool] = reactive(True)

    class CursorMoved(Message):
        """The selected row changed (``seq`` None: nothing selected)."""

        def __init__(self, seq: int | None) -> None:
            super().__init__()
            self.seq = seq

    class Opened(Message):
        """Enter on a row: show it in the detail pane."""

        def __init__(self, seq: int) -> None:
            super().__init__()
            self.seq = seq

    def __init__(
        self,
        view: FilteredView,
        *,
        tz: _dt.tzinfo | None = None,
        conn_label: Callable[[str], str] | None = None,
        id: str | None = None,
        preview: Callable[[Item, int], str] = preview,
    ) -> None:
        super().__init__(id=id)
        self.view = view
        self.tz = tz
        self.conn_label = conn_label or (lambda c: c)
        # the preview of a row: its application protocol's summary when decoded
        # (devconsole.tui.decoding), computed when the row is drawn, cached with it
        self.preview_of = preview
        self.row_layout = RowLayout(show_conn=view.conn is None)
        self.cursor_seq: int | None = None
        self._paused = False
        self._pinned: dict[int, Item] = {}  # the rows on screen when paused
        self.moved_while_paused = False  # the user moved or scrolled since the pause
        self.placeholder = "No messages yet."
        self._cache: LRUCache[tuple[int, int], Strip] = LRUCache(1024)
        self._styles: dict[str, Style] = {}

    # ------------------------------------------------------------------ view state

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, paused: bool) -> None:
        """While paused ``update_rows()`` does nothing; the items on screen are pinned so
        they stay readable even if the buffer evicts them meanwhile."""
        self._paused = paused
        self._pinned.clear()
        self.moved_while_paused = False
        if paused:
            get = self.view.session.get
            top = self.scroll_offset.y
            for row in range(max(0, top - self._page), top + 2 * self._page):
                seq = self.seq_at(row)
                if seq is None:
                    break
                item = get(seq)
                if item is not None:
                    self._pinned[seq] = item
        self.refresh()

    def item_for(self, seq: int) -> Item | None:
        """The item of a row: from the buffer, or pinned while paused."""
        return self.view.session.get(seq) or self._pinned.get(seq)

    @property
    def show_conn(self) -> bool:
        return self.view.conn is None

    @property
    def row_count(self) -> int:
        return len(self.view.seqs)

    def index_of(self, seq: int) -> int | None:
        """Row of ``seq`` (seqs are ascending, so a bisect), or None."""
        seqs = self.view.seqs
        i = bisect.bisect_left(seqs, seq)
        if i < len(seqs) and seqs[i] == seq:
            return i
        return None

    def seq_at(self, row: int) -> int | None:
        seqs = self.view.seqs
        if 0 <= row < len(seqs):
            return seqs[row]
        return None

    def set_layout(self, seq_width: int, conn_width: int) -> bool:
        """Widen (or narrow) the seq/conn columns; True when the layout changed."""
        width = self.scrollable_content_region.width
        layout = replace(
            self.row_layout,
            show_conn=self.view.conn is None,
            seq_width=max(4, seq_width),
            conn_width=max(3 if width and width < COMPACT_BELOW else 4, conn_width),
            compact=bool(width) and width < COMPACT_BELOW,
        )
        if layout == self.row_layout:
            return False
        self.row_layout = layout
        self._cache.clear()
        self.refresh()
        return True

    def set_view(self, view: FilteredView) -> None:
        """Show another FilteredView (a new filter or connection), keeping the selected
        message in sight when it is in the new view."""
        self.view = view
        self.set_layout(self.row_layout.seq_width, self.row_layout.conn_width)
        self._update_virtual_size()
        idx = self.index_of(self.cursor_seq) if self.cursor_seq is not None else None
        if self.following or idx is None:
            if idx is None:
                self._set_cursor(None)
            self.scroll_to(y=self.max_scroll_y, animate=False, force=True)
        else:
            self._center(idx)
        self.refresh()

    def invalidate(self, seqs: Iterable[int]) -> None:
        """Render these rows again: their items changed in place (a held message's
        outcome arrived). Only their cache entries go."""
        width = self.scrollable_content_region.width
        for seq in seqs:
            self._cache.discard((seq, width))
        self.refresh()

    def clear(self) -> None:
        """Hide the rows shown so far (the buffer keeps them)."""
        self.view.clear()
        self._set_cursor(None)
        self._update_virtual_size()
        self.scroll_to(y=0, animate=False, force=True)
        self.refresh()

    def update_rows(self) -> bool:
        """Match items that arrived since the last call (O(new)). Called on the redraw
        timer, never per message. While paused nothing moves: rows whose items were
        evicted meanwhile stay in place, shown as evicted."""
        if self.paused:
            return False
        view = self.view
        seqs = view.seqs
        before = len(seqs)
        top = int(self.scroll_y)
        added = view.catch_up()
        after = len(view.seqs)
        removed = before + added - after
        if not added and not removed:
            return False
        self._update_virtual_size()
        if self.following:
            self.scroll_to(y=self.max_scroll_y, animate=False, force=True)
        elif removed:
            # Keep the same rows under the user's eyes while old ones are evicted.
            self.scroll_to(y=max(0, top - removed), animate=False, force=True)
        self.refresh()
        return True

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(max(1, self.scrollable_content_region.width), self.row_count)

    # Scrolling up by hand (wheel, scrollbar) stops following, like a pager. Only user
    # input counts: clamping after a resize or a clear must not stop following.

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._user_moved()

    def on_scroll_up(self, event: scrollbar.ScrollUp) -> None:
        self._user_moved()

    def on_scroll_to(self, event: scrollbar.ScrollTo) -> None:
        if event.y is not None and event.y < self.max_scroll_y:
            self._user_moved()

    def _user_moved(self) -> None:
        self.following = False
        if self._paused:
            self.moved_while_paused = True

    def watch_following(self, following: bool) -> None:
        self.set_class(following, "-following")
        if following:
            self.scroll_to(y=self.max_scroll_y, animate=False, force=True)

    def on_resize(self, event: events.Resize) -> None:
        self._cache.clear()
        self.set_layout(self.row_layout.seq_width, self.row_layout.conn_width)
        self._update_virtual_size()
        if self.following:
            self.scroll_to(y=self.max_scroll_y, animate=False, force=True)
        elif self.cursor_seq is not None:
            # smaller (the detail pane opened below): keep the selected row in sight
            idx = self.index_of(self.cursor_seq)
            if idx is not None:
                self.call_after_refresh(self._scroll_into_view, idx)

    def forget_rows(self) -> None:
        """Draw every row again (a connection's protocol was changed)."""
        self._cache.clear()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._cache.clear()

    # ------------------------------------------------------------------ rendering

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(name)
        return style

    def row_text(self, item: Item, width: int) -> Text:
        """One stream row, built from Text pieces: the preview comes from
        ``decoders.preview`` (escaped) and is never parsed as markup."""
        layout = self.row_layout
        t = Text(no_wrap=True, overflow="ellipsis", end="")
        t.append(f"{item.seq:>{layout.seq_width}} ", self._style("stream--seq"))
        when = fmt_time(item.ts, self.tz)
        if layout.compact:
            when = when[:8]  # HH:MM:SS
        t.append(f"{when:<{layout.time_width}} ", self._style("stream--time"))
        if layout.show_conn:
            t.append(
                f"{self.conn_label(item.conn):>{layout.conn_width}} ",
                self._style("stream--conn"),
            )
        t.append(
            arrow(item.side) + " ",
            self._style("stream--client" if item.side == CLIENT else "stream--server"),
        )
        b = badge(item)
        t.append(f"{b:<{BADGE_WIDTH}}", BADGE_STYLES.get(b, "bold"))
        t.append(" ")
        marks = " ".join(markers(item))
        # a message on hold: its marker stands out (HOLD, black on yellow)
        mark_style = self._style("stream--held" if item.on_hold else "stream--marker")
        if layout.mark_width:
            t.append(f"{marks[: layout.mark_width]:<{layout.mark_width}}", mark_style)
            t.append(" ")
        size = fmt_bytes_short(item.size)
        t.append(f"{size:>{layout.size_width}} ", self._style("stream--size"))
        if marks and not layout.mark_width:
            if item.on_hold:
                t.append(marks, mark_style)
                t.append(" ")
            else:
                t.append(marks + " ", mark_style)
        if item.held:  # the breakpoint that held it; an edited one shows what was sent
            by = f"bp{item.breakpoint}" if item.breakpoint or not item.rule else "rule"
            t.append(f"{by} ", self._style("stream--rule"))
            item = as_sent(item)
        elif item.rule:  # a rule acted on it (docs/rules.md): its name, and what was sent
            t.append(f"{safe_text(item.rule)[:16]} ", self._style("stream--rule"))
            item = as_sent(item)
        room = max(0, width - t.cell_len)
        if room:
            t.append(Text(self.preview_of(item, room), no_wrap=True))
        t.truncate(width)
        return t

    def _evicted_text(self, seq: int) -> Text:
        t = Text(no_wrap=True, end="")
        t.append(f"{seq:>{self.row_layout.seq_width}} ", self._style("stream--seq"))
        t.append("evicted from the buffer while paused", self._style("stream--evicted"))
        return t

    def _strip(self, text: Text, width: int) -> Strip:
        base = self.rich_style
        text.stylize_before(base)
        strip = Strip(text.render(self.app.console), text.cell_len)
        return strip.crop_extend(0, width, base)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        row = y + self.scroll_offset.y
        seqs = self.view.seqs
        if row >= len(seqs):
            if not seqs:
                lines = Text(self.placeholder, style=self._style("stream--placeholder")).wrap(
                    self.app.console, max(1, width - 2)
                )
                if y < len(lines):
                    return self._strip(Text("  ").append_text(lines[y]), width)
            return Strip.blank(width, self.rich_style)
        seq = seqs[row]
        key = (seq, width)
        if seq not in self.view.session.buffer:
            # Evicted while paused: rows that were on screen keep their content (dimmed),
            # the others say what happened.
            pinned = self._pinned.get(seq)
            if pinned is None:
                strip = self._strip(self._evicted_text(seq), width)
            else:
                text = self.row_text(pinned, width)
                text.stylize(self._style("stream--evicted"))
                strip = self._strip(text, width)
        else:
            cached = self._cache.get(key)
            if cached is None:
                item = self.view.session.get(seq)
                assert item is not None
                cached = self._cache[key] = self._strip(self.row_text(item, width), width)
            strip = cached
        if seq == self.cursor_seq:
            cursor = self._style("stream--cursor" if self.has_focus else "stream--cursor-blurred")
            strip = Strip(Segment.apply_style(list(strip), post_style=cursor), strip.cell_length)
        return strip

    # ------------------------------------------------------------------ cursor

    def _set_cursor(self, seq: int | None) -> None:
        if seq == self.cursor_seq:
            return
        self.cursor_seq = seq
        self.refresh()
        self.post_message(self.CursorMoved(seq))

    def select_seq(self, seq: int) -> bool:
        """Select ``seq`` if it is in the view and scroll it into sight."""
        idx = self.index_of(seq)
        if idx is None:
            return False
        self.following = False
        self._set_cursor(seq)
        self._scroll_into_view(idx)
        return True

    @property
    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height)

    def _visible_rows(self) -> range:
        top = self.scroll_offset.y
        return range(top, min(self.row_count, top + self._page))

    def _cursor_row(self) -> int | None:
        """The cursor's row if it is on screen; otherwise the last visible row, so a
        navigation key never jumps somewhere the user cannot see."""
        visible = self._visible_rows()
        if not visible:
            return None
        if self.cursor_seq is not None:
            idx = self.index_of(self.cursor_seq)
            if idx is not None and idx in visible:
                return idx
        return visible[-1]

    def _scroll_into_view(self, idx: int) -> None:
        top = self.scroll_offset.y
        if idx < top:
            self.scroll_to(y=idx, animate=False, force=True)
        elif idx >= top + self._page:
            self.scroll_to(y=idx - self._page + 1, animate=False, force=True)

    def _center(self, idx: int) -> None:
        self.scroll_to(y=max(0, idx - self._page // 2), animate=False, force=True)

    def _move(self, delta: int) -> None:
        if delta > 0 and self.following and not self._paused:
            # Live: there is nothing below the newest message. ↓ stays live (on the
            # newest row); scrolling up (↑, PgUp, the wheel) leaves live mode.
            self.follow()
            return
        row = self._cursor_row()
        if row is None:
            return
        had_cursor = self.cursor_seq is not None and self.index_of(self.cursor_seq) == row
        if had_cursor:
            row += delta
        row = max(0, min(self.row_count - 1, row))
        self._user_moved()
        seq = self.seq_at(row)
        self._set_cursor(seq)
        self._scroll_into_view(row)

    def action_cursor_up(self) -> None:
        self._move(-1)

    def action_cursor_down(self) -> None:
        self._move(+1)

    def action_page_up(self) -> None:
        self._move(-self._page)

    def action_page_down(self) -> None:
        self._move(self._page)

    def action_first(self) -> None:
        if not self.row_count:
            return
        self._user_moved()
        self._set_cursor(self.seq_at(0))
        self.scroll_to(y=0, animate=False, force=True)

    def follow(self) -> None:
        """Follow new messages again (tail -f); the cursor goes to the newest row."""
        if self.row_count and not self.paused:
            self._set_cursor(self.seq_at(self.row_count - 1))
        self.following = True
        self.scroll_to(y=self.max_scroll_y, animate=False, force=True)

    def action_open(self) -> None:
        if self.cursor_seq is None or self.index_of(self.cursor_seq) is None:
            row = self._cursor_row()
            if row is None:
                return
            self._set_cursor(self.seq_at(row))
        if self.cursor_seq is not None:
            self.post_message(self.Opened(self.cursor_seq))

    def on_click(self, event: events.Click) -> None:
        row = event.y + self.scroll_offset.y
        seq = self.seq_at(row)
        if seq is None:
            return
        self._user_moved()
        if seq == self.cursor_seq and event.chain >= 2:
            self.post_message(self.Opened(seq))
        self._set_cursor(seq)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
