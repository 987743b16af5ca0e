"""The detail pane: one message, shown through the decoder registry's views.

The best view is picked automatically (``decoders.best_view``); ``v`` cycles through the
views that fit the message (``decoders.views_for``) plus the TUI's own "frames" view
(how the message was fragmented, RSV bits, compression) and, for close frames without a
registry view, a "close" view. A view the user picked stays picked while it fits.
Everything shown is built from ``Text`` objects over escaped strings (``safe_text``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.containers import ScrollableContainer, Vertical
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Static, Tree
from textual.widgets.tree import TreeNode

from devconsole import decoders
from devconsole.decoders import Decoded, safe_text
from devconsole.model import (
    CLIENT,
    ControlFrame,
    Item,
    Message,
    Opcode,
    close_code_meaning,
)
from devconsole.text import (
    badge,
    direction_words,
    fmt_bytes,
    fmt_time,
    opcode_name,
    rsv_names,
)
from devconsole.tui.editor import side_by_side
from devconsole.tui.fmt import BADGE_STYLES
from devconsole.tui.held import held_by, outcome_words

FRAMES_VIEW = "frames"
EDITED_VIEW = "edited"  # a held message forwarded edited: original and sent side by side
CLOSE_VIEW = "close"
MAX_TEXT = 256 * 1024  # characters of a text view rendered at once
MAX_TREE_NODES = 5000
NO_WRAP_VIEWS = frozenset({"hex", "hexdump", "hex dump"})
RAW_CHARS = 400  # of the raw form shown under a protocol's tree
RAW_MIN_HEIGHT = 16  # rows the pane needs to show it


@dataclass(slots=True)
class Shown:
    """A rendered view, whichever produced it."""

    view: str
    text: str | None = None
    renderable: RenderableType | None = None
    tree: Any = None  # decoders.Node
    error: str | None = None
    note: str | None = None


MAX_FRAME_ROWS = 200  # a message of 100,000 tiny frames is summarised, not listed


def single_frame_payload(wire_size: int, masked: bool) -> int | None:
    """The payload length of a lone frame from its wire size (RFC 6455 5.2 header
    lengths: 2 bytes, +2 or +8 extended length, +4 mask)."""
    base = 2 + (4 if masked else 0)
    for ext, low, high in ((0, 0, 125), (2, 126, 0xFFFF), (8, 0x10000, 1 << 63)):
        n = wire_size - base - ext
        if low <= n <= high:
            return n
    return None


def frames_renderable(item: Item) -> RenderableType:
    """Frame by frame: opcode, FIN, RSV bits and payload length on the wire, from the
    Message's ``frames``/``frame_sizes``/``rsv``/``compressed`` (control frames are one
    frame). ``frame_sizes`` may be capped by the capture; ``frames`` is exact."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("opcode")
    table.add_column("FIN", justify="center")
    table.add_column("RSV")
    table.add_column("payload on the wire", justify="right")
    notes: list[Text] = []
    masked = item.side == CLIENT  # client frames are masked (RFC 6455 5.3)
    if isinstance(item, Message):
        count = max(1, item.frames)
        sizes = list(item.frame_sizes)
        if count == 1 and not sizes:
            one = single_frame_payload(item.wire_size, masked)
            sizes = [one] if one is not None else []
        for i in range(min(count, MAX_FRAME_ROWS)):
            op = item.opcode if i == 0 else Opcode.CONTINUATION
            table.add_row(
                Text(str(i + 1)),
                Text(opcode_name(op)),
                Text("1" if i == count - 1 else "0"),
                Text(rsv_names(item.rsv) if i == 0 else "-"),
                Text(f"{sizes[i]:,}" if i < len(sizes) else "?"),
            )
        head = Text()
        head.append(f"{'fragmented into ' if count > 1 else ''}{count:,} frame")
        head.append("s" if count != 1 else "")
        head.append(f"  message {item.size:,} B  on the wire {item.wire_size:,} B")
        if len(sizes) == count:
            head.append(f" (headers {item.wire_size - sum(sizes):,} B)", "dim")
        notes.append(head)
        if count > MAX_FRAME_ROWS:
            notes.append(Text(f"first {MAX_FRAME_ROWS} frames listed", style="dim"))
        if count > 1 and len(sizes) < count:
            notes.append(Text(f"sizes of {count - len(sizes):,} frames were not kept", style="dim"))
        if item.compressed:
            notes.append(
                Text(
                    "permessage-deflate: compressed (RSV1 on the first frame); frame sizes "
                    "are compressed, the message size is inflated.",
                    style="dim",
                )
            )
    else:
        table.add_row(
            Text("1"),
            Text(opcode_name(item.opcode)),
            Text("1"),
            Text("-"),
            Text(f"{item.size:,}"),
        )
        notes.append(Text(f"control frame  on the wire {item.wire_size:,} B"))
    notes.append(
        Text("client frames are masked" if masked else "server frames are unmasked", "dim")
    )
    return Group(*notes, table)


def close_renderable(item: ControlFrame) -> RenderableType:
    t = Text()
    if item.code is None:
        t.append("no status code", "bold")
        t.append(" (1005: the close frame carried no payload)\n", "dim")
    else:
        t.append(f"{item.code} ", "bold")
        t.append(close_code_meaning(item.code) + "\n")
    t.append("reason: ", "dim")
    t.append(safe_text(repr(item.reason)) if item.reason else "(none)")
    if item.error:
        t.append("\n")
        t.append(safe_text(item.error), "bold red")
    return t


def _node_label(node: Any) -> Text:
    label = Text()
    label.append(safe_text(str(getattr(node, "label", ""))), "bold")
    value = getattr(node, "value_repr", None)
    if value:
        label.append(": ", "dim")
        label.append(safe_text(str(value)), "cyan")
    return label


def fill_tree(tree: Tree[None], root: Any, limit: int = MAX_TREE_NODES) -> int:
    """Populate ``tree`` from a decoders ``Node``; labels are Text (a ``str`` label would
    be parsed as markup by Tree). Returns the number of nodes added."""
    tree.clear()
    tree.root.set_label(_node_label(root))
    count = 0

    def add(parent: TreeNode[None], node: Any, depth: int) -> None:
        nonlocal count
        children = list(getattr(node, "children", None) or ())
        for i, child in enumerate(children):
            if count >= limit:
                parent.add_leaf(Text(f"… {len(children) - i} more", style="dim italic"))
                return
            count += 1
            if getattr(child, "children", None):
                branch = parent.add(_node_label(child), expand=depth < 2)
                add(branch, child, depth + 1)
            else:
                parent.add_leaf(_node_label(child))

    add(tree.root, root, 0)
    tree.root.expand()
    return count


class DetailTree(Tree[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        # Space pauses everywhere in devconsole, the tree included.
        Binding(
            "space",
            "screen.toggle_pause",
            "Pause",
            show=False,
            id="pause",
            tooltip="Pause or resume the stream (capture continues)",
        ),
        Binding(
            "shift+space",
            "toggle_expand_all",
            "Expand all",
            show=False,
            id="detail.expand_all",
            tooltip="Expand or collapse the whole tree",
        ),
    ]


class DetailPane(Vertical):
    """The selected message through the decoder views."""

    def __init__(
        self,
        *,
        tz: _dt.tzinfo | None = None,
        conn_label: Callable[[str], str] | None = None,
        id: str | None = None,
        decode: Callable[[Item], Decoded | None] | None = None,
        annotate: Callable[[Item], Text | None] | None = None,
    ) -> None:
        super().__init__(id=id)
        self.tz = tz
        self.conn_label = conn_label or (lambda c: c)
        # the connection's protocol reading of an item, and a line about it (its
        # protocol, its request or reply, a publication's fan-out): devconsole.tui.protocol
        self.decode = decode or (lambda item: None)
        self.annotate = annotate
        self.item: Item | None = None
        self.view_names: list[str] = []
        self.view_name: str | None = None
        self.preferred: str | None = None  # the view the user picked with v
        self.tree_mode = True  # structured views as a tree (t: pretty text)
        self.has_tree = False
        self._cache: LRUCache[tuple[int, str], Shown] = LRUCache(64)

    def compose(self) -> ComposeResult:
        yield Static(id="detail-views")
        yield Static(id="detail-meta")
        with ContentSwitcher(initial="detail-text-scroll", id="detail-switch"):
            with ScrollableContainer(id="detail-text-scroll"):
                yield Static(id="detail-text")
            yield DetailTree(Text("payload"), id="detail-tree")
        yield Static(id="detail-raw")  # beside a protocol's tree: the message as sent

    def on_mount(self) -> None:
        self.show(None)

    def on_resize(self) -> None:
        if self.item is not None:
            self._show_raw(self.item)

    # ------------------------------------------------------------------ public API

    def focus_target(self) -> Widget:
        switch = self.query_one("#detail-switch", ContentSwitcher)
        if switch.current == "detail-tree":
            return self.query_one("#detail-tree", DetailTree)
        return self.query_one("#detail-text-scroll")

    def views_for(self, item: Item) -> list[str]:
        names: list[str] = []
        for view in decoders.views_for(item, self.decode(item)):
            if view.name not in names:
                names.append(view.name)
        if (
            isinstance(item, ControlFrame)
            and item.opcode == Opcode.CLOSE
            and CLOSE_VIEW not in names
        ):
            names.insert(0, CLOSE_VIEW)
        if FRAMES_VIEW not in names:
            names.append(FRAMES_VIEW)
        if isinstance(item, Message) and item.edited is not None:
            names.insert(0, EDITED_VIEW)
        return names

    def show(self, item: Item | None) -> None:
        """Show ``item`` (None: the hint), in the preferred view when it fits."""
        self.item = item
        if item is None:
            self.view_names = []
            self.view_name = None
            self.has_tree = False
            self._update_header()
            self.query_one("#detail-raw", Static).display = False
            self._show_text(
                Text(
                    "Select a message: ↑/↓ in the stream, Enter.",
                    style="dim italic",
                )
            )
            return
        self.view_names = self.views_for(item)
        if self.preferred in self.view_names:
            self.view_name = self.preferred
        else:
            best = decoders.best_view(item, self.decode(item))
            name = getattr(best, "name", None)
            if isinstance(item, ControlFrame) and item.opcode == Opcode.CLOSE:
                name = name if name == CLOSE_VIEW else CLOSE_VIEW
            if EDITED_VIEW in self.view_names:
                name = EDITED_VIEW
            self.view_name = name if name in self.view_names else self.view_names[0]
        self._render_current()

    def cycle_view(self, step: int = 1) -> str | None:
        if self.item is None or not self.view_names:
            return None
        i = self.view_names.index(self.view_name) if self.view_name in self.view_names else 0
        self.view_name = self.view_names[(i + step) % len(self.view_names)]
        self.preferred = self.view_name
        self._render_current()
        return self.view_name

    def refresh_item(self) -> None:
        if self.item is not None:
            self._render_current()

    def forget(self) -> None:
        """Render again from scratch (a connection's protocol was changed), in the view
        that fits now."""
        self._cache.clear()
        self.show(self.item)

    # ------------------------------------------------------------------ rendering

    def _rendered(self, item: Item, name: str) -> Shown:
        key = (item.seq, name)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if name == FRAMES_VIEW:
            shown = Shown(name, renderable=frames_renderable(item))
        elif name == EDITED_VIEW and isinstance(item, Message):
            shown = Shown(name, renderable=side_by_side(item))
        elif (
            name == CLOSE_VIEW
            and isinstance(item, ControlFrame)
            and decoders.get_view(CLOSE_VIEW) is None
        ):
            shown = Shown(name, renderable=close_renderable(item))
        else:
            try:
                d = self.decode(item)
                if d is not None and name == d.protocol:
                    r = decoders.render(item, name, d)
                else:
                    view = decoders.get_view(name)
                    if view is None:
                        raise LookupError(f"no view named {name!r}")
                    r = view.render(item.payload, item)
                shown = Shown(
                    name,
                    text=getattr(r, "text", None),
                    # a close frame is three lines: its tree adds nothing
                    tree=None if name == CLOSE_VIEW else getattr(r, "tree", None),
                    error=getattr(r, "error", None),
                    note=getattr(r, "note", None),
                )
            except Exception as e:  # a decoder bug must not take the screen down
                shown = Shown(name, text=None, error=f"{type(e).__name__}: {e}")
        self._cache[key] = shown
        return shown

    def _render_current(self) -> None:
        item = self.item
        if item is None or self.view_name is None:
            return
        shown = self._rendered(item, self.view_name)
        self.has_tree = shown.tree is not None
        self._update_header(shown)
        self._show_raw(item)
        if shown.tree is not None and self.tree_mode:
            fill_tree(self.query_one("#detail-tree", DetailTree), shown.tree)
            self.query_one("#detail-switch", ContentSwitcher).current = "detail-tree"
            return
        if shown.renderable is not None:
            self._show_text(shown.renderable)
            return
        text = shown.text or ""
        clipped = len(text) > MAX_TEXT
        body = Text(safe_text(text[:MAX_TEXT], keep_newlines=True))
        if clipped:
            body.append(f"\n… {len(text) - MAX_TEXT:,} more characters", style="dim")
        self._show_text(body)

    def _show_raw(self, item: Item) -> None:
        """Under a protocol's reading, the message as it travelled (``v`` shows all of
        it in the raw views)."""
        raw = self.query_one("#detail-raw", Static)
        d = self.decode(item)
        # a short pane keeps its rows for the tree (z zooms; v shows the raw views)
        if d is None or self.view_name != d.protocol or self.size.height < RAW_MIN_HEIGHT:
            raw.display = False
            return
        raw.display = True
        t = Text(no_wrap=False, overflow="fold")
        t.append("raw ", "bold dim")
        t.append(decoders.preview(item, RAW_CHARS))
        raw.update(t)

    def toggle_tree(self) -> bool:
        """Tree or pretty text, for the structured views (json, msgpack, cbor)."""
        self.tree_mode = not self.tree_mode
        self._render_current()
        return self.tree_mode

    def _show_text(self, renderable: RenderableType) -> None:
        static = self.query_one("#detail-text", Static)
        # Hex dumps keep their columns (scroll sideways); text wraps.
        static.set_class(self.view_name in NO_WRAP_VIEWS, "-nowrap")
        static.update(renderable)
        self.query_one("#detail-switch", ContentSwitcher).current = "detail-text-scroll"
        self.query_one("#detail-text-scroll").scroll_home(animate=False)

    def _update_header(self, shown: Shown | None = None) -> None:
        views = Text(no_wrap=True, overflow="ellipsis")
        if not self.view_names:
            views.append("detail", "bold")
        for name in self.view_names:
            if name == self.view_name:
                views.append(f" {name} ", "bold reverse")
            else:
                views.append(f" {name} ", "dim")
            views.append(" ")
        hints = []
        if len(self.view_names) > 1:
            hints.append("v view")
        if shown is not None and shown.tree is not None:
            hints.append("t text" if self.tree_mode else "t tree")
        if hints:
            views.append(" " + " · ".join(hints), "dim italic")
        self.query_one("#detail-views", Static).update(views)
        meta = self._meta_text()
        if self.item is not None and self.annotate is not None:
            line = self.annotate(self.item)
            if line is not None:
                width = self.content_size.width
                if width > 0:  # one line: the tree needs the rows
                    line.truncate(width, overflow="ellipsis")
                meta.append("\n")
                meta.append_text(line)
        if shown is not None and (shown.error or shown.note):
            if shown.error:
                meta.append("\n")
                meta.append(" ⚠ ", "bold black on yellow")
                meta.append(" " + safe_text(shown.error), "yellow")
            if shown.note:
                meta.append("\n")
                meta.append(safe_text(shown.note), "dim italic")
        self.query_one("#detail-meta", Static).update(meta)

    def _meta_text(self) -> Text:
        """Two lines: where and when; then direction, type, sizes and flags."""
        item = self.item
        t = Text(no_wrap=True, overflow="ellipsis")
        if item is None:
            return t
        t.append(f"#{item.seq} ", "bold")
        t.append(fmt_time(item.ts, self.tz) + "  ", "dim")
        t.append(safe_text(self.conn_label(item.conn)))
        t.append("\n")
        t.append(direction_words(item.side) + "  ")
        b = badge(item)
        t.append(f" {b} ", BADGE_STYLES.get(b, "bold") + " reverse")
        t.append(f" {fmt_bytes(item.size)}")
        t.append(f" (wire {fmt_bytes(item.wire_size)})", "dim")
        if isinstance(item, Message):
            if item.frames > 1:
                t.append(f"  {item.frames} frames", "bold")
            if item.compressed:
                t.append("  deflate", "cyan")
            if not item.utf8_ok:
                t.append("  invalid UTF-8", "bold red")
            if item.truncated:
                t.append("  truncated", "yellow")
        elif item.opcode == Opcode.CLOSE:
            t.append(f"  code {item.code if item.code is not None else '-'}", "bold")
        if item.injected:
            t.append("  INJECTED", "bold magenta")
        if item.dropped:
            t.append("  DROPPED (not forwarded)", "bold red")
        if item.held:  # a breakpoint held it (docs/intercept.md)
            t.append("\n")
            if item.on_hold:
                t.append(" ⏸ HELD ", "bold black on yellow")
                t.append(
                    f" by {held_by(item)}: f forward · e edit · d drop (in the stream)",
                    "yellow",
                )
            else:
                edited = isinstance(item, Message) and item.edited is not None
                t.append(outcome_words(item), "bold magenta" if edited else "bold")
        if item.rule or item.action:  # a rule or a network condition acted on it
            t.append("\n")
            what = f"rule {item.rule}: {item.action}" if item.rule else item.action
            t.append(safe_text(what), "bold magenta")
        return t
