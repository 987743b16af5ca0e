"""Realistic traffic for tests, the docs screenshots and benchmarks: a Handshake builder,
``Traffic`` (events with global seqs and fixed timestamps, like the capture addon hands
out) and two ready-made sessions (``demo_traffic``, ``fault_traffic``).

Core module: no I/O. Timestamps start at ``T0`` so screenshots are deterministic;
connection ids are the proxy's kind (``"1"``, ``"2"``...). Like ``mitmproxy.test.tflow``,
it ships with the package so tools outside ``tests/`` (``docs/make_screenshots.py``) can
use it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from devconsole.model import (
    CLIENT,
    SERVER,
    Breakpoint,
    BreakpointsEvent,
    ControlFrame,
    EndEvent,
    Event,
    Handshake,
    HandshakeEvent,
    InstanceEvent,
    Message,
    Opcode,
    Outcome,
    OutcomeEvent,
    Publication,
    RefusedEvent,
    Side,
    StateEvent,
)

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
UTC = dt.UTC

EVIL_TEXT = "\x1b[31mRED\x1b[0m \x9b2J [bold]x[/bold] [link=file:///etc/passwd]click[/link]"


def handshake(
    conn: str = "1",
    *,
    path: str = "/ws",
    host: str = "api.example.com",
    scheme: str = "wss",
    client: str = "127.0.0.1:50001",
    query: Sequence[tuple[str, str]] = (),
    cookies: Sequence[tuple[str, str]] = (("session", "abc123"),),
    extra_headers: Sequence[tuple[str, str]] = (),
    protocols: Sequence[str] = (),
    subprotocol: str | None = None,
    extensions: Sequence[str] = (),
    offered_extensions: Sequence[str] = (),
    origin: str | None = "https://app.example.com",
    status: int | None = 101,
    reason: str | None = None,
    response_headers: Sequence[tuple[str, str]] | None = None,
    body: bytes = b"",
    ts: float = T0,
    error: str | None = None,
    **fields: Any,
) -> Handshake:
    """A browser's upgrade of ``{scheme}://{host}{path}`` (a realistic header list,
    Origin, a session cookie) and the server's answer; ``status=None`` is an upgrade still
    waiting for its answer, anything but 101 a refusal. ``fields`` overrides any
    ``Handshake`` field as is (``url=``, ``request_headers=``, ``ts_response=``...).

    The one builder of a Handshake for tests, docs screenshots and benchmarks."""
    qs = "&".join(f"{k}={v}" for k, v in query)
    port = 443 if scheme == "wss" else 80
    headers: list[tuple[str, str]] = [
        ("Host", host),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]
    if origin is not None:
        headers.append(("Origin", origin))
    if protocols:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
    if offered_extensions:
        headers.append(("Sec-WebSocket-Extensions", ", ".join(offered_extensions)))
    if cookies:
        headers.append(("Cookie", "; ".join(f"{k}={v}" for k, v in cookies)))
    headers.extend(extra_headers)
    if response_headers is None:
        if status == 101:
            response_headers = [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ]
            if subprotocol:
                response_headers.append(("Sec-WebSocket-Protocol", subprotocol))
            if extensions:
                response_headers.append(("Sec-WebSocket-Extensions", ", ".join(extensions)))
        elif status is not None:
            response_headers = [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ]
        else:
            response_headers = []
    reasons = {101: "Switching Protocols", 200: "OK", 401: "Unauthorized", 403: "Forbidden"}
    built: dict[str, Any] = dict(
        conn=conn,
        ts=ts,
        client=client,
        server=f"{host}:{port}",
        scheme=scheme,
        url=f"{scheme}://{host}{path}" + (f"?{qs}" if qs else ""),
        method="GET",
        path=path,
        query=list(query),
        http_version="HTTP/1.1",
        request_headers=headers,
        cookies=list(cookies),
        status=status,
        reason=reason if reason is not None else reasons.get(status or 0, ""),
        response_headers=list(response_headers),
        subprotocol=subprotocol,
        extensions=list(extensions),
        ts_response=None if status is None else ts + 0.012,
        body=body,
        body_size=len(body),
        error=error,
    )
    built.update(fields)
    return Handshake(**built)


class Traffic:
    """Builds a plausible event sequence with global seqs and fixed timestamps."""

    def __init__(self, ts: float = T0) -> None:
        self.seq = 0
        self.ts = ts
        self.events: list[Event] = []

    def _next(self, dt_: float = 0.25) -> tuple[int, float]:
        self.seq += 1
        self.ts += dt_
        return self.seq, self.ts

    def open(self, conn: str = "1", **kw: Any) -> Handshake:
        kw.setdefault("ts", self.ts)
        hs = handshake(conn, **kw)
        self.events.append(HandshakeEvent(hs))
        return hs

    def refused(self, conn: str = "3", status: int = 403, **kw: Any) -> Handshake:
        kw.setdefault("ts", self.ts)
        hs = handshake(conn, status=status, **kw)
        self.events.append(RefusedEvent(hs))
        return hs

    def message(
        self,
        conn: str,
        side: Side,
        payload: bytes | str,
        *,
        opcode: int | None = None,
        dt_: float = 0.25,
        **kw: Any,
    ) -> Message:
        seq, ts = self._next(dt_)
        data = payload.encode() if isinstance(payload, str) else payload
        if opcode is None:
            opcode = Opcode.TEXT if isinstance(payload, str) else Opcode.BINARY
        size = kw.pop("size", len(data))
        m = Message(
            seq=seq,
            conn=conn,
            ts=ts,
            side=side,
            opcode=opcode,
            payload=data,
            size=size,
            wire_size=kw.pop("wire_size", size + (6 if side == CLIENT else 2)),
            **kw,
        )
        self.events.append(m)
        return m

    def text(self, conn: str, side: Side, payload: str, **kw: Any) -> Message:
        return self.message(conn, side, payload, opcode=Opcode.TEXT, **kw)

    def json(self, conn: str, side: Side, obj: Any, **kw: Any) -> Message:
        return self.text(conn, side, json.dumps(obj, separators=(",", ":")), **kw)

    def binary(self, conn: str, side: Side, payload: bytes, **kw: Any) -> Message:
        return self.message(conn, side, payload, opcode=Opcode.BINARY, **kw)

    def control(
        self,
        conn: str,
        side: Side,
        opcode: int,
        payload: bytes = b"",
        *,
        code: int | None = None,
        reason: str = "",
        dt_: float = 0.25,
        **kw: Any,
    ) -> ControlFrame:
        seq, ts = self._next(dt_)
        if opcode == Opcode.CLOSE and code is not None and not payload:
            payload = code.to_bytes(2, "big") + reason.encode()
        f = ControlFrame(
            seq=seq,
            conn=conn,
            ts=ts,
            side=side,
            opcode=opcode,
            payload=payload,
            wire_size=len(payload) + (6 if side == CLIENT else 2),
            code=code,
            reason=reason,
            **kw,
        )
        self.events.append(f)
        return f

    def ping(self, conn: str, side: Side = SERVER, payload: bytes = b"hb") -> ControlFrame:
        return self.control(conn, side, Opcode.PING, payload)

    def pong(self, conn: str, side: Side = CLIENT, payload: bytes = b"hb") -> ControlFrame:
        return self.control(conn, side, Opcode.PONG, payload)

    def close(
        self, conn: str, side: Side, code: int = 1000, reason: str = "", **kw: Any
    ) -> ControlFrame:
        return self.control(conn, side, Opcode.CLOSE, code=code, reason=reason, **kw)

    def end(self, conn: str, *, clean: bool = True, closed_by: Any = CLIENT) -> EndEvent:
        self.ts += 0.01
        ev = EndEvent(conn=conn, ts=self.ts, clean=clean, closed_by=closed_by)
        self.events.append(ev)
        return ev

    def state(self, conn: str, state: str) -> StateEvent:
        ev = StateEvent(conn=conn, ts=self.ts, state=state)
        self.events.append(ev)
        return ev

    def publication(self, conn: str, channel: str, payload: str, **kw: Any) -> Publication:
        """A publication on the app's Redis backplane, recorded on the pseudo-connection
        ``conn`` (see ``backplane``)."""
        seq, ts = self._next(kw.pop("dt_", 0.25))
        data = payload.encode()
        p = Publication(
            seq=seq,
            conn=conn,
            ts=ts,
            side=SERVER,
            opcode=Opcode.TEXT,
            payload=data,
            size=len(data),
            wire_size=len(data),
            channel=channel,
        )
        self.events.append(p)
        return p

    def backplane(self, conn: str, pattern: str = "chat:*", **kw: Any) -> Handshake:
        """The pseudo-connection of a proxy recording the backplane (``--backplane``)."""
        kw.setdefault("ts", self.ts)
        hs = handshake(
            conn,
            path=pattern,
            host="127.0.0.1",
            scheme="redis",
            client="devconsole",
            cookies=(),
            origin=None,
            query=[("pattern", pattern)],
            method="PSUBSCRIBE",
            server="127.0.0.1:6379",
            url=f"redis://127.0.0.1:6379/0 PSUBSCRIBE {pattern}",
            http_version="RESP",
            request_headers=[],
            response_headers=[],
            reason="subscribed",
            **kw,
        )
        self.events.append(HandshakeEvent(hs))
        return hs

    def burst(self, conn: str, n: int, side: Side = SERVER, size: int = 40) -> list[Event]:
        """``n`` small text messages, 1 ms apart (a flood); returned and kept."""
        out: list[Event] = []
        pad = "." * max(0, size - 20)
        for _ in range(n):
            self.seq += 1
            self.ts += 0.001
            data = f'{{"n":{self.seq},"p":"{pad}"}}'.encode()
            out.append(
                Message(
                    seq=self.seq,
                    conn=conn,
                    ts=self.ts,
                    side=side,
                    opcode=Opcode.TEXT,
                    payload=data,
                    size=len(data),
                    wire_size=len(data) + 2,
                )
            )
        self.events.extend(out)
        return out

    def take(self) -> list[Event]:
        out, self.events = self.events, []
        return out


def demo_traffic() -> Traffic:
    """A small, varied session: chat JSON, a msgpack feed, pings, a refused upgrade."""
    import msgpack

    t = Traffic()
    t.open(
        "1",
        path="/chat",
        query=[("room", "lobby")],
        protocols=["chat.v2", "chat.v1"],
        subprotocol="chat.v2",
        offered_extensions=["permessage-deflate; client_max_window_bits"],
        extensions=["permessage-deflate"],
    )
    t.json("1", CLIENT, {"type": "hello", "user": "ada", "caps": ["typing", "presence"]})
    t.json("1", SERVER, {"type": "welcome", "id": 42, "motd": "hi ada", "online": 3})
    t.open(
        "2",
        path="/feed",
        host="stream.example.com",
        client="127.0.0.1:50002",
        cookies=(),
        query=[("ticket", "tk_5f2a")],
    )
    t.binary("2", SERVER, msgpack.packb({"sym": "BTC", "px": 37123.5, "qty": [1, 2, 3]}))
    t.ping("1")
    t.pong("1")
    t.json(
        "1",
        CLIENT,
        {"type": "msg", "text": "hello world", "to": "lobby"},
        compressed=True,
        rsv=4,
    )
    t.json("1", SERVER, {"type": "msg", "from": "bob", "text": "hey!", "ts": 1700000001})
    t.binary("2", SERVER, bytes(range(0, 48)))
    t.refused(
        "3",
        status=403,
        path="/admin/ws",
        client="127.0.0.1:50003",
        cookies=(),
        body=b'{"error":"forbidden","detail":"origin not allowed"}',
    )
    # three masked frames of 126+ bytes: 2 + 2 + 4 header bytes each
    t.text("1", CLIENT, "x" * 20000, frames=3, frame_sizes=(8192, 8192, 3616), wire_size=20024)
    t.json("1", SERVER, {"type": "msg", "from": "eve", "text": "injected!"}, injected=True)
    t.close("1", CLIENT, 1000, "bye")
    t.close("1", SERVER, 1000, "bye")
    t.end("1")
    return t


FEED = {"path": "/feed", "host": "stream.example.com", "origin": "https://app.example.com"}


def fault_traffic() -> Traffic:
    """A /feed client killed by devconsole, then reconnecting with exponential backoff
    (delays 0.3 s, 0.6 s, 1.2 s: a refused 503, a server restart 1012), its last
    connection now half-open; protocol pings from the server and an app-level
    ``{"type":"ping"}`` heartbeat from the client. Plus a /chat connection with an
    injected message. ``FAULT_NOW`` is a good wall clock for it."""
    t = Traffic()
    t.open("1", path="/chat", client="127.0.0.1:50001")
    t.json("1", CLIENT, {"type": "hello", "user": "ada"})
    t.json("1", SERVER, {"type": "msg", "from": "eve", "text": "injected!"}, injected=True)

    def beat(conn: str, i: int) -> None:
        t.json(conn, CLIENT, {"type": "ping", "ts": 1000 + i}, dt_=1.0)
        t.json(conn, SERVER, {"type": "pong", "ts": 1000 + i}, dt_=0.004)
        t.control(conn, SERVER, Opcode.PING, f"k{i}".encode(), dt_=0.996)
        t.control(conn, CLIENT, Opcode.PONG, f"k{i}".encode(), dt_=0.002)
        t.ts += 0.998

    t.open("2", client="127.0.0.1:50010", **FEED)
    for i in range(4):
        beat("2", i)
    t.ts += 0.5
    t.state("2", "killed")  # as the addon does: the state first, then the close frames
    t.close("2", SERVER, 1012, injected=True, dt_=0.0)
    t.close("2", CLIENT, 1012, injected=True, dt_=0.0)
    t.end("2", clean=False, closed_by="proxy")
    t.ts += 0.3
    refused = t.refused("3", status=503, client="127.0.0.1:50011", **FEED)
    assert refused.ts_response is not None
    t.ts = refused.ts_response + 0.6
    t.open("4", client="127.0.0.1:50012", **FEED)
    beat("4", 10)
    t.close("4", SERVER, 1012, "restart")
    t.close("4", CLIENT, 1012, "restart", dt_=0.002)
    t.end("4", clean=True, closed_by=SERVER)
    t.ts += 1.2
    t.open("5", client="127.0.0.1:50013", **FEED)
    beat("5", 20)
    beat("5", 21)
    t.state("5", "half-open")
    t.json("5", CLIENT, {"type": "ping", "ts": 1022}, dt_=1.0, dropped=True)
    return t


FAULT_NOW = T0 + 27.0  # a moment after the end of fault_traffic()


FEED_SESSION = "alice-7f3a9c2e41d05b"  # the session cookie of refusal_traffic()'s good client


def refusal_traffic(no_cookies: bool = True) -> Traffic:
    """/feed on a local server that refuses upgrades without a ``session`` cookie: #1
    accepted with it (Origin ``http://localhost:3000``), #2 refused with 403 without it,
    from ``http://127.0.0.1:5173`` (with no cookie at all, or with ``no_cookies=False``
    only a ``theme`` cookie). The handshake diff's scenario (the demo's /feed)."""
    t = Traffic()
    feed: dict[str, Any] = {"path": "/feed", "host": "127.0.0.1", "scheme": "ws"}
    t.open("1", cookies=(("session", FEED_SESSION),), origin="http://localhost:3000", **feed)
    t.json("1", SERVER, {"type": "item", "id": 1, "title": "deploying now"})
    t.refused(
        "2",
        status=403,
        cookies=() if no_cookies else (("theme", "dark"),),
        origin="http://127.0.0.1:5173",
        client="127.0.0.1:50002",
        body=b'{"error":"no session","login":"/login"}\n',
        ts=T0 + 5,
        **feed,
    )
    return t


def retry_traffic() -> Traffic:
    """Issue 16's chat app on one endpoint: a client with its session cookie, a client
    without it refused (403) every 5 s, and a client with a 0.5/1/2/4 s backoff whose
    connections the server drops; all ``websockets`` clients (one User-Agent)."""
    t = Traffic()
    agent = "Python/3.12 websockets/15.0.1"

    def as_websockets(hs: Handshake) -> None:
        hs.request_headers = [(k, agent if k == "User-Agent" else v) for k, v in hs.request_headers]

    common: dict[str, Any] = dict(path="/chat", host="chat.example.com")
    as_websockets(t.open("1", client="127.0.0.1:50001", cookies=(("session", "ada"),), **common))
    t.json("1", SERVER, {"type": "welcome", "user": "ada"})
    n = 2
    delays = iter((0.5, 1.0, 2.0, 4.0))
    for i in range(12):
        t.ts += 5.0
        as_websockets(
            t.refused(str(n), status=403, client=f"127.0.0.1:{51000 + i}", cookies=(), **common)
        )
        n += 1
        if i % 3 == 1:
            t.ts += next(delays, 4.0)
            hs = t.open(str(n), client=f"127.0.0.1:{52000 + i}", cookies=(("session", "bob"),),
                        **common)  # fmt: skip
            as_websockets(hs)
            t.json(str(n), SERVER, {"type": "presence", "user": "bob", "online": True})
            t.end(str(n), clean=False, closed_by=SERVER)
            n += 1
    return t


INTERCEPT_NOW = T0 + 20.0  # a moment after the end of intercept_traffic()


def intercept_traffic() -> Traffic:
    """A chat (/chat, #1) and a price feed (/prices, #2) with breakpoints: on the chat the
    client's ``subscribe`` was forwarded edited, a ``typing`` message dropped, and a
    ``msg`` is held now; on the feed a binary order and a control ping are held. Two
    breakpoints, one disabled. ``INTERCEPT_NOW`` is a good wall clock for it."""
    t = Traffic()
    t.events.append(
        BreakpointsEvent(
            [
                Breakpoint(1, "from:client json:type=subscribe,msg,typing", timeout=120.0),
                Breakpoint(2, "conn:2 type:binary,ping", conn="2", control=True, timeout=30.0),
                Breakpoint(3, "from:server json:type=error", enabled=False),
            ]
        )
    )
    t.open("1", path="/chat", client="127.0.0.1:50001")
    t.json("1", CLIENT, {"type": "hello", "user": "ada"})
    t.json("1", SERVER, {"type": "welcome", "user": "ada", "online": 3})
    sub = t.json(
        "1", CLIENT, {"type": "subscribe", "room": "lobby", "history": 50}, held=1, breakpoint=1
    )
    edited = json.dumps({"type": "subscribe", "room": "ops", "history": 5}, separators=(",", ":"))
    t.events.append(
        OutcomeEvent(
            "1", t.ts + 4.0, sub.seq, 1, Outcome.EDITED, Opcode.TEXT, edited.encode(), len(edited)
        )
    )
    t.ts += 4.0
    t.json("1", SERVER, {"type": "joined", "room": "ops", "members": ["ada", "bob"]})
    typing = t.json("1", CLIENT, {"type": "typing", "room": "ops"}, held=2, breakpoint=1)
    t.events.append(OutcomeEvent("1", t.ts + 1.0, typing.seq, 2, Outcome.DROPPED))
    t.ts += 1.0
    t.json("1", SERVER, {"type": "msg", "from": "bob", "text": "anyone on call?"})
    t.open("2", path="/prices", host="stream.example.com", client="127.0.0.1:50002")
    t.json("2", SERVER, {"sym": "BTC", "px": 37123.5})
    t.json("1", CLIENT, {"type": "msg", "room": "ops", "text": "on it"}, held=3, breakpoint=1)
    t.json("2", SERVER, {"sym": "ETH", "px": 2011.25})
    t.binary("2", CLIENT, bytes.fromhex("01000000000003e8") + b"BTC-buy", held=4, breakpoint=2)
    t.control("2", CLIENT, Opcode.PING, b"keepalive", held=5, breakpoint=2)
    t.json("2", SERVER, {"sym": "BTC", "px": 37125.0})
    return t


SIO_QUERY = (("EIO", "4"), ("transport", "websocket"))


def protocol_traffic() -> Traffic:
    """Application protocols: a Socket.IO chat (Engine.IO open, connect, events with an
    ack and its answer, Engine.IO heartbeats) and a JSON-RPC subscription (a request, its
    result, notifications), as the real libraries send them."""
    t = Traffic()
    sio = dict(path="/socket.io/", host="chat.example.com", query=SIO_QUERY)
    t.open("1", **sio)
    t.text(  # 1
        "1",
        SERVER,
        '0{"sid":"lGk3RfVw2P8t","upgrades":[],"pingInterval":25000,"pingTimeout":20000,'
        '"maxPayload":1000000}',
    )
    t.text("1", CLIENT, "40")  # 2
    t.text("1", SERVER, '40{"sid":"Xq2pTnE0cYRmAAAB"}')  # 3
    t.text("1", CLIENT, '421["chat",{"text":"hi all","room":"lobby"}]')  # 4: ack 1
    t.text("1", SERVER, '42["chat",{"user":"bob","text":"hey ada","room":"lobby"}]')  # 5
    t.text("1", SERVER, '431[{"ok":true,"id":7}]', dt_=0.012)  # 6: answers 4
    t.open("2", path="/rpc", host="node.example.com", cookies=())
    t.json(  # 7
        "2",
        CLIENT,
        {"jsonrpc": "2.0", "method": "eth_subscribe", "params": ["newHeads"], "id": 7},
    )
    t.json("2", SERVER, {"jsonrpc": "2.0", "result": "0x9cef478923ff08bf", "id": 7}, dt_=0.031)
    t.text("1", SERVER, "2")  # 9: Engine.IO ping
    t.text("1", CLIENT, "3", dt_=0.002)  # 10: pong
    for n in range(2):  # 11, 12
        t.json(
            "2",
            SERVER,
            {
                "jsonrpc": "2.0",
                "method": "eth_subscription",
                "params": {"subscription": "0x9cef478923ff08bf", "result": {"number": 436 + n}},
            },
        )
    t.text("1", CLIENT, '422["typing",{"room":"lobby"}]')  # 13: ack 2, never answered
    t.json("2", CLIENT, {"jsonrpc": "2.0", "method": "eth_blockNumber", "id": 8})  # 14
    t.json("2", SERVER, {"jsonrpc": "2.0", "result": "0x1b5", "id": 8}, dt_=0.018)  # 15
    return t


def fanout_traffic() -> Traffic:
    """Two app instances joined by a Redis backplane (a Redis source: connection ids
    ``INSTANCE/ID``), app-1's proxy recording the backplane: three publications on
    ``chat:lobby``, each delivered to the clients of both instances, app-2's later (it
    lags), and app-2's second client missing the third publication."""
    t = Traffic()
    t.events.append(InstanceEvent("app-1", t.ts, "up"))
    t.events.append(InstanceEvent("app-2", t.ts, "up"))
    t.backplane("app-1/1", "chat:*")
    clients = {
        "app-1/2": "127.0.0.1:50011",
        "app-1/3": "127.0.0.1:50012",
        "app-2/1": "127.0.0.1:50021",
        "app-2/2": "127.0.0.1:50022",
    }
    for conn, client in clients.items():
        t.open(conn, path="/chat", host="chat.example.com", client=client)
    lag = {"app-1/2": 0.002, "app-1/3": 0.003, "app-2/1": 0.21, "app-2/2": 0.34}
    texts = ("deploying now", "lgtm", "rolled back")
    for n, text in enumerate(texts, 1):
        body = f'{{"id":"m{n}","user":"ada","text":"{text}"}}'
        pub = t.publication("app-1/1", "chat:lobby", body, dt_=0.8)
        for conn, delay in sorted(lag.items(), key=lambda kv: kv[1]):
            if n == 3 and conn == "app-2/2":
                continue  # it missed this one
            t.ts = pub.ts + delay - 0.001  # _next adds 0.001
            t.text(conn, SERVER, body, dt_=0.001)
        t.ts = pub.ts + 0.5
    return t
