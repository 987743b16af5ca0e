"""The fault menu (``x``) and the inject dialog (``i``).

Both are modal screens that only *build* a Command and dismiss with it; the main screen
asks the app to send it (``CommandRequested``) and the app shows the result. The checks here
(close code, reason length, hex payload, which faults a connection's state allows) are
plain functions, unit-tested without Textual. The capture addon checks again: a stale
screen can only make a command fail with the addon's message, never do harm.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import ClassVar, Literal

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, RadioButton, RadioSet, Static
from textual.widgets.option_list import Option

from devconsole.decoders import safe_text
from devconsole.model import (
    AbortCommand,
    BreakpointCommand,
    CloseCommand,
    Command,
    Connection,
    ConnState,
    DropCommand,
    EnableBreakpointCommand,
    ForwardCommand,
    HalfOpenCommand,
    InjectCommand,
    Opcode,
    ReleaseCommand,
    RemoveBreakpointCommand,
    Side,
    close_code_meaning,
    valid_close_code,
)
from devconsole.text import conn_tag
from devconsole.tui.fmt import steady_cursors
from devconsole.tui.protocol import decoded_placeholder

Target = Literal["client", "server", "both"]
TARGETS: tuple[Target, ...] = ("both", "client", "server")

# (key, code) of the close presets, in menu order
CLOSE_PRESETS: tuple[tuple[str, int], ...] = (
    ("1", 1000),
    ("2", 1001),
    ("3", 1011),
    ("4", 1012),
    ("5", 4000),
)
MAX_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes: code (2) + reason
MAX_PING_BYTES = 125
DEFAULT_PING = b"devconsole"  # as `devconsole inject --ping`


# --------------------------------------------------------------------------- checks


def parse_close_code(text: str) -> int:
    """The close code typed in the custom field; ValueError with a message to show."""
    s = text.strip()
    if not s:
        raise ValueError("enter a close code")
    if not s.isdigit():
        raise ValueError(f"not a number: {safe_text(s)!r}")
    code = int(s)
    if not valid_close_code(code):
        raise ValueError(
            f"{code} is not a code a peer may send: use 1000-1003, 1007-1014 or 3000-4999"
        )
    return code


def check_reason(reason: str) -> str:
    """The reason, if it fits a close frame (at most 123 UTF-8 bytes); else ValueError."""
    n = len(reason.encode("utf-8", errors="surrogatepass"))
    if n > MAX_REASON_BYTES:
        raise ValueError(f"the reason is {n} bytes in UTF-8; at most {MAX_REASON_BYTES}")
    return reason


_HEX_OK = re.compile(r"[0-9a-fA-F]")


def parse_hex(text: str) -> bytes:
    """Hex digits, optionally separated by whitespace (``01 02 ff``); ValueError saying
    where it is wrong."""
    digits: list[str] = []
    for i, ch in enumerate(text):
        if ch.isspace():
            continue
        if not _HEX_OK.fullmatch(ch):
            raise ValueError(f"not hexadecimal at character {i + 1}: {safe_text(ch)!r}")
        digits.append(ch)
    if len(digits) % 2:
        raise ValueError(f"odd number of hex digits ({len(digits)}): a byte is two digits")
    return bytes.fromhex("".join(digits))


def ended_reason(conn: Connection) -> str | None:
    """Why no fault can be applied to ``conn`` any more (None: it is live)."""
    if conn.refused:
        hs = conn.handshake
        status = f"HTTP {hs.status}" if hs.status is not None else "no response"
        return f"the upgrade was refused ({status}): there is no WebSocket connection"
    if conn.ts_end is not None or conn.state == ConnState.CLOSED:
        return f"the connection has ended ({conn.state})"
    return None


def closing_reason(conn: Connection) -> str | None:
    """Why close/inject/half-open are not offered although the connection is live."""
    if conn.state == ConnState.KILLED:
        return "devconsole is already closing it: only abort applies"
    return None


def describe(cmd: Command) -> str:
    """A short description of a command, for notifications (the reason is escaped)."""
    if isinstance(cmd, CloseCommand):
        s = f"close {cmd.code}"
        if cmd.reason:
            s += f" {safe_text(cmd.reason)!r}"
        return f"{s} to {cmd.to}"
    if isinstance(cmd, AbortCommand):
        return "abort with RST" if cmd.rst else "abort"
    if isinstance(cmd, HalfOpenCommand):
        return "half-open"
    if isinstance(cmd, ReleaseCommand):
        return "release"
    if isinstance(cmd, ForwardCommand | DropCommand):  # held messages (docs/intercept.md)
        verb = "drop" if isinstance(cmd, DropCommand) else "forward"
        if not cmd.held:
            return f"{verb} all held" + ("" if cmd.conn else " everywhere")
        body = cmd.payload if isinstance(cmd, ForwardCommand) else None
        edited = f" edited ({len(body)} B)" if body is not None else ""
        return f"{verb} held message {cmd.held}{edited}"
    if isinstance(cmd, BreakpointCommand):
        scope = f"on #{cmd.conn}" if cmd.conn else "everywhere"
        return f"breakpoint {safe_text(cmd.filter)!r} {scope}"
    if isinstance(cmd, RemoveBreakpointCommand):
        return f"remove breakpoint {cmd.breakpoint}" if cmd.breakpoint else "remove breakpoints"
    if isinstance(cmd, EnableBreakpointCommand):
        return f"{'enable' if cmd.enabled else 'disable'} breakpoint {cmd.breakpoint}"
    if not isinstance(cmd, InjectCommand):
        return type(cmd).__name__.removesuffix("Command").lower()
    kinds: dict[int, str] = {Opcode.TEXT: "text", Opcode.BINARY: "binary", Opcode.PING: "ping"}
    kind = kinds.get(cmd.opcode, f"opcode {cmd.opcode}")
    return f"inject {kind} ({len(cmd.payload)} B) to {cmd.to}"


def _conn_title(conn: Connection) -> Text:
    t = Text()
    t.append(f"{conn_tag(conn.id)} ", "bold")
    t.append(safe_text(conn.handshake.path or "/"))
    t.append(f"  {conn.state}", "dim")
    return t


# --------------------------------------------------------------------------- fault menu


class FaultMenu(ModalScreen[Command | None]):
    """Close with a code, abort, half-open or release one connection."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "1",
            "preset('1')",
            "Close 1000",
            id="fault.close_1000",
            tooltip="Close with 1000 Normal Closure",
        ),
        Binding(
            "2",
            "preset('2')",
            "Close 1001",
            id="fault.close_1001",
            tooltip="Close with 1001 Going Away",
        ),
        Binding(
            "3",
            "preset('3')",
            "Close 1011",
            id="fault.close_1011",
            tooltip="Close with 1011 Internal Error",
        ),
        Binding(
            "4",
            "preset('4')",
            "Close 1012",
            id="fault.close_1012",
            tooltip="Close with 1012 Service Restart (clients should reconnect)",
        ),
        Binding(
            "5",
            "preset('5')",
            "Close 4000",
            id="fault.close_4000",
            tooltip="Close with 4000, an application-defined code",
        ),
        Binding(
            "c",
            "custom",
            "Custom code",
            id="fault.custom",
            tooltip="Type a close code and a reason; Enter sends",
        ),
        Binding(
            "t",
            "cycle_target",
            "Target",
            id="fault.target",
            tooltip="Who gets the close frame: both, client or server",
        ),
        Binding(
            "a",
            "abort",
            "Abort",
            id="fault.abort",
            tooltip="Drop both TCP connections at once, no close frame (FIN)",
        ),
        Binding(
            "r",
            "abort_rst",
            "Abort (RST)",
            id="fault.abort_rst",
            tooltip="Drop both TCP connections with a TCP reset",
        ),
        Binding(
            "h",
            "half_open",
            "Half-open",
            id="fault.half_open",
            tooltip="Forward nothing while both sockets stay open (the tunnel)",
        ),
        Binding(
            "l",
            "release",
            "Release",
            id="fault.release",
            tooltip="End half-open: traffic flows again",
        ),
        Binding("escape", "cancel", "Cancel", id="fault.cancel", tooltip="Close the menu"),
    ]

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn
        self.target: Target = "both"
        self.blocked = ended_reason(conn)
        self.closing = closing_reason(conn)

    # ---------------------------------------------------------------- what is offered

    def offered(self) -> list[str]:
        """Ids of the menu items this connection's state allows."""
        if self.blocked is not None:
            return []
        out: list[str] = []
        if self.closing is None:
            out += [f"close-{code}" for _, code in CLOSE_PRESETS] + ["custom"]
        out += ["abort", "rst"]
        if self.closing is None and self.conn.state == ConnState.OPEN and not self.conn.half_open:
            out.append("half-open")
        if self.conn.half_open or self.conn.state == ConnState.HALF_OPEN:
            out.append("release")
        return out

    def _options(self) -> list[Option]:
        def item(key: str, label: str, detail: str = "") -> Text:
            t = Text()
            t.append(f" {key} ", "bold reverse")
            t.append(f" {label}")
            if detail:
                t.append(f"  {detail}", "dim")
            return t

        offered = self.offered()
        opts: list[Option] = []
        for key, code in CLOSE_PRESETS:
            oid = f"close-{code}"
            if oid in offered:
                opts.append(Option(item(key, f"close {code}", close_code_meaning(code)), oid))
        if "custom" in offered:
            opts.append(Option(item("c", "close with a custom code and reason…"), "custom"))
        if "abort" in offered:
            opts.append(Option(item("a", "abort", "drop both TCP connections (FIN)"), "abort"))
            opts.append(Option(item("r", "abort with RST", "TCP reset, like a crash"), "rst"))
        if "half-open" in offered:
            opts.append(
                Option(item("h", "half-open", "forward nothing, keep both sockets"), "half-open")
            )
        if "release" in offered:
            opts.append(Option(item("l", "release", "forward traffic again"), "release"))
        return opts

    # ---------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        with Vertical(id="fault-dialog"):
            yield Static(_conn_title(self.conn), id="fault-conn")
            if self.blocked is not None:
                yield Static(
                    Text(f"Faults cannot be applied: {self.blocked}.", style="bold red"),
                    id="fault-blocked",
                )
                return
            if self.closing is not None:
                yield Static(Text(self.closing, style="yellow"), id="fault-closing")
            yield Static(self._target_text(), id="fault-target")
            yield OptionList(*self._options(), id="fault-options")
            if self.closing is None:
                with Horizontal(id="fault-custom"):
                    yield Input(
                        placeholder="code",
                        restrict=r"\d{0,4}",
                        max_length=4,
                        id="fault-code",
                    )
                    yield Input(
                        placeholder=f"reason (optional, ≤ {MAX_REASON_BYTES} bytes)",
                        id="fault-reason",
                    )
                yield Static("", id="fault-error")

    def _target_text(self) -> Text:
        t = Text("close frame to  ", style="dim")
        for target in TARGETS:
            if target == self.target:
                t.append(f" {target} ", "bold reverse")
            else:
                t.append(f" {target} ")
        t.append("   t to change", "dim")
        return t

    def on_mount(self) -> None:
        dialog = self.query_one("#fault-dialog")
        dialog.border_title = "Fault"
        steady_cursors(self)
        dialog.border_subtitle = "key or ↑↓ enter · esc cancel"
        if self.blocked is None:
            self.query_one("#fault-options", OptionList).focus()

    # ---------------------------------------------------------------- choosing

    def _choose(self, oid: str) -> None:
        if oid not in self.offered():
            self.app.bell()
            return
        conn = self.conn.id
        cmd: Command
        if oid.startswith("close-"):
            cmd = CloseCommand(conn, int(oid[6:]), "", self.target)
        elif oid == "custom":
            self.action_custom()
            return
        elif oid == "abort":
            cmd = AbortCommand(conn)
        elif oid == "rst":
            cmd = AbortCommand(conn, rst=True)
        elif oid == "half-open":
            cmd = HalfOpenCommand(conn)
        elif oid == "release":
            cmd = ReleaseCommand(conn)
        else:  # pragma: no cover - ids come from offered()
            return
        self.dismiss(cmd)

    @on(OptionList.OptionSelected, "#fault-options")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self._choose(event.option.id)

    def action_preset(self, key: str) -> None:
        for k, code in CLOSE_PRESETS:
            if k == key:
                self._choose(f"close-{code}")

    def action_custom(self) -> None:
        if "custom" not in self.offered():
            self.app.bell()
            return
        self.query_one("#fault-code", Input).focus()

    def action_cycle_target(self) -> None:
        if self.blocked is not None:
            return
        self.target = TARGETS[(TARGETS.index(self.target) + 1) % len(TARGETS)]
        self.query_one("#fault-target", Static).update(self._target_text())

    def action_abort(self) -> None:
        self._choose("abort")

    def action_abort_rst(self) -> None:
        self._choose("rst")

    def action_half_open(self) -> None:
        self._choose("half-open")

    def action_release(self) -> None:
        self._choose("release")

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#fault-code, #fault-reason")
    def _custom_submitted(self) -> None:
        self.submit_custom()

    def submit_custom(self) -> CloseCommand | None:
        """Validate the custom code and reason; dismiss with the command if they pass."""
        code_in = self.query_one("#fault-code", Input)
        reason_in = self.query_one("#fault-reason", Input)
        try:
            code = parse_close_code(code_in.value)
        except ValueError as e:
            self._error(str(e))
            code_in.focus()
            return None
        try:
            reason = check_reason(reason_in.value)
        except ValueError as e:
            self._error(str(e))
            reason_in.focus()
            return None
        cmd = CloseCommand(self.conn.id, code, reason, self.target)
        self.dismiss(cmd)
        return cmd

    def _error(self, message: str) -> None:
        self.query_one("#fault-error", Static).update(Text(f"✗ {message}", style="bold red"))


# --------------------------------------------------------------------------- inject


KINDS: tuple[str, ...] = ("text", "binary", "ping")


def build_inject(conn: str, to: Side, kind: str, payload: str) -> InjectCommand:
    """The InjectCommand for what the dialog holds; ValueError with a message to show."""
    if kind == "text":
        return InjectCommand(conn, to, Opcode.TEXT, payload.encode("utf-8", "surrogatepass"))
    if kind == "binary":
        return InjectCommand(conn, to, Opcode.BINARY, parse_hex(payload))
    if kind == "ping":
        data = payload.encode("utf-8", "surrogatepass") if payload else DEFAULT_PING
        if len(data) > MAX_PING_BYTES:
            raise ValueError(f"a ping carries at most {MAX_PING_BYTES} bytes, not {len(data)}")
        return InjectCommand(conn, to, Opcode.PING, data)
    raise ValueError(f"unknown kind {kind!r}")


_PLACEHOLDERS = {
    "text": "text to send (UTF-8)",
    "binary": "hex bytes, e.g. 01 02 ff",
    "ping": f"ping payload text (optional, default {DEFAULT_PING.decode()})",
}


# what the dialog builds in the decoded form: (to, text) -> the frames and what they are
DecodedInject = Callable[[Side, str], tuple[list[InjectCommand], str]]


class InjectDialog(ModalScreen[InjectCommand | list[InjectCommand] | None]):
    """Send a text, binary or ping frame built by devconsole to one peer; with the
    connection's ``protocol`` (and its encoder, ``decoded``), also a message in that
    protocol's decoded form (a Socket.IO event and its arguments), which may take several
    frames (dismissed as a list)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "ctrl+s",
            "send",
            "Send",
            id="inject.send",
            tooltip="Send the frame (Enter in the payload field does the same)",
        ),
        Binding(
            "ctrl+t",
            "toggle_target",
            "Target",
            id="inject.target",
            tooltip="Send to the client or to the server",
        ),
        Binding(
            "ctrl+o",
            "cycle_kind",
            "Kind",
            id="inject.kind",
            tooltip="Next kind of frame: text, binary (hex), ping, or the connection's "
            "protocol (decoded form)",
        ),
        Binding("escape", "cancel", "Cancel", id="inject.cancel", tooltip="Close without sending"),
    ]

    def __init__(
        self,
        conn: Connection,
        protocol: str | None = None,
        decoded: DecodedInject | None = None,
    ) -> None:
        super().__init__()
        self.conn = conn
        self.protocol = protocol if decoded is not None else None
        self.encode_decoded = decoded
        self.kinds = KINDS + (("decoded",) if self.protocol else ())
        self._what = ""  # what the decoded form encodes to
        blocked = ended_reason(conn) or closing_reason(conn)
        if blocked is None and (conn.half_open or conn.state == ConnState.HALF_OPEN):
            blocked = "the connection is half-open: release it first (x, then l)"
        self.blocked = blocked

    def compose(self) -> ComposeResult:
        with Vertical(id="inject-dialog"):
            yield Static(_conn_title(self.conn), id="inject-conn")
            if self.blocked is not None:
                yield Static(
                    Text(f"Cannot inject: {self.blocked}.", style="bold red"), id="inject-blocked"
                )
                return
            with Horizontal(classes="inject-row"):
                yield Static("to", classes="inject-label")
                with RadioSet(id="inject-to"):
                    yield RadioButton("client", value=True, id="inject-to-client")
                    yield RadioButton("server", id="inject-to-server")
            with Horizontal(classes="inject-row"):
                yield Static("kind", classes="inject-label")
                with RadioSet(id="inject-kind"):
                    yield RadioButton("text", value=True, id="inject-kind-text")
                    yield RadioButton("binary (hex)", id="inject-kind-binary")
                    yield RadioButton("ping", id="inject-kind-ping")
                    if self.protocol:
                        yield RadioButton(safe_text(self.protocol), id="inject-kind-decoded")
            yield Input(placeholder=_PLACEHOLDERS["text"], id="inject-payload")
            with Horizontal(id="inject-bottom"):
                yield Static("", id="inject-info")
                yield Button("Send", id="inject-send", variant="primary", compact=True)

    def on_mount(self) -> None:
        dialog = self.query_one("#inject-dialog")
        dialog.border_title = "Inject"
        steady_cursors(self)
        dialog.border_subtitle = "enter send · ^t target · ^o kind · tab field · esc cancel"
        if self.blocked is None:
            self.query_one("#inject-payload", Input).focus()
            self._validate()

    # ---------------------------------------------------------------- state

    @property
    def to(self) -> Side:
        pressed = self.query_one("#inject-to", RadioSet).pressed_index
        return "server" if pressed == 1 else "client"

    @property
    def kind(self) -> str:
        pressed = self.query_one("#inject-kind", RadioSet).pressed_index
        return self.kinds[pressed] if 0 <= pressed < len(self.kinds) else "text"

    def set_target(self, to: Side) -> None:
        self.query_one(f"#inject-to-{to}", RadioButton).value = True

    def set_kind(self, kind: str) -> None:
        self.query_one(f"#inject-kind-{kind}", RadioButton).value = True

    def _command(self) -> InjectCommand | list[InjectCommand]:
        if self.kind == "decoded" and self.encode_decoded is not None:
            cmds, self._what = self.encode_decoded(self.to, self._payload.value)
            return cmds
        return build_inject(self.conn.id, self.to, self.kind, self._payload.value)

    @property
    def _payload(self) -> Input:
        return self.query_one("#inject-payload", Input)

    def _validate(self) -> InjectCommand | list[InjectCommand] | None:
        info = self.query_one("#inject-info", Static)
        try:
            cmd = self._command()
        except ValueError as e:
            info.update(Text(f"✗ {e}", style="bold red"))
            return None
        if isinstance(cmd, list):
            info.update(Text(f"{self._what} → {self.to}", style="dim"))
            return cmd
        what = {"text": "text", "binary": "binary", "ping": "ping"}[self.kind]
        sender = "server" if cmd.to == "client" else "client"
        info.update(
            Text(
                f"{what}, {len(cmd.payload)} bytes → {cmd.to} (shown as sent by the {sender})",
                style="dim",
            )
        )
        return cmd

    @on(RadioSet.Changed)
    def _radio_changed(self, event: RadioSet.Changed) -> None:
        if event.radio_set.id == "inject-kind":
            self._payload.placeholder = (
                decoded_placeholder(self.protocol or "")
                if self.kind == "decoded"
                else _PLACEHOLDERS[self.kind]
            )
        self._validate()

    @on(Input.Changed, "#inject-payload")
    def _payload_changed(self) -> None:
        self._validate()

    @on(Input.Submitted, "#inject-payload")
    def _payload_submitted(self) -> None:
        self.action_send()

    @on(Button.Pressed, "#inject-send")
    def _send_pressed(self) -> None:
        self.action_send()

    # ---------------------------------------------------------------- actions

    def action_send(self) -> None:
        if self.blocked is not None:
            self.app.bell()
            return
        cmd = self._validate()
        if cmd is None:
            self.app.bell()
            self._payload.focus()
            return
        self.dismiss(cmd)

    def action_toggle_target(self) -> None:
        if self.blocked is None:
            self.set_target("server" if self.to == "client" else "client")

    def action_cycle_kind(self) -> None:
        if self.blocked is None:
            self.set_kind(self.kinds[(self.kinds.index(self.kind) + 1) % len(self.kinds)])

    def action_cancel(self) -> None:
        self.dismiss(None)
