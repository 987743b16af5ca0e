"""The Capture addon: mitmproxy hooks in, Events out; Commands in, faults out.

Load it into any mitmproxy tool (``mitmdump -s addons/devconsole_addon.py``) or let
``devconsole proxy`` run it. It turns mitmproxy's ``websocket`` option off, so upgraded
connections are relayed as raw TCP; the handshake comes from the HTTP ``request`` /
``response`` hooks, and the bytes of each read from ``tcp_message``, which it parses with
one ``StreamDecoder`` per direction. Forwarding never depends on parsing: a parse error
marks that direction undecodable and the bytes keep flowing unchanged.

Faults rewrite the relayed bytes only at frame boundaries the decoder has seen (see
docs/faults.md): injected frames are spliced in between frames, half-open drops whole
messages, a close with a code is a real close frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import ctx, exceptions, http, tcp
from mitmproxy.utils import human

from devconsole import mitm_compat
from devconsole.frames import (
    Control,
    DataMessage,
    DecodeError,
    DeflateParams,
    FrameError,
    StreamDecoder,
    build_close,
    build_frame,
)
from devconsole.model import (
    CLIENT,
    SERVER,
    AbortCommand,
    CloseCommand,
    Command,
    CommandResult,
    ConnState,
    ControlFrame,
    EndEvent,
    Event,
    HalfOpenCommand,
    Handshake,
    HandshakeEvent,
    InjectCommand,
    Message,
    Opcode,
    ProtocolErrorEvent,
    RefusedEvent,
    ReleaseCommand,
    Side,
    StateEvent,
    valid_close_code,
)
from devconsole.session import Session
from devconsole.tap import TapError, TapServer, parse_tap
from devconsole.text import fmt_addr

logger = logging.getLogger("devconsole.capture")

REFUSED_BODY_KEEP = 4096
CLOSE_REPLY_TIMEOUT = 2.0
MAX_FRAME_SIZES = 4096  # per-frame sizes kept for a fragmented message (``frames`` is exact)


def _hdrs(headers: Any) -> list[tuple[str, str]]:
    return [(k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in headers.fields]


def _split_extensions(value: str | None) -> list[str]:
    if not value:
        return []
    return [p.strip() for p in value.split(",") if p.strip()]


def is_upgrade_request(req: http.Request) -> bool:
    return req.headers.get("upgrade", "").lower() == "websocket"


@dataclass
class _Direction:
    """Per-direction relay state of one connection."""

    side: Side  # who sends the bytes of this direction
    decoder: StreamDecoder
    dropping: bool = False  # half-open (or closed by the proxy): forward nothing
    transition: str | None = None  # "drop" / "resume" at the next message boundary
    pending: list[tuple[bytes, Event]] = field(default_factory=list)  # frames to splice in
    inflight: deque[tuple[bytes, Event]] = field(default_factory=deque)  # sent via inject.tcp
    swallow_pongs: set[bytes] = field(default_factory=set)  # replies to our pings
    offset: int = 0  # bytes of this direction seen so far
    close_seen: bool = False


@dataclass
class _Stream:
    conn: str
    flow: tcp.TCPFlow
    handshake: Handshake
    up: _Direction  # client -> server
    down: _Direction  # server -> client
    state: str = ConnState.OPEN
    closed_by: str | None = None
    killing: bool = False
    replies_wanted: set[str] = field(default_factory=set)
    replies_done: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False


class Capture:
    def __init__(self) -> None:
        self.session = Session()
        self.tap = TapServer(self.session, self.execute, self.proxy_desc)
        # Where events go after the session: the tap, and e.g. a Redis publisher. A sink
        # is called on the proxy's loop for every event: it must only queue it.
        self.sinks: list[Callable[[Event], None]] = [self.tap.publish]
        self.seq = 0
        self.next_conn = 1
        self._upgrades: dict[str, Handshake] = {}  # http flow id -> handshake
        self._pending: dict[str, Handshake] = {}  # client conn id -> 101 awaiting tcp_start
        self._streams: dict[str, _Stream] = {}  # tcp flow id -> stream
        self._by_conn: dict[str, _Stream] = {}  # conn id -> stream
        self._tasks: set[asyncio.Task[Any]] = set()
        self.max_payload = 1 << 20
        self.tap_error: str | None = None
        self.started = asyncio.Event()
        self._ping_counter = 0
        self.decoder_rules: list[Any] = []  # devconsole_decoders, parsed

    # ------------------------------------------------------------------ options

    def load(self, loader: Any) -> None:
        loader.add_option(
            "devconsole_tap",
            str,
            "",
            "Where devconsole's tap listens: a Unix socket path, tcp://127.0.0.1:PORT, "
            "or 'off'. Empty: $XDG_RUNTIME_DIR/devconsole/tap.sock.",
        )
        loader.add_option(
            "devconsole_buffer_messages",
            int,
            100_000,
            "Messages and control frames devconsole keeps for viewers that attach late.",
        )
        loader.add_option(
            "devconsole_buffer_bytes",
            str,
            "256m",
            "Payload bytes devconsole keeps for viewers that attach late (e.g. 256m).",
        )
        loader.add_option(
            "devconsole_max_payload",
            str,
            "1m",
            "Payload bytes kept per message; larger ones are kept truncated "
            "with their true size recorded.",
        )
        loader.add_option(
            "devconsole_decoders",
            Sequence[str],
            [],
            "Application-protocol decoders by URL path, PATH_GLOB=NAME (socket.io, "
            "signalr, graphql-ws, stomp, mqtt, jsonrpc, ...); viewers see the choice.",
        )

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "devconsole_buffer_messages" in updated or "devconsole_buffer_bytes" in updated:
            if opts.devconsole_buffer_messages < 1:
                raise exceptions.OptionsError("devconsole_buffer_messages must be at least 1")
            try:
                nbytes = human.parse_size(opts.devconsole_buffer_bytes)
            except ValueError:
                raise exceptions.OptionsError(
                    f"invalid devconsole_buffer_bytes: {opts.devconsole_buffer_bytes!r}"
                ) from None
            if not nbytes or nbytes < 1:
                raise exceptions.OptionsError("devconsole_buffer_bytes must be positive")
            self.session.buffer.max_items = opts.devconsole_buffer_messages
            self.session.buffer.max_bytes = nbytes
        if "devconsole_max_payload" in updated:
            try:
                mp = human.parse_size(opts.devconsole_max_payload)
            except ValueError:
                raise exceptions.OptionsError(
                    f"invalid devconsole_max_payload: {opts.devconsole_max_payload!r}"
                ) from None
            if mp is None or mp < 0:
                raise exceptions.OptionsError("devconsole_max_payload must be >= 0")
            self.max_payload = mp
        if "devconsole_decoders" in updated:
            from devconsole.decoders.protocols import parse_rules

            try:
                self.decoder_rules = parse_rules(opts.devconsole_decoders)
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from None
        if "devconsole_tap" in updated and opts.devconsole_tap not in ("", "off"):
            try:
                parse_tap(opts.devconsole_tap)
            except TapError as e:
                raise exceptions.OptionsError(str(e)) from None
        # devconsole parses WebSocket frames itself, on mitmproxy's raw TCP relay.
        if opts.websocket or not opts.rawtcp:
            opts.update(websocket=False, rawtcp=True)
        # Connect upstream once the upgrade request is read, not when the client connects
        # (mitmproxy's "eager" default): an upstream that is down then gets the request a
        # 502 and the `error` hook (a refused upgrade), where "eager" closes a reverse-mode
        # client without a word and answers a CONNECT before any upgrade is seen.
        if getattr(opts, "connection_strategy", "lazy") != "lazy":
            opts.update(connection_strategy="lazy")

    async def running(self) -> None:
        spec = ctx.options.devconsole_tap
        if spec != "off":
            try:
                addr = await self.tap.start(parse_tap(spec))
            except TapError as e:
                self.tap_error = str(e)
                logger.error("devconsole tap: %s", e)
            else:
                logger.info("devconsole tap listening on %s", addr)
        self.started.set()

    async def done(self) -> None:
        await self.tap.stop()
        for t in list(self._tasks):
            t.cancel()

    def proxy_desc(self) -> str:
        try:
            ps = ctx.master.addons.get("proxyserver")
            addrs = ps.listen_addrs() if ps is not None else []
        except Exception:
            addrs = []
        return ", ".join(fmt_addr(a) for a in addrs)

    # ------------------------------------------------------------------ events out

    def _emit(self, ev: Event) -> None:
        self.session.apply(ev)
        for sink in self.sinks:
            sink(ev)

    def add_sink(self, sink: Callable[[Event], None]) -> None:
        """Also send every event to ``sink`` (after the session, beside the tap)."""
        self.sinks.append(sink)

    def new_conn_id(self) -> str:
        """A connection id for a connection another producer records (the backplane)."""
        cid = str(self.next_conn)
        self.next_conn += 1
        return cid

    def record(self, ev: Event) -> None:
        """Emit an event another producer built (the backplane): items get the next seq."""
        if isinstance(ev, (Message, ControlFrame)):
            ev.seq = self._next_seq()
        self._emit(ev)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # ------------------------------------------------------------------ handshake

    def request(self, flow: http.HTTPFlow) -> None:
        if not is_upgrade_request(flow.request):
            return
        req = flow.request
        client_tls = bool(flow.client_conn.tls_established)
        scheme = "wss" if client_tls else "ws"
        host = req.host_header or req.pretty_host
        path, _, _ = req.path.partition("?")
        hs = Handshake(
            conn=str(self.next_conn),
            ts=req.timestamp_start or time.time(),
            client=fmt_addr(flow.client_conn.peername),
            server=fmt_addr((req.host, req.port)),
            scheme=scheme,
            url=f"{scheme}://{host}{req.path}",
            method=req.method,
            path=path,
            query=[(k, v) for k, v in req.query.items(multi=True)],
            http_version=req.http_version,
            request_headers=_hdrs(req.headers),
            cookies=[(k, v) for k, v in req.cookies.items(multi=True)],
        )
        self.next_conn += 1
        for rule in self.decoder_rules:  # the proxy's --decoder choice travels with it
            if rule.matches(hs):
                hs.decoder = rule.name
                break
        self._upgrades[flow.id] = hs
        # Shown as "connecting" until the server answers (a copy: the response fills hs).
        self._emit(HandshakeEvent(dataclasses.replace(hs)))

    def response(self, flow: http.HTTPFlow) -> None:
        hs = self._upgrades.pop(flow.id, None)
        if hs is None or flow.response is None:
            return
        resp = flow.response
        hs.status = resp.status_code
        hs.reason = resp.reason
        hs.response_headers = _hdrs(resp.headers)
        hs.ts_response = resp.timestamp_end or time.time()
        if (
            resp.status_code == 101
            and resp.headers.get("upgrade", "").lower() == "websocket"
            and not flow.websocket  # mitmproxy's own WebSocket layer would take over
        ):
            hs.subprotocol = resp.headers.get("sec-websocket-protocol")
            hs.extensions = _split_extensions(
                ", ".join(resp.headers.get_all("sec-websocket-extensions"))
            )
            self._pending[flow.client_conn.id] = hs
            self._emit(HandshakeEvent(hs))
        else:
            raw = resp.raw_content or b""
            try:
                body = resp.get_content(strict=False) or b""
            except ValueError:
                body = raw
            hs.body = body[:REFUSED_BODY_KEEP]
            hs.body_size = len(body)
            self._emit(RefusedEvent(hs))

    def error(self, flow: http.HTTPFlow) -> None:
        hs = self._upgrades.pop(flow.id, None)
        if hs is None:
            return
        hs.error = flow.error.msg if flow.error else "error"
        hs.ts_response = time.time()
        self._emit(RefusedEvent(hs))

    def client_disconnected(self, client: Any) -> None:
        # An upgrade answered with 101 whose relay never started: forget it.
        self._pending.pop(client.id, None)

    # ------------------------------------------------------------------ relay

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        hs = self._pending.pop(flow.client_conn.id, None)
        if hs is None:
            return  # not a WebSocket: plain TCP passthrough, not ours
        deflate = DeflateParams.from_extensions(hs.extensions)
        s = _Stream(
            conn=hs.conn,
            flow=flow,
            handshake=hs,
            up=_Direction(CLIENT, StreamDecoder(True, deflate, self.max_payload)),
            down=_Direction(SERVER, StreamDecoder(False, deflate, self.max_payload)),
        )
        self._streams[flow.id] = s
        self._by_conn[hs.conn] = s

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        s = self._streams.get(flow.id)
        if s is None:
            return
        msg = flow.messages[-1]
        d = s.up if msg.from_client else s.down
        content = msg.content
        if d.inflight and (content is d.inflight[0][0] or content == d.inflight[0][0]):
            frame, ev = d.inflight.popleft()
            if self._at_boundary(d, ev):
                self._emit_injected(ev)
            else:  # a partial frame arrived first: splice at the next boundary instead
                d.pending.append((frame, ev))
                msg.content = b""
        else:
            msg.content = self._relay(s, d, content, msg.timestamp)
        # mitmproxy keeps every TCP message of a flow; we keep our own bounded buffer.
        del flow.messages[:-1]

    def _at_boundary(self, d: _Direction, ev: Event) -> bool:
        if d.decoder.failed:
            return True  # no boundaries are known any more: send now (close only)
        if isinstance(ev, ControlFrame):
            return d.decoder.at_frame_boundary
        return d.decoder.at_message_boundary

    def _relay(self, s: _Stream, d: _Direction, content: bytes, ts: float) -> bytes:
        dec = d.decoder
        if dec.failed:
            d.offset += len(content)
            return b"" if d.dropping else content
        need = bool(d.pending or d.transition)
        items = dec.feed(content, boundary="message" if need else None)
        d.offset += len(content)
        if not (need or d.dropping or d.swallow_pongs or s.killing):
            self._relay_plain(s, d, items, ts)  # no fault in progress: the hot path
            return content
        cut = dec.boundary_offset if need else None
        out = content
        dropping_before = d.dropping
        if cut is not None:
            spliced = b"".join(f for f, _ in d.pending)
            after = d.transition
            if after == "drop":
                d.dropping = True
            elif after == "resume":
                d.dropping = False
            d.transition = None
            head = b"" if dropping_before else content[:cut]
            tail = b"" if d.dropping else content[cut:]
            out = head + spliced + tail
        elif d.dropping:
            out = b""
        removed: list[tuple[int, int]] = []
        injected_done = False
        for item in items:
            end = len(content) if isinstance(item, DecodeError) else item.end
            if cut is not None and not injected_done and end > cut:
                self._flush_pending(d)
                injected_done = True
            dropped = dropping_before if (cut is None or end <= cut) else d.dropping
            if isinstance(item, DataMessage):
                self._emit(self._message(s.conn, d.side, item, ts, dropped))
            elif isinstance(item, Control):
                if (
                    item.opcode == Opcode.PONG
                    and item.payload in d.swallow_pongs
                    and not dropped
                    and out is content
                ):
                    # the peer answering a ping devconsole injected: not the other side's
                    d.swallow_pongs.discard(item.payload)
                    removed.append((item.end - item.wire_size, item.end))
                    dropped = True
                self._on_control(s, d, item, ts, dropped)
            elif isinstance(item, DecodeError):
                self._protocol_error(s, d, item, ts)
                if d.pending or d.transition:
                    # No frame boundary can be found from here: give up on the faults.
                    d.pending.clear()
                    d.transition = None
        if cut is not None and not injected_done:
            self._flush_pending(d)
        if removed:
            parts = []
            pos = 0
            for a, b in removed:
                parts.append(content[pos:a])
                pos = b
            parts.append(content[pos:])
            out = b"".join(parts)
        return out

    def _relay_plain(self, s: _Stream, d: _Direction, items: list[Any], ts: float) -> None:
        """Emit the events of ``items`` when nothing is spliced or dropped."""
        conn = s.conn
        side = d.side
        apply = self.session.apply
        sinks = self.sinks
        ev: Event
        for item in items:
            if type(item) is DataMessage:
                ev = self._message(conn, side, item, ts, False)
                apply(ev)
                for sink in sinks:
                    sink(ev)
            elif type(item) is Control:
                self._on_control(s, d, item, ts, False)
            else:
                self._protocol_error(s, d, item, ts)

    def _message(
        self, conn: str, side: Side, item: DataMessage, ts: float, dropped: bool
    ) -> Message:
        self.seq += 1
        return Message(
            self.seq,
            conn,
            ts,
            side,
            item.opcode,
            item.payload,
            item.size,
            item.wire_size,
            item.frames,
            item.compressed,
            item.rsv,
            item.utf8_ok,
            False,
            dropped,
            item.frame_sizes[:MAX_FRAME_SIZES],
        )

    def _protocol_error(self, s: _Stream, d: _Direction, item: DecodeError, ts: float) -> None:
        self._emit(ProtocolErrorEvent(s.conn, ts, d.side, item.offset, item.error))

    def _flush_pending(self, d: _Direction) -> None:
        for _, ev in d.pending:
            self._emit_injected(ev)
        d.pending.clear()

    def _emit_injected(self, ev: Event) -> None:
        if isinstance(ev, (Message, ControlFrame)):
            ev.seq = self._next_seq()
            ev.ts = time.time()
        self._emit(ev)

    def _on_control(
        self, s: _Stream, d: _Direction, item: Control, ts: float, dropped: bool
    ) -> None:
        self._emit(
            ControlFrame(
                seq=self._next_seq(),
                conn=s.conn,
                ts=ts,
                side=d.side,
                opcode=item.opcode,
                payload=item.payload,
                wire_size=item.wire_size,
                code=item.code,
                reason=item.reason,
                dropped=dropped,
                error=item.error,
            )
        )
        if item.opcode == Opcode.CLOSE:
            d.close_seen = True
            if s.closed_by is None:
                s.closed_by = d.side
            if s.killing and d.side in s.replies_wanted:
                s.replies_wanted.discard(d.side)
                if not s.replies_wanted:
                    s.replies_done.set()

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self._end(flow, None)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self._end(flow, flow.error.msg if flow.error else "error")

    def _end(self, flow: tcp.TCPFlow, error: str | None) -> None:
        s = self._streams.pop(flow.id, None)
        if s is None:
            return
        s.ended = True
        self._by_conn.pop(s.conn, None)
        clean = s.up.close_seen and s.down.close_seen
        closed_by = "proxy" if s.killing or s.state == ConnState.KILLED else s.closed_by
        self._emit(
            EndEvent(
                conn=s.conn,
                ts=time.time(),
                clean=clean,
                closed_by=closed_by,  # type: ignore[arg-type]
                error=error,
            )
        )

    # ------------------------------------------------------------------ commands

    async def execute(self, cmd: Command) -> CommandResult:
        s = self._by_conn.get(cmd.conn)
        if s is None or s.ended:
            if any(c.id == cmd.conn for c in self.session.connections.values()):
                return CommandResult(cmd.id, False, f"connection {cmd.conn} is closed")
            return CommandResult(cmd.id, False, f"unknown connection {cmd.conn!r}")
        if isinstance(cmd, AbortCommand):
            return self._abort(s, cmd)
        if isinstance(cmd, HalfOpenCommand):
            return self._half_open(s, cmd.id, True)
        if isinstance(cmd, ReleaseCommand):
            return self._half_open(s, cmd.id, False)
        if s.killing:
            return CommandResult(cmd.id, False, f"connection {cmd.conn} is being closed")
        if isinstance(cmd, CloseCommand):
            return self._close(s, cmd)
        if isinstance(cmd, InjectCommand):
            return self._inject(s, cmd)
        return CommandResult(getattr(cmd, "id", 0), False, "unknown command")

    def _abort(self, s: _Stream, cmd: AbortCommand) -> CommandResult:
        s.killing = True
        s.state = ConnState.KILLED
        self._emit(
            StateEvent(
                s.conn, time.time(), ConnState.KILLED, "abort (TCP reset)" if cmd.rst else "abort"
            )
        )
        n = mitm_compat.end_connection(s.flow, abort=True, rst=cmd.rst)
        if n == 0:
            return CommandResult(cmd.id, False, "the connection's sockets are already gone")
        return CommandResult(cmd.id, True)

    def _half_open(self, s: _Stream, cid: int, on: bool) -> CommandResult:
        if on and s.state == ConnState.HALF_OPEN:
            return CommandResult(cid, False, f"connection {s.conn} is already half-open")
        if not on and s.state != ConnState.HALF_OPEN:
            return CommandResult(cid, False, f"connection {s.conn} is not half-open")
        for d in (s.up, s.down):
            if d.decoder.failed:
                d.dropping = on  # no boundaries known: switch at once
                d.transition = None
            elif d.decoder.at_message_boundary:
                d.dropping = on
                d.transition = None
            else:
                d.transition = "drop" if on else "resume"
        s.state = ConnState.HALF_OPEN if on else ConnState.OPEN
        self._emit(
            StateEvent(
                s.conn,
                time.time(),
                s.state,
                "forwarding nothing" if on else "released",
            )
        )
        return CommandResult(cid, True)

    def _queue_frame(self, s: _Stream, d: _Direction, frame: bytes, ev: Event) -> None:
        """Send ``frame`` in direction ``d`` at the next boundary ``ev`` needs."""
        if not d.pending and not d.transition and self._at_boundary(d, ev):
            d.inflight.append((frame, ev))
            mitm_compat.inject_tcp(s.flow, d is s.down, frame)
        else:
            d.pending.append((frame, ev))

    def _inject(self, s: _Stream, cmd: InjectCommand) -> CommandResult:
        if s.state == ConnState.HALF_OPEN:
            return CommandResult(cmd.id, False, f"connection {s.conn} is half-open; release it")
        d = s.down if cmd.to == CLIENT else s.up
        if d.decoder.failed:
            return CommandResult(
                cmd.id, False, "that direction is undecodable: no frame boundary to inject at"
            )
        mask = d is s.up
        try:
            frame = build_frame(cmd.opcode, cmd.payload, mask=mask)
        except FrameError as e:
            return CommandResult(cmd.id, False, str(e))
        # The event shows who the frame pretends to come from: the other peer.
        side: Side = SERVER if cmd.to == CLIENT else CLIENT
        ev: Event
        if cmd.opcode in (Opcode.TEXT, Opcode.BINARY):
            utf8_ok = True
            if cmd.opcode == Opcode.TEXT:
                try:
                    cmd.payload.decode()
                except UnicodeDecodeError:
                    utf8_ok = False
            ev = Message(
                seq=0,
                conn=s.conn,
                ts=0.0,
                side=side,
                opcode=cmd.opcode,
                payload=cmd.payload[: self.max_payload],
                size=len(cmd.payload),
                wire_size=len(frame),
                utf8_ok=utf8_ok,
                injected=True,
            )
        elif cmd.opcode == Opcode.PING:
            # The answering pong goes to the other peer; devconsole takes it out.
            peer_dir = s.up if d is s.down else s.down
            peer_dir.swallow_pongs.add(cmd.payload)
            ev = ControlFrame(
                seq=0,
                conn=s.conn,
                ts=0.0,
                side=side,
                opcode=cmd.opcode,
                payload=cmd.payload,
                wire_size=len(frame),
                injected=True,
            )
        else:
            return CommandResult(cmd.id, False, "inject sends text, binary or ping")
        self._queue_frame(s, d, frame, ev)
        return CommandResult(cmd.id, True)

    def _close(self, s: _Stream, cmd: CloseCommand) -> CommandResult:
        if not valid_close_code(cmd.code):
            return CommandResult(
                cmd.id,
                False,
                f"{cmd.code} is not a close code a peer may send (1000-1003, 1007-1014, 3000-4999)",
            )
        try:
            to_client = build_close(cmd.code, cmd.reason)
            to_server = build_close(cmd.code, cmd.reason, mask=True)
        except FrameError as e:
            return CommandResult(cmd.id, False, str(e))
        targets = (CLIENT, SERVER) if cmd.to == "both" else (cmd.to,)
        s.killing = True
        s.state = ConnState.KILLED
        self._emit(
            StateEvent(
                s.conn, time.time(), ConnState.KILLED, f"close {cmd.code} {cmd.reason}".strip()
            )
        )
        for target in targets:
            d = s.down if target == CLIENT else s.up
            ev = ControlFrame(
                seq=0,
                conn=s.conn,
                ts=0.0,
                side=SERVER if target == CLIENT else CLIENT,  # who it pretends to be from
                opcode=Opcode.CLOSE,
                payload=cmd.code.to_bytes(2, "big") + cmd.reason.encode(),
                wire_size=len(to_client if target == CLIENT else to_server),
                code=cmd.code,
                reason=cmd.reason,
                injected=True,
            )
            self._queue_frame(s, d, to_client if target == CLIENT else to_server, ev)
            s.replies_wanted.add(target)  # its answering close comes the other way
        # A peer that got a close frame must get nothing after it; the answers are ours.
        for d in (s.up, s.down):
            if d.decoder.failed:
                d.dropping = True
            elif not d.dropping:
                d.transition = "drop"
        s.replies_done.clear()
        task = asyncio.ensure_future(self._finish_close(s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return CommandResult(cmd.id, True)

    async def _finish_close(self, s: _Stream) -> None:
        """After the close frames: wait for the peers' answers, then end TCP as a server
        would (close after the closing handshake; abort if a peer never answers)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(s.replies_done.wait(), CLOSE_REPLY_TIMEOUT)
        if not s.ended:
            mitm_compat.end_connection(s.flow, abort=False)
