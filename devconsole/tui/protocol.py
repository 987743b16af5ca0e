"""Application protocols on the screen: the line the detail pane shows about a message
(its connection's protocol and why, the request or reply it pairs with, the fan-out of a
backplane publication) and the protocol menu (``P``), which overrides the protocol of one
connection.

The menu lists "automatic", "none" (the raw views) and every decoder, each with what the
selected message reads as by it (``ProtocolTracker.decode_with``), so the right choice is
visible before it is made; a name not listed (``protobuf:pkg.Message``) can be typed.
It only returns the choice: the main screen applies it to the tracker and redraws.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from devconsole.decoders import Decoded, safe_text
from devconsole.decoders.base import Frame, decode_message, from_jsonable
from devconsole.decoders.protocols import NONE, get_protocol, packet_fields, protocol_names
from devconsole.model import (
    Connection,
    ControlFrame,
    InjectCommand,
    Item,
    Message,
    Opcode,
    Publication,
    Side,
)
from devconsole.text import conn_tag, fmt_duration
from devconsole.tui.decoding import LiveAnalysis, is_backplane_conn
from devconsole.tui.fmt import steady_cursors

AUTO = "auto"  # the menu's "automatic" entry (the tracker's override None)


def pair_text(live: LiveAnalysis, item: Item) -> Text | None:
    """``reply #57 after 12 ms · p`` / ``answers #55 (12 ms) · p``, or None."""
    partner = live.pairs.partner(item.seq)
    if partner is None:
        return None
    t = Text()
    other = live.session.get(partner)
    delay = ""
    if other is not None:
        delay = fmt_duration(abs(other.ts - item.ts))
    if partner > item.seq:
        t.append("reply ", "bold")
        t.append(f"#{partner}", "bold cyan")
        if delay:
            t.append(f" after {delay}")
    else:
        t.append("reply to ", "bold")
        t.append(f"#{partner}", "bold cyan")
        if delay:
            t.append(f", {delay} after it")
    t.append("  p jumps", "dim italic")
    return t


def fanout_text(live: LiveAnalysis, item: Item, now: float) -> Text | None:
    """A publication's fan-out in one line, or the publication a frame carried."""
    tr = live.trace_of(item)
    if tr is None:
        if isinstance(item, Publication):
            return Text("fan-out: no connection received it (yet)  o", "yellow")
        return None
    t = Text()
    if isinstance(item, Publication):
        t.append("fan-out ", "bold")
        t.append(f"{tr.receivers} receiver{'s' if tr.receivers != 1 else ''}")
        if tr.instances and any(tr.instances):
            t.append(" on " + safe_text(", ".join(i or "proxy" for i in tr.instances)))
        if tr.receivers:
            t.append(f", delay p50 {fmt_duration(tr.delay_p50)} p95 {fmt_duration(tr.delay_p95)}")
        missed = live.fanout.missed(tr, now)
        if missed:
            t.append(f", {len(missed)} missed", "bold red")
    else:
        d = tr.deliveries.get(item.conn)
        t.append("carries publication ", "bold")
        t.append(f"#{tr.seq}", "bold cyan")
        t.append(" on " + safe_text(tr.channel))
        if d is not None:
            t.append(f", {fmt_duration(d.delay)} after it")
    t.append("  o fan-out", "dim italic")
    return t


def annotation(live: LiveAnalysis, item: Item, now: float) -> Text | None:
    """The detail pane's line about ``item``'s protocol, pair or fan-out."""
    fan = fanout_text(live, item, now)
    if fan is not None:
        return fan
    if isinstance(item, ControlFrame) or item.opcode not in (Opcode.TEXT, Opcode.BINARY):
        return None
    tracker = live.tracker
    name = tracker.protocol_of(item.conn)
    t = Text(no_wrap=True, overflow="ellipsis")
    if name is None:
        # plain traffic says nothing; only a choice, or a protocol that did not hold
        why = tracker.reason_of(item.conn)
        if tracker.override_of(item.conn) == NONE:
            t.append("not decoded (chosen for this connection)", "dim")
        elif why:
            t.append(f"no application protocol ({safe_text(why)})", "yellow")
        else:
            return None
        t.append("  P decode as…", "dim italic")
        return t
    t.append(safe_text(name), "bold magenta")
    why = tracker.reason_of(item.conn)
    if why:
        t.append(f" ({safe_text(why)})", "dim")
    pair = pair_text(live, item)
    if pair is not None:
        t.append(" · ")
        t.append_text(pair)
    else:
        t.append("  P protocol", "dim italic")
    return t


# --------------------------------------------------------------------------- the menu


def choice_preview(live: LiveAnalysis, item: Item | None, name: str) -> Text:
    """What ``item`` reads as by decoder ``name``: ``✓ summary`` or ``✗ reason``."""
    t = Text(no_wrap=True, overflow="ellipsis")
    if item is None or not isinstance(item, Message):
        return t
    try:
        d = live.tracker.decode_with(item, name)
    except Exception as e:  # a plugin's bug must not take the menu down
        t.append(f"✗ {type(e).__name__}", "red")
        return t
    if d is None:
        return t
    if d.error is not None and not d.packets:
        t.append("✗ " + safe_text(d.error), "red")
    elif d.pending or not d.packets:  # the start of something that would continue
        t.append("? " + safe_text(d.note or "nothing decoded"), "yellow")
    else:
        t.append("✓ ", "green")
        t.append(safe_text(d.summary))
    return t


class ProtocolMenu(ModalScreen[str | None]):
    """Decode one connection as a chosen protocol; dismisses with the decoder's name,
    ``"none"``, ``"auto"`` (automatic again), or None (cancelled)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="protocol.cancel", tooltip="Close the menu"),
        Binding(
            "slash",
            "type_name",
            "Type a name",
            id="protocol.type",
            tooltip="Type a decoder's name (protobuf:pkg.Message, a plugin's)",
        ),
    ]

    def __init__(self, live: LiveAnalysis, conn: Connection, item: Item | None = None) -> None:
        super().__init__()
        self.live = live
        self.conn = conn
        self.item = item if item is not None and item.conn == conn.id else None
        self.names = [AUTO, NONE, *protocol_names()]

    def compose(self) -> ComposeResult:
        tracker = self.live.tracker
        cid = self.conn.id
        current = tracker.protocol_of(cid)
        override = tracker.override_of(cid)
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"{conn_tag(cid)} ", "bold")
        head.append(safe_text(self.conn.path or "/"))
        now = Text(no_wrap=True, overflow="ellipsis")
        now.append("now: ", "dim")
        now.append(safe_text(current or "not decoded"), "bold magenta" if current else "dim")
        why = tracker.reason_of(cid)
        if why:
            now.append(f" ({safe_text(why)})", "dim")
        if self.item is not None:
            now.append(f"   previews: #{self.item.seq}", "dim")
        options: list[Option] = []
        # nothing wraps: a long reason is cut (the dialog is at most 96 wide)
        width = max(20, min(96, int(self.app.size.width * 0.96)) - 6)
        head.truncate(width, overflow="ellipsis")
        now.truncate(width, overflow="ellipsis")
        for name in self.names:
            label = Text(no_wrap=True, overflow="ellipsis")
            chosen = override is None if name == AUTO else (override == name)
            label.append("● " if chosen else "  ", "bold green")
            if name == AUTO:
                label.append("automatic", "bold")
                label.append("  handshake, URL, then content", "dim")
            elif name == NONE:
                label.append("none", "bold")
                label.append("  the raw views (text, json, hex)", "dim")
            else:
                dec = get_protocol(name)
                label.append(f"{safe_text(name):<12}", "bold")
                title = getattr(dec, "title", "") if dec is not None else ""
                prev = choice_preview(self.live, self.item, name)
                if prev.plain:
                    label.append_text(prev)
                elif title:
                    label.append(safe_text(title), "dim")
            label.truncate(width, overflow="ellipsis")
            options.append(Option(label, id=name))
        with Vertical(id="protocol-dialog"):
            yield Static(head, id="protocol-conn")
            yield Static(now, id="protocol-now")
            yield OptionList(*options, id="protocol-options")
            yield Input(placeholder="or type a name: protobuf:pkg.Message", id="protocol-name")
            yield Static("", id="protocol-error")

    def on_mount(self) -> None:
        dialog = self.query_one("#protocol-dialog")
        dialog.border_title = "Decode as"
        steady_cursors(self)
        dialog.border_subtitle = "↑↓ enter choose · / type a name · esc cancel"
        options = self.query_one("#protocol-options", OptionList)
        override = self.live.tracker.override_of(self.conn.id)
        current = AUTO if override is None else override
        if current in self.names:
            options.highlighted = self.names.index(current)
        options.focus()

    @on(OptionList.OptionSelected, "#protocol-options")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    @on(Input.Submitted, "#protocol-name")
    def _typed(self, event: Input.Submitted) -> None:
        self.choose_name(event.value)

    def choose_name(self, value: str) -> bool:
        """A typed decoder name: dismisses with it, or says why it cannot be used."""
        name = value.strip()
        error = self.query_one("#protocol-error", Static)
        if not name:
            error.update(Text("✗ type a decoder's name", style="bold red"))
            return False
        if name.lower() in (AUTO, "automatic"):
            self.dismiss(AUTO)
            return True
        try:
            ok = name == NONE or get_protocol(name) is not None
            why = f"unknown decoder {name!r}"
        except ValueError as e:
            ok, why = False, str(e)
        if not ok:
            error.update(Text(f"✗ {safe_text(why)}", style="bold red"))
            return False
        self.dismiss(name)
        return True

    def action_type_name(self) -> None:
        self.query_one("#protocol-name", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)


# --------------------------------------------------------------------------- inject


def decoded_placeholder(protocol: str) -> str:
    if protocol == "socket.io":
        return '["chat", {"text": "hi"}]: an event and its arguments (or the fields)'
    return '{"...": ...}: the packet\'s fields, as tail --json shows them under "decoded"'


def decoded_inject(
    live: LiveAnalysis, conn: str, to: Side, text: str
) -> tuple[list[InjectCommand], str]:
    """The frames that carry ``text`` (the decoded form) on ``conn`` with its protocol, as
    InjectCommands, and what they are (``socket.io event chat, 1 frame``). ValueError with
    a message to show."""
    name = live.tracker.protocol_of(conn)
    if name is None:
        raise ValueError("the connection has no protocol: choose one first (P)")
    try:
        value = from_jsonable(json.loads(text))
    except ValueError as e:
        raise ValueError(f"not JSON: {e}") from None
    fields = packet_fields(name, value)
    frames = live.tracker.encode(conn, fields)
    cmds = [InjectCommand(conn, to, op, data) for op, data in frames]
    what = name
    if "event" in fields:
        what += f" event {fields['event']}"
    elif "method" in fields:
        what += f" {fields['method']}"
    elif "type" in fields or "packet" in fields or "command" in fields:
        what += f" {fields.get('type') or fields.get('packet') or fields.get('command')}"
    size = sum(len(c.payload) for c in cmds)
    what += f", {len(cmds)} frame{'s' if len(cmds) != 1 else ''}, {size:,} bytes"
    return cmds, safe_text(what)


# --------------------------------------------------------------------------- edit


@dataclass(slots=True)
class DecodedForm:
    """What the editor needs to edit a message in its connection's protocol: the held
    message's packet fields (None, and ``why``, when it cannot be edited that way), and
    the two directions of the codec. ``fields_of`` decodes bytes on their own;
    ``frames`` encodes with what the connection negotiated (Engine.IO, MQTT versions)."""

    protocol: str
    fields: dict[str, Any] | None
    why: str
    fields_of: Callable[[bytes, int], dict[str, Any]]
    frames: Callable[[Any], list[Frame]]


def _one_packet(d: Decoded | None, what: str) -> dict[str, Any]:
    if d is None:
        raise ValueError(f"{what} is not a data message")
    if d.error is not None:
        raise ValueError(f"{what} does not decode: {d.error}")
    if d.pending:
        raise ValueError(f"{what} is incomplete: {d.note or 'more messages complete it'}")
    if len(d.packets) != 1:
        n = len(d.packets)
        raise ValueError(f"{what} holds {n} packets: the decoded form edits one")
    return d.packets[0].fields


def decoded_form(live: LiveAnalysis, item: Message) -> DecodedForm | None:
    """The decoded form of held ``item`` for the editor, or None (no protocol)."""
    tracker = live.tracker
    name = tracker.protocol_of(item.conn)
    dec = get_protocol(name) if name is not None else None
    if name is None or dec is None:
        return None
    fields: dict[str, Any] | None = None
    why = ""
    try:
        # on its own first: a Socket.IO binary event's attachments are separate messages,
        # queued behind it and not held with it, so they cannot be replaced from here
        _one_packet(tracker.decode_with(item, name), "this message")
        fields = _one_packet(live.decoded(item), "this message")
        if item.truncated:
            raise ValueError("the capture kept only the start of this message")
    except ValueError as e:
        fields, why = None, str(e)
    except Exception as e:  # a plugin's bug must not take the editor down
        fields, why = None, f"{name} failed: {type(e).__name__}"
    hs = tracker.handshake(item.conn)
    side = item.side
    conn = item.conn

    def fields_of(payload: bytes, opcode: int) -> dict[str, Any]:
        d = decode_message(dec, payload, opcode, side, dec.new_state(hs))
        return _one_packet(d, f"as {name}, this")

    def frames(value: Any) -> list[Frame]:
        return tracker.encode(conn, packet_fields(name, value))

    return DecodedForm(name, fields, why, fields_of, frames)


def backplane_title(conn: Connection) -> str:
    """``backplane redis 127.0.0.1:6379 demo:*`` for a backplane pseudo-connection."""
    hs = conn.handshake
    if not is_backplane_conn(conn):
        return ""
    return f"backplane {hs.scheme} {hs.server} {hs.path}"
