"""Scrolling back past the ring buffer, into the recording (``proxy --record DIR``).

The screen's Session keeps the newest items (100,000 by default); a proxy that records
keeps every item on disk, in segments (``devconsole.store.segments``). When the stream
has a recording (the proxy said where in its tap welcome, ``TapClient.recording``, or
the file opened is one) its rows go on above the buffer:

```
  ▲ 899,999 older messages in the recording, evicted from the buffer · ↑ loads
  (a window of messages loaded from the recording, their seq in another colour)
  ▼ seq 1,501–899,999 not loaded · ↓ loads
  (the buffered messages, live)
```

- The marker rows say what is there and how to get it: moving the cursor onto one (↑
  from the oldest row, PgUp, Home, a click, Enter) loads a page (500 matching messages,
  at most 200,000 read per step) in a worker thread, with the view's filter and
  connection; the cursor lands on the message next to where it was.
- ``Home`` on the top marker jumps to the first message of the recording (a page from
  there; the range up to the buffer is then the ``▼`` marker).
- Segments removed by ``--record-max`` are a gap: ``── 1,234 events removed from the
  recording (--record-max) ──`` at the top once the window reaches them.
- The window is bounded (20,000 messages, 64 MiB of payload): loading past it drops the
  far end, which becomes a marker again.

``ScrollbackView`` is a ``FilteredView`` whose ``seqs`` are these rows (the markers are
seqs no item has: 0 for the top one, the seq after the window for the middle one), so
the stream's row logic stays as it is; ``ScrollbackStream`` draws the rows that are not
in the buffer and runs the loads. Without a recording both behave exactly as their base
classes.
"""

from __future__ import annotations

import bisect
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from rich.segment import Segment
from rich.text import Text
from textual import work
from textual.message import Message
from textual.strip import Strip
from textual.worker import get_current_worker

from devconsole.model import Item
from devconsole.session import FilteredView, Predicate, Session
from devconsole.tui.stream import StreamView

PAGE = 500  # matching messages a load adds
SCAN = 200_000  # messages a load reads at most (a rare filter: the marker stays)
CHUNK = 20_000  # messages read per step of a scan
MAX_WINDOW = 20_000  # messages the window holds
MAX_WINDOW_BYTES = 64 << 20  # ... and payload bytes

TOP = 0  # the top marker's seq (no item has seq 0)


def recording_of(source: object) -> str | None:
    """The recording directory ``source`` reads from or whose proxy writes it, if any."""
    rec = getattr(source, "recording", None)
    if isinstance(rec, str) and rec:
        return rec
    if getattr(source, "kind", "") == "recording":
        path = getattr(source, "path", None)
        if isinstance(path, str):
            return path
    return None


def open_index(path: str) -> Any:
    """A ``SegmentIndex`` of the recording at ``path``, or None if it cannot be read."""
    from devconsole.store.segments import SegmentIndex

    if not os.path.isdir(path):
        return None
    try:
        index = SegmentIndex(path)
    except OSError:
        return None
    return index if index.segments else None


class _Rows:
    """The rows of a ScrollbackView: [top marker] window [middle marker] live. Only what
    the stream uses of a deque: len, indexing, iteration, extend and clear."""

    __slots__ = ("live", "mid", "top", "window")

    def __init__(self, top: bool, window: list[int], mid: int | None, live: deque[int]) -> None:
        self.top = top
        self.window = window
        self.mid = mid
        self.live = live

    def __len__(self) -> int:
        return self.top + len(self.window) + (self.mid is not None) + len(self.live)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, i: int) -> int:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        if self.top:
            if i == 0:
                return TOP
            i -= 1
        w = len(self.window)
        if i < w:
            return self.window[i]
        i -= w
        if self.mid is not None:
            if i == 0:
                return self.mid
            i -= 1
        return self.live[i]

    def __iter__(self) -> Iterator[int]:
        if self.top:
            yield TOP
        yield from self.window
        if self.mid is not None:
            yield self.mid
        yield from self.live

    def extend(self, seqs: list[int]) -> None:
        self.live.extend(seqs)

    def clear(self) -> None:
        self.live.clear()


@dataclass(slots=True)
class Marker:
    kind: str  # "older" | "removed" | "gap"
    text: str


class ScrollbackView(FilteredView):
    """A FilteredView that goes on into a recording above the buffer (see the module)."""

    def __init__(
        self,
        session: Session,
        predicate: Predicate | None = None,
        conn: str | None = None,
        index: Any = None,
    ) -> None:
        self.index = index  # devconsole.store.segments.SegmentIndex, or None
        self.window: list[Item] = []
        self._window_seqs: list[int] = []
        self._window_bytes = 0
        # every seq in [lo, hi] has been read from the recording (its matches are the
        # window); None: nothing read yet
        self.lo: int | None = None
        self.hi: int | None = None
        self.floor_seq = 1  # nothing below this is shown (raised by clear())
        self.loading = ""  # "older" / "newer" while a load runs
        self.error = ""
        self.generation = 0  # bumped when the window is dropped: older loads are stale
        self._live: deque[int] = deque()
        super().__init__(session, predicate, conn)

    # ---------------------------------------------------------------- rows

    @property  # type: ignore[override]
    def seqs(self) -> deque[int]:
        if self.index is None:
            return self._live
        top = self.marker(TOP) is not None
        mid = self.mid_seq()
        if not top and mid is None and not self._window_seqs:
            return self._live
        return cast("deque[int]", _Rows(top, self._window_seqs, mid, self._live))

    @seqs.setter
    def seqs(self, value: deque[int]) -> None:
        self._live = value

    def _trim(self) -> None:
        first = self.session.buffer.first_seq
        live = self._live
        if first is None:
            live.clear()
            return
        while live and live[0] < first:
            live.popleft()

    def clear(self) -> None:
        super().clear()
        self.reset()
        self.floor_seq = self.session.last_seq + 1

    def reset(self) -> None:
        self.generation += 1
        self.window = []
        self._window_seqs = []
        self._window_bytes = 0
        self.lo = self.hi = None
        self.error = ""

    def buffer_first(self) -> int:
        """The oldest seq the buffer covers (the live rows start there)."""
        first = self.session.buffer.first_seq
        return first if first is not None else self.session.last_seq + 1

    def floor(self) -> int | None:
        """The oldest seq the recording may hold, or None without one."""
        if self.index is None:
            return None
        first = self.index.first_seq
        if first is None:
            return None
        return max(first, self.floor_seq)

    def covered_from(self) -> int:
        """The oldest seq read: the window's scan, or the buffer's start."""
        return self.lo if self.lo is not None else self.buffer_first()

    def mid_seq(self) -> int | None:
        """The middle marker's seq when the window does not reach the buffer."""
        if self.hi is None:
            return None
        if self.hi + 1 < self.buffer_first():
            return self.hi + 1
        return None

    def is_window(self, seq: int) -> bool:
        ws = self._window_seqs
        i = bisect.bisect_left(ws, seq)
        return i < len(ws) and ws[i] == seq

    def window_item(self, seq: int) -> Item | None:
        ws = self._window_seqs
        i = bisect.bisect_left(ws, seq)
        if i < len(ws) and ws[i] == seq:
            return self.window[i]
        return None

    def item_at(self, index: int) -> Item | None:
        try:
            seq = self.seqs[index]
        except IndexError:
            return None
        return self.session.get(seq) or self.window_item(seq)

    def marker(self, seq: int) -> Marker | None:
        """The marker row ``seq`` stands for, or None (an item)."""
        floor = self.floor()
        if floor is None:
            return None
        if seq == TOP:
            start = self.covered_from()
            if self.loading == "older":
                return Marker("older", "▲ loading from the recording…")
            if self.error:
                return Marker("older", f"▲ cannot read the recording: {self.error}")
            if start > floor:
                if self.predicate is None and self.conn is None:
                    n = start - floor
                    return Marker(
                        "older",
                        f"▲ {n:,} older message{'s' if n != 1 else ''} in the recording, "
                        "evicted from the buffer · ↑ loads",
                    )
                return Marker(
                    "older",
                    f"▲ seq {floor:,}–{start - 1:,} in the recording, evicted from the "
                    "buffer · ↑ searches",
                )
            removed = self.index.removed_events if self.index is not None else 0
            if removed and self.floor_seq <= 1:
                return Marker(
                    "removed",
                    f"── {removed:,} event{'s' if removed != 1 else ''} removed from the "
                    "recording (--record-max) ──",
                )
            return None
        mid = self.mid_seq()
        if mid is not None and seq == mid:
            if self.loading == "newer":
                return Marker("gap", "▼ loading from the recording…")
            end = self.buffer_first() - 1
            return Marker("gap", f"▼ seq {mid:,}–{end:,} not loaded (in the recording) · ↓ loads")
        return None

    # ---------------------------------------------------------------- loading

    def older_range(self) -> tuple[int, int] | None:
        floor = self.floor()
        if floor is None:
            return None
        hi = self.covered_from() - 1
        return (floor, hi) if hi >= floor else None

    def newer_range(self) -> tuple[int, int] | None:
        mid = self.mid_seq()
        if mid is None:
            return None
        return mid, self.buffer_first() - 1

    def add_older(self, items: list[Item], lo: int) -> None:
        """``items`` (ascending) match, and every seq from ``lo`` up to the window (or the
        buffer) was read."""
        if self.hi is None:
            self.hi = self.buffer_first() - 1
        self.lo = lo
        self.window = items + self.window
        self._window_seqs = [it.seq for it in items] + self._window_seqs
        self._window_bytes += sum(len(it.payload) for it in items)
        while self.window and (
            len(self.window) > MAX_WINDOW or self._window_bytes > MAX_WINDOW_BYTES
        ):
            gone = self.window.pop()
            self._window_seqs.pop()
            self._window_bytes -= len(gone.payload)
            self.hi = gone.seq - 1

    def add_newer(self, items: list[Item], hi: int) -> None:
        """``items`` match, and every seq after the window up to ``hi`` was read."""
        if self.lo is None:
            self.lo = items[0].seq if items else hi + 1
        self.hi = hi
        self.window = self.window + items
        self._window_seqs = self._window_seqs + [it.seq for it in items]
        self._window_bytes += sum(len(it.payload) for it in items)
        while self.window and (
            len(self.window) > MAX_WINDOW or self._window_bytes > MAX_WINDOW_BYTES
        ):
            gone = self.window.pop(0)
            self._window_seqs.pop(0)
            self._window_bytes -= len(gone.payload)
            self.lo = gone.seq + 1

    def jump_to_start(self) -> None:
        """Forget the window: the next newer load starts at the recording's first seq."""
        floor = self.floor()
        if floor is None:
            return
        self.reset()
        self.lo = floor
        self.hi = floor - 1


def scan_older(
    index: Any,
    lo: int,
    hi: int,
    conn: str | None,
    predicate: Predicate | None,
    cancelled: Callable[[], bool] = lambda: False,
) -> tuple[list[Item], int]:
    """Up to PAGE matching items just below ``hi`` (down to ``lo``), reading at most
    SCAN; returns them ascending and the lowest seq read."""
    found: list[Item] = []
    read = 0
    top = hi
    while top >= lo and len(found) < PAGE and read < SCAN and not cancelled():
        bottom = max(lo, top - CHUNK + 1)
        chunk = index.items(bottom, top, conn)
        read += max(len(chunk), 1) if conn is None else top - bottom + 1
        matched = chunk if predicate is None else [it for it in chunk if predicate(it)]
        found = matched + found
        top = bottom - 1
    if len(found) > PAGE:
        found = found[-PAGE:]
        return found, found[0].seq
    return found, top + 1


def scan_newer(
    index: Any,
    lo: int,
    hi: int,
    conn: str | None,
    predicate: Predicate | None,
    cancelled: Callable[[], bool] = lambda: False,
) -> tuple[list[Item], int]:
    """Up to PAGE matching items from ``lo`` on (up to ``hi``); returns them and the
    highest seq read."""
    found: list[Item] = []
    read = 0
    bottom = lo
    while bottom <= hi and len(found) < PAGE and read < SCAN and not cancelled():
        top = min(hi, bottom + CHUNK - 1)
        chunk = index.items(bottom, top, conn)
        read += max(len(chunk), 1) if conn is None else top - bottom + 1
        found += chunk if predicate is None else [it for it in chunk if predicate(it)]
        bottom = top + 1
    if len(found) > PAGE:
        found = found[:PAGE]
        return found, found[-1].seq
    return found, bottom - 1


class Loaded(Message):
    """A load finished (posted from its worker thread)."""

    def __init__(
        self,
        view: ScrollbackView,
        generation: int,
        direction: str,
        items: list[Item],
        bound: int,
        error: str = "",
    ) -> None:
        super().__init__()
        self.view = view
        self.generation = generation
        self.direction = direction
        self.items = items
        self.bound = bound
        self.error = error


class ScrollbackStream(StreamView):
    """The stream, going on into the recording (see the module)."""

    DEFAULT_CSS = """
    ScrollbackStream {
        & > .stream--marker-row { color: $text-muted; background: $boost; text-style: italic; }
        & > .stream--recorded { color: $secondary; text-style: italic; }
    }
    """
    COMPONENT_CLASSES = StreamView.COMPONENT_CLASSES | {
        "stream--marker-row",
        "stream--recorded",
    }

    def __init__(self, view: FilteredView, **kw: Any) -> None:
        super().__init__(view, **kw)
        self._last_row: int | None = None
        self._to_top = False  # Home loaded the page: stay at the top once it is in

    @property
    def scrollback(self) -> ScrollbackView | None:
        view = self.view
        if isinstance(view, ScrollbackView) and view.index is not None:
            return view
        return None

    def item_for(self, seq: int) -> Item | None:
        item = super().item_for(seq)
        if item is None:
            sb = self.scrollback
            if sb is not None:
                item = sb.window_item(seq)
        return item

    # ---------------------------------------------------------------- drawing

    def render_line(self, y: int) -> Strip:
        sb = self.scrollback
        if sb is None:
            return super().render_line(y)
        row = y + self.scroll_offset.y
        seq = self.seq_at(row)
        if seq is None:
            return super().render_line(y)
        width = self.scrollable_content_region.width
        marker = sb.marker(seq)
        if marker is not None:
            t = Text(no_wrap=True, overflow="ellipsis", end="")
            t.append(" " + marker.text, self._style("stream--marker-row"))
            t.truncate(width)
            strip = self._strip(t, width)
            strip = Strip(
                Segment.apply_style(list(strip), post_style=self._style("stream--marker-row")),
                strip.cell_length,
            )
        else:
            item = sb.window_item(seq)
            if item is None:
                return super().render_line(y)
            key = (-seq, width)  # apart from the buffer's rows
            cached = self._cache.get(key)
            if cached is None:
                text = self.row_text(item, width)
                text.stylize(self._style("stream--recorded"), 0, self.row_layout.seq_width)
                cached = self._cache[key] = self._strip(text, width)
            strip = cached
        if seq == self.cursor_seq:
            cursor = self._style("stream--cursor" if self.has_focus else "stream--cursor-blurred")
            strip = Strip(Segment.apply_style(list(strip), post_style=cursor), strip.cell_length)
        return strip

    # ---------------------------------------------------------------- loading

    def _set_cursor(self, seq: int | None) -> None:
        before = self._last_row
        super()._set_cursor(seq)
        row = self.index_of(seq) if seq is not None else None
        self._last_row = row
        sb = self.scrollback
        if sb is None or seq is None or sb.marker(seq) is None:
            return
        self.load_at(seq, from_below=before is not None and row is not None and before > row)

    def _move(self, delta: int) -> None:
        """A move stops at a marker row it would cross (PgDn into the gap loads it)."""
        sb = self.scrollback
        row = self.index_of(self.cursor_seq) if self.cursor_seq is not None else None
        if sb is not None and row is not None and not (delta > 0 and self.following):
            target = max(0, min(self.row_count - 1, row + delta))
            for mrow in self._marker_rows(sb):
                if row < mrow < target or target < mrow < row:
                    delta = mrow - row
                    break
        super()._move(delta)

    def _marker_rows(self, sb: ScrollbackView) -> list[int]:
        rows = []
        if self.row_count and self.seq_at(0) == TOP:
            rows.append(0)
        mid = sb.mid_seq()
        if mid is not None:
            idx = self.index_of(mid)
            if idx is not None:
                rows.append(idx)
        return rows

    def load_at(self, seq: int, from_below: bool = False) -> bool:
        """Load what the marker row ``seq`` stands for; False if there is nothing."""
        sb = self.scrollback
        if sb is None or sb.loading:
            return False
        marker = sb.marker(seq)
        if marker is None:
            return False
        if seq == TOP:
            rng = sb.older_range()
            direction = "older"
        elif from_below:
            # up from the buffer onto the gap: what comes just before the buffer
            sb.reset()
            rng = sb.older_range()
            direction = "older"
        else:
            rng = sb.newer_range()
            direction = "newer"
        if rng is None:
            return False
        sb.loading = direction
        self.forget_marker_rows()
        self._load(sb, direction, rng[0], rng[1])
        return True

    def forget_marker_rows(self) -> None:
        self.refresh()

    @work(
        thread=True,
        exclusive=True,
        group="scrollback",
        exit_on_error=False,
        description="scrollback",
    )
    def _load(self, sb: ScrollbackView, direction: str, lo: int, hi: int) -> None:
        worker = get_current_worker()
        generation = sb.generation
        predicate = sb.predicate
        try:
            sb.index.refresh()  # segments written or removed since
            scan = scan_older if direction == "older" else scan_newer
            items, bound = scan(sb.index, lo, hi, sb.conn, predicate, lambda: worker.is_cancelled)
        except Exception as e:  # an unreadable segment: said on the marker
            error = f"{type(e).__name__}: {e}"
            self.post_message(Loaded(sb, generation, direction, [], lo, error))
            return
        if not worker.is_cancelled:
            self.post_message(Loaded(sb, generation, direction, items, bound))

    def on_loaded(self, message: Loaded) -> None:
        sb = message.view
        sb.loading = ""
        if message.generation != sb.generation:
            self.refresh()
            return  # the window was dropped meanwhile (Home on the marker)
        if message.error:
            sb.error = message.error
            self.refresh()
            return
        if sb is not self.view:
            return  # another filter or connection meanwhile
        anchor = self.cursor_seq
        if message.direction == "older":
            sb.add_older(message.items, message.bound)
            target = message.items[-1].seq if message.items else None
            if self._to_top:  # Home: the top row (the marker, if more is older)
                target = self.seq_at(0) if self.row_count else None
        else:
            sb.add_newer(message.items, message.bound)
            target = message.items[0].seq if message.items else None
        self._cache.clear()
        self._update_virtual_size()
        if target is None:
            target = anchor if anchor is not None and self.index_of(anchor) is not None else None
        if target is None:
            target = self.seq_at(0)
        self._to_top = False
        if target is not None:
            idx = self.index_of(target)
            if idx is not None:
                self.following = False
                self.cursor_seq = None  # re-select: the detail follows
                super()._set_cursor(target)
                self._last_row = idx
                self._scroll_into_view(idx)
        self.refresh()

    def action_first(self) -> None:
        sb = self.scrollback
        marker = sb.marker(TOP) if sb is not None else None
        if (
            sb is not None
            and marker is not None
            and marker.kind == "older"
            and self.cursor_seq == TOP
            and not sb.loading
        ):
            # Home on the top marker: the first message of the recording
            sb.jump_to_start()
            self._cache.clear()
            self._update_virtual_size()
            mid = sb.mid_seq()
            if mid is not None:
                self.load_at(mid)
            return
        self._to_top = True
        super().action_first()
        if self.scrollback is None or not self.scrollback.loading:
            self._to_top = False

    def action_open(self) -> None:
        sb = self.scrollback
        if sb is not None and self.cursor_seq is not None and sb.marker(self.cursor_seq):
            self.load_at(self.cursor_seq)
            return
        super().action_open()
