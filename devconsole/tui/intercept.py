"""Intercept in the TUI: the intercept view (``I``: breakpoints and held messages), the
actions on a held message (``f`` forward, ``e`` edit, ``d`` drop, ``F``/``D`` all of them),
``R`` resend and ``b`` new breakpoint, for the main screen and the intercept view alike.

``Interceptor`` holds what both screens do: it builds the Commands (ForwardCommand,
DropCommand, BreakpointCommand...) and posts ``CommandRequested``; the app sends them and
shows the result, as for faults. ``MainIntercept`` is the main screen's part: which
message is selected, which keys apply to it, the rows to re-render when an outcome
arrives. The held messages come from the Session through ``HeldTracker`` (held.py).

Resending on a new connection (``store.replay.resend``) is the one network call the TUI
makes itself: it opens a WebSocket like the recorded one, through the devconsole proxy
when it is a live one, so the new connection shows up in the list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from rich.console import Group, RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.geometry import Size
from textual.message import Message as TMessage
from textual.screen import ModalScreen, Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from devconsole.decoders import preview, safe_text
from devconsole.decoders.views import hexdump
from devconsole.model import (
    CLIENT,
    SERVER,
    Breakpoint,
    BreakpointCommand,
    Command,
    Connection,
    ConnState,
    DropCommand,
    EnableBreakpointCommand,
    ForwardCommand,
    Item,
    Message,
    Opcode,
    RemoveBreakpointCommand,
    conn_instance,
    held_key,
    held_ref,
)
from devconsole.text import (
    arrow,
    badge,
    conn_tag,
    fmt_bytes,
    fmt_bytes_short,
    fmt_elapsed,
    opcode_name,
)
from devconsole.tui.breakpoints import BreakpointDialog
from devconsole.tui.editor import EditDialog, Edited, parse_json, pretty_json
from devconsole.tui.fmt import BADGE_STYLES
from devconsole.tui.held import (
    HeldTracker,
    deadline_text,
    held_by,
    held_for,
    hold_spec,
    outcome_words,
)
from devconsole.tui.state import CommandRequested, ViewState

if TYPE_CHECKING:
    from devconsole.tui.main import MainScreen

HELD_STYLE = "bold black on yellow"
URGENT = 10.0  # seconds before a hold times out: its time turns red
PREVIEW_LINES = 200  # lines of the selected held message in the intercept view


# --------------------------------------------------------------------------- actions


class Interceptor:
    """The intercept actions of one screen: build a Command (maybe through a dialog) and
    post ``CommandRequested`` from ``screen``; the app sends it and shows the result."""

    def __init__(self, screen: Screen[Any], state: ViewState) -> None:
        self.screen = screen
        self.state = state
        self.tracker = HeldTracker.of(state.session)

    @property
    def session(self) -> Any:
        return self.state.session

    def _notify(self, message: str, title: str, severity: str = "warning") -> None:
        self.screen.notify(message, title=title, severity=severity, markup=False)  # type: ignore[arg-type]

    def send(self, cmd: Command, label: str = "") -> None:
        self.screen.post_message(CommandRequested(cmd, label))

    def on_hold(self, item: Item | None, title: str) -> Item | None:
        """``item`` if it is held now; otherwise None and a notification saying why."""
        if item is None:
            self._notify(
                "Select a held message (HOLD in the stream; n goes to the next one), or "
                "press I for the list of held messages.",
                title,
            )
            return None
        if not item.held:
            self._notify(
                f"#{item.seq} is not held: no breakpoint stopped it (n goes to the next held "
                "message).",
                title,
            )
            return None
        if item.outcome:
            self._notify(f"#{item.seq} is no longer held: {outcome_words(item)}.", title)
            return None
        return item

    def forward(self, item: Item | None) -> bool:
        """Forward ``item`` as it is; False (and a notification) if it is not held."""
        it = self.on_hold(item, "Forward")
        if it is not None:
            self.send(ForwardCommand(it.held, instance=conn_instance(it.conn)), conn_tag(it.conn))
        return it is not None

    def drop(self, item: Item | None) -> bool:
        it = self.on_hold(item, "Drop")
        if it is not None:
            self.send(DropCommand(it.held, instance=conn_instance(it.conn)), conn_tag(it.conn))
        return it is not None

    def edit(self, item: Item | None) -> None:
        it = self.on_hold(item, "Edit")
        if it is None:
            return
        if not isinstance(it, Message):
            self._notify(
                f"#{it.seq} is a {opcode_name(it.opcode)} frame: only data messages can be "
                "edited (f forwards it, d drops it).",
                "Edit",
            )
            return
        conn = self.session.connections.get(it.conn)

        def done(result: Edited | None) -> None:
            if result is None:
                return
            inst = conn_instance(it.conn)  # a merged view over Redis: its instance
            if result.unchanged:  # as it came: the very bytes the sender sent
                self.send(ForwardCommand(it.held, instance=inst), conn_tag(it.conn))
            else:
                cmd = ForwardCommand(
                    it.held, "", result.payload, result.opcode, more=result.more, instance=inst
                )
                self.send(cmd, conn_tag(it.conn))

        bp = hold_spec(self.tracker, it)
        from devconsole.tui.protocol import decoded_form

        dialog = EditDialog(
            it,
            conn,
            wall_clock=self.state.wall_clock,
            deadline=lambda now: deadline_text(it, bp, now),
            decoded=decoded_form(self.state.live, it),
        )
        self.screen.app.push_screen(dialog, done)

    def release_all(self, drop: bool, conn: str | None, selected: Item | None) -> None:
        """``F`` / ``D``: every held message of ``conn`` at once; without a connection ask
        first (that connection's, from the selected message, or everywhere)."""
        title = "Drop all" if drop else "Forward all"
        total = self.tracker.count()
        if not total:
            self._notify("Nothing is held.", title)
            return
        make: Callable[[str], Command] = (
            (lambda c: DropCommand(0, c)) if drop else (lambda c: ForwardCommand(0, c))
        )
        if conn is not None:
            if not self.tracker.count(conn):
                self._notify(f"Nothing is held on {conn_tag(conn)}.", title)
                return
            self.send(make(conn), conn_tag(conn))
            return
        held_conn = selected.conn if selected is not None and selected.on_hold else None
        counts = [(held_conn, self.tracker.count(held_conn))] if held_conn else []
        dialog = ScopeDialog(drop, counts, total, self.tracker.connections(), self._conn_path)

        def done(scope: str | None) -> None:
            if scope is not None:
                self.send(make(scope), conn_tag(scope) if scope else "")

        self.screen.app.push_screen(dialog, done)

    def _conn_path(self, conn: str) -> str:
        c = self.session.connections.get(conn)
        return c.path if c is not None else ""

    def new_breakpoint(self, expr: str, conn: str | None) -> None:
        c = self.session.connections.get(conn) if conn is not None else None
        if c is not None and not c.live:
            c = None  # a breakpoint on an ended connection would never hold anything

        def done(cmd: BreakpointCommand | None) -> None:
            if cmd is not None:
                self.send(cmd)

        self.screen.app.push_screen(BreakpointDialog(expr, c), done)

    # ---------------------------------------------------------------- resend

    def resend(self, item: Item | None) -> None:
        """``R``: the message again, edited first, on its live connection or on a new one."""
        if item is None:
            self._notify("Select a message to resend.", "Resend")
            return
        if not isinstance(item, Message):
            self._notify(
                f"#{item.seq} is a {opcode_name(item.opcode)} frame: only data messages are "
                "resent (i injects a ping).",
                "Resend",
            )
            return
        conn: Connection | None = self.session.connections.get(item.conn)
        live = conn is not None and conn.live and conn.state != ConnState.KILLED
        live = live and not (conn is not None and conn.half_open)
        if not live and (item.side != CLIENT or conn is None):
            why = "it has ended" if conn is not None else "it is no longer known"
            self._notify(
                f"{conn_tag(item.conn)} cannot take it ({why}), and only what the client "
                "sent can go on a new connection.",
                "Resend",
            )
            return
        from devconsole.store.replay import replay_headers

        redacted = replay_headers(conn.handshake)[1] if conn is not None else []
        proxy = self._proxy_for(conn)
        dialog = EditDialog(item, conn, resend=True, live=live, redacted=redacted, proxy=proxy)

        def done(result: Edited | None) -> None:
            if result is None:
                return
            if result.target == "live":
                from devconsole.store.replay import resend_command

                cmd = resend_command(item, result.payload)
                cmd.opcode = result.opcode
                self.send(cmd, conn_tag(item.conn))
            elif conn is not None:
                via = f"http://{proxy}" if result.via_proxy and proxy else None
                self.screen.app.run_worker(
                    self._resend_new(conn, result, via), group="resend", exit_on_error=False
                )

        self.screen.app.push_screen(dialog, done)

    def _proxy_for(self, conn: Connection | None) -> str:
        """The proxy a new connection goes through so it shows up here: the live proxy's
        address, unless the URL already points at it (a reverse proxy)."""
        if conn is None or not self.state.source_description.startswith("tap "):
            return ""
        addrs = [a.strip() for a in (self.session.proxy or "").split(",") if a.strip()]
        if not addrs:
            return ""
        try:
            parts = urlsplit(conn.url)
            port = parts.port or (443 if parts.scheme == "wss" else 80)
        except ValueError:
            return ""
        if any(_same_endpoint(a, parts.hostname or "", port) for a in addrs):
            return ""  # the URL is the proxy's own address
        return addrs[0]

    async def _resend_new(self, conn: Connection, result: Edited, via: str | None) -> None:
        from devconsole.store.replay import ReplayError, resend

        url = conn.url
        app = self.screen.app
        try:
            got = await resend(
                conn.handshake,
                result.opcode,
                result.payload,
                headers=result.headers,
                proxy=via,
                wait=1.0,
            )
        except ReplayError as e:
            hint = (
                " (a reverse proxy does not take proxied connections: ^t in the resend "
                "dialog sends directly)"
                if via
                else ""
            )
            app.notify(
                f"{e}{hint}", title="Resend failed", severity="error", markup=False, timeout=10
            )
            return
        except Exception as e:  # a network error must not take the screen down
            app.notify(
                f"{type(e).__name__}: {e}", title="Resend failed", severity="error", markup=False
            )
            return
        answers = [m for m in got if m.side == SERVER]
        text = f"{len(result.payload):,} bytes on a new connection to {safe_text(url)}"
        if answers:
            first = preview(answers[0], 60)
            text += f"; {len(answers)} answer{'s' if len(answers) != 1 else ''}: {first}"
        else:
            text += "; no answer within a second"
        app.notify(text, title="Resent", markup=False, timeout=8)


_LOOPBACK = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "::", ""}


def _same_endpoint(addr: str, host: str, port: int) -> bool:
    """Whether the listen address ``addr`` (``host:port``, ``[v6]:port``) is ``host:port``
    (a wildcard or loopback listener counts for a loopback host)."""
    a_host, _, a_port = addr.rpartition(":")
    a_host = a_host.strip("[]")
    if a_port != str(port):
        return False
    return a_host == host or (a_host in _LOOPBACK and host in _LOOPBACK)


class ScopeDialog(ModalScreen[str | None]):
    """``F`` / ``D`` without a connection: that of the selected message, or everywhere
    (which this dialog is the confirmation of). Dismisses with the connection id, ``""``
    for everywhere, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "c",
            "choose('conn')",
            "This connection",
            id="scope.connection",
            tooltip="Only the held messages of the selected message's connection",
        ),
        Binding(
            "a,y",
            "choose('all')",
            "Everywhere",
            id="scope.everywhere",
            tooltip="Every held message, on every connection",
        ),
        Binding("escape,n", "cancel", "Cancel", id="scope.cancel", tooltip="Do nothing"),
    ]

    def __init__(
        self,
        drop: bool,
        counts: list[tuple[str, int]],
        total: int,
        connections: int,
        path: Callable[[str], str],
    ) -> None:
        super().__init__()
        self.drop = drop
        self.counts = counts
        self.total = total
        self.connections = connections
        self.path = path

    def compose(self) -> ComposeResult:
        verb = "Drop" if self.drop else "Forward"
        with Vertical(id="scope-dialog"):
            opts: list[Option] = []
            for conn, n in self.counts:
                t = Text()
                t.append(" c ", "bold reverse")
                t.append(f" {verb.lower()} the {n} held on {conn_tag(conn)} ")
                t.append(safe_text(self.path(conn) or "/"), "dim")
                opts.append(Option(t, f"conn:{conn}"))
            n = self.connections
            if not (self.counts and self.counts[0][1] == self.total):  # else the same
                t = Text()
                t.append(" a ", "bold reverse")
                t.append(
                    f" {verb.lower()} all {self.total} held, on {n} connection"
                    + ("s" if n != 1 else "")
                )
                opts.append(Option(t, "all"))
            yield Static(
                Text(
                    "Dropped messages never reach their receiver."
                    if self.drop
                    else "Held messages go on to their receivers, in order.",
                    style="dim",
                ),
                id="scope-about",
            )
            yield OptionList(*opts, id="scope-options")

    def on_mount(self) -> None:
        dialog = self.query_one("#scope-dialog")
        dialog.border_title = "Drop all held messages" if self.drop else "Forward all held messages"
        dialog.border_subtitle = "c / a, or ↑↓ enter · esc cancel"
        self.query_one("#scope-options", OptionList).focus()

    @on(OptionList.OptionSelected, "#scope-options")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        oid = event.option.id or ""
        self.action_choose("all" if oid == "all" else "conn")

    def action_choose(self, which: str) -> None:
        if which == "all":
            self.dismiss("")
        elif self.counts:
            self.dismiss(self.counts[0][0])
        else:
            self.app.bell()

    def action_cancel(self) -> None:
        self.dismiss(None)


# --------------------------------------------------------------------------- main screen


# The main screen's intercept keys. f and e come first: while anything is held they lead
# the footer. d (drop) goes just before d (detail pane), which it wins over on a held
# message in the stream (see MainIntercept.check), so the footer keeps d where it was.
MAIN_BINDINGS: list[BindingType] = [
    Binding(
        "f",
        "forward",
        "Forward",
        id="forward",
        tooltip="Forward the selected held message as it is",
    ),
    Binding(
        "e",
        "edit",
        "Edit",
        id="edit",
        tooltip="Edit the selected held message (JSON validated, hex for binary), then forward it",
    ),
]
DROP_BINDING = Binding(
    "d",
    "drop",
    "Drop",
    id="drop",
    tooltip="Drop the selected held message: its receiver never sees it (on other "
    "messages d opens the detail pane)",
)
MAIN_BINDINGS_LATER: list[BindingType] = [
    Binding(
        "I",
        "intercept",
        "Intercept",
        show=False,  # the status bar says "⏸ 3 HELD (I)" when it matters
        id="intercept",
        tooltip="The intercept view: breakpoints, and the held messages oldest first",
    ),
    Binding(
        "F",
        "forward_all",
        "Forward all",
        show=False,
        id="forward_all",
        tooltip="Forward every held message of the stream's connection (with All "
        "connections: asks, then everywhere)",
    ),
    Binding(
        "D",
        "drop_all",
        "Drop all",
        show=False,
        id="drop_all",
        tooltip="Drop every held message of the stream's connection (with All connections: "
        "asks, then everywhere)",
    ),
    Binding(
        "n",
        "next_held",
        "Next held",
        show=False,
        id="next_held",
        tooltip="Select the next held message in the stream",
    ),
    Binding(
        "b",
        "breakpoint",
        "Breakpoint",
        show=False,
        id="breakpoint",
        tooltip="New breakpoint from the current filter (timeout, on timeout, control "
        "frames, this connection or all)",
    ),
    Binding(
        "B",
        "breakpoints",
        "Breakpoints",
        show=False,
        id="breakpoints",
        tooltip="The breakpoints: enable, disable, remove",
    ),
    Binding(
        "R",
        "resend",
        "Resend",
        show=False,
        id="resend",
        tooltip="Send the selected message again, edited first: on its live connection or "
        "on a new connection to the same URL",
    ),
]
MAIN_ACTIONS = frozenset(
    {"forward", "edit", "drop", "forward_all", "drop_all", "next_held", "resend"}
)


class MainIntercept:
    """The main screen's intercept keys and the held marks of its panes."""

    def __init__(self, main: MainScreen) -> None:
        self.main = main
        self.actions = Interceptor(main, main.state)
        self.tracker = self.actions.tracker
        self._shown: tuple[bool, bool, bool] = (False, False, False)

    def selected(self) -> Item | None:
        """The stream's selected message (what the detail pane shows)."""
        stream = self.main.stream
        seq = stream.cursor_seq
        if seq is None or stream.index_of(seq) is None:
            return None
        return stream.item_for(seq)

    def selected_held(self) -> Item | None:
        item = self.selected()
        return item if item is not None and item.on_hold else None

    def check(self, action: str) -> bool:
        """Which intercept keys apply now: f, e, F, D and n while anything is held (on a
        message that is not, f and e say how to pick one); d on a held message with the
        stream focused (elsewhere it opens and closes the detail pane)."""
        if action in ("forward", "edit"):  # shown while anything is held: they say how
            return self.tracker.count() > 0
        if action == "drop":
            return self.main.focused is self.main.stream and self.selected_held() is not None
        if action in ("forward_all", "drop_all", "next_held"):
            return self.tracker.count() > 0
        return True

    def sync_bindings(self) -> None:
        """Refresh the footer when what the keys do changed (the selected message held or
        not, something held at all)."""
        main = self.main
        shown = (
            self.selected_held() is not None,
            main.focused is main.stream,
            self.tracker.count() > 0,
        )
        if shown != self._shown:
            self._shown = shown
            main.refresh_bindings()

    def tick(self) -> None:
        """Rows whose message got its outcome are re-rendered (render caches are keyed by
        seq); the detail pane shows the message as it is now."""
        changed = self.tracker.take_changed()
        if changed:
            main = self.main
            main.stream.invalidate(changed)
            item = main.detail.item
            if item is not None and item.seq in changed:
                main.detail.show(item)
        self.sync_bindings()

    # ---------------------------------------------------------------- actions

    def forward(self) -> None:
        if self.actions.forward(self.selected()):
            self._advance()

    def edit(self) -> None:
        self.actions.edit(self.selected())

    def drop(self) -> None:
        if self.actions.drop(self.selected()):
            self._advance()

    def _advance(self) -> None:
        """After f or d, the next held message of the view below the cursor is selected
        (as the intercept view's list moves on), so f f f goes through them in order."""
        stream = self.main.stream
        cur = stream.cursor_seq or 0
        after = [
            it.seq
            for it in self.tracker.ordered()
            if it.seq > cur and stream.index_of(it.seq) is not None
        ]
        if after:
            stream.select_seq(min(after))

    def release_all(self, drop: bool) -> None:
        self.actions.release_all(drop, self.main.conn, self.selected())

    def resend(self) -> None:
        self.actions.resend(self.selected())

    def breakpoint(self) -> None:
        main = self.main
        self.actions.new_breakpoint(main.filter_expr, main.conn)

    def open_view(self, focus: str = "held") -> None:
        main = self.main
        screen = InterceptScreen(
            main.state,
            filter_expr=main.filter_expr,
            conn=main.conn,
            focus=focus,
            show_in_stream=self.show_in_stream,
        )
        main.app.push_screen(screen)

    def show_in_stream(self, seq: int) -> None:
        if not self.main.stream.select_seq(seq):
            self.main.notify(
                f"#{seq} is not in the stream's view (the filter or the connection hides it).",
                title="Intercept",
                severity="warning",
                markup=False,
            )
            return
        self.main.stream.focus()

    def next_held(self) -> None:
        """Select the next held message of the stream's view (from the cursor, wrapping)."""
        stream = self.main.stream
        seqs = sorted(
            it.seq for it in self.tracker.ordered() if stream.index_of(it.seq) is not None
        )
        if not seqs:
            self.main.notify(
                "No held message in the stream's view (I lists them all).",
                title="Next held",
                severity="warning",
                markup=False,
            )
            return
        cur = stream.cursor_seq or 0
        nxt = next((s for s in seqs if s > cur), seqs[0])
        stream.select_seq(nxt)
        stream.focus()


# --------------------------------------------------------------------------- the view


class HeldList(ScrollView, can_focus=True, inherit_bindings=False):
    """The held messages, oldest first, with how long each has been held. Rows are
    rendered when shown (they tick every second): only the visible ones."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False, id="held.up", tooltip="Previous"),
        Binding("down,j", "cursor(1)", "Down", show=False, id="held.down", tooltip="Next"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="held.page_up", tooltip="Page up"),
        Binding(
            "pagedown",
            "page(1)",
            "Page down",
            show=False,
            id="held.page_down",
            tooltip="Page down",
        ),
        Binding("home,g", "first", "Oldest", show=False, id="held.first", tooltip="Oldest held"),
        Binding("end,G", "last", "Newest", show=False, id="held.last", tooltip="Newest held"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "held--cursor",
        "held--cursor-blurred",
        "held--dim",
        "held--urgent",
    }

    DEFAULT_CSS = """
    HeldList {
        overflow-x: hidden;
        overflow-y: auto;
        & > .held--cursor { background: $accent 45%; text-style: bold; }
        & > .held--cursor-blurred { background: $accent 20%; }
        & > .held--dim { color: $text-muted; }
        & > .held--urgent { color: $error; text-style: bold; }
    }
    """

    class Highlighted(TMessage):
        """The selected held message changed (None: nothing held)."""

        def __init__(self, item: Item | None) -> None:
            super().__init__()
            self.item = item

    def __init__(
        self,
        tracker: HeldTracker,
        *,
        now: Callable[[], float],
        conn_label: Callable[[str], str] = conn_tag,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.tracker = tracker
        self.now = now
        self.conn_label = conn_label
        self.items: list[Item] = []
        self.cursor_held: int | str | None = None  # the selected message's held_key
        self._styles: dict[str, Style] = {}

    # ---------------------------------------------------------------- rows

    def update_items(self) -> None:
        """Take the held messages as they are now; the selection stays on its message,
        or, when that one was decided, moves to the one that took its place."""
        old = self.items
        items = list(self.tracker.ordered())
        self.items = items
        index = self.index
        if self.cursor_held is not None and index is None and items:
            before = [_key(it) for it in old].index(self.cursor_held) if old else 0
            gone = {_key(it) for it in old} - {_key(it) for it in items}
            before = min(before, len(items) - 1)
            # the first message after the decided one, else the last one
            after = [it for it in old[before:] if _key(it) not in gone]
            pick = after[0] if after else items[min(before, len(items) - 1)]
            self._select(_key(pick))
        elif self.cursor_held is None and items:
            self._select(_key(items[0]))
        elif not items and self.cursor_held is not None:
            self._select(None)
        self.virtual_size = Size(max(1, self.scrollable_content_region.width), len(items))
        self.refresh()

    @property
    def index(self) -> int | None:
        if self.cursor_held is None:
            return None
        for i, it in enumerate(self.items):
            if _key(it) == self.cursor_held:
                return i
        return None

    @property
    def selected(self) -> Item | None:
        i = self.index
        return self.items[i] if i is not None else None

    def _select(self, held: int | str | None) -> None:
        if held == self.cursor_held:
            return
        self.cursor_held = held
        i = self.index
        if i is not None:
            top = self.scroll_offset.y
            page = max(1, self.scrollable_content_region.height)
            if i < top:
                self.scroll_to(y=i, animate=False, force=True)
            elif i >= top + page:
                self.scroll_to(y=i - page + 1, animate=False, force=True)
        self.refresh()
        self.post_message(self.Highlighted(self.selected))

    def select_index(self, i: int) -> None:
        if self.items:
            self._select(_key(self.items[max(0, min(len(self.items) - 1, i))]))

    # ---------------------------------------------------------------- rendering

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(name)
        return style

    @staticmethod
    def header(width: int) -> Text:
        t = Text(no_wrap=True, style="bold", end="")
        t.append(f"  {'held':>5} {'for':>6} {'conn':>9}  {'type':<5} {'size':>6} {'bp':>3}")
        t.append("  preview")
        t.truncate(width)
        return t

    def row_text(self, item: Item, width: int, now: float) -> Text:
        t = Text(no_wrap=True, end="")
        t.append("▸ " if _key(item) == self.cursor_held else "  ", "bold")
        t.append(f"{held_ref(item.conn, item.held):>5} ")
        waited = held_for(item, now)
        bp = hold_spec(self.tracker, item)
        urgent = bp is not None and bp.timeout - waited <= URGENT
        t.append(f"{fmt_elapsed(waited):>6} ", self._style("held--urgent") if urgent else "")
        t.append(f"{self.conn_label(item.conn):>7} ")
        t.append(arrow(item.side) + " ", "bold yellow" if item.side == CLIENT else "bold green")
        b = badge(item)
        t.append(f"{b:<5}", BADGE_STYLES.get(b, "bold"))
        t.append(f" {fmt_bytes_short(item.size):>6} ", self._style("held--dim"))
        by = str(item.breakpoint) if item.breakpoint or not item.rule else "r"  # a rule's hold
        t.append(f"{by:>3}  ", self._style("held--dim"))
        room = width - t.cell_len
        if room > 0:
            t.append(preview(item, room))
        t.truncate(width)
        return t

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        row = y + self.scroll_offset.y
        base = self.rich_style
        if row >= len(self.items):
            if not self.items and y == 0:
                text = Text("  Nothing is held.", style="dim italic")
                text.stylize_before(base)
                return Strip(text.render(self.app.console)).crop_extend(0, width, base)
            return Strip.blank(width, base)
        item = self.items[row]
        text = self.row_text(item, width, self.now())
        text.stylize_before(base)
        strip = Strip(text.render(self.app.console), text.cell_len).crop_extend(0, width, base)
        if _key(item) == self.cursor_held:
            name = "held--cursor" if self.has_focus else "held--cursor-blurred"
            strip = Strip(
                Segment.apply_style(list(strip), post_style=self._style(name)),
                strip.cell_length,
            )
        return strip

    # ---------------------------------------------------------------- keys

    def action_cursor(self, step: int) -> None:
        i = self.index
        self.select_index(0 if i is None else i + step)

    def action_page(self, step: int) -> None:
        i = self.index or 0
        self.select_index(i + step * max(1, self.scrollable_content_region.height))

    def action_first(self) -> None:
        self.select_index(0)

    def action_last(self) -> None:
        self.select_index(len(self.items) - 1)

    def on_click(self, event: events.Click) -> None:
        row = event.y + self.scroll_offset.y
        if 0 <= row < len(self.items):
            self.select_index(row)

    def on_resize(self) -> None:
        self.virtual_size = Size(max(1, self.scrollable_content_region.width), len(self.items))

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


def _key(it: Item) -> int | str:
    return held_key(it.conn, it.held)


def breakpoint_text(bp: Breakpoint, holding: int = 0, gone: bool = False) -> Text:
    """One breakpoint: its state, filter and settings (the filter escaped); ``gone``: its
    instance (a merged view over Redis) is not heard from, so it holds nothing now."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"{bp.ref:>3} ", "bold")
    if bp.enabled:
        t.append(" on  ", "bold black on green")
    else:
        t.append(" off ", "bold white on grey37")
    t.append(" ")
    t.append(safe_text(bp.filter), "bold" if bp.enabled else "dim")
    details = [conn_tag(bp.conn) if bp.conn else "every connection"]
    details.append(f"{bp.timeout:g}s then {bp.on_timeout}")
    if bp.control:
        details.append("control frames too")
    if holding:
        details.append(f"holding {holding}")
    if gone:
        t.append(f"  {bp.instance} gone", "bold yellow")
    t.append("  " + " · ".join(details), "dim")
    return t


class InterceptScreen(ModalScreen[None]):
    """The intercept view: the breakpoints (enable, disable, remove, add) and the held
    messages, oldest first, with how long each has been held; the selected one in full
    below. It refreshes itself (four times a second; the held times tick each second)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "f",
            "forward",
            "Forward",
            id="intercept.forward",
            tooltip="Forward the selected held message as it is",
        ),
        Binding(
            "e",
            "edit",
            "Edit",
            id="intercept.edit",
            tooltip="Edit the selected held message, then forward it",
        ),
        Binding(
            "d",
            "drop",
            "Drop",
            id="intercept.drop",
            tooltip="Drop the selected held message: its receiver never sees it",
        ),
        Binding(
            "F",
            "forward_all",
            "Forward all",
            id="intercept.forward_all",
            tooltip="Forward every held message: of the selected message's connection, or "
            "everywhere (asks which)",
        ),
        Binding(
            "D",
            "drop_all",
            "Drop all",
            id="intercept.drop_all",
            tooltip="Drop every held message: of the selected message's connection, or "
            "everywhere (asks which)",
        ),
        Binding(
            "R",
            "resend",
            "Resend",
            show=False,
            id="intercept.resend",
            tooltip="Send the selected message again (edited first)",
        ),
        Binding(
            "enter",
            "show_in_stream",
            "In stream",
            id="intercept.show",
            tooltip="Close this view and select the held message in the stream",
        ),
        Binding(
            "b",
            "new_breakpoint",
            "New breakpoint",
            id="intercept.new_breakpoint",
            tooltip="New breakpoint from the stream's filter",
        ),
        Binding(
            "space",
            "toggle_breakpoint",
            "On/off",
            id="intercept.toggle_breakpoint",
            tooltip="Enable or disable the selected breakpoint (what it holds stays held)",
        ),
        Binding(
            "x,delete",
            "remove_breakpoint",
            "Remove",
            id="intercept.remove_breakpoint",
            tooltip="Remove the selected breakpoint (what it holds stays held)",
        ),
        Binding(
            "tab",
            "switch_pane",
            "Breakpoints/held",
            show=False,
            id="intercept.switch",
            tooltip="Go between the breakpoints and the held messages",
        ),
        Binding(
            "question_mark",
            "app.help",
            "Help",
            show=False,
            id="intercept.help",
            tooltip="Keys and filter syntax",
        ),
        Binding(
            "escape,I",
            "dismiss",
            "Close",
            id="intercept.close",
            tooltip="Close the intercept view",
        ),
    ]

    HELD_ACTIONS = frozenset({"forward", "edit", "drop", "resend", "show_in_stream"})
    BREAKPOINT_ACTIONS = frozenset({"toggle_breakpoint", "remove_breakpoint"})

    def __init__(
        self,
        state: ViewState,
        *,
        filter_expr: str = "",
        conn: str | None = None,
        focus: str = "held",
        show_in_stream: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self.state = state
        self.session = state.session
        self.filter_expr = filter_expr
        self.conn = conn
        self.initial_focus = focus
        self.show_in_stream = show_in_stream
        self.actions = Interceptor(self, state)
        self.tracker = self.actions.tracker
        self._version = -1
        self._second = -1
        self._bps: tuple[tuple[str, bool, str], ...] = ()
        self._preview_for: tuple[int, str] | None = None

    # ---------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        with Vertical(id="intercept-dialog"):
            yield Static(id="intercept-bp-title", classes="intercept-title")
            yield OptionList(id="intercept-breakpoints")
            yield Static(id="intercept-held-title", classes="intercept-title")
            yield Static(id="intercept-held-header", classes="column-header")
            yield HeldList(self.tracker, now=self.state.wall_clock, id="intercept-held")
            with VerticalScroll(id="intercept-preview-scroll"):
                yield Static(id="intercept-preview")
        yield Footer()

    @property
    def held_list(self) -> HeldList:
        return self.query_one("#intercept-held", HeldList)

    @property
    def bp_list(self) -> OptionList:
        return self.query_one("#intercept-breakpoints", OptionList)

    def on_mount(self) -> None:
        dialog = self.query_one("#intercept-dialog")
        dialog.border_title = "Intercept"
        dialog.border_subtitle = "f forward · e edit · d drop · b breakpoint · esc close"
        self.refresh_data(force=True)
        if self.initial_focus == "breakpoints" or not self.held_list.items:
            self.bp_list.focus()
        else:
            self.held_list.focus()
        self.set_interval(0.25, self.refresh_data, name="intercept-refresh")

    def on_resize(self) -> None:
        self.query_one("#intercept-dialog").set_class(
            self.size.width < 100 or self.size.height < 30, "-compact"
        )
        self.query_one("#intercept-held-header", Static).update(
            HeldList.header(self.held_list.scrollable_content_region.width or self.size.width)
        )

    # ---------------------------------------------------------------- data

    def refresh_data(self, force: bool = False) -> None:
        """New or decided held messages and breakpoint changes when the Session moved;
        the held times every second."""
        s = self.session
        if s.version != self._version or force:
            self._version = s.version
            self._update_breakpoints()
            self.held_list.update_items()
            self._update_titles()
            self._update_preview()
            self.refresh_bindings()
        second = int(self.state.wall_clock())
        if second != self._second:
            self._second = second
            self.held_list.refresh()
            self._update_preview()

    def _update_titles(self) -> None:
        n = len(self.session.breakpoints)
        on = sum(1 for bp in self.session.breakpoints if bp.enabled)
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"Breakpoints ({n}" + (f", {on} on" if n and on != n else "") + ")", "bold")
        t.append("   b new · space on/off · x remove", "dim")
        self.query_one("#intercept-bp-title", Static).update(t)
        held = self.tracker.count()
        t = Text(no_wrap=True, overflow="ellipsis")
        if held:
            conns = self.tracker.connections()
            t.append(f" ⏸ {held} held ", HELD_STYLE)
            t.append(f" on {conns} connection{'s' if conns != 1 else ''}, oldest first", "bold")
            t.append("   f forward · e edit · d drop · F/D all · enter: in the stream", "dim")
        else:
            t.append("Held messages (none)", "bold")
            t.append(
                "   a message that matches an enabled breakpoint waits here"
                if n
                else "   b adds a breakpoint from the stream's filter",
                "dim",
            )
        self.query_one("#intercept-held-title", Static).update(t)

    def _update_breakpoints(self) -> None:
        bps = self.session.breakpoints
        holding: dict[str, int] = {}  # by breakpoint ref (INSTANCE/ID in a merged view)
        for it in self.tracker.ordered():
            ref = held_ref(it.conn, it.breakpoint)
            holding[ref] = holding.get(ref, 0) + 1
        instances = self.tracker.session.instances
        gone = {
            bp.ref
            for bp in bps
            if bp.instance in instances and instances[bp.instance].state != "up"
        }
        key = tuple(
            (bp.ref, bp.enabled, f"{bp.filter}|{holding.get(bp.ref, 0)}|{bp.ref in gone}")
            for bp in bps
        )
        if key == self._bps:
            return
        self._bps = key
        lst = self.bp_list
        highlighted = lst.highlighted_option.id if lst.highlighted_option is not None else None
        lst.clear_options()
        if not bps:
            lst.add_option(Option(Text("  No breakpoints: b adds one.", "dim italic"), "none"))
            lst.highlighted = None
            return
        lst.add_options(
            Option(breakpoint_text(bp, holding.get(bp.ref, 0), bp.ref in gone), f"bp:{bp.ref}")
            for bp in bps
        )
        ids = [f"bp:{bp.ref}" for bp in bps]
        lst.highlighted = ids.index(highlighted) if highlighted in ids else 0

    def _update_preview(self) -> None:
        item = self.held_list.selected
        static = self.query_one("#intercept-preview", Static)
        if item is None:
            if self._preview_for is not None:
                self._preview_for = None
                static.update("")
            return
        now = self.state.wall_clock()
        bp = hold_spec(self.tracker, item)
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f" held {held_ref(item.conn, item.held)} ", HELD_STYLE)
        head.append(f" seq {item.seq} · ")
        head.append(f"{conn_tag(item.conn)} ", "bold")
        c = self.session.connections.get(item.conn)
        if c is not None:
            head.append(safe_text(c.path or "/") + " ")
        who = "client → server" if item.side == CLIENT else "server → client"
        head.append(f"· {who} · {opcode_name(item.opcode)} {fmt_bytes(item.size)}")
        head.append(f" · held {fmt_elapsed(held_for(item, now))}", "yellow")
        deadline = deadline_text(item, bp, now)
        if deadline:
            head.append(f", {deadline}", "dim")
        head.append("\n")
        if not item.breakpoint and item.rule:  # a rule's hold (docs/rules.md)
            head.append(f"{held_by(item)} (rules file)", "dim bold")
        else:
            head.append(f"breakpoint {item.breakpoint}: ", "dim")
            head.append(safe_text(bp.filter) if bp is not None else "(removed)", "dim bold")
        key = (item.seq, head.plain)
        if key == self._preview_for:
            return
        same_item = self._preview_for is not None and self._preview_for[0] == item.seq
        self._preview_for = key
        static.update(Group(head, Text(""), held_body(item)))
        if not same_item:
            self.query_one("#intercept-preview-scroll").scroll_home(animate=False)

    @on(HeldList.Highlighted)
    def _highlighted(self) -> None:
        self._update_preview()
        self.refresh_bindings()

    # ---------------------------------------------------------------- keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.HELD_ACTIONS:
            return self.held_list.selected is not None
        if action in ("forward_all", "drop_all"):
            return self.tracker.count() > 0
        if action in self.BREAKPOINT_ACTIONS:
            return self.focused is self.bp_list and self._selected_bp() is not None
        return True

    def _selected_bp(self) -> Breakpoint | None:
        opt = self.bp_list.highlighted_option
        if opt is None or not (opt.id or "").startswith("bp:"):
            return None
        ref = (opt.id or "bp:0")[3:]
        return next((bp for bp in self.session.breakpoints if bp.ref == ref), None)

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    @on(OptionList.OptionHighlighted, "#intercept-breakpoints")
    def _bp_highlighted(self) -> None:
        self.refresh_bindings()

    @on(OptionList.OptionSelected, "#intercept-breakpoints")
    def _bp_selected(self) -> None:
        self.action_toggle_breakpoint()

    def action_forward(self) -> None:
        self.actions.forward(self.held_list.selected)

    def action_edit(self) -> None:
        self.actions.edit(self.held_list.selected)

    def action_drop(self) -> None:
        self.actions.drop(self.held_list.selected)

    def action_forward_all(self) -> None:
        self.actions.release_all(False, None, self.held_list.selected)

    def action_drop_all(self) -> None:
        self.actions.release_all(True, None, self.held_list.selected)

    def action_resend(self) -> None:
        self.actions.resend(self.held_list.selected)

    def action_show_in_stream(self) -> None:
        item = self.held_list.selected
        if item is None:
            return
        self.dismiss(None)
        if self.show_in_stream is not None:
            self.show_in_stream(item.seq)

    def action_new_breakpoint(self) -> None:
        self.actions.new_breakpoint(self.filter_expr, self.conn)

    def action_toggle_breakpoint(self) -> None:
        bp = self._selected_bp()
        if bp is None:
            self.app.bell()
            return
        self.actions.send(EnableBreakpointCommand(bp.id, not bp.enabled, instance=bp.instance))

    def action_remove_breakpoint(self) -> None:
        bp = self._selected_bp()
        if bp is None:
            self.app.bell()
            return
        self.actions.send(RemoveBreakpointCommand(bp.id, instance=bp.instance))

    def action_switch_pane(self) -> None:
        if self.focused is self.held_list:
            self.bp_list.focus()
        else:
            self.held_list.focus()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


def held_body(item: Item) -> RenderableType:
    """The payload of a held message: JSON pretty-printed, text, or a hex dump."""
    data = item.payload
    lines: str
    if item.opcode == Opcode.TEXT and getattr(item, "utf8_ok", True):
        text = data.decode("utf-8", "replace")
        try:
            lines = pretty_json(parse_json(text))
        except ValueError:
            lines = text
        body = Text(safe_text(lines, keep_newlines=True))
    elif isinstance(item, Message) or item.opcode != Opcode.CLOSE:
        body = Text(hexdump(data[:4096]))
    else:
        body = Text(preview(item, 200))
    parts = body.split("\n")
    if len(parts) > PREVIEW_LINES:
        body = Text("\n").join(parts[:PREVIEW_LINES])
        body.append(f"\n… {len(parts) - PREVIEW_LINES:,} more lines", "dim")
    if isinstance(item, Message) and item.truncated:
        body.append(
            f"\n(the capture kept {len(data):,} of {item.size:,} bytes; all of it is forwarded)",
            "dim",
        )
    return body


__all__ = [
    "DROP_BINDING",
    "MAIN_ACTIONS",
    "MAIN_BINDINGS",
    "MAIN_BINDINGS_LATER",
    "HeldList",
    "InterceptScreen",
    "Interceptor",
    "MainIntercept",
    "ScopeDialog",
    "held_body",
]
