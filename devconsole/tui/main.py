"""The main screen: connections, stream, detail, filter bar and status bar.

Layout: the connections list on top (as tall as its rows, at most 40% of the screen), the
stream below it with the whole width for its previews. The detail pane opens when a
message is opened (Enter, a double click, ``d``) beside the stream on wide screens and
below it on narrow ones (under ``STACK_BELOW`` columns), and closes with ``d`` or Esc.
Focus starts in the connections list: ``↓`` picks a connection (a refused upgrade too)
without leaving the stream's live mode.

Data flow: the app applies event batches to its Session as they arrive and calls
``MainScreen.refresh_data()`` from a ~20 Hz timer. Each tick costs O(new items)
(``FilteredView.catch_up``) plus the visible rows; nothing is done per message.

A new filter or connection builds a new ``FilteredView``. Small buffers are scanned at
once; big ones in a thread worker over ``snapshot_items()`` taken here, on the thread that
applies events. The old view stays on screen (and live) until the new one is swapped in;
a superseded scan is cancelled and its result dropped.
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar, TypeVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static
from textual.worker import Worker, get_current_worker

from devconsole import filters
from devconsole.analysis.handshake_diff import newest_connection
from devconsole.decoders import safe_text
from devconsole.filters import MATCH_ALL, Filter, FilterError
from devconsole.model import Command, Connection, InjectCommand, Item
from devconsole.session import FilteredView
from devconsole.text import conn_tag
from devconsole.tui import connections as conn_widgets
from devconsole.tui.connections import ConnectionList
from devconsole.tui.detail import DetailPane
from devconsole.tui.fanout import FanoutScreen
from devconsole.tui.faults import FaultMenu, InjectDialog
from devconsole.tui.filterbar import FilterBar
from devconsole.tui.handshake import HandshakeScreen
from devconsole.tui.intercept import (
    DROP_BINDING,
    MAIN_ACTIONS,
    MAIN_BINDINGS,
    MAIN_BINDINGS_LATER,
    MainIntercept,
)
from devconsole.tui.protocol import AUTO, ProtocolMenu, annotation, decoded_inject
from devconsole.tui.report import ReportScreen
from devconsole.tui.scrollback import ScrollbackStream, ScrollbackView
from devconsole.tui.state import CommandRequested, FramesRequested, ViewState
from devconsole.tui.statusbar import StatusBar, StatusInfo
from devconsole.tui.stream import StreamView

_W = TypeVar("_W", bound=Widget)

# Below this many buffered items (and payload bytes to search) a rescan runs inline, in
# a few milliseconds; above, in a thread worker.
SYNC_SCAN_LIMIT = 2_000
SYNC_SCAN_BYTES = 2 << 20
# A rescan shows its progress only when it takes longer than this (seconds).
PROGRESS_DELAY = 0.15
# Below this many columns the detail pane opens under the stream, not beside it.
STACK_BELOW = 160
# The connections pane grows with its rows up to this fraction of the screen's height
# (less while the detail pane is open below the stream).
CONNECTIONS_MAX = 0.4
CONNECTIONS_MAX_STACKED = 0.25
# A busy screen (changes on every tick) waits at most this many ticks between redraws:
# at the 20 Hz tick, 4 redraws a second (MainScreen._due); up to BUSY_SLOWEST_WAIT (1 a
# second, like top) while the viewer uses more than its CPU budget (adapt_pacing): at 2 a
# second a 160x45 screen at 40 msgs/s still cost 5-6 % of a core (bench/tui_steady.py).
BUSY_MAX_WAIT = 4
BUSY_SLOWEST_WAIT = 19
# The pacing starts again (the next change drawn at once) after this many ticks with
# nothing new: a quarter second. One quiet tick is not enough: a steady 40 msgs/s has a
# gap of one tick now and then, and each would restart the pacing at 20 redraws a second.
QUIET_TICKS = 5


class ScanDone(Message):
    """A rescan worker finished (posted from its thread)."""

    def __init__(self, generation: int, view: FilteredView, filt: Filter) -> None:
        super().__init__()
        self.generation = generation
        self.view = view
        self.filt = filt


class MainScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        # The app's help and quit, first in the footer so a narrow one still shows them
        # (system: listed once, with the app's keys, in the help screen).
        Binding("question_mark", "app.help", "Help", id="help", tooltip="Keys", system=True),
        Binding("q", "app.quit", "Quit", id="quit", tooltip="Quit devconsole", system=True),
        *MAIN_BINDINGS,  # intercept (tui/intercept.py): f and e on a held message
        Binding(
            "slash",
            "filter",
            "Filter",
            id="filter",
            tooltip="Edit the filter expression (Enter applies, Esc returns to the stream)",
        ),
        Binding(
            "space",
            "pause",
            "Pause",
            id="pause",
            tooltip="Freeze the stream; capture continues and nothing is lost",
        ),
        Binding(
            "space",
            "resume",
            "Resume",
            id="pause",
            tooltip="Show what arrived while paused, and follow again if you were at the end",
        ),
        Binding(
            "h",
            "handshake",
            "Handshake",
            id="handshake",
            tooltip="Inspect the upgrade handshake of the selected connection (or the newest) "
            "and its diff against an accepted one",
        ),
        Binding(
            "x",
            "fault",
            "Fault",
            id="fault",
            tooltip="Fault menu for the selected connection: close with a code, abort, "
            "half-open, release",
        ),
        Binding(
            "i",
            "inject",
            "Inject",
            id="inject",
            tooltip="Inject a text, binary or ping frame into the selected connection",
        ),
        Binding(
            "r",
            "report",
            "Report",
            id="report",
            tooltip="Readiness report: checklist per endpoint, backoff timeline, heartbeat",
        ),
        DROP_BINDING,  # d on a held message in the stream; the detail pane elsewhere
        Binding(
            "d",
            "toggle_detail",
            "Detail",
            id="detail",
            tooltip="Open or close the detail pane (beside the stream, or below it when "
            "the screen is narrow)",
        ),
        Binding(
            "v",
            "cycle_view",
            "View",
            id="cycle_view",
            tooltip="Next detail view: json, msgpack, cbor, text, hex, close, frames",
        ),
        Binding(
            "t",
            "toggle_tree",
            "Tree/text",
            show=False,
            id="toggle_tree",
            tooltip="Show a structured payload as a collapsible tree or as pretty text",
        ),
        Binding(
            "c",
            "clear",
            "Clear",
            show=False,
            id="clear",
            tooltip="Clear the view (the buffer keeps every message)",
        ),
        Binding(
            "end,G",
            "follow",
            "Follow",
            key_display="end",
            id="follow",
            tooltip="Jump to the newest message and follow the stream (tail -f); in the "
            "connections list, go to the last connection",
        ),
        Binding(
            "z",
            "toggle_zoom",
            "Zoom",
            show=False,
            id="zoom",
            tooltip="Zoom the focused pane to the whole screen, width and height (again, or "
            "Esc, to restore)",
        ),
        Binding(
            "tab",
            "next_pane",
            "Next pane",
            show=False,
            id="next_pane",
            tooltip="Focus the next pane: connections, stream, detail",
        ),
        Binding(
            "shift+tab",
            "previous_pane",
            "Previous pane",
            show=False,
            id="previous_pane",
            tooltip="Focus the previous pane",
        ),
        Binding(
            "escape",
            "back",
            "Back",
            show=False,
            id="back",
            tooltip="Back to the stream; in the stream, close the detail pane",
        ),
        *MAIN_BINDINGS_LATER,
        Binding(
            "p",
            "pair",
            "Pair",
            show=False,
            id="pair",
            tooltip="Jump between a request and its reply (JSON-RPC id, Socket.IO ack, "
            "GraphQL operation, ...)",
        ),
        Binding(
            "P",
            "protocol",
            "Protocol",
            show=False,
            id="protocol",
            tooltip="Decode the selected connection as another protocol, or automatically",
        ),
        Binding(
            "o",
            "fanout",
            "Fan-out",
            show=False,
            id="fanout",
            tooltip="Where the selected backplane publication went: receivers, instances, "
            "delays, missed connections",
        ),
    ]

    ALLOW_IN_MAXIMIZED_VIEW = "Footer, FilterBar, StatusBar"

    def __init__(self, state: ViewState) -> None:
        super().__init__()
        self.state = state
        self.session = state.session
        self.tz = state.tz
        self.conn: str | None = None  # None: all connections merged
        self.filter: Filter = MATCH_ALL
        self.filter_expr = ""
        self.paused = False
        self._pause_base = 0
        self._version = -1
        self._generation = 0
        self._scan_worker: Worker[None] | None = None
        self._scan_started: float | None = None
        self._scan_progress = 0.0
        self._detail_seq: int | None = None
        self.detail_open = False  # the detail pane is shown (closed: the stream is wide)
        self._pause_seq = 0  # the newest item when the stream was paused
        self._resume_follow = False  # following (or at the end) when paused
        self._following_shown = True
        self._widgets: dict[str, Widget] = {}
        self._id_width = 2  # "#1"
        self._id_shape = (-1, -1)
        self.intercept = MainIntercept(self)
        self._live_version = state.live.version
        self._pending_select: int | None = None  # select once the new view is in
        self._recording = state.recording
        self._busy = 0  # redraws since the last quiet tick (the pacing of _due)
        self._wait = 0  # ticks to wait before the next redraw of a change
        self._quiet = 0  # ticks in a row with nothing new to draw
        self.redraws = 0  # redraws of the stream, connections and status (tests, bench)
        self.max_wait = BUSY_MAX_WAIT  # adapt_pacing moves it
        self._status_version = -1
        self._status_mode: tuple[bool, bool, str, str] | None = None

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        view = self._new_view(None, None)
        live = self.state.live
        with Vertical(id="connections-pane", classes="pane"):
            yield Static(id="connections-header", classes="column-header")
            yield ConnectionList(self.session, rate=self.state.rates.get, id="connections")
        with Horizontal(id="lower"):
            with Vertical(id="stream-pane", classes="pane"):
                yield Static(id="stream-header", classes="column-header")
                yield ScrollbackStream(
                    view, tz=self.tz, conn_label=conn_tag, id="stream", preview=live.preview
                )
            yield DetailPane(
                tz=self.tz,
                conn_label=self.conn_title,
                id="detail",
                decode=live.decoded,
                annotate=self._annotate,
            )
        yield FilterBar(id="filter-bar")
        yield StatusBar(id="status")
        yield Footer()

    # Widgets are looked up once: the redraw timer may still fire while the app is
    # tearing the screen down.

    @property
    def stream(self) -> StreamView:
        return self._widget("#stream", StreamView)

    @property
    def connections(self) -> ConnectionList:
        return self._widget("#connections", ConnectionList)

    @property
    def detail(self) -> DetailPane:
        return self._widget("#detail", DetailPane)

    @property
    def filter_bar(self) -> FilterBar:
        return self._widget("#filter-bar", FilterBar)

    def _widget(self, selector: str, kind: type[_W]) -> _W:
        widget = self._widgets.get(selector)
        if widget is None:
            widget = self._widgets[selector] = self.query_one(selector, kind)
        assert isinstance(widget, kind)
        return widget

    def on_mount(self) -> None:
        self.query_one("#connections-pane").border_title = "Connections"
        self.query_one("#stream-pane").border_title = "Stream · all connections"
        self.query_one("#detail").border_title = "Detail"
        self._layout_panes()
        # The connections first: ↓ picks one (a refused upgrade too) and the stream stays
        # live; Tab or Enter goes to the stream.
        self.connections.focus()
        self.refresh_data(force=True)

    def on_resize(self) -> None:
        self._layout_panes()

    def _layout_panes(self) -> None:
        """The detail pane beside or below the stream, and the connections pane as tall as
        its rows (up to a share of the screen): every live connection stays in reach."""
        lower = self.query_one("#lower")
        lower.set_class(self.detail_open, "-detail")
        lower.set_class(self.size.width < STACK_BELOW, "-stacked")
        self._fit_connections()
        self._update_headers()

    def _fit_connections(self) -> None:
        height = self.size.height
        if not height:
            return
        share = CONNECTIONS_MAX_STACKED if self._stacked_detail else CONNECTIONS_MAX
        most = max(5, int(height * share))
        want = self.connections.row_count + 3  # rows, the column header, the borders
        pane = self.query_one("#connections-pane")
        if self.maximized is pane:
            return  # zoomed: the whole screen (an inline height would beat the CSS)
        rows = max(5, min(most, want))
        if pane.styles.height is None or pane.styles.height.value != rows:
            pane.styles.height = rows

    @property
    def _stacked_detail(self) -> bool:
        return self.detail_open and self.size.width < STACK_BELOW

    def _update_headers(self) -> None:
        self.query_one("#connections-header", Static).update(self.connections.header())
        self.query_one("#stream-header", Static).update(self.stream.row_layout.header())

    # ------------------------------------------------------------------ labels

    def conn_title(self, conn_id: str) -> str:
        c = self.session.connections.get(conn_id)
        tag = conn_tag(conn_id)
        return f"{tag} {c.path}" if c is not None else tag

    # ------------------------------------------------------------------ the tick

    def refresh_data(self, force: bool = False) -> None:
        """Called by the app's redraw timer (and after user actions, with ``force``)."""
        s = self.session
        self._check_live()
        pending = s.version != self._version
        if pending:
            self._quiet = 0
        if force or (pending and self._due()):
            self.redraws += 1
            self._version = s.version
            if self.stream.set_layout(len(str(s.last_seq)), self._conn_width()):
                self._update_headers()
            self.stream.update_rows()
            if self.connections.update_rows():
                self._fit_connections()
                self._update_headers()
            self._update_placeholder()
            self.intercept.tick()
        else:
            if not pending:  # a quiet tick: after QUIET_TICKS, the next change at once
                self._quiet += 1
                if self._wait > 0:
                    self._wait -= 1
                if self._quiet >= QUIET_TICKS:
                    self._busy = self._wait = 0
            if self.state.rates_changed:
                self.connections.refresh_changed_rows()
        started = self._scan_started
        if started is not None and self.state.clock() - started >= PROGRESS_DELAY:
            self.filter_bar.show_progress(self._scan_progress)
        following = self.stream.following
        if following != self._following_shown:
            self._following_shown = following
            self.refresh_bindings()  # "end Follow" only when not following
        # The status bar with the rest (its counters move with the stream), but at once
        # when what the keys change (LIVE, SCROLLED, PAUSED) or the source's state did,
        # and on every tick with no redraw pending (show() compares what it shows).
        state = self.state
        mode = (following, self.paused, state.source_state, self.filter_expr)
        if (
            s.version == self._version
            or self._version != self._status_version
            or mode != self._status_mode
            or state.rates_changed
        ):
            self._status_version = self._version
            self._status_mode = mode
            self._widget("#status", StatusBar).show(
                StatusInfo.from_session(
                    s,
                    address=state.source_description,
                    source_state=state.source_state,
                    rate=state.rates.get(conn_widgets.ALL),
                    paused=self.paused,
                    paused_new=self.paused_count(),
                    following=following,
                    filtered=bool(self.filter_expr),
                )
            )

    @property
    def drawn_version(self) -> int:
        """The Session version the screen shows."""
        return self._version

    def _due(self) -> bool:
        """Pace the redraws of a busy screen: a change after a quiet quarter second
        (QUIET_TICKS) is drawn at the next tick; while changes keep coming, each redraw
        waits one more tick than the last, up to ``max_wait`` ticks (20 Hz, then 10,
        6.7, 5, 4 Hz): a stream that scrolls repaints every row of its pane, about 30
        lines at 160x45, and at 20 Hz that cost a third of a core at 40 messages/s
        (bench/tui_steady.py). Keys redraw at once (``force``), whatever the pacing."""
        if self._wait > 0:
            self._wait -= 1
            return False
        self._wait = min(self._busy, self.max_wait)
        self._busy += 1
        return True

    def adapt_pacing(self, cpu_share: float, budget: float) -> None:
        """``cpu_share``: the share of a core this process used in the last second. Over
        ``budget``, a busy screen is redrawn less often (down to 1 a second); under half
        of it, more often again (up to 4 a second)."""
        if cpu_share > budget:
            self.max_wait = min(self.max_wait + 1, BUSY_SLOWEST_WAIT)
        elif cpu_share < budget / 2:
            self.max_wait = max(self.max_wait - 1, BUSY_MAX_WAIT)

    def _conn_width(self) -> int:
        """Cells of the stream's connection column: the longest ``#ID`` seen (it only
        grows, so the columns do not jump)."""
        s = self.session
        shape = (len(s.connections), s.evicted_connections)
        if shape != self._id_shape:
            self._id_shape = shape
            longest = max((len(cid) for cid in s.connections), default=1)
            self._id_width = max(self._id_width, longest + 1)
        return self._id_width

    def paused_count(self) -> int:
        """Messages that arrived (in the shown connection) since the pause."""
        if not self.paused:
            return 0
        return max(0, self._arrival_counter() - self._pause_base)

    def _arrival_counter(self) -> int:
        if self.conn is None:
            return self.session.total_messages
        c = self.session.connections.get(self.conn)
        return 0 if c is None else c.msgs_in + c.msgs_out

    def _update_placeholder(self) -> None:
        stream = self.stream
        c = self.session.connections.get(self.conn) if self.conn else None
        if c is not None and c.refused:
            hs = c.handshake
            status = f"HTTP {hs.status}" if hs.status is not None else "no response"
            stream.placeholder = (
                f"Upgrade refused ({status}): no messages. Press h to inspect the handshake."
            )
        elif self.filter_expr and len(self.session.buffer):
            stream.placeholder = "No buffered message matches the filter."
        elif self.paused:
            stream.placeholder = "Paused."
        else:
            stream.placeholder = "No messages yet."

    # ------------------------------------------------------------------ views

    def _rebuild_view(self) -> None:
        """A new FilteredView for the current connection and filter."""
        self._generation += 1
        generation = self._generation
        if self._scan_worker is not None:
            self._scan_worker.cancel()
            self._scan_worker = None
        filt = self.filter
        predicate = None if filt is MATCH_ALL else filt
        view = self._new_view(predicate, self.conn)
        source = view.snapshot_items(self.conn)
        if self.paused:
            # A filter (or connection) chosen while paused applies to what was there at
            # the pause; what arrived since is matched on resume (catch_up from here).
            upto = self._pause_seq
            source = ([it for it in source[0] if it.seq <= upto], upto)
        items = source[0]
        small = len(items) <= SYNC_SCAN_LIMIT and (
            predicate is None or sum(len(it.payload) for it in items) <= SYNC_SCAN_BYTES
        )
        if small:
            view.rescan(predicate, self.conn, source=source)
            self._install(view, filt)
            return
        self._scan_started = self.state.clock()
        self._scan_progress = 0.0
        self._scan_worker = self._scan(generation, view, filt, source)

    # An explicit description: by default Textual builds one from repr() of the arguments,
    # which for a 1,000,000-item snapshot froze the UI for seconds (bench/filter_scan.py).
    @work(
        thread=True,
        exclusive=True,
        group="rescan",
        exit_on_error=False,
        description="filter rescan",
    )
    def _scan(
        self,
        generation: int,
        view: FilteredView,
        filt: Filter,
        source: tuple[list[Item], int],
    ) -> None:
        worker = get_current_worker()

        def progress(done: int, total: int) -> None:
            self._scan_progress = done / total if total else 1.0

        # The compiled closure is the fast path; Filter.__call__ (used for the live
        # catch_up) never raises.
        predicate = None if filt is MATCH_ALL else filt.predicate
        try:
            ok = view.rescan(
                predicate,
                view.conn,
                progress=progress,
                cancelled=lambda: worker.is_cancelled,
                source=source,
                chunk=10_000,
                scan=None if filt is MATCH_ALL else filt.scan,
            )
        except Exception:
            ok = view.rescan(filt, view.conn, cancelled=lambda: worker.is_cancelled, source=source)
        if ok and not worker.is_cancelled:
            self.post_message(ScanDone(generation, view, filt))

    @on(ScanDone)
    def _scan_done(self, message: ScanDone) -> None:
        if message.generation != self._generation:
            return  # superseded
        self._scan_worker = None
        self._install(message.view, message.filt)

    def _install(self, view: FilteredView, filt: Filter) -> None:
        view.predicate = None if filt is MATCH_ALL else filt  # never raises on catch_up
        self._scan_started = None
        self._show_filter()
        self.stream.set_view(view)
        if self.paused:
            self.stream.paused = True  # pin the rows of the new view
        pending, self._pending_select = self._pending_select, None
        if pending is not None:
            self.stream.select_seq(pending)  # a frame another connection's view holds
        self._drop_stale_detail()
        pane = self.query_one("#stream-pane")
        if view.conn is None:
            pane.border_title = "Stream · all connections"
        else:
            pane.border_title = f"Stream · {safe_text(self.conn_title(view.conn))}"
        self._update_headers()
        self._update_placeholder()
        self.refresh_data(force=True)

    @property
    def scanning(self) -> bool:
        return self._scan_worker is not None

    def _show_filter(self) -> None:
        note = "until the pause" if self.paused and self.filter_expr else ""
        self.filter_bar.show_active(self.filter_expr, note)

    def _drop_stale_detail(self) -> None:
        """The detail shows a message of the stream as it is now, or nothing: after a new
        filter, connection or clear, a message no longer in the stream is not shown."""
        seq = self._detail_seq
        if seq is not None and self.stream.index_of(seq) is None:
            self._detail_seq = None
            self.detail.show(None)

    # ------------------------------------------------------------------ messages

    @on(ConnectionList.Selected)
    def _connection_selected(self, message: ConnectionList.Selected) -> None:
        if message.conn == self.conn:
            return
        self.conn = message.conn
        if self.paused:
            self._pause_base = self._arrival_counter()
        self._rebuild_view()

    @on(ConnectionList.Opened)
    def _connection_opened(self, message: ConnectionList.Opened) -> None:
        self.stream.focus()

    @on(ConnectionList.RowsChanged)
    def _connection_rows_changed(self) -> None:
        self._fit_connections()
        self._update_headers()

    @on(StreamView.CursorMoved)
    def _cursor_moved(self, message: StreamView.CursorMoved) -> None:
        self.intercept.sync_bindings()
        if message.seq is None or message.seq == self._detail_seq:
            return
        item = self.stream.item_for(message.seq)
        if item is not None:
            self._detail_seq = message.seq
            self.detail.show(item)

    @on(StreamView.Opened)
    def _stream_opened(self, message: StreamView.Opened) -> None:
        item = self.stream.item_for(message.seq)
        if item is not None and message.seq != self._detail_seq:
            self._detail_seq = message.seq
            self.detail.show(item)
        self.set_detail_open(True)
        self.detail.focus_target().focus()

    def set_detail_open(self, open_: bool) -> None:
        """Show or hide the detail pane (it keeps following the stream's cursor)."""
        if open_ == self.detail_open:
            return
        if not open_ and self.maximized is self.detail:
            self.minimize()
        self.detail_open = open_
        focused = self.focused
        if not open_ and focused is not None and self.detail in focused.ancestors_with_self:
            self.stream.focus()
        self.refresh_bindings()  # "v View" with the pane open
        self._layout_panes()

    @on(FilterBar.Submitted)
    def _filter_submitted(self, message: FilterBar.Submitted) -> None:
        self.apply_filter(message.expr)

    @on(FilterBar.Left)
    def _filter_left(self) -> None:
        self.stream.focus()

    def apply_filter(self, expr: str) -> bool:
        """Parse and apply; an invalid expression shows the error and keeps the last
        valid filter. Returns True when applied."""
        try:
            filt = filters.parse(expr, decode=self.state.live.decoded)
        except FilterError as e:
            self.filter_bar.show_error(e, expr)
            return False
        except Exception as e:  # a parser bug must not take the screen down
            self.filter_bar.show_error(FilterError(f"{type(e).__name__}: {e}", 1), expr)
            return False
        self.filter = filt
        self.filter_expr = expr.strip()
        self.filter_bar.clear_error()
        self._rebuild_view()
        self.stream.focus()
        return True

    # ------------------------------------------------------------------ actions

    def action_filter(self) -> None:
        self.filter_bar.input.focus()

    def action_toggle_pause(self) -> None:
        self.set_paused(not self.paused)

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        stream = self.stream
        if paused:
            self._pause_seq = self.session.last_seq
            # Following, or at the end: resuming follows again (it is what was on screen).
            self._resume_follow = stream.following or stream.scroll_offset.y >= stream.max_scroll_y
        self.paused = paused
        stream.paused = paused
        # On the pane, not the screen: restyling the whole screen cost 11-20 ms a press.
        self.query_one("#stream-pane").set_class(paused, "-paused")
        if paused:
            self._pause_base = self._arrival_counter()
        else:
            stream.update_rows()
            if self._resume_follow and not stream.moved_while_paused:
                stream.follow()
        self._show_filter()
        self.refresh_bindings()  # "space Pause" / "space Resume"
        self._update_placeholder()
        self.refresh_data(force=True)

    def action_pause(self) -> None:
        self.set_paused(True)

    def action_resume(self) -> None:
        self.set_paused(False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """What the footer shows (and what a key does) in the current state: space says
        Pause or Resume; Follow only when not following; View with the detail open."""
        if action == "pause":
            return not self.paused
        if action == "resume":
            return self.paused
        if action == "follow":
            return not self.stream.following
        if action == "cycle_view":
            return self.detail_open
        if action in MAIN_ACTIONS:
            return self.intercept.check(action)
        return True

    def selected_connection(self) -> Connection | None:
        """The highlighted connection; with "All", the connection of the selected
        message, or the only connection there is."""
        s = self.session
        if self.conn is not None:
            return s.connections.get(self.conn)
        seq = self.stream.cursor_seq
        item = s.get(seq) if seq is not None else None
        if item is None and self.detail.item is not None:
            item = self.detail.item
        if item is not None:
            return s.connections.get(item.conn)
        if len(s.connections) == 1:
            return next(iter(s.connections.values()))
        return None

    def _connection_for(self, title: str) -> Connection | None:
        conn = self.selected_connection()
        if conn is None:
            self.notify(
                "Select a connection (or a message) first.",
                title=title,
                severity="warning",
                markup=False,
            )
        return conn

    def action_handshake(self) -> None:
        # Nothing selected: the newest upgrade (a refusal, if that came last).
        conn = self.selected_connection() or newest_connection(self.session.connections.values())
        if conn is None:
            self.notify("No connection yet.", title="Handshake", severity="warning", markup=False)
        else:
            self.app.push_screen(HandshakeScreen(self.state, conn))

    def action_fault(self) -> None:
        conn = self._connection_for("Fault")
        if conn is not None:
            self.app.push_screen(FaultMenu(conn), partial(self._send, conn_tag(conn.id)))

    def action_inject(self) -> None:
        conn = self._connection_for("Inject")
        if conn is not None:
            live = self.state.live
            protocol = live.protocol_of(conn.id)
            dialog = InjectDialog(
                conn, protocol, partial(decoded_inject, live, conn.id) if protocol else None
            )
            self.app.push_screen(dialog, partial(self._send, conn_tag(conn.id)))

    def _send(self, label: str, cmd: Command | list[InjectCommand] | None) -> None:
        if isinstance(cmd, list):  # the frames of one protocol message, in order
            self.post_message(FramesRequested(cmd, label))
        elif cmd is not None:
            self.post_message(CommandRequested(cmd, label))

    def action_report(self) -> None:
        conn = self.selected_connection()
        self.app.push_screen(ReportScreen(self.state, conn.id if conn is not None else None))

    def action_cycle_view(self) -> None:
        self.detail.cycle_view()

    def action_toggle_detail(self) -> None:
        if not self.detail_open and self.detail.item is None:
            self.stream.action_open()  # the message under the cursor (or the newest)
            if self.detail.item is None:
                return
        self.set_detail_open(not self.detail_open)

    def action_toggle_tree(self) -> None:
        self.detail.toggle_tree()

    # ------------------------------------------------------------------ protocols,
    # fan-out and scrollback (docs/protocols.md, docs/scale.md, docs/store.md)

    def _new_view(self, predicate: Filter | None, conn: str | None) -> FilteredView:
        """A view of the buffer that goes on into the recording, when there is one."""
        return ScrollbackView(self.session, predicate, conn, index=self.state.recording)

    def _check_live(self) -> None:
        """A protocol chosen for a connection redraws what was read with the old one; a
        recording found since attaches to the stream."""
        live = self.state.live
        if live.version != self._live_version:
            self._live_version = live.version
            self.stream.forget_rows()
            self.detail.forget()
            if self.filter_expr:
                self._rebuild_view()  # proto: and d: read messages anew
        if self.state.recording is not self._recording:
            self._recording = self.state.recording
            view = self.stream.view
            if isinstance(view, ScrollbackView) and view.index is None:
                view.index = self._recording
                self.stream.forget_rows()
                self.stream.update_rows()

    def _annotate(self, item: Item) -> Text | None:
        return annotation(self.state.live, item, self.state.wall_clock())

    def action_pair(self) -> None:
        """``p``: the other half of the selected message's request/reply pair."""
        item = self.detail.item if self.detail_open else None
        if item is None:
            seq = self.stream.cursor_seq
            item = self.stream.item_for(seq) if seq is not None else None
        if item is None:
            self.notify("Select a message first.", title="Pair", severity="warning", markup=False)
            return
        partner = self.state.live.pairs.partner(item.seq)
        if partner is None:
            self.notify(
                f"#{item.seq} is neither a request with a reply nor a reply seen by this screen.",
                title="Pair",
                markup=False,
            )
            return
        self.show_seq(partner, "Pair")

    def show_seq(self, seq: int, title: str) -> bool:
        """Select ``seq`` in the stream (the detail follows), or show it in the detail when
        the filter or the connection hides it."""
        if self.stream.select_seq(seq):
            self.stream.focus() if not self.detail_open else None
            return True
        other = self.stream.item_for(seq) or self.session.get(seq)
        if other is not None and self.conn is not None and other.conn != self.conn:
            # a message of another connection: go to that connection's stream
            self._pending_select = seq
            self.connections.select(other.conn)
            return True
        if other is None:
            self.notify(
                f"#{seq} was evicted from the buffer.",
                title=title,
                severity="warning",
                markup=False,
            )
            return False
        self._detail_seq = seq
        self.detail.show(other)
        self.set_detail_open(True)
        self.notify(
            f"#{seq} is not in the stream as filtered: shown in the detail.",
            title=title,
            markup=False,
        )
        return True

    def action_protocol(self) -> None:
        """``P``: decode the selected connection as another protocol."""
        conn = self._connection_for("Protocol")
        if conn is None:
            return
        seq = self.stream.cursor_seq
        item = self.detail.item or (self.stream.item_for(seq) if seq is not None else None)
        self.app.push_screen(
            ProtocolMenu(self.state.live, conn, item), partial(self._set_protocol, conn.id)
        )

    def _set_protocol(self, conn: str, choice: str | None) -> None:
        if choice is None:
            return
        try:
            self.state.live.set_override(conn, None if choice == AUTO else choice)
        except ValueError as e:
            self.notify(str(e), title="Protocol", severity="error", markup=False)
            return
        name = self.state.live.protocol_of(conn)
        what = "automatic: " + (name or "not decoded") if choice == AUTO else (name or "none")
        self.notify(f"{conn_tag(conn)} decoded as {what}", title="Protocol", markup=False)
        self.refresh_data(force=True)

    def action_fanout(self) -> None:
        """``o``: the fan-out of the selected publication (or of the one a frame carried)."""
        seq = self.stream.cursor_seq
        item = self.detail.item if self.detail_open else None
        if item is None and seq is not None:
            item = self.stream.item_for(seq)
        live = self.state.live
        trace = live.trace_of(item) if item is not None else None
        if trace is None:
            if not live.fanout.active:
                msg = (
                    "No backplane is recorded: run a proxy with --backplane redis://... "
                    "--channels PATTERN."
                )
            else:
                msg = "Select a backplane publication (or a frame that carried one)."
            self.notify(msg, title="Fan-out", severity="warning", markup=False)
            return
        self.app.push_screen(FanoutScreen(self.state, trace), self._fanout_chosen)

    def _fanout_chosen(self, choice: tuple[str, int | str] | None) -> None:
        if choice is None:
            return
        kind, value = choice
        if kind == "seq" and isinstance(value, int):
            self.show_seq(value, "Fan-out")
        elif kind == "conn" and isinstance(value, str):
            self.connections.select(value)

    def action_clear(self) -> None:
        self.stream.clear()
        self._drop_stale_detail()
        self._update_placeholder()
        self.refresh_data(force=True)

    def action_follow(self) -> None:
        self.stream.follow()
        self.stream.focus()
        self.refresh_data(force=True)

    def _panes(self) -> list[Widget]:
        panes: list[Widget] = [self.connections, self.stream]
        if self.detail_open:
            panes.append(self.detail.focus_target())
        return panes

    def _pane_index(self) -> int | None:
        focused = self.focused
        for i, pane in enumerate(self._panes()):
            if focused is pane or (focused is not None and pane in focused.ancestors):
                return i
        if focused is not None and self.detail in focused.ancestors_with_self:
            return 2
        return None

    def _focus_pane(self, step: int) -> None:
        panes = self._panes()
        i = self._pane_index()
        target = panes[1] if i is None else panes[(i + step) % len(panes)]
        target.focus()

    def action_next_pane(self) -> None:
        self._focus_pane(+1)

    def action_previous_pane(self) -> None:
        self._focus_pane(-1)

    def action_back(self) -> None:
        if self.maximized is not None:
            self._unzoom()
        elif self.focused is self.stream and self.detail_open:
            self.set_detail_open(False)
        self.stream.focus()

    def action_toggle_zoom(self) -> None:
        if self.maximized is not None:
            self._unzoom()
            return
        i = self._pane_index()
        panes = [
            self.query_one("#connections-pane"),
            self.query_one("#stream-pane"),
            self.detail,
        ]
        pane = panes[1 if i is None else i]
        if i == 0:
            pane.styles.height = "1fr"
        self.maximized = pane

    def _unzoom(self) -> None:
        self.minimize()
        self._fit_connections()

    # ------------------------------------------------------------------ intercept

    def action_forward(self) -> None:
        self.intercept.forward()

    def action_edit(self) -> None:
        self.intercept.edit()

    def action_drop(self) -> None:
        self.intercept.drop()

    def action_forward_all(self) -> None:
        self.intercept.release_all(drop=False)

    def action_drop_all(self) -> None:
        self.intercept.release_all(drop=True)

    def action_next_held(self) -> None:
        self.intercept.next_held()

    def action_resend(self) -> None:
        self.intercept.resend()

    def action_breakpoint(self) -> None:
        self.intercept.breakpoint()

    def action_intercept(self) -> None:
        self.intercept.open_view()

    def action_breakpoints(self) -> None:
        self.intercept.open_view(focus="breakpoints")
