"""The message editor (``e`` on a held message, ``R`` to resend one) and the side-by-side
view of an edited message's original and sent bodies.

The editor has three modes: **json** (the payload pretty-printed; it must be valid JSON
to be sent: compact, on one line with spaces, or as typed), **text** (UTF-8, sent as
typed) and **hex** (bytes typed as hex digits, for binary payloads); on a connection
with an application protocol, a fourth, **decoded** (named after the protocol: the
packet's fields as ``tail --json`` shows them under "decoded", bytes as
``{"$b64": ...}``; re-encoded by the protocol's decoder, so a Socket.IO event whose
arguments hold bytes goes as its placeholder message and its binary attachments, sent
together). A held message that decodes opens in it. A message left as it was is sent as
the very bytes that came. Below the text it always says exactly what
will be sent: the frame type, the size, the destination, and the bytes themselves (text
escaped, binary as a hex dump). The checks are plain functions (``encode_body``,
``initial_body``), unit-tested without Textual. Like the other dialogs it only *builds*
the result; the screen that opened it sends the command.

Payloads never reach the terminal as control sequences: a text payload with control or
bidi characters opens in hex mode, JSON is escaped (``\\u001b``) by its serialiser, and
the preview of the bytes to send is escaped like every payload on screen.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Static, TextArea

from devconsole.decoders import safe_text
from devconsole.decoders.base import Frame, from_jsonable, jsonable
from devconsole.decoders.views import hexdump
from devconsole.model import CLIENT, SERVER, Connection, Item, Message, Opcode
from devconsole.text import arrow, conn_tag, fmt_bytes, fmt_elapsed, opcode_name
from devconsole.tui.faults import parse_hex
from devconsole.tui.fmt import steady_cursors
from devconsole.tui.held import held_by

if TYPE_CHECKING:
    from devconsole.tui.protocol import DecodedForm

Mode = Literal["json", "text", "hex", "decoded"]
MODES: tuple[Mode, ...] = ("json", "text", "hex")  # the raw modes (and "decoded" first)
Target = Literal["live", "new"]

HEX_PER_LINE = 16
PREVIEW_BYTES = 4096  # the bytes-to-send preview shows at most this much
SIDE_BY_SIDE_LINES = 400  # lines of each body in the detail's "edited" view


# --------------------------------------------------------------------------- checks


def hex_lines(data: bytes, per_line: int = HEX_PER_LINE) -> str:
    """``data`` as hex bytes, ``per_line`` to a line (what the hex mode edits)."""
    return "\n".join(data[i : i + per_line].hex(" ") for i in range(0, len(data), per_line))


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str) -> object:
    """The JSON value of ``text``; ValueError saying where it is wrong (NaN and Infinity
    are not JSON, whatever Python's parser accepts)."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except ValueError as e:
        raise ValueError(f"invalid JSON: {e}") from None


def pretty_json(value: object) -> str:
    """Indented JSON; non-ASCII stays readable unless it could restyle the terminal (a
    bidi override, a C1 control), then everything non-ASCII is escaped (the same JSON)."""
    out = json.dumps(value, indent=2, ensure_ascii=False)
    if safe_text(out, keep_newlines=True) != out:
        out = json.dumps(value, indent=2, ensure_ascii=True)
    return out


JsonStyle = Literal["compact", "spaced", "typed"]
JSON_STYLES: tuple[JsonStyle, ...] = ("compact", "spaced", "typed")
JSON_STYLE_WORDS: dict[str, str] = {
    "compact": 'compact {"a":1}',
    "spaced": 'one line {"a": 1}',
    "typed": "as typed",
}


def compact_json(value: object, spaced: bool = False) -> str:
    """One line of JSON: ``{"a":1}``, or ``{"a": 1}`` (``spaced``, Python's and many
    servers' default)."""
    seps = (", ", ": ") if spaced else (",", ":")
    out = json.dumps(value, separators=seps, ensure_ascii=False)
    if safe_text(out) != out:
        out = json.dumps(value, separators=seps, ensure_ascii=True)
    return out


def json_style(text: str, value: object) -> JsonStyle:
    """How the original was written, so an unchanged message is sent as it came:
    compact, one line with spaces, or (anything else) as typed when it spans lines."""
    if text == compact_json(value, spaced=True) or text == json.dumps(value):
        return "spaced"
    if "\n" in text.strip():
        return "typed"
    return "compact"


@dataclass(slots=True)
class Body:
    """What the editor starts with: the mode, the text, how JSON is sent."""

    mode: Mode
    text: str
    style: JsonStyle = "compact"  # how JSON is sent
    note: str = ""  # why this mode (control characters shown as hex...)


def initial_body(payload: bytes, opcode: int, utf8_ok: bool = True) -> Body:
    """JSON pretty-printed when the payload is JSON (sent in the style it came in), text
    when it is safe text, hex otherwise."""
    if opcode == Opcode.TEXT and utf8_ok:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return Body("hex", hex_lines(payload), note="not valid UTF-8: shown as hex")
        try:
            value = parse_json(text)
        except ValueError:
            value = None
        else:
            if text.strip().startswith(("{", "[")):
                return Body("json", pretty_json(value), json_style(text, value))
        if safe_text(text, keep_newlines=True) != text:
            return Body("hex", hex_lines(payload), note="control characters: shown as hex")
        return Body("text", text)
    if opcode == Opcode.TEXT:
        return Body("hex", hex_lines(payload), note="not valid UTF-8: shown as hex")
    return Body("hex", hex_lines(payload))


def encode_body(mode: Mode, text: str, style: JsonStyle = "compact") -> bytes:
    """The bytes the editor's content sends; ValueError with a message to show."""
    if mode == "json":
        value = parse_json(text)
        if style != "typed":
            text = compact_json(value, spaced=style == "spaced")
        return text.encode("utf-8", "surrogatepass")
    if mode == "text":
        return text.encode("utf-8", "surrogatepass")
    return parse_hex(text)


def body_opcode(mode: Mode, original: int) -> int:
    """The frame type of what is sent: text for json/text; hex keeps the original's type
    (like ``devconsole forward --hex``)."""
    return Opcode.TEXT if mode in ("json", "text") else original


def convert(text: str, old: Mode, new: Mode) -> str:
    """The editor's content in another mode; ValueError when it does not convert without
    loss (bytes that are not UTF-8 text, or that would restyle the terminal, stay hex).
    JSON and text convert both ways as typed (invalid JSON can be sent as text)."""
    if old == new:
        return text
    if old != "hex":
        if new == "hex":
            return hex_lines(text.encode("utf-8", "surrogatepass"))
        if new == "json":
            try:
                return pretty_json(parse_json(text))
            except ValueError:
                return text
        return text
    data = parse_hex(text)
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"these bytes are not UTF-8 text (byte {e.start}): edit them as hex"
        ) from None
    if safe_text(decoded, keep_newlines=True) != decoded:
        raise ValueError("these bytes hold control characters: edit them as hex")
    if new == "json":
        try:
            return pretty_json(parse_json(decoded))
        except ValueError:
            return decoded
    return decoded


def bytes_preview(data: bytes, opcode: int, limit: int = PREVIEW_BYTES) -> Text:
    """Exactly what is sent: text escaped (newlines kept), binary as a hex dump."""
    shown = data[:limit]
    if opcode == Opcode.TEXT:
        try:
            t = Text(safe_text(shown.decode("utf-8"), keep_newlines=True))
        except UnicodeDecodeError:
            t = Text(hexdump(shown))
            t.append("\n(not valid UTF-8: the receiver may close with 1007)", "bold yellow")
    else:
        t = Text(hexdump(shown))
    if len(data) > limit:
        t.append(f"\n… {len(data) - limit:,} more bytes", "dim")
    return t


def utf8_problem(data: bytes, opcode: int) -> str | None:
    if opcode != Opcode.TEXT:
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not valid UTF-8 at byte {e.start}: a text frame must be (receivers close 1007)"
    return None


# --------------------------------------------------------------------------- side by side


def _body_lines(data: bytes, opcode: int, as_json: bool) -> list[str]:
    if opcode == Opcode.TEXT:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            if as_json:
                try:
                    text = pretty_json(parse_json(text))
                except ValueError:
                    pass
            return safe_text(text, keep_newlines=True).split("\n")
    return hex_lines(data, 8).split("\n")


def _is_json(data: bytes, opcode: int) -> bool:
    if opcode != Opcode.TEXT:
        return False
    try:
        parse_json(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def side_by_side(item: Message) -> RenderableType:
    """The original and the edited body next to each other, JSON pretty-printed (when
    both are JSON), binary as hex; lines that differ are highlighted."""
    original = item.payload
    sent = item.edited or b""
    sent_op = item.edited_opcode or item.opcode
    as_json = _is_json(original, item.opcode) and _is_json(sent, sent_op)
    left = _body_lines(original, item.opcode, as_json)[:SIDE_BY_SIDE_LINES]
    right = _body_lines(sent, sent_op, as_json)[:SIDE_BY_SIDE_LINES]
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    same_left: set[int] = set()
    same_right: set[int] = set()
    for block in matcher.get_matching_blocks():
        same_left.update(range(block.a, block.a + block.size))
        same_right.update(range(block.b, block.b + block.size))
    table = Table(expand=True, pad_edge=False, show_edge=False, box=None, padding=(0, 1))
    size = item.edited_size or len(sent)
    table.add_column(
        Text(f"original {opcode_name(item.opcode)} {fmt_bytes(item.size)}", "bold"), ratio=1
    )
    table.add_column(Text(f"sent {opcode_name(sent_op)} {fmt_bytes(size)}", "bold"), ratio=1)

    def cell(lines: list[str], same: set[int], style: str) -> Text:
        t = Text()
        for i, line in enumerate(lines):
            if i:
                t.append("\n")
            t.append(line, "" if i in same else style)
        return t

    table.add_row(cell(left, same_left, "bold red"), cell(right, same_right, "bold green"))
    notes = []
    if item.truncated:
        notes.append("the capture kept only the start of the original")
    if size > len(sent):
        notes.append("the capture kept only the start of what was sent")
    if notes:
        table.add_row(Text("; ".join(notes), "dim"), Text(""))
    return table


# --------------------------------------------------------------------------- the dialog


@dataclass(slots=True)
class Edited:
    """What the editor was asked to send."""

    payload: bytes
    opcode: int
    target: Target = "live"  # resend: on the live connection or a new one
    headers: list[tuple[str, str]] = field(default_factory=list)  # new: redacted values
    via_proxy: bool = False  # new: through the devconsole proxy
    unchanged: bool = False  # the message as it came (forward it as is)
    more: list[Frame] = field(default_factory=list)  # messages sent right after it


def _title(item: Item, conn: Connection | None) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"{conn_tag(item.conn)} ", "bold")
    if conn is not None:
        t.append(safe_text(conn.path or "/") + "  ")
    t.append(f"{arrow(item.side)} {'to the server' if item.side == CLIENT else 'to the client'}")
    t.append(f"  seq {item.seq} · {opcode_name(item.opcode)} {fmt_bytes(item.size)}", "dim")
    if item.held:
        t.append(f"  held {item.held} by {held_by(item)}", "bold yellow")
    return t


class EditDialog(ModalScreen[Edited | None]):
    """Edit a message before it is forwarded (a held one) or sent again (``resend``)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "ctrl+s",
            "send",
            "Send",
            id="editor.send",
            tooltip="Forward (or resend) what the editor holds; refused while it is invalid",
        ),
        Binding(
            "ctrl+o",
            "cycle_mode",
            "Mode",
            id="editor.mode",
            tooltip="Edit as the protocol's decoded form, JSON (validated), text or hex bytes",
        ),
        Binding(
            "ctrl+f",
            "format",
            "Format",
            id="editor.format",
            tooltip="Pretty-print the JSON in the editor",
        ),
        Binding(
            "ctrl+n",
            "toggle_compact",
            "JSON style",
            id="editor.compact",
            tooltip="JSON: send it compact, on one line with spaces, or exactly as typed",
        ),
        Binding(
            "ctrl+r",
            "reset",
            "Reset",
            id="editor.reset",
            tooltip="Back to the original message",
        ),
        Binding(
            "ctrl+t",
            "toggle_target",
            "Target",
            id="editor.target",
            tooltip="Resend: on the live connection, or on a new connection to the same URL",
        ),
        Binding(
            "escape",
            "cancel",
            "Cancel",
            id="editor.cancel",
            tooltip="Close without sending (a held message stays held)",
        ),
    ]

    def __init__(
        self,
        item: Message,
        conn: Connection | None = None,
        *,
        resend: bool = False,
        live: bool = True,
        redacted: list[str] | None = None,
        proxy: str = "",
        wall_clock: Callable[[], float] | None = None,
        deadline: Callable[[float], str] | None = None,
        decoded: DecodedForm | None = None,
    ) -> None:
        """``resend``: the dialog resends ``item`` (on the live connection when ``live``,
        else or on demand on a new connection, asking for the ``redacted`` headers; via
        ``proxy`` if given). Otherwise it edits the held message ``item``; ``decoded``:
        its connection's protocol, for the decoded mode."""
        super().__init__()
        self.decoded = decoded
        self.modes: tuple[Mode, ...] = MODES if decoded is None else ("decoded", *MODES)
        self.item = item
        self.conn = conn
        self.resend = resend
        self.live = live
        # a new connection is the client side: only what the client sent can go there
        self.can_new = resend and item.side == CLIENT and conn is not None
        self.proxy = proxy
        # (target, through the proxy, label): where ^t can send it
        self.targets: list[tuple[Target, bool, str]] = []
        if resend and live:
            self.targets.append(("live", False, f"the live connection {conn_tag(item.conn)}"))
        if self.can_new and conn is not None:
            if proxy:
                self.targets.append(
                    ("new", True, f"a new connection through the proxy {safe_text(proxy)}")
                )
            self.targets.append(("new", False, f"a new connection to {safe_text(conn.url)}"))
        self.target_index = 0
        self.redacted = list(redacted or [])
        self.wall_clock = wall_clock
        self.deadline = deadline  # "forwards in 1m47s" at a wall-clock time
        if decoded is not None and decoded.fields is not None:
            self.start = Body("decoded", pretty_json(jsonable(decoded.fields)))
        else:
            self.start = initial_body(item.payload, item.opcode, item.utf8_ok)
            if decoded is not None and self.start.note == "":
                self.start.note = f"not as {decoded.protocol}: {decoded.why}"
        self.mode: Mode = self.start.mode
        self.style: JsonStyle = self.start.style
        self.error: str | None = None
        self.result: Edited | None = None
        self.gone: str | None = None  # the held message was decided elsewhere meanwhile

    # ---------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        with Vertical(id="editor-dialog"):
            yield Static(_title(self.item, self.conn), id="editor-title")
            if self.resend:
                yield Static(id="editor-target")
                if self.redacted:
                    with VerticalScroll(id="editor-headers"):
                        for i, name in enumerate(self.redacted):
                            with Horizontal(classes="editor-header"):
                                yield Static(safe_text(name), classes="editor-header-name")
                                yield Input(
                                    placeholder="redacted in the capture: give it again, "
                                    "or leave empty to send none",
                                    password=True,
                                    id=f"editor-header-{i}",
                                )
            yield Static(id="editor-modes")
            yield TextArea(self.start.text, soft_wrap=True, tab_behavior="focus", id="editor-text")
            yield Static(id="editor-info")
            with VerticalScroll(id="editor-preview-scroll"):
                yield Static(id="editor-preview")
            with Horizontal(id="editor-bottom"):
                yield Static(id="editor-hold")
                yield Button(
                    "Resend" if self.resend else "Forward",
                    id="editor-send",
                    variant="primary",
                    compact=True,
                )
        yield Footer()

    def on_mount(self) -> None:
        dialog = self.query_one("#editor-dialog")
        dialog.border_title = "Resend" if self.resend else "Edit held message"
        dialog.border_subtitle = "^s send · ^o mode · esc cancel"
        self.query_one("#editor-preview-scroll").border_title = "will send"
        steady_cursors(self)
        self.query_one("#editor-text", TextArea).focus()
        self._show_target()
        self._show_note()
        self.validate()
        if self.item.held and not self.resend:
            self.set_interval(1.0, self.tick, name="editor-hold")
            self.tick()

    def on_resize(self) -> None:
        self.query_one("#editor-dialog").set_class(
            self.size.width < 100 or self.size.height < 30, "-compact"
        )

    # ---------------------------------------------------------------- state

    @property
    def text(self) -> str:
        return self.query_one("#editor-text", TextArea).text

    def set_text(self, text: str) -> None:
        self.query_one("#editor-text", TextArea).load_text(text)

    @property
    def opcode(self) -> int:
        if self.mode == "decoded":
            frames = self.frames
            return frames[0][0] if frames else self.item.opcode
        return body_opcode(self.mode, self.item.opcode)

    @property
    def frames(self) -> list[Frame]:
        """What the editor sends, as messages (several: a packet and its attachments)."""
        try:
            return self.encode()
        except ValueError:
            return []

    def encode(self) -> list[Frame]:
        """The messages the editor's content sends; ValueError with a message to show."""
        if self.mode != "decoded":
            data = encode_body(self.mode, self.text, self.style)
            return [(body_opcode(self.mode, self.item.opcode), data)]
        form = self.decoded
        assert form is not None
        value = from_jsonable(parse_json(self.text))
        try:
            frames = form.frames(value)
        except ValueError as e:
            raise ValueError(f"{form.protocol}: {e}") from None
        except Exception as e:  # a plugin's encoder must not take the editor down
            raise ValueError(f"{form.protocol}: {type(e).__name__}: {e}") from None
        if not frames:
            raise ValueError(f"{form.protocol}: these fields encode to nothing")
        return frames

    def convert(self, text: str, old: Mode, new: Mode) -> str:
        """``convert``, and to and from the decoded form."""
        if old == new:
            return text
        form = self.decoded
        if old == "decoded":
            assert form is not None
            frames = self.encode()
            if len(frames) > 1:
                raise ValueError(
                    f"these fields are {len(frames)} messages (binary attachments): only "
                    f"the {form.protocol} form holds them all"
                )
            return convert(hex_lines(frames[0][1]), "hex", new)
        if new == "decoded":
            assert form is not None
            data = encode_body(old, text, "compact")
            fields = form.fields_of(data, body_opcode(old, self.item.opcode))
            return pretty_json(jsonable(fields))
        return convert(text, old, new)

    def _destination(self) -> str:
        to = SERVER if self.item.side == CLIENT else CLIENT
        if self.resend and self.target == "new":
            return "the server, on a new connection"
        return f"the {to}"

    @property
    def unchanged(self) -> bool:
        """The editor holds the message as it came (and the capture kept all of it)."""
        start = self.start
        return (
            self.text == start.text
            and self.mode == start.mode
            and self.style == start.style
            and not self.item.truncated
        )

    def validate(self) -> bytes | None:
        """Check what the editor holds; show what it sends or why it cannot."""
        info = self.query_one("#editor-info", Static)
        preview = self.query_one("#editor-preview", Static)
        try:
            frames = self.encode()
            if self.unchanged:
                frames = [(self.item.opcode, self.item.payload)]
        except ValueError as e:
            self.error = str(e)
            t = Text(f"✗ {safe_text(str(e))}", style="bold red")
            if self.mode == "json":
                t.append("  · not sent while invalid: fix it, or ^o to send it as text", "red")
            elif self.mode == "decoded":
                t.append("  · not sent while invalid: fix it, or ^o to edit the raw bytes", "red")
            info.update(t)
            preview.update(Text("nothing: the editor does not hold a valid message", "dim"))
            return None
        self.error = None
        op, data = frames[0]
        t = Text()
        t.append("✓ ", "bold green")
        if self.mode == "json":
            t.append("valid JSON, ", "green")
            t.append(JSON_STYLE_WORDS[self.style])
            t.append(" (^n)  ", "dim")
        elif self.mode == "decoded" and self.decoded is not None:
            t.append(f"valid {safe_text(self.decoded.protocol)}, ", "green")
            if len(frames) > 1:
                t.append(f"{len(frames)} messages (binary attachments follow it)  ", "bold")
        kind = "text" if op == Opcode.TEXT else "binary" if op == Opcode.BINARY else opcode_name(op)
        t.append(f"{kind} frame, {len(data):,} bytes", "bold")
        if len(data) != self.item.size:
            t.append(f" (was {self.item.size:,})", "dim")
        t.append(f" → {self._destination()}")
        if self.unchanged:
            t.append("  unchanged: the bytes as they came", "dim")
        problem = utf8_problem(data, op)
        if problem:
            t.append(f"\n⚠ {problem}", "bold yellow")
        if self.item.truncated and not self.unchanged:
            t.append(
                f"\n⚠ the capture kept {len(self.item.payload):,} of {self.item.size:,} bytes: "
                "what is sent replaces the whole message",
                "bold yellow",
            )
        info.update(t)
        shown = bytes_preview(data, op)
        for i, (more_op, more) in enumerate(frames[1:], 1):
            shown.append(f"\n── then message {i + 1}: ", "dim")
            shown.append(f"{opcode_name(more_op)} {len(more):,} bytes ──\n", "dim")
            shown.append_text(bytes_preview(more, more_op))
        preview.update(shown)
        return data

    def _show_note(self) -> None:
        """The modes, the current one highlighted (readable without colours too)."""
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append("edit as ", "dim")
        for mode in self.modes:
            chosen = mode == self.mode
            label = safe_text(self.decoded.protocol) if mode == "decoded" and self.decoded else mode
            t.append(f" {'●' if chosen else '○'} {label} ", "bold reverse" if chosen else "dim")
            t.append(" ")
        t.append(" ^o to change", "dim")
        if self.mode == self.start.mode and self.start.note:
            t.append(" · " + self.start.note, "yellow")
        elif self.mode == "hex":
            t.append(" · hex bytes, spaces and newlines ignored", "dim")
        elif self.mode == "json":
            t.append(" · ^f format", "dim")
        elif self.mode == "decoded":
            t.append(' · the packet\'s fields, bytes as {"$b64": …}', "dim")
        self.query_one("#editor-modes", Static).update(t)

    @property
    def target(self) -> Target:
        return self.targets[self.target_index][0] if self.targets else "live"

    @property
    def via_proxy(self) -> bool:
        return bool(self.targets) and self.targets[self.target_index][1]

    def _show_target(self) -> None:
        """Where a resend goes, every choice shown, the chosen one highlighted."""
        if not self.resend:
            return
        t = Text(no_wrap=True, overflow="ellipsis")
        for i, (_, _, label) in enumerate(self.targets):
            chosen = i == self.target_index
            t.append("on " if i == 0 else "\n   ", "dim")
            t.append(f" {'●' if chosen else '○'} {label} ", "bold reverse" if chosen else "dim")
            if i == 0 and len(self.targets) > 1:
                t.append("  ^t to change", "dim")
        if self.item.side != CLIENT:
            t.append("  (a server message goes back on its live connection only)", "dim")
        elif not self.live:
            t.append("  (the connection has ended)", "dim")
        self.query_one("#editor-target", Static).update(t)
        for w in self.query(".editor-header"):
            w.display = self.target == "new"

    def tick(self) -> None:
        """A held message: how long it has been held, and whether it still is."""
        item = self.item
        hold = self.query_one("#editor-hold", Static)
        if item.outcome:
            self.gone = item.outcome
            hold.update(Text(f"✗ no longer held: {item.outcome}. Esc closes.", style="bold red"))
            return
        clock = self.wall_clock
        if clock is not None:
            now = clock()
            t = Text(f"held for {fmt_elapsed(now - item.ts)}", style="yellow")
            left = self.deadline(now) if self.deadline is not None else ""
            if left:
                t.append(f", {left} unless you decide", "dim")
            hold.update(t)

    # ---------------------------------------------------------------- events

    @on(TextArea.Changed, "#editor-text")
    def _changed(self) -> None:
        self.validate()

    @on(Button.Pressed, "#editor-send")
    def _send_pressed(self) -> None:
        self.action_send()

    def set_mode(self, mode: Mode) -> None:
        old = self.mode
        if mode == old:
            return
        if mode not in self.modes:
            return
        try:
            text = self.convert(self.text, old, mode)
        except ValueError as e:
            self.app.bell()
            self.query_one("#editor-info", Static).update(
                Text(f"✗ {safe_text(str(e))}", style="bold red")
            )
            return
        self.mode = mode
        if text != self.text:
            self.set_text(text)
        self._show_note()
        self.validate()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """^t only when resending (and there is a choice), ^n and ^f in JSON mode."""
        if action == "toggle_target":
            return len(self.targets) > 1
        if action in ("toggle_compact", "format"):
            return self.mode == "json"
        return True

    # ---------------------------------------------------------------- actions

    def action_send(self) -> None:
        if self.gone is not None:
            self.app.bell()
            return
        data = self.validate()
        if data is None:
            self.app.bell()
            self.query_one("#editor-text", TextArea).focus()
            return
        headers: list[tuple[str, str]] = []
        if self.resend and self.target == "new":
            for i, name in enumerate(self.redacted):
                value = self.query_one(f"#editor-header-{i}", Input).value
                if value:
                    headers.append((name, value))
        frames = self.frames
        opcode = frames[0][0] if frames else self.opcode
        unchanged = self.unchanged and opcode == self.item.opcode
        more = [] if unchanged else frames[1:]
        self.result = Edited(
            data, opcode, self.target, headers, self.via_proxy, unchanged=unchanged, more=more
        )
        self.dismiss(self.result)

    def action_cycle_mode(self) -> None:
        self.set_mode(self.modes[(self.modes.index(self.mode) + 1) % len(self.modes)])

    def action_format(self) -> None:
        if self.mode != "json":
            self.set_mode("json")
            return
        try:
            value = parse_json(self.text)
        except ValueError:
            self.app.bell()
            self.validate()
            return
        self.set_text(pretty_json(value))

    def action_toggle_compact(self) -> None:
        self.style = JSON_STYLES[(JSON_STYLES.index(self.style) + 1) % len(JSON_STYLES)]
        self.validate()

    def action_reset(self) -> None:
        self.style = self.start.style
        self.mode = self.start.mode
        self.set_text(self.start.text)
        self._show_note()
        self.validate()
        self.refresh_bindings()

    def action_toggle_target(self) -> None:
        if len(self.targets) < 2:
            self.app.bell()
            return
        self.target_index = (self.target_index + 1) % len(self.targets)
        self._show_target()
        self.validate()

    def action_cancel(self) -> None:
        self.dismiss(None)
