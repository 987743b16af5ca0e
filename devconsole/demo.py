"""Realistic demo traffic: a local WebSocket server and simulated clients, through a proxy.

I/O module: uses the ``websockets`` asyncio API; no mitmproxy, no textual. Everything is
loopback-only and stops cleanly when ``stop`` is set.

``run_demo(proxy, stop=...)`` starts ``start_demo_server()`` on 127.0.0.1 (a free port)
and clients that connect to it *through* the HTTP proxy ``proxy`` ("127.0.0.1:8080"; or
directly with ``proxy=None``):

- ``/chat``: a JSON chat room; three clients with a ``session`` cookie and an ``Origin``
  send chat messages every 0.5-2 s and typing indicators, now and then a large message;
  the server broadcasts. No compression.
- ``/ticker``: the server pushes msgpack-encoded quotes ~10/s; permessage-deflate is
  negotiated (websockets' default), so these messages are compressed.
- every connection: the server sends protocol pings every ``ping_interval`` (3 s).
- ``/feed``: a client that reconnects with exponential backoff and jitter (0.5 s, x2, cap
  8 s, +-20%) whenever the connection drops. The server closes it every 10-15 s with 1012
  Service Restart and answers 503 for a moment while "restarting", so the backoff shows.
  The client sends an app-level heartbeat ``{"type":"ping"}`` every 2 s, answered by
  ``{"type":"pong"}``. The server refuses ``/feed`` with 403 without a ``session``
  cookie: beside the backoff client, the same app in another tab lost its cookie and
  retries every ``feed_retry_every`` (5 s), refused each time (the handshake diff names
  the missing cookie).
- ``/private``: a client without a cookie, refused with HTTP 401 and a small JSON body,
  every 20 s.
- ``/events?ticket=abc123``: authentication by a ticket in the query string.
- ``/flood`` (with ``rate=N``): N small JSON messages a second, sent in batches per tick.
- ``/socket.io/?EIO=4&transport=websocket``: Socket.IO (Engine.IO v4 over a WebSocket,
  as python-socketio and socket.io-client speak it, built with devconsole's own
  Socket.IO codec): two clients join, emit ``chat`` events that the server acknowledges
  (acks paired, latency per event in the report) and broadcasts as ``news``, upload a
  small binary file now and then (a binary event with an attachment); the server pings
  every ``sio_ping`` seconds (Engine.IO heartbeats, negotiated in the open packet).
- ``/rpc``: JSON-RPC 2.0: a client calls ``eth_blockNumber``, ``eth_getBalance`` and
  ``eth_call`` (answered after 2-80 ms), subscribes with ``eth_subscribe`` (then gets
  ``eth_subscription`` notifications), and now and then calls
  ``debug_traceTransaction``, which this server never answers: the report lists those as
  unanswered when the connection ends.

Every client catches connection errors (proxy gone, connection killed) and retries with
backoff. ``DemoStats`` records what the server and the clients saw, for tests and
summaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.http11 import Request, Response

from devconsole.decoders.base import Frame, decode_message
from devconsole.decoders.socketio import SocketIODecoder, SocketIOState

log = logging.getLogger("devconsole.demo")

TICKET = "abc123"
ORIGIN = "http://localhost:3000"
USERS = ("alice", "bob", "carol", "dave", "erin")
WORDS = (
    "hi", "hello", "anyone there?", "lgtm", "ship it", "brb", "on it", "deploying now",
    "the build is green", "who broke main?", "coffee?", "ack", "looking", "fixed",
)  # fmt: skip
SYMBOLS = ("ACME", "GLOBX", "INITECH", "HOOLI", "UMBRL")

# Errors a client survives by reconnecting: the proxy is gone, the connection was killed,
# the upgrade was refused, a timeout.
RETRYABLE = (OSError, TimeoutError, WebSocketException, EOFError)
STOP_GRACE = 2.0  # seconds the clients get to close politely when the demo stops


@dataclass(slots=True)
class DemoConfig:
    """Timings of the demo. ``DemoConfig.fast()`` compresses them for tests."""

    chat_clients: int = 3
    chat_interval: tuple[float, float] = (0.5, 2.0)
    large_every: int = 20  # one chat message in this many is large
    large_size: int = 48_000
    ticker_hz: float = 10.0
    ping_interval: float = 3.0
    feed_lifetime: tuple[float, float] = (10.0, 15.0)  # then the server closes with 1012
    feed_restart: float = 2.0  # the server refuses /feed with 503 for this long afterwards
    feed_app_ping: float = 2.0
    feed_item_every: float = 0.7
    backoff_base: float = 0.5
    backoff_factor: float = 2.0
    backoff_cap: float = 8.0
    backoff_jitter: float = 0.2
    feed_retry_every: float = 5.0  # the /feed client without its cookie retries this often
    private_every: float = 20.0
    events_every: float = 1.0
    flood_tick: float = 0.02  # the flood client sends a batch every tick
    retry_base: float = 1.0  # other clients' reconnect backoff
    retry_cap: float = 10.0
    sio_clients: int = 2
    sio_interval: tuple[float, float] = (0.5, 2.0)  # between chat events
    sio_ping: float = 5.0  # Engine.IO pingInterval
    rpc_interval: tuple[float, float] = (0.2, 1.0)
    rpc_notify: float = 1.0  # eth_subscription notifications

    @classmethod
    def fast(cls) -> DemoConfig:
        return cls(
            chat_interval=(0.1, 0.3),
            large_every=5,
            large_size=20_000,
            ticker_hz=20.0,
            ping_interval=0.5,
            feed_lifetime=(0.6, 0.9),
            feed_restart=0.25,
            feed_app_ping=0.3,
            feed_item_every=0.2,
            backoff_base=0.1,
            backoff_cap=1.0,
            feed_retry_every=0.3,
            private_every=0.5,
            events_every=0.2,
            retry_base=0.1,
            retry_cap=1.0,
            sio_interval=(0.05, 0.2),
            sio_ping=0.5,
            rpc_interval=(0.02, 0.1),
            rpc_notify=0.2,
        )


@dataclass
class DemoStats:
    """What the demo server and clients saw."""

    port: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    accepted: Counter[str] = field(default_factory=Counter)  # path -> upgrades accepted
    refused: Counter[str] = field(default_factory=Counter)  # "path status" -> count
    received: Counter[str] = field(default_factory=Counter)  # path -> messages from clients
    sent: Counter[str] = field(default_factory=Counter)  # path -> messages to clients
    flood_received: int = 0
    flood_sent: int = 0
    feed_restarts: int = 0
    reconnects: Counter[str] = field(default_factory=Counter)  # client side, per path
    feed_delays: list[float] = field(default_factory=list)  # backoff delays the client chose
    client_errors: Counter[str] = field(default_factory=Counter)  # exception names
    sio_acks: int = 0  # Socket.IO acks the clients got back
    rpc_results: int = 0  # JSON-RPC responses the client got back

    def summary(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "accepted": dict(self.accepted),
            "refused": dict(self.refused),
            "received": dict(self.received),
            "sent": dict(self.sent),
            "flood_received": self.flood_received,
            "flood_sent": self.flood_sent,
            "feed_restarts": self.feed_restarts,
            "reconnects": dict(self.reconnects),
            "feed_delays": [round(d, 3) for d in self.feed_delays],
            "client_errors": dict(self.client_errors),
            "sio_acks": self.sio_acks,
            "rpc_results": self.rpc_results,
        }


def backoff_delay(
    attempt: int, base: float, factor: float, cap: float, jitter: float, rng: random.Random
) -> float:
    """``min(cap, base * factor**attempt)``, then +-``jitter`` (a fraction) at random."""
    delay = min(cap, base * factor ** min(attempt, 64))
    return delay * rng.uniform(1 - jitter, 1 + jitter)


# --------------------------------------------------------------------------- server


def _path(request_path: str) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(request_path)
    return parts.path, parse_qs(parts.query)


def _cookie(headers: Headers, name: str) -> str | None:
    for value in headers.get_all("Cookie"):
        for part in value.split(";"):
            k, _, v = part.strip().partition("=")
            if k == name:
                return v
    return None


def _json_response(conn: ServerConnection, status: HTTPStatus, body: dict[str, Any]) -> Response:
    resp = conn.respond(status, json.dumps(body) + "\n")
    del resp.headers["Content-Type"]
    resp.headers["Content-Type"] = "application/json"
    return resp


class DemoServer:
    """The demo's WebSocket application: routes by path, keeps the chat room."""

    PATHS = ("/chat", "/ticker", "/feed", "/private", "/events", "/flood", "/socket.io/", "/rpc")

    def __init__(self, config: DemoConfig, stats: DemoStats, seed: int | None = None) -> None:
        self.config = config
        self.stats = stats
        self.rng = random.Random(seed)
        self.room: set[ServerConnection] = set()
        self.sio_room: set[ServerConnection] = set()
        self.feed_down_until = 0.0  # monotonic time until which /feed is "restarting"

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path, query = _path(request.path)
        status: HTTPStatus | None = None
        resp: Response | None = None
        if path not in self.PATHS:
            status = HTTPStatus.NOT_FOUND
            resp = _json_response(conn, status, {"error": "not found", "path": path})
        elif path == "/private" and not _cookie(request.headers, "session"):
            status = HTTPStatus.UNAUTHORIZED
            resp = _json_response(conn, status, {"error": "unauthorized", "login": "/login"})
        elif path == "/events" and query.get("ticket") != [TICKET]:
            status = HTTPStatus.FORBIDDEN
            resp = _json_response(conn, status, {"error": "invalid ticket"})
        elif path == "/feed" and time.monotonic() < self.feed_down_until:
            status = HTTPStatus.SERVICE_UNAVAILABLE
            resp = conn.respond(status, "restarting, try again later\n")
            resp.headers["Retry-After"] = "1"
        elif path == "/feed" and not _cookie(request.headers, "session"):
            status = HTTPStatus.FORBIDDEN
            resp = _json_response(conn, status, {"error": "no session", "login": "/login"})
        if status is not None:
            self.stats.refused[f"{path} {int(status)}"] += 1
        return resp

    async def handler(self, ws: ServerConnection) -> None:
        path, _ = _path(ws.request.path if ws.request is not None else "/")
        self.stats.accepted[path] += 1
        handlers: dict[str, Callable[[ServerConnection], Awaitable[None]]] = {
            "/chat": self._chat,
            "/ticker": self._ticker,
            "/feed": self._feed,
            "/private": self._events,
            "/events": self._events,
            "/flood": self._flood,
            "/socket.io/": self._socketio,
            "/rpc": self._rpc,
        }
        with contextlib.suppress(ConnectionClosed):
            await handlers[path](ws)

    async def _send(self, ws: ServerConnection, path: str, data: str | bytes) -> None:
        await ws.send(data)
        self.stats.sent[path] += 1

    async def _chat(self, ws: ServerConnection) -> None:
        user = _cookie(ws.request.headers, "session") if ws.request else None
        user = (user or "anon").split("-")[0]
        self.room.add(ws)
        try:
            await self._broadcast(
                {"type": "join", "user": user, "users": len(self.room), "ts": time.time()}
            )
            async for raw in ws:
                self.stats.received["/chat"] += 1
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(msg, dict) and msg.get("type") in ("chat", "typing"):
                    msg["user"] = user
                    await self._broadcast(msg, exclude=ws if msg["type"] == "typing" else None)
        finally:
            self.room.discard(ws)
            with contextlib.suppress(ConnectionClosed):
                await self._broadcast({"type": "leave", "user": user, "ts": time.time()})

    async def _broadcast(
        self, msg: dict[str, Any], exclude: ServerConnection | None = None
    ) -> None:
        data = json.dumps(msg)
        for peer in list(self.room):
            if peer is exclude:
                continue
            with contextlib.suppress(ConnectionClosed):
                await self._send(peer, "/chat", data)

    async def _ticker(self, ws: ServerConnection) -> None:
        async def reader() -> None:
            async for _ in ws:
                self.stats.received["/ticker"] += 1

        read = asyncio.create_task(reader())
        try:
            px = {s: 100.0 + 20 * i for i, s in enumerate(SYMBOLS)}
            period = 1.0 / self.config.ticker_hz
            n = 0
            while not read.done():
                sym = self.rng.choice(SYMBOLS)
                px[sym] = round(px[sym] * math.exp(self.rng.gauss(0, 0.002)), 4)
                n += 1
                # Every tenth quote carries a repetitive blob: deflate shrinks it a lot.
                raw = bytes(256) if n % 10 == 0 else self.rng.randbytes(12)
                quote = {"sym": sym, "px": px[sym], "ts": time.time(), "raw": raw}
                await self._send(ws, "/ticker", msgpack.packb(quote))
                await asyncio.sleep(period)
        finally:
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await read

    async def _feed(self, ws: ServerConnection) -> None:
        cfg = self.config
        lifetime = self.rng.uniform(*cfg.feed_lifetime)

        async def reader() -> None:
            async for raw in ws:
                self.stats.received["/feed"] += 1
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(msg, dict) and msg.get("type") == "ping":
                    await self._send(ws, "/feed", json.dumps({"type": "pong", "ts": msg.get("ts")}))

        async def items() -> None:
            n = 0
            while True:
                await asyncio.sleep(cfg.feed_item_every * self.rng.uniform(0.5, 1.5))
                n += 1
                item = {"type": "item", "id": n, "title": self.rng.choice(WORDS), "ts": time.time()}
                await self._send(ws, "/feed", json.dumps(item))

        tasks = [asyncio.create_task(reader()), asyncio.create_task(items())]
        try:
            done, _ = await asyncio.wait(
                tasks, timeout=lifetime, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                # A "deploy": close with 1012 and refuse new upgrades for a moment.
                self.stats.feed_restarts += 1
                self.feed_down_until = time.monotonic() + cfg.feed_restart
                await ws.close(1012, "service restart")
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await t

    async def _events(self, ws: ServerConnection) -> None:
        async def reader() -> None:
            async for _ in ws:
                self.stats.received["/events"] += 1

        read = asyncio.create_task(reader())
        try:
            n = 0
            while not read.done():
                n += 1
                ev = {
                    "type": "event",
                    "name": self.rng.choice(("deploy", "alert", "build")),
                    "id": n,
                }
                await self._send(ws, "/events", json.dumps(ev))
                await asyncio.sleep(self.config.events_every * self.rng.uniform(0.5, 1.5))
        finally:
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await read

    async def _flood(self, ws: ServerConnection) -> None:
        async for _ in ws:
            self.stats.flood_received += 1
            self.stats.received["/flood"] += 1

    async def _sio_send(self, ws: ServerConnection, fields: dict[str, Any]) -> None:
        for frame in SIO.encode(fields, SocketIOState(4)):
            await self._send(ws, "/socket.io/", _frame_data(frame))

    async def _socketio(self, ws: ServerConnection) -> None:
        """A Socket.IO v5 server (Engine.IO v4, WebSocket transport only)."""
        cfg = self.config
        sid = f"{self.rng.getrandbits(64):016x}"
        state = SIO.new_state()
        opened = {
            "sid": sid,
            "upgrades": [],
            "pingInterval": int(cfg.sio_ping * 1000),
            "pingTimeout": int(max(cfg.sio_ping, 1.0) * 2000),
            "maxPayload": 1_000_000,
        }
        await self._send(ws, "/socket.io/", "0" + json.dumps(opened, separators=(",", ":")))

        async def pinger() -> None:
            while True:
                await asyncio.sleep(cfg.sio_ping)
                await self._send(ws, "/socket.io/", "2")

        ping = asyncio.create_task(pinger())
        self.sio_room.add(ws)
        try:
            async for raw in ws:
                self.stats.received["/socket.io/"] += 1
                data = raw.encode() if isinstance(raw, str) else raw
                op = 1 if isinstance(raw, str) else 2
                d = decode_message(SIO, data, op, "client", state)
                if d.pending:
                    continue
                for p in d.packets:
                    await self._sio_packet(ws, p.fields, sid)
        finally:
            self.sio_room.discard(ws)
            ping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ping

    async def _sio_packet(self, ws: ServerConnection, f: dict[str, Any], sid: str) -> None:
        t = f.get("type")
        if t == "connect":
            await self._sio_send(ws, {"type": "connect", "namespace": "/", "data": {"sid": sid}})
            return
        if t not in ("event", "binary_event"):
            return
        event, args, ack = f.get("event"), f.get("args", []), f.get("ack")
        if event == "chat":
            await asyncio.sleep(self.rng.uniform(0.001, 0.02))  # "store" the message
            for peer in list(self.sio_room):
                with contextlib.suppress(ConnectionClosed):
                    await self._sio_send(
                        peer, {"type": "event", "namespace": "/", "event": "news", "args": args}
                    )
            reply: list[Any] = [{"ok": True, "stored": self.stats.received["/socket.io/"]}]
        elif event == "upload":
            await asyncio.sleep(self.rng.uniform(0.01, 0.05))
            blob = args[1] if len(args) > 1 and isinstance(args[1], bytes) else b""
            reply = [{"ok": True, "bytes": len(blob)}]
        else:
            reply = [{"ok": False, "error": f"unknown event {event}"}]
        if ack is not None:
            await self._sio_send(ws, {"type": "ack", "namespace": "/", "ack": ack, "args": reply})

    async def _rpc(self, ws: ServerConnection) -> None:
        """A JSON-RPC 2.0 server with an Ethereum-like API; never answers
        debug_traceTransaction (a bug the report catches)."""
        tasks: set[asyncio.Task[None]] = set()
        block = 19_000_000

        async def answer(req: dict[str, Any]) -> None:
            nonlocal block
            method, rid = req.get("method"), req.get("id")
            result: Any
            if method == "eth_blockNumber":
                await asyncio.sleep(self.rng.uniform(0.002, 0.02))
                result = hex(block)
            elif method == "eth_getBalance":
                await asyncio.sleep(self.rng.uniform(0.01, 0.08))
                result = hex(self.rng.getrandbits(60))
            elif method == "eth_call":
                await asyncio.sleep(self.rng.uniform(0.005, 0.05))
                result = "0x" + self.rng.randbytes(32).hex()
            elif method == "eth_subscribe":
                result = f"0x{self.rng.getrandbits(64):016x}"
                tasks.add(asyncio.create_task(notify(result)))
            elif method == "debug_traceTransaction":
                return  # the bug: this one is never answered
            else:
                err = {"code": -32601, "message": "Method not found"}
                await self._send(
                    ws, "/rpc", json.dumps({"jsonrpc": "2.0", "error": err, "id": rid})
                )
                return
            await self._send(
                ws, "/rpc", json.dumps({"jsonrpc": "2.0", "result": result, "id": rid})
            )

        async def notify(sub: str) -> None:
            nonlocal block
            while True:
                await asyncio.sleep(self.config.rpc_notify)
                block += 1
                note = {
                    "jsonrpc": "2.0",
                    "method": "eth_subscription",
                    "params": {"subscription": sub, "result": {"number": hex(block)}},
                }
                await self._send(ws, "/rpc", json.dumps(note))

        try:
            async for raw in ws:
                self.stats.received["/rpc"] += 1
                try:
                    req = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(req, dict):
                    task = asyncio.create_task(answer(req))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def start_demo_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: DemoConfig | None = None,
    stats: DemoStats | None = None,
    seed: int | None = None,
) -> tuple[Server, int]:
    """Start the demo WebSocket server; returns it and the port it listens on. Close it with
    ``server.close(); await server.wait_closed()``."""
    cfg = config or DemoConfig()
    st = stats if stats is not None else DemoStats()
    app = DemoServer(cfg, st, seed)
    server = await serve(
        app.handler,
        host,
        port,
        process_request=app.process_request,
        ping_interval=cfg.ping_interval,
        ping_timeout=max(cfg.ping_interval * 3, 5.0),
        logger=logging.getLogger("devconsole.demo.server"),
    )
    bound = server.sockets[0].getsockname()[1] if server.sockets else port
    st.port = int(bound)
    st.ready.set()
    return server, st.port


# --------------------------------------------------------------------------- clients


class _Clients:
    """What every simulated client shares: where to connect, how, and when to stop."""

    def __init__(
        self,
        base: str,
        proxy: str | None,
        config: DemoConfig,
        stats: DemoStats,
        stop: asyncio.Event,
        rng: random.Random,
    ) -> None:
        self.base = base  # ws://127.0.0.1:port
        self.proxy = None if proxy is None else proxy if "://" in proxy else f"http://{proxy}"
        self.config = config
        self.stats = stats
        self.stop = stop
        self.rng = rng

    def connect(self, path: str, **kwargs: Any) -> connect:
        kwargs.setdefault("open_timeout", 5)
        kwargs.setdefault("close_timeout", 1)
        return connect(
            self.base + path,
            proxy=self.proxy,
            logger=logging.getLogger("devconsole.demo.client"),
            **kwargs,
        )

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True if stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=max(seconds, 0.0))
        return self.stop.is_set()

    async def until_stopped(self, ws: ClientConnection, *work: Awaitable[None]) -> None:
        """Run a session's coroutines until one of them ends (its exception propagates) or
        the demo stops; then close politely with 1001 Going Away, like a closed tab."""
        tasks = [asyncio.ensure_future(w) for w in work]
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (*tasks, stopper):
                t.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
        if self.stop.is_set():
            await ws.close(1001, "going away")
            return
        for t in done:
            exc = None if t is stopper or t.cancelled() else t.exception()
            if exc is not None:
                raise exc

    async def retry(
        self,
        path: str,
        session: Callable[[], Awaitable[None]],
        state: dict[str, int],
        *,
        base: float | None = None,
        factor: float = 2.0,
        cap: float | None = None,
        jitter: float = 0.2,
        delays: list[float] | None = None,
    ) -> None:
        """Run ``session`` until stopped; after each end or failure wait with exponential
        backoff. A session resets ``state["attempt"]`` once connected."""
        cfg = self.config
        base = cfg.retry_base if base is None else base
        cap = cfg.retry_cap if cap is None else cap
        first = True
        while not self.stop.is_set():
            if not first:
                self.stats.reconnects[path] += 1
            first = False
            try:
                await session()
            except RETRYABLE as exc:
                self.stats.client_errors[type(exc).__name__] += 1
            if self.stop.is_set():
                return
            delay = backoff_delay(state["attempt"], base, factor, cap, jitter, self.rng)
            state["attempt"] += 1
            if delays is not None:
                delays.append(delay)
            if await self.sleep(delay):
                return


SIO = SocketIODecoder()


def _frame_data(frame: Frame) -> str | bytes:
    op, data = frame
    return data.decode() if op == 1 else data


async def _sio_client(c: _Clients, user: str) -> None:
    """A Socket.IO client: connect, emit ``chat`` with acks, upload a binary file now and
    then, answer the server's Engine.IO pings."""
    cfg = c.config
    state = {"attempt": 0}
    headers = {"Origin": ORIGIN, "Cookie": f"session={user}-sio"}

    async def session() -> None:
        async with c.connect(
            "/socket.io/?EIO=4&transport=websocket", additional_headers=headers
        ) as ws:
            st = SIO.new_state()
            acks = {"next": 1}

            async def send(fields: dict[str, Any]) -> None:
                for frame in SIO.encode(fields, st):
                    await ws.send(_frame_data(frame))

            async def reader() -> None:
                async for raw in ws:
                    data = raw.encode() if isinstance(raw, str) else raw
                    d = decode_message(SIO, data, 1 if isinstance(raw, str) else 2, "server", st)
                    for p in d.packets:
                        t = p.fields.get("type")
                        if t == "ping":
                            await ws.send("3")
                        elif t == "open":
                            await ws.send("40")
                        elif t == "connect":
                            state["attempt"] = 0
                        elif t == "ack":
                            c.stats.sio_acks += 1

            async def chatter() -> None:
                n = 0
                while True:
                    await asyncio.sleep(c.rng.uniform(*cfg.sio_interval))
                    n += 1
                    ack = acks["next"]
                    acks["next"] += 1
                    if n % 7 == 0:
                        name = f"{user}-{n}.png"
                        blob = bytes([0x89]) + b"PNG" + c.rng.randbytes(c.rng.randint(64, 512))
                        await send(
                            {
                                "type": "event",
                                "namespace": "/",
                                "event": "upload",
                                "args": [name, blob],
                                "ack": ack,
                            }
                        )
                    else:
                        text = c.rng.choice(WORDS)
                        await send(
                            {
                                "type": "event",
                                "namespace": "/",
                                "event": "chat",
                                "args": [{"user": user, "text": text}],
                                "ack": ack,
                            }
                        )

            await c.until_stopped(ws, reader(), chatter())

    await c.retry("/socket.io/", session, state)


async def _rpc_client(c: _Clients) -> None:
    cfg = c.config
    state = {"attempt": 0}
    calls: tuple[tuple[str, list[Any]], ...] = (
        ("eth_blockNumber", []),
        ("eth_getBalance", ["0x" + "ab" * 20, "latest"]),
        ("eth_call", [{"to": "0x" + "cd" * 20, "data": "0x70a08231"}, "latest"]),
    )

    async def session() -> None:
        async with c.connect("/rpc", additional_headers={"Origin": ORIGIN}) as ws:
            state["attempt"] = 0
            ids = iter(range(1, 1 << 62))

            async def caller() -> None:
                await ws.send(
                    json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "method": "eth_subscribe",
                            "params": ["newHeads"],
                            "id": next(ids),
                        }
                    )
                )
                n = 0
                while True:
                    await asyncio.sleep(c.rng.uniform(*cfg.rpc_interval))
                    n += 1
                    method: str
                    params: list[Any]
                    if n % 15 == 0:
                        method, params = "debug_traceTransaction", ["0x" + "ef" * 32]
                    else:
                        method, params = c.rng.choice(calls)
                    req = {"jsonrpc": "2.0", "method": method, "params": params, "id": next(ids)}
                    await ws.send(json.dumps(req))

            async def reader() -> None:
                async for raw in ws:
                    with contextlib.suppress(ValueError):
                        if "id" in json.loads(raw):
                            c.stats.rpc_results += 1

            await c.until_stopped(ws, reader(), caller())

    await c.retry("/rpc", session, state)


async def _drain(ws: ClientConnection) -> None:
    async for _ in ws:
        pass


async def _chat_client(c: _Clients, user: str) -> None:
    cfg = c.config
    state = {"attempt": 0}
    headers = {"Origin": ORIGIN, "Cookie": f"session={user}-{c.rng.getrandbits(48):012x}"}
    large = ("lorem ipsum dolor sit amet " * (cfg.large_size // 27 + 1))[: cfg.large_size]

    async def chatter(ws: ClientConnection) -> None:
        n = 0
        while True:
            await asyncio.sleep(c.rng.uniform(*cfg.chat_interval))
            n += 1
            if c.rng.random() < 0.4:
                await ws.send(json.dumps({"type": "typing", "user": user}))
                await asyncio.sleep(c.rng.uniform(0.05, 0.3))
            text = c.rng.choice(WORDS)
            if cfg.large_every and n % cfg.large_every == 0:
                text = large
            await ws.send(
                json.dumps({"type": "chat", "user": user, "text": text, "ts": time.time()})
            )

    async def session() -> None:
        # No compression offered: the chat's messages go uncompressed.
        async with c.connect("/chat", additional_headers=headers, compression=None) as ws:
            state["attempt"] = 0
            await c.until_stopped(ws, _drain(ws), chatter(ws))

    await c.retry("/chat", session, state)


async def _ticker_client(c: _Clients) -> None:
    state = {"attempt": 0}
    headers = {"Origin": ORIGIN, "Cookie": "session=ticker-7f3a"}

    async def session() -> None:
        async with c.connect("/ticker", additional_headers=headers) as ws:
            state["attempt"] = 0
            await ws.send(msgpack.packb({"op": "subscribe", "symbols": list(SYMBOLS)}))
            await c.until_stopped(ws, _drain(ws))

    await c.retry("/ticker", session, state)


async def _feed_client(c: _Clients) -> None:
    cfg = c.config
    state = {"attempt": 0}
    headers = {"Origin": ORIGIN, "Cookie": "session=feed-91c2", "User-Agent": "feed-client/2.1"}

    async def heartbeat(ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(cfg.feed_app_ping)
            await ws.send(json.dumps({"type": "ping", "ts": int(time.time() * 1000)}))

    async def session() -> None:
        async with c.connect("/feed", additional_headers=headers, user_agent_header=None) as ws:
            state["attempt"] = 0  # connected: the backoff starts over
            await c.until_stopped(ws, _drain(ws), heartbeat(ws))

    await c.retry(
        "/feed",
        session,
        state,
        base=cfg.backoff_base,
        factor=cfg.backoff_factor,
        cap=cfg.backoff_cap,
        jitter=cfg.backoff_jitter,
        delays=c.stats.feed_delays,
    )


async def _feed_retry_client(c: _Clients) -> None:
    """The /feed app in a tab that lost its ``session`` cookie: refused with 403, it
    retries at a fixed interval (no backoff), beside the backoff client."""
    headers = {"Origin": ORIGIN, "User-Agent": "feed-client/2.1"}
    while not c.stop.is_set():
        try:
            async with c.connect("/feed", additional_headers=headers, user_agent_header=None) as ws:
                await c.until_stopped(ws, _drain(ws))
        except InvalidStatus as exc:
            c.stats.client_errors[f"InvalidStatus {exc.response.status_code}"] += 1
        except RETRYABLE as exc:
            c.stats.client_errors[type(exc).__name__] += 1
        if await c.sleep(c.config.feed_retry_every):
            return


async def _private_client(c: _Clients) -> None:
    """Tries /private without a cookie now and then; the server answers 401."""
    while not c.stop.is_set():
        try:
            async with c.connect("/private", additional_headers={"Origin": ORIGIN}) as ws:
                await ws.close()
        except InvalidStatus as exc:
            c.stats.client_errors[f"InvalidStatus {exc.response.status_code}"] += 1
        except RETRYABLE as exc:
            c.stats.client_errors[type(exc).__name__] += 1
        if await c.sleep(c.config.private_every):
            return


async def _events_client(c: _Clients) -> None:
    state = {"attempt": 0}

    async def session() -> None:
        async with c.connect(f"/events?ticket={TICKET}&room=ops") as ws:
            state["attempt"] = 0
            await c.until_stopped(ws, _drain(ws))

    await c.retry("/events", session, state)


async def _flood_client(c: _Clients, rate: int) -> None:
    state = {"attempt": 0}
    tick = c.config.flood_tick

    async def flood(ws: ClientConnection) -> None:
        start = time.monotonic()
        sent = 0
        while True:
            due = int((time.monotonic() - start) * rate)
            if due - sent > rate:
                sent = due - rate  # fell more than a second behind: drop the backlog
            n = due - sent
            ts = time.time()
            for i in range(n):
                await ws.send(f'{{"type":"flood","n":{sent + i},"ts":{ts:.3f}}}')
                c.stats.flood_sent += 1
            sent += n
            await asyncio.sleep(tick)

    async def session() -> None:
        async with c.connect("/flood", compression=None) as ws:
            state["attempt"] = 0
            await c.until_stopped(ws, _drain(ws), flood(ws))

    await c.retry("/flood", session, state)


async def run_demo(
    proxy: str | None,
    *,
    rate: int | None = None,
    stop: asyncio.Event,
    server_host: str = "127.0.0.1",
    config: DemoConfig | None = None,
    stats: DemoStats | None = None,
    seed: int | None = None,
) -> None:
    """Serve the demo application and run its clients through ``proxy`` (``host:port`` of
    an HTTP proxy, or None to connect directly) until ``stop`` is set. ``stats`` (port,
    counters) is filled in as the demo runs.

    On stop, clients close their connections with 1001 (for up to ``STOP_GRACE`` seconds),
    then whatever is left is cancelled and the server is closed."""
    cfg = config or DemoConfig()
    st = stats if stats is not None else DemoStats()
    rng = random.Random(seed)
    halt = asyncio.Event()  # set on stop, and if run_demo itself is cancelled
    server, port = await start_demo_server(server_host, config=cfg, stats=st, seed=seed)
    host = f"[{server_host}]" if ":" in server_host else server_host
    clients = _Clients(f"ws://{host}:{port}", proxy, cfg, st, halt, rng)
    coros: list[Awaitable[None]] = [
        *(_chat_client(clients, USERS[i % len(USERS)]) for i in range(cfg.chat_clients)),
        _ticker_client(clients),
        _feed_client(clients),
        _feed_retry_client(clients),
        _private_client(clients),
        _events_client(clients),
        *(_sio_client(clients, USERS[-1 - i]) for i in range(cfg.sio_clients)),
        _rpc_client(clients),
    ]
    if rate:
        coros.append(_flood_client(clients, rate))
    tasks = [asyncio.ensure_future(co) for co in coros]
    for t in tasks:
        t.add_done_callback(_log_crash)
    try:
        await stop.wait()
    finally:
        halt.set()
        await asyncio.wait(tasks, timeout=STOP_GRACE)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=STOP_GRACE)


def _log_crash(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("demo client failed", exc_info=task.exception())
