"""The Capture addon: mitmproxy hooks in, Events out; Commands in, faults out.

Load it into any mitmproxy tool (``mitmdump -s addons/devconsole_addon.py``) or let
``devconsole proxy`` run it. It turns mitmproxy's ``websocket`` option off, so upgraded
connections are relayed as raw TCP; the handshake comes from the HTTP ``request`` /
``response`` hooks, and the bytes of each read from ``tcp_message``.

The addon is a driver: each upgraded connection has a ``devconsole.relay.Relay`` (the
sans-I/O state machine that parses, captures, holds, injects and closes), which it feeds
from ``tcp_message`` and whose output it writes through mitmproxy (``mitm_compat``).
Forwarding never depends on parsing: a parse error marks that direction undecodable and
the bytes keep flowing unchanged.

Bytes the relay produces outside ``tcp_message`` (a command, a timeout) can only be
written with ``inject.tcp``, which mitmproxy delivers later, through ``tcp_message`` again
(as if the peer had sent them). Until they come back, bytes relayed in that direction must
follow them: they wait in the stream's outbox, and whichever comes first (the injected
token or the next chunk relayed that way) writes the outbox ahead of itself.

The fast relay (option ``devconsole_fast_relay``, on by default): at ``tcp_start`` the
connection's two sockets are handed to ``devconsole.fastrelay``, which drives the same
Relay with its own asyncio protocols; mitmproxy's hooks for that flow then only mark the
end of the hand-off. Where they cannot be handed over (TLS in a layer tree it does not
recognise, an unsupported mitmproxy, sockets that are not asyncio transports) the
connection stays on the path above.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import itertools
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import ctx, exceptions, http, tcp
from mitmproxy.utils import human

from devconsole import mitm_compat
from devconsole.frames import DeflateParams
from devconsole.model import (
    CLIENT,
    SERVER,
    AbortCommand,
    BreakpointCommand,
    BreakpointsEvent,
    CloseCommand,
    Command,
    CommandResult,
    ControlFrame,
    DropCommand,
    EnableBreakpointCommand,
    Event,
    ForwardCommand,
    HalfOpenCommand,
    Handshake,
    HandshakeEvent,
    HttpExchange,
    InjectCommand,
    Message,
    RefusedEvent,
    ReleaseCommand,
    RemoveBreakpointCommand,
    RuleEvent,
    RulesCommand,
    ShapeCommand,
    Side,
)
from devconsole.relay import DEFAULT_HOLD_BYTES, Intercept, Output, Relay, RelayError
from devconsole.rules import HandshakeRule, RulesError, RuleSet
from devconsole.rules import load as load_rules
from devconsole.session import Session
from devconsole.tap import TapError, TapServer, parse_tap
from devconsole.text import fmt_addr

logger = logging.getLogger("devconsole.capture")

REFUSED_BODY_KEEP = 4096
RULES_POLL = 0.5  # seconds between checks of the rules file for changes
CLOSE_HOLD_LIMIT = 30.0  # at most this long a peer's FIN waits for delayed bytes to go out
# Engine.IO long-polling before an upgrade: requests kept per session id, bytes of each
# body, session ids remembered (an upgrade takes its requests; the oldest others go)
POLLING_KEEP = 8
POLLING_BODY_KEEP = 512
POLLING_SESSIONS = 256
_EIO_OPEN_SID = re.compile(rb'0\{"sid":"([^"]{1,128})"')
SHUTDOWN_CLOSE_TIMEOUT = 3.0  # seconds the peers get to answer the 1001 close at shutdown
END_AFTER_INJECT = 0.5  # at most this long an end waits for injected bytes to go out


def _hdrs(headers: Any) -> list[tuple[str, str]]:
    return [(k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in headers.fields]


def _split_extensions(value: str | None) -> list[str]:
    if not value:
        return []
    return [p.strip() for p in value.split(",") if p.strip()]


def is_upgrade_request(req: http.Request) -> bool:
    return req.headers.get("upgrade", "").lower() == "websocket"


@dataclass(eq=False, slots=True)
class _Stream:
    """One upgraded connection: its flow, its relay, and what waits to be written."""

    conn: str
    flow: tcp.TCPFlow
    handshake: Handshake
    relay: Relay
    # bytes written outside tcp_message, per direction (to the server / to the client),
    # and the inject.tcp tokens on their way back through tcp_message (lists, not deques:
    # a few at a time, and an empty deque is 0.7 KiB per connection, an empty list 56 B)
    box_up: list[bytes] = field(default_factory=list)
    box_down: list[bytes] = field(default_factory=list)
    tok_up: list[bytes] = field(default_factory=list)
    tok_down: list[bytes] = field(default_factory=list)
    end_after: str | None = None  # end both connections once the outboxes are written
    paused: set[str] = field(default_factory=set)  # peers we stopped reading
    ended: bool = False
    fast: Any = None  # a fastrelay.FastConnection once the sockets are handed over
    # a peer's FIN waiting for the bytes still delayed toward the other peer, by that peer
    drained: dict[str, asyncio.Event] = field(default_factory=dict)


class Capture:
    def __init__(self) -> None:
        self.session = Session()
        self.tap = TapServer(self.session, self.execute, self.proxy_desc)
        # Where events go after the session: the tap, and e.g. a Redis publisher. A sink
        # is called on the proxy's loop for every event: it must only queue it.
        self.sinks: list[Callable[[Event], None]] = [self.tap.publish]
        self.next_conn = 1
        self.intercept = Intercept(DEFAULT_HOLD_BYTES)
        self._seq = itertools.count(1)
        self._upgrades: dict[str, Handshake] = {}  # http flow id -> handshake
        self._pending: dict[str, Handshake] = {}  # client conn id -> 101 awaiting tcp_start
        self._streams: dict[str, _Stream] = {}  # tcp flow id -> stream
        self._by_conn: dict[str, _Stream] = {}  # conn id -> stream
        self._tasks: set[asyncio.Task[Any]] = set()
        self.max_payload = 1 << 20
        self.tap_error: str | None = None
        self.started = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._timed: set[_Stream] = set()  # streams whose relay has a deadline
        self._no_backpressure_logged = False
        self.shutting_down = False
        self.fast_relay = os.environ.get("DEVCONSOLE_FAST_RELAY", "1") not in ("0", "false")
        self._pool: Any = None  # fastrelay.Pool, made on first use
        # rules (docs/rules.md): the file, what it looked like when last read, and the
        # handshake rules that acted on an upgrade whose response is still to come
        self.rules_path = ""
        self._rules_stat: tuple[int, int, int] | None = None
        self._hs_rules: dict[str, list[HandshakeRule]] = {}
        self.decoder_rules: list[Any] = []  # devconsole_decoders, parsed
        # Engine.IO long-polling requests by sid, until the upgrade that takes them
        self._polling: OrderedDict[str, list[HttpExchange]] = OrderedDict()

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
            "devconsole_hold_bytes",
            str,
            "16m",
            "Bytes devconsole holds per direction of a connection behind a held message "
            "(breakpoints); past it, it stops reading that peer (TCP backpressure).",
        )
        loader.add_option(
            "devconsole_fast_relay",
            bool,
            self.fast_relay,
            "Relay upgraded connections (ws and wss) with devconsole's own driver instead "
            "of mitmproxy's TCP layer (much faster; other addons then see no tcp_message for "
            "them). Off: mitmproxy relays every read. Default from $DEVCONSOLE_FAST_RELAY.",
        )
        loader.add_option(
            "devconsole_rules",
            str,
            "",
            "A rules file (docs/rules.md): rewrite, drop, delay, answer or hold matching "
            "messages, change or refuse upgrades, shape endpoints. Reloaded when it changes.",
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
        if "devconsole_hold_bytes" in updated:
            try:
                hb = human.parse_size(opts.devconsole_hold_bytes)
            except ValueError:
                raise exceptions.OptionsError(
                    f"invalid devconsole_hold_bytes: {opts.devconsole_hold_bytes!r}"
                ) from None
            if not hb or hb < 1:
                raise exceptions.OptionsError("devconsole_hold_bytes must be positive")
            self.intercept.hold_bytes = hb
        if "devconsole_rules" in updated and opts.devconsole_rules != self.rules_path:
            path = opts.devconsole_rules
            if path:
                try:
                    rs, st = _read_rules(path)
                except RulesError as e:
                    raise exceptions.OptionsError(str(e)) from None
            else:
                rs, st = RuleSet(), None
            self.rules_path = path
            self._rules_stat = st
            self.set_rules(rs)
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
        if "devconsole_fast_relay" in updated:
            self.fast_relay = bool(opts.devconsole_fast_relay)
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
        task = asyncio.ensure_future(self._watch_rules())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.started.set()

    async def done(self) -> None:
        # mitmdump and friends: the proxy servers are gone; record how the connections
        # ended (devconsole proxy closes them properly first, see shutdown()).
        for s in list(self._streams.values()):
            if s.fast is not None:
                s.fast.abort()
            self._end(s.flow, "proxy shut down")
        if self._timer is not None:
            self._timer.cancel()
        if self._pool is not None:
            self._pool.stop()
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
        """Every event: the relays' (``Relay.emit``), the handshake hooks', commands'.
        The session first (its observers: a recorder), then each sink (the tap, a Redis
        publisher). On the hot path: one call per sink, nothing allocated."""
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
        """Emit an event another producer built (the backplane): items get the next seq,
        from the same counter as the relays' items."""
        if isinstance(ev, (Message, ControlFrame)):
            ev.seq = next(self._seq)
        self._emit(ev)

    # ------------------------------------------------------------------ handshake

    def request(self, flow: http.HTTPFlow) -> None:
        if not is_upgrade_request(flow.request):
            return
        req = flow.request
        client_tls = bool(flow.client_conn.tls_established)
        scheme = "wss" if client_tls else "ws"
        host = req.host_header or req.pretty_host
        path, _, _ = req.path.partition("?")
        conn = str(self.next_conn)
        done: list[tuple[str, str, str]] = []
        if self.intercept.rules.handshakes:
            done = self._handshake_rules(flow, conn, f"{scheme}://{host}{req.path}", path)
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
        sid = next((v for k, v in hs.query if k == "sid"), "")
        if sid and any(k == "EIO" for k, _ in hs.query):
            # the Engine.IO long-polling handshake this upgrade continues
            hs.preceding = sorted(self._polling.pop(sid, []), key=lambda x: x.ts)
        self._upgrades[flow.id] = hs
        # Shown as "connecting" until the server answers (a copy: the response fills hs).
        self._emit(HandshakeEvent(dataclasses.replace(hs)))
        for rule, action, detail in done:
            self._emit(RuleEvent(hs.conn, hs.ts, rule, action, detail))

    def response(self, flow: http.HTTPFlow) -> None:
        hs = self._upgrades.pop(flow.id, None)
        hs_rules = self._hs_rules.pop(flow.id, None)
        if hs is None and flow.response is not None:
            self._polling_response(flow)
        if hs is None or flow.response is None:
            return
        resp = flow.response
        if hs_rules:
            for rule in hs_rules:
                if rule.response_headers is not None:
                    new, changes = rule.response_headers.apply(_hdrs(resp.headers))
                    resp.headers = http.Headers([(k.encode(), v.encode()) for k, v in new])
                    for c in changes:
                        self._emit(RuleEvent(hs.conn, time.time(), rule.name, "response", c))
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

    def _handshake_rules(
        self, flow: http.HTTPFlow, conn: str, url: str, path: str
    ) -> list[tuple[str, str, str]]:
        """Apply the handshake rules that match an upgrade request: edit its headers and
        offer, or refuse it. Returns (rule, action, detail) for the record."""
        req = flow.request
        done: list[tuple[str, str, str]] = []
        later: list[HandshakeRule] = []
        for rule in self.intercept.rules.handshake_rules(url, path):
            rule.used += 1
            headers, changes = rule.edit_request(_hdrs(req.headers))
            if changes:
                req.headers = http.Headers([(k.encode(), v.encode()) for k, v in headers])
                done += [(rule.name, "request", c) for c in changes]
            if rule.response_headers is not None:
                later.append(rule)
            if rule.refuse is not None:
                ref = rule.refuse
                hdrs = {"Content-Type": "text/plain; charset=utf-8", **dict(ref.headers)}
                flow.response = http.Response.make(ref.status, ref.body, hdrs)
                done.append((rule.name, "refuse", f"{ref.status} ({len(ref.body)} bytes)"))
                break  # refused: no server, nothing more to edit
        if later:
            self._hs_rules[flow.id] = later
        return done

    # ------------------------------------------------------------------ rules

    def set_rules(self, rules: RuleSet, now: float | None = None) -> None:
        """Replace the rules on every connection, now and later."""
        now = time.time() if now is None else now
        for relay, out in self.intercept.set_rules(rules, now):
            s = self._by_conn.get(relay.conn)
            if s is not None and out:
                self._apply(s, out)
        self._emit(RuleEvent("", now, "", "loaded", ", ".join(rules.names)))

    async def _watch_rules(self) -> None:
        """Reload the rules file when it changes; a file with an error keeps the rules
        in effect and says where the error is."""
        while True:
            await asyncio.sleep(RULES_POLL)
            path = self.rules_path
            if not path:
                continue
            try:
                st = _stat(path)
            except OSError as e:
                st = None
                err: str | None = f"{path}: {e.strerror}; keeping the rules in effect"
            else:
                err = None
            if st == self._rules_stat:
                continue
            self._rules_stat = st
            if err is None:
                try:
                    rs, _ = _read_rules(path)
                except RulesError as e:
                    err = f"{e}; keeping the rules in effect"
                else:
                    logger.info("rules reloaded from %s: %d rule(s)", path, len(rs.names))
                    self.set_rules(rs)
                    continue
            logger.error("%s", err)
            self._emit(RuleEvent("", time.time(), "", "error", err))

    def _polling_response(self, flow: http.HTTPFlow) -> None:
        """An Engine.IO long-polling request (``?EIO=4&transport=polling``): kept by its
        session id (the query's ``sid``, or the open packet's in the answer) for the
        WebSocket upgrade that may follow, shown in the handshake inspector."""
        req = flow.request
        resp = flow.response
        if resp is None or "EIO" not in req.query or req.query.get("transport") != "polling":
            return
        try:
            body = resp.get_content(strict=False) or b""
        except ValueError:
            body = resp.raw_content or b""
        sid = req.query.get("sid", "")
        if not sid:
            m = _EIO_OPEN_SID.search(body[:2048])
            sid = m.group(1).decode("ascii", "replace") if m else ""
        if not sid:
            return
        try:
            sent = req.get_content(strict=False) or b""
        except ValueError:
            sent = req.raw_content or b""
        kept = self._polling.setdefault(sid, [])
        self._polling.move_to_end(sid)
        if len(kept) < POLLING_KEEP:
            kept.append(
                HttpExchange(
                    req.timestamp_start,
                    req.method,
                    req.path,
                    resp.status_code,
                    sent[:POLLING_BODY_KEEP],
                    body[:POLLING_BODY_KEEP],
                    len(sent),
                    len(body),
                    resp.timestamp_end,
                )
            )
        while len(self._polling) > POLLING_SESSIONS:
            self._polling.popitem(last=False)

    def error(self, flow: http.HTTPFlow) -> None:
        self._hs_rules.pop(flow.id, None)
        hs = self._upgrades.pop(flow.id, None)
        if hs is None:
            return
        hs.error = flow.error.msg if flow.error else "error"
        hs.ts_response = time.time()
        self._emit(RefusedEvent(hs))

    def client_disconnected(self, client: Any) -> None:
        # An upgrade answered with 101 whose relay never started: forget it.
        self._pending.pop(client.id, None)
        # mitmproxy does not always call tcp_end: when the server closes first, its HTTP
        # layer may tear the client connection down, and a cancellation that lands while
        # the client's handler waits in server_event leaves the socket open (seen on 11
        # and 12). Close what is left and record the end here.
        for s in [s for s in self._streams.values() if s.flow.client_conn.id == client.id]:
            if s.fast is not None:  # ours: mitmproxy only let go of it
                continue
            mitm_compat.end_connection(s.flow, abort=False)
            self._end(s.flow, None)

    # ------------------------------------------------------------------ relay

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        hs = self._pending.pop(flow.client_conn.id, None)
        if hs is None:
            return  # not a WebSocket: plain TCP passthrough, not ours
        relay = Relay(
            hs.conn,
            DeflateParams.from_extensions(hs.extensions),
            emit=self._emit,
            seq=self._seq,
            max_payload=self.max_payload,
            intercept=self.intercept,
            url=hs.url,
            path=hs.path,
            now=time.time(),
            handshake=hs,
        )
        s = _Stream(hs.conn, flow, hs, relay)
        self._streams[flow.id] = s
        self._by_conn[hs.conn] = s
        if self.fast_relay:
            self._hand_off(s)
        if s.fast is None:  # mitmproxy's relay: a peer's FIN waits there for delayed bytes
            mitm_compat.hold_close(
                flow, lambda from_client: self._close_wait(s, from_client), CLOSE_HOLD_LIMIT
            )
        if relay.out:  # breakpoints hold from the first message on
            self._apply(s, relay.take())

    def _hand_off(self, s: _Stream) -> None:
        """Give the connection's sockets to devconsole's own driver (fastrelay)."""
        from devconsole import fastrelay

        if self._pool is None:
            self._pool = fastrelay.Pool()
        flow = s.flow

        def arm(first: float | None) -> None:  # as _apply does on out.rearm
            self._timed.add(s)
            self._arm(first)

        s.fast = self._pool.start(flow, s.relay, lambda error: self._end(flow, error), arm)
        if s.fast is None:
            logger.debug("connection %s: its sockets stay with mitmproxy's TCP relay", s.conn)

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        s = self._streams.get(flow.id)
        if s is None:
            return
        msg = flow.messages[-1]
        content = msg.content
        if s.fast is not None:
            # read by mitmproxy before the hand-off: relayed by the fast driver, in order
            msg.content = b""
            s.fast.from_mitmproxy(CLIENT if msg.from_client else SERVER, content, msg.timestamp)
            del flow.messages[:-1]
            return
        side: Side
        if msg.from_client:
            side = CLIENT
            tokens = s.tok_up
            box = s.box_up
        else:
            side = SERVER
            tokens = s.tok_down
            box = s.box_down
        if tokens and content is tokens[0]:
            # our own bytes (inject.tcp) coming back: write what waits, unless a chunk
            # relayed this way did already
            del tokens[0]
            msg.content = b"".join(box)
            box.clear()
            if s.end_after is not None and not (s.tok_up or s.tok_down):
                self._end_soon(s)
        else:
            relay = s.relay
            out = relay.feed(side, content, msg.timestamp)
            if box:
                out = b"".join(box) + out
                box.clear()
            msg.content = out
            if relay.out:
                self._apply(s, relay.take())
            if s.paused and side in s.paused:
                # the StreamReader may have resumed a transport it had paused itself
                mitm_compat.pause_reading(flow, side == CLIENT)
        # mitmproxy keeps every TCP message of a flow; we keep our own bounded buffer.
        del flow.messages[:-1]

    def _apply(self, s: _Stream, out: Output) -> None:
        """Carry out what the relay asked for."""
        if s.ended:
            return
        if s.fast is not None:
            s.fast.apply(out)
            return
        flow = s.flow
        for data, to_client in ((out.to_server, False), (out.to_client, True)):
            if data:
                b = b"".join(data)
                (s.box_down if to_client else s.box_up).append(b)
                (s.tok_down if to_client else s.tok_up).append(b)
                mitm_compat.inject_tcp(flow, to_client, b)
        for side in out.pause:
            if mitm_compat.pause_reading(flow, side == CLIENT):
                s.paused.add(side)
            elif not self._no_backpressure_logged:
                self._no_backpressure_logged = True
                logger.warning(
                    "cannot stop reading connection %s: held messages are not backpressured",
                    s.conn,
                )
        for side in out.resume:
            s.paused.discard(side)
            mitm_compat.resume_reading(flow, side == CLIENT)
        if out.end == "abort":
            mitm_compat.end_connection(flow, abort=True, rst=out.rst)
        elif out.end == "close":
            if s.tok_up or s.tok_down:
                # after what is on its way through inject.tcp; mitmproxy drops injections
                # into a connection that is going away, so do not wait for them for long
                s.end_after = "close"
                asyncio.get_running_loop().call_later(END_AFTER_INJECT, self._end_late, s)
            else:
                self._end_soon(s)
        if out.rearm:
            self._timed.add(s)
            self._arm(s.relay.next_deadline())
        if s.drained:
            self._check_drained(s)

    def _close_wait(self, s: _Stream, from_client: bool) -> Any:
        """What a peer's FIN waits for: the bytes still delayed toward the other peer."""
        to: Side = SERVER if from_client else CLIENT
        if s.ended or not s.relay.pending_to(to):
            return None
        ev = s.drained.get(to)
        if ev is None:
            ev = s.drained[to] = asyncio.Event()
        return ev.wait()

    def _check_drained(self, s: _Stream) -> None:
        for to, ev in list(s.drained.items()):
            if s.ended or not s.relay.pending_to(to):  # type: ignore[arg-type]
                ev.set()
                del s.drained[to]

    def _end_late(self, s: _Stream) -> None:
        if s.end_after is not None and not s.ended:
            s.end_after = None
            mitm_compat.end_connection(s.flow, abort=False)

    def _end_soon(self, s: _Stream) -> None:
        """FIN both connections after the current hook: mitmproxy writes what tcp_message
        returned when the hook completes."""
        s.end_after = None

        def end() -> None:
            if not s.ended:
                mitm_compat.end_connection(s.flow, abort=False)

        asyncio.get_running_loop().call_soon(end)

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        if not self._handed_off(flow):
            self._end(flow, None)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        if not self._handed_off(flow):
            self._end(flow, flow.error.msg if flow.error else "error")

    def _handed_off(self, flow: tcp.TCPFlow) -> bool:
        """mitmproxy is done with a flow whose sockets are ours: the hand-off is complete."""
        s = self._streams.get(flow.id)
        if s is None or s.fast is None:
            return False
        s.fast.handoff_done()
        return True

    def _end(self, flow: tcp.TCPFlow, error: str | None) -> None:
        s = self._streams.pop(flow.id, None)
        if s is None:
            return
        s.ended = True
        self._by_conn.pop(s.conn, None)
        self._timed.discard(s)
        s.relay.end(time.time(), error)
        self._check_drained(s)

    # ------------------------------------------------------------------ time

    def _arm(self, first: float | None) -> None:
        """Have _on_timer run at ``first`` unless it runs earlier anyway."""
        if first is None:
            return
        if self._timer is not None:
            if self._timer_at <= first:
                return
            self._timer.cancel()
        self._timer_at = first
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, first - time.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = time.time()
        first: float | None = None
        # only the streams that asked for the clock: a shaped connection ticking every few
        # milliseconds must not cost a pass over every connection
        for s in list(self._timed):
            t = s.relay.next_deadline() if not s.ended else None
            if t is not None and t <= now:
                self._apply(s, s.relay.tick(now))
                t = s.relay.next_deadline()
            if t is None:
                self._timed.discard(s)
            elif first is None or t < first:
                first = t
        self._arm(first)

    # ------------------------------------------------------------------ commands

    async def execute(self, cmd: Command) -> CommandResult:
        try:
            return self._execute(cmd)
        except RelayError as e:
            return CommandResult(cmd.id, False, str(e))

    def _execute(self, cmd: Command) -> CommandResult:
        now = time.time()
        if isinstance(cmd, BreakpointCommand | RemoveBreakpointCommand | EnableBreakpointCommand):
            return self._breakpoint_command(cmd)
        if isinstance(cmd, ForwardCommand | DropCommand):
            return self._release_held(cmd, now)
        if isinstance(cmd, RulesCommand):
            return self._rules_command(cmd)
        if isinstance(cmd, ShapeCommand) and cmd.path:
            return self._endpoint_shape(cmd, now)
        s = self._by_conn.get(cmd.conn)
        if s is None or s.ended:
            if any(c.id == cmd.conn for c in self.session.connections.values()):
                return CommandResult(cmd.id, False, f"connection {cmd.conn} is closed")
            return CommandResult(cmd.id, False, f"unknown connection {cmd.conn!r}")
        r = s.relay
        if isinstance(cmd, AbortCommand):
            n = s.fast.sockets() if s.fast is not None else len(mitm_compat.writers(s.flow))
            self._apply(s, r.abort(cmd.rst, now))
            if n == 0:
                return CommandResult(cmd.id, False, "the connection's sockets are already gone")
        elif isinstance(cmd, HalfOpenCommand):
            self._apply(s, r.half_open(now))
        elif isinstance(cmd, ReleaseCommand):
            self._apply(s, r.release(now))
        elif isinstance(cmd, CloseCommand):
            self._apply(s, r.close(cmd.code, cmd.reason, cmd.to, now))
        elif isinstance(cmd, InjectCommand):
            self._apply(s, r.inject(cmd.to, cmd.opcode, cmd.payload, now))
        elif isinstance(cmd, ShapeCommand):
            self._apply(s, r.shape(cmd.to, None if cmd.clear else cmd.shape, now, "cli"))
        else:
            return CommandResult(getattr(cmd, "id", 0), False, "unknown command")
        return CommandResult(cmd.id, True)

    def _rules_command(self, cmd: RulesCommand) -> CommandResult:
        try:
            rs = load_rules(cmd.text, cmd.path or "rules") if cmd.text.strip() else RuleSet()
        except RulesError as e:
            return CommandResult(cmd.id, False, str(e))
        # rules sent over the tap replace the file's until the file changes again
        self.set_rules(rs)
        return CommandResult(cmd.id, True, info=str(len(rs.names)))

    def _endpoint_shape(self, cmd: ShapeCommand, now: float) -> CommandResult:
        from devconsole.shaping import ShapeError, check_shape

        if cmd.conn:
            return CommandResult(cmd.id, False, "give a connection or a path, not both")
        if not cmd.clear:
            try:
                check_shape(cmd.shape)
            except ShapeError as e:
                return CommandResult(cmd.id, False, str(e))
        targets: tuple[Side, ...] = (CLIENT, SERVER) if cmd.to == "both" else (cmd.to,)  # type: ignore[assignment]
        for to in targets:
            shape = None if cmd.clear else cmd.shape
            for relay, out in self.intercept.set_endpoint_shape(cmd.path, to, shape, now):
                s = self._by_conn.get(relay.conn)
                if s is not None and out:
                    self._apply(s, out)
        n = sum(
            1
            for s in self._streams.values()
            if fnmatch.fnmatchcase(s.handshake.path or "/", cmd.path)
        )
        return CommandResult(cmd.id, True, info=str(n))

    def _breakpoint_command(
        self, cmd: BreakpointCommand | RemoveBreakpointCommand | EnableBreakpointCommand
    ) -> CommandResult:
        info = ""
        if isinstance(cmd, BreakpointCommand):
            if cmd.conn and cmd.conn not in self._by_conn:
                known = any(c.id == cmd.conn for c in self.session.connections.values())
                what = "is closed" if known else "is unknown"
                return CommandResult(cmd.id, False, f"connection {cmd.conn!r} {what}")
            bp = self.intercept.add(cmd.filter, cmd.conn, cmd.timeout, cmd.on_timeout, cmd.control)
            info = str(bp.id)
        elif isinstance(cmd, RemoveBreakpointCommand):
            info = str(self.intercept.remove(cmd.breakpoint))
        else:
            self.intercept.enable(cmd.breakpoint, cmd.enabled)
        self._emit(BreakpointsEvent([dataclasses.replace(b) for b in self.intercept.breakpoints]))
        for s in list(self._streams.values()):
            if s.relay.out:
                self._apply(s, s.relay.take())
        return CommandResult(cmd.id, True, info=info)

    def _release_held(self, cmd: ForwardCommand | DropCommand, now: float) -> CommandResult:
        drop = isinstance(cmd, DropCommand)
        if cmd.held:
            relay = self.intercept.relay_of(cmd.held)
            if cmd.conn and relay.conn != cmd.conn:
                raise RelayError(f"message {cmd.held} is not held on connection {cmd.conn}")
            s = self._by_conn.get(relay.conn)
            if isinstance(cmd, ForwardCommand):
                out = relay.forward(cmd.held, now, cmd.payload, cmd.opcode, cmd.more)
            else:
                out = relay.drop(cmd.held, now)
            if s is not None:
                self._apply(s, out)
            return CommandResult(cmd.id, True, info="1")
        if isinstance(cmd, ForwardCommand) and (cmd.payload is not None or cmd.more):
            raise RelayError("an edited body goes to one held message, not to all")
        if cmd.conn and cmd.conn not in self._by_conn:
            known = any(c.id == cmd.conn for c in self.session.connections.values())
            raise RelayError(f"connection {cmd.conn!r} is {'closed' if known else 'unknown'}")
        n = 0
        for s in list(self._streams.values()):
            if cmd.conn and s.conn != cmd.conn:
                continue
            out = s.relay.release_all(now, drop)
            n += int(out.info)
            self._apply(s, out)
        return CommandResult(cmd.id, True, info=str(n))

    # ------------------------------------------------------------------ shutdown

    async def shutdown(self, timeout: float = SHUTDOWN_CLOSE_TIMEOUT) -> None:
        """Close every live connection as a server going away does (close frames with 1001
        to both peers, FIN once they answered), record each end, and let the tap clients
        receive it. Bounded by ``timeout`` (then the rest is aborted)."""
        self.shutting_down = True
        now = time.time()
        for s in list(self._streams.values()):
            if s.relay.killing:
                continue
            try:
                self._apply(s, s.relay.close(1001, "going away", "both", now))
            except RelayError:
                pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._streams and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for s in list(self._streams.values()):
            if s.fast is not None:
                s.fast.abort()
            else:
                mitm_compat.end_connection(s.flow, abort=True)
            self._end(s.flow, "proxy shut down")
        # let every tap client (a recorder, a viewer) receive the ends before the tap goes
        deadline = loop.time() + 1.0
        while loop.time() < deadline and any(c.queue for c in self.tap.clients):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)


def _stat(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read_rules(path: str) -> tuple[RuleSet, tuple[int, int, int] | None]:
    """A rules file and its stat, read together; RulesError for anything wrong."""
    try:
        st = _stat(path)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise RulesError(e.strerror or str(e), path=path) from None
    except UnicodeDecodeError:
        raise RulesError("not UTF-8 text", path=path) from None
    return load_rules(text, path), st
