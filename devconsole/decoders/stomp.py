"""STOMP 1.2 (and 1.0/1.1) over WebSocket.

Core module: no I/O. A frame is ``COMMAND\\n`` then ``name:value`` header lines, an empty
line, the body and a NUL byte; ``content-length`` fixes the body's size (it may then hold
NULs). Header values are escaped (``\\n``, ``\\r``, ``\\c``, ``\\\\``) except in CONNECT
and CONNECTED. A heart-beat is a lone end of line; a message may carry several frames.

Fields: ``command`` (``heart-beat`` for a heart-beat), ``headers`` (a dict; a repeated
header keeps its first value, as STOMP 1.2 says), ``body`` (text, or bytes when not
UTF-8).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devconsole.decoders.base import (
    Decoded,
    DecodeError,
    Frame,
    Packet,
    ProtocolDecoder,
    short_value,
)
from devconsole.model import Handshake, Opcode, Side

CLIENT_COMMANDS = frozenset(
    {
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "ACK",
        "NACK",
        "DISCONNECT",
    }
)
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
COMMANDS = CLIENT_COMMANDS | SERVER_COMMANDS
HEARTBEAT = "heart-beat"
_NO_ESCAPE = frozenset({"CONNECT", "CONNECTED"})
_UNESCAPE = {"n": "\n", "r": "\r", "c": ":", "\\": "\\"}
MAX_FRAMES = 1000


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            nxt = s[i + 1 : i + 2]
            if nxt not in _UNESCAPE:
                raise DecodeError(f"undefined escape \\{nxt} in a header")
            out.append(_UNESCAPE[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace(":", "\\c")


class StompState:
    __slots__ = ("client_beat",)

    def __init__(self) -> None:
        self.client_beat: tuple[int, int] | None = None  # the CONNECT's heart-beat cx,cy


def _beat(value: Any) -> tuple[int, int] | None:
    if not isinstance(value, str):
        return None
    a, _, b = value.partition(",")
    try:
        return int(a), int(b)
    except ValueError:
        return None


class StompDecoder(ProtocolDecoder):
    name = "stomp"
    title = "STOMP 1.2"
    short = "STOMP"
    subprotocols = ("v12.stomp", "v11.stomp", "v10.stomp", "stomp")

    def url_score(self, hs: Handshake) -> float:
        return 0.5 if "stomp" in hs.path.lower() else 0.0

    def sniff(self, payload: bytes, opcode: int, side: Side) -> float:
        cmd, sep, _ = payload[:16].partition(b"\n")
        if sep and cmd.rstrip(b"\r").decode("ascii", "replace") in COMMANDS:
            return 0.9 if b"\x00" in payload else 0.4
        return 0.0

    def new_state(self, hs: Handshake | None = None) -> StompState:
        return StompState()

    def decode(self, payload: bytes, opcode: int, side: Side, state: Any, seq: int = 0) -> Decoded:
        st = state if isinstance(state, StompState) else StompState()
        packets: list[Packet] = []
        pos = 0
        n = len(payload)
        error = None
        if payload and not payload.strip(b"\r\n"):
            # a message of end-of-lines only: a heart-beat (EOLs after a frame's NUL are
            # padding, not heart-beats)
            return Decoded(
                self.name, (Packet("STOMP heart-beat", {"command": HEARTBEAT}, role="beat"),)
            )
        while pos < n and len(packets) < MAX_FRAMES:
            while pos < n and payload[pos] in (10, 13):
                pos += 1
            if pos >= n:
                break
            try:
                fields, pos = self._frame(payload, pos)
            except DecodeError as e:
                if not packets:
                    raise
                error = str(e)
                break
            packets.append(self._packet(fields, side, st))
        if not packets:
            raise DecodeError("an empty message is not a STOMP frame")
        return Decoded(self.name, tuple(packets), error=error)

    def _frame(self, data: bytes, pos: int) -> tuple[dict[str, Any], int]:
        head_end = data.find(b"\n\n", pos)
        head_end_crlf = data.find(b"\r\n\r\n", pos)
        if head_end_crlf != -1 and (head_end == -1 or head_end_crlf < head_end):
            head, body_at = data[pos:head_end_crlf], head_end_crlf + 4
        elif head_end != -1:
            head, body_at = data[pos:head_end], head_end + 2
        else:
            # a frame with no header at all: "DISCONNECT\n\n\0" has "\n\n"; this has none
            raise DecodeError("no blank line after the headers")
        try:
            lines = head.decode("utf-8").replace("\r\n", "\n").split("\n")
        except UnicodeDecodeError as e:
            raise DecodeError(f"headers are not UTF-8 at byte {pos + e.start}") from None
        command = lines[0]
        if command not in COMMANDS:
            raise DecodeError(f"unknown STOMP command {command[:40]!r}")
        headers: dict[str, str] = {}
        esc = command not in _NO_ESCAPE
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise DecodeError(f"a header line without ':' ({line[:40]!r})")
            if esc:
                name, value = _unescape(name), _unescape(value)
            headers.setdefault(name, value)
        length = headers.get("content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                raise DecodeError(f"bad content-length {length!r}") from None
            if size < 0:
                raise DecodeError(f"bad content-length {length!r}")
            if body_at + size >= len(data):
                raise DecodeError("the body is shorter than its content-length")
            body = data[body_at : body_at + size]
            end = body_at + size
            if data[end : end + 1] != b"\x00":
                raise DecodeError("no NUL after the content-length bytes of the body")
        else:
            end = data.find(b"\x00", body_at)
            if end == -1:
                raise DecodeError("the frame does not end with a NUL byte")
            body = data[body_at:end]
        fields: dict[str, Any] = {"command": command, "headers": headers}
        try:
            fields["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            fields["body"] = body
        return fields, end + 1

    def _packet(self, f: dict[str, Any], side: Side, st: StompState) -> Packet:
        cmd = f["command"]
        h: dict[str, str] = f["headers"]
        summary = f"STOMP {cmd}"
        dest = h.get("destination")
        if dest is not None:
            summary += f" {dest}"
        if cmd in ("SUBSCRIBE", "UNSUBSCRIBE") and "id" in h:
            summary += f" id={h['id']}"
        if cmd == "ERROR" and "message" in h:
            summary += f" {h['message']}"
        body = f.get("body")
        if body:
            summary += f" {short_value(body, 80)}"
        key = role = method = None
        hb: tuple[dict[str, Any], ...] = ()
        if cmd in ("CONNECT", "STOMP"):
            key, role, method = "connect", "request", "CONNECT"
            st.client_beat = _beat(h.get("heart-beat"))
        elif cmd == "CONNECTED":
            key, role = "connect", "reply"
            hb = self._negotiated(st.client_beat, _beat(h.get("heart-beat")))
        elif "receipt" in h and side == "client":
            key, role = f"receipt:{h['receipt']}", "request"
            method = f"{cmd} {dest}" if dest else cmd
            summary += f" receipt={h['receipt']}"
        elif cmd in ("RECEIPT", "ERROR") and "receipt-id" in h:
            key, role = f"receipt:{h['receipt-id']}", "reply"
            if cmd == "RECEIPT":
                summary += f" {h['receipt-id']}"
        return Packet(summary, f, key, role, method, hb)

    @staticmethod
    def _negotiated(
        client: tuple[int, int] | None, server: tuple[int, int] | None
    ) -> tuple[dict[str, Any], ...]:
        """STOMP 1.2 section "Heart-beating": each side's period in seconds."""
        if client is None or server is None:
            return ()
        cx, cy = client
        sx, sy = server
        out = []
        if cx and sy:
            out.append({"side": "client", "interval": max(cx, sy) / 1000, "timeout": None})
        if sx and cy:
            out.append({"side": "server", "interval": max(sx, cy) / 1000, "timeout": None})
        return tuple(out)

    def encode(self, fields: Mapping[str, Any], state: Any = None) -> list[Frame]:
        cmd = fields.get("command")
        if cmd == HEARTBEAT:
            return [(Opcode.TEXT, b"\n")]
        if cmd not in COMMANDS:
            raise ValueError(f"unknown STOMP command {cmd!r}")
        headers = fields.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise ValueError("headers must be an object")
        body = fields.get("body", "")
        if isinstance(body, str):
            raw = body.encode()
        elif isinstance(body, bytes | bytearray):
            raw = bytes(body)
        else:
            raise ValueError("body must be text or bytes")
        esc = cmd not in _NO_ESCAPE
        lines = [str(cmd)]
        for k, v in headers.items():
            k, v = str(k), str(v)
            lines.append(f"{_escape(k)}:{_escape(v)}" if esc else f"{k}:{v}")
        data = ("\n".join(lines) + "\n\n").encode() + raw + b"\x00"
        binary = isinstance(body, bytes | bytearray)
        return [(Opcode.BINARY if binary else Opcode.TEXT, data)]


def frame(command: str, headers: Mapping[str, str] | None = None, body: str = "") -> bytes:
    """One STOMP frame (tests, inject)."""
    return StompDecoder().encode(
        {"command": command, "headers": dict(headers or {}), "body": body}
    )[0][1]
