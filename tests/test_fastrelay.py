"""The fast relay: devconsole's own driver of an upgraded connection's sockets, through a
real mitmproxy on loopback with real websockets peers. (The fault, intercept, shutdown and
robustness tests in test_capture_*.py run on it too: it is the default.)"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import version as mitmproxy_version
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from devconsole import fastrelay, mitm_compat
from devconsole.frames import build_frame
from devconsole.model import (
    AbortCommand,
    CloseCommand,
    ControlFrame,
    EndEvent,
    Event,
    HandshakeEvent,
    Message,
    Opcode,
    StateEvent,
)
from tests.conftest import (
    running_proxy,
    server_ssl,
    viewer,
    wait_until,
    ws_server,
)
from tests.test_capture_robustness import UPGRADE_REQ, raw_ws_server

MASK = b"\x11\x22\x33\x44"


def stream(rp: Any) -> Any:
    [s] = rp.capture._streams.values()
    return s


def mitmproxy_connections(rp: Any) -> int:
    return len(rp.proxy.master.addons.get("proxyserver").connections)


@pytest.mark.parametrize("mode", ["reverse", "regular"])
async def test_plain_ws_is_relayed_by_devconsole_and_mitmproxy_lets_go(
    short_tmp: Path, mode: str
) -> None:
    async with ws_server() as (_, port):
        proxy_mode = f"reverse:http://127.0.0.1:{port}" if mode == "reverse" else "regular"
        async with running_proxy(proxy_mode, short_tmp) as rp:
            url = f"ws://127.0.0.1:{port if mode == 'regular' else rp.port}/fast"
            kw = {"proxy": f"http://127.0.0.1:{rp.port}"} if mode == "regular" else {}
            async with connect(url, **kw) as ws:
                for i in range(50):
                    await ws.send(f"m{i}")
                    assert await ws.recv() == f"m{i}"
                s = stream(rp)
                assert s.fast is not None and s.fast.sockets() == 2
                # mitmproxy keeps nothing of the connection: its handler has finished
                await wait_until(lambda: mitmproxy_connections(rp) == 0)
                await ws.send("after")
                assert await ws.recv() == "after"
            await wait_until(lambda: not rp.capture._streams)
            [conn] = rp.session.connections.values()
            assert conn.clean is True and conn.close_code == 1000
            payloads = [m.payload for m in rp.session.items() if isinstance(m, Message)]
            assert payloads == [p for i in range(50) for p in (f"m{i}".encode(),) * 2] + [
                b"after",
                b"after",
            ]


async def test_bytes_mitmproxy_read_before_the_hand_off_keep_their_order(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server sends 300 frames in the same write as its 101 and the client pipelines
    300 behind its upgrade request: mitmproxy has read them when it hands over; they must
    come out before (and in order with) what the new driver reads next."""
    handed: list[str] = []
    orig = fastrelay.FastConnection.from_mitmproxy

    def spy(self: fastrelay.FastConnection, side: Any, data: bytes, ts: float) -> None:
        handed.append(side)
        orig(self, side, data, ts)

    monkeypatch.setattr(fastrelay.FastConnection, "from_mitmproxy", spy)
    n = 300
    down = [build_frame(Opcode.TEXT, f"down {i:04d}".encode()) for i in range(2 * n)]
    up = [build_frame(Opcode.TEXT, f"up {i:04d}".encode(), mask=MASK) for i in range(2 * n)]
    got_up = bytearray()
    server_done = asyncio.Event()

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # raw_ws_server wrote the 101; ours follows at once, in the same segment or not
        writer.write(b"".join(down[:n]))
        want = len(b"".join(up))
        while len(got_up) < want:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            got_up.extend(chunk)
        writer.write(b"".join(down[n:]))
        await writer.drain()
        server_done.set()
        await asyncio.sleep(1)

    async with raw_ws_server(server) as port:
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            r, w = await asyncio.open_connection("127.0.0.1", rp.port)
            w.write(UPGRADE_REQ + b"".join(up[:n]))  # pipelined behind the request
            await w.drain()
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 101")
            w.write(b"".join(up[n:]))
            await w.drain()
            expect = b"".join(down)
            got = await asyncio.wait_for(r.readexactly(len(expect)), 10)
            await asyncio.wait_for(server_done.wait(), 10)
            assert got == expect
            assert bytes(got_up) == b"".join(up)
            assert stream(rp).fast is not None
            assert "client" in handed  # the pipelined frames came through mitmproxy
            seen = [m.payload for m in rp.session.items() if isinstance(m, Message)]
            assert [p for p in seen if p.startswith(b"up")] == [
                f"up {i:04d}".encode() for i in range(2 * n)
            ]
            assert [p for p in seen if p.startswith(b"down")] == [
                f"down {i:04d}".encode() for i in range(2 * n)
            ]
            w.close()


@pytest.mark.parametrize("fragment", [1 << 16, 1 << 20])
async def test_a_flood_right_behind_the_101_arrives_intact(short_tmp: Path, fragment: int) -> None:
    """Autobahn 9.4.x: the server sends a 4 MiB message in large fragments at once behind
    its 101. At the hand-off mitmproxy has relayed the first read (64 KiB), holds more in
    its layers and its StreamReader, and the rest waits in the socket: all of it must
    reach the client once, in order (a lost or reordered chunk broke the framing)."""
    total = 4 << 20
    payload = bytes(range(256)) * (total // 256)
    wire = b"".join(
        build_frame(
            Opcode.BINARY if i == 0 else 0, payload[i : i + fragment], fin=i + fragment >= total
        )
        for i in range(0, total, fragment)
    )

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(wire)
        await writer.drain()
        await reader.read()  # until the client goes

    async with raw_ws_server(server) as port:
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            for _ in range(3):
                r, w = await asyncio.open_connection("127.0.0.1", rp.port, limit=1 << 24)
                w.write(UPGRADE_REQ)
                await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                got = await asyncio.wait_for(r.readexactly(len(wire)), 30)
                assert got == wire
                w.close()

            def msgs() -> list[Message]:
                return [m for m in rp.session.items() if isinstance(m, Message)]

            await wait_until(lambda: len(msgs()) == 3)
            assert [m.size for m in msgs()] == [total] * 3
            assert all(not c.errors for c in rp.session.connections.values())


async def test_an_ended_connection_leaves_no_reference_cycle(short_tmp: Path) -> None:
    """The proxy collects its oldest generation rarely (proxy.tune_gc): what a connection
    leaves behind must go by reference counting, not wait for a full collection."""
    import gc

    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            gc.collect()
            gc.disable()
            try:
                for i in range(20):
                    async with connect(f"ws://127.0.0.1:{rp.port}/c{i}") as ws:
                        await ws.send("x")
                        await ws.recv()
                await wait_until(lambda: not rp.capture._streams)
                await asyncio.sleep(0.1)
                left = [o for o in gc.get_objects() if type(o) is fastrelay.FastConnection]
                assert left == []
            finally:
                gc.enable()


async def test_falls_back_to_mitmproxys_relay_where_sockets_cannot_be_taken(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mitm_compat, "supported", lambda: False)
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with connect(f"ws://127.0.0.1:{rp.port}/slow") as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                s = stream(rp)
                assert s.fast is None
                assert len(mitm_compat.writers(s.flow)) == 2  # mitmproxy's sockets
            await wait_until(lambda: not rp.capture._streams)
            [conn] = rp.session.connections.values()
            assert conn.clean is True
            assert len([m for m in rp.session.items() if isinstance(m, Message)]) == 2


async def test_the_option_turns_it_off(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(
            f"reverse:http://127.0.0.1:{port}", short_tmp, sets=["devconsole_fast_relay=false"]
        ) as rp:
            async with connect(f"ws://127.0.0.1:{rp.port}/off") as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
                assert stream(rp).fast is None


@pytest.mark.parametrize(
    ("mode", "take_tls"),
    [("regular", True), ("regular", False), ("reverse-https", True), ("regular", "no-peek")],
)
async def test_wss_through_mitmproxys_tls(
    short_tmp: Path,
    server_cert: tuple[Path, Path],
    mode: str,
    take_tls: bool | str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """mitmproxy terminates TLS (regular mode: on both sides; reverse mode in front of a
    wss server: toward the server only); the fast relay takes the connections with their
    TLS state (or, told not to, leaves them to mitmproxy): the same conversation.
    "no-peek": without a look at OpenSSL's buffers (``mitm_compat.tls_pending``)."""
    from tests.test_capture import client_ssl_trusting

    if take_tls == "no-peek":
        monkeypatch.setattr(mitm_compat, "tls_pending", lambda ssl_conn: None)
        take_tls = True
    monkeypatch.setattr(fastrelay.Pool, "tls", take_tls)
    monkeypatch.setattr(fastrelay, "DROP_AFTER", 0.3)
    async with ws_server(ssl=server_ssl(server_cert)) as (_, port):
        proxy_mode = "regular" if mode == "regular" else f"reverse:https://127.0.0.1:{port}"
        async with running_proxy(proxy_mode, short_tmp, sets=["ssl_insecure=true"]) as rp:
            if mode == "regular":
                ca = Path(rp.confdir) / "mitmproxy-ca-cert.pem"
                kw: dict[str, Any] = {
                    "proxy": f"http://127.0.0.1:{rp.port}",
                    "ssl": client_ssl_trusting(ca),
                }
                url = f"wss://127.0.0.1:{port}/tls"
            else:
                kw = {}
                url = f"ws://127.0.0.1:{rp.port}/tls"
            async with connect(url, max_size=None, **kw) as ws:
                for m in ("secret", "x" * 300_000, b"\x00" * 70_000):
                    await ws.send(m)
                    assert await ws.recv() == m
                s = stream(rp)
                assert (s.fast is not None) is take_tls
                if take_tls:
                    await wait_until(lambda: mitmproxy_connections(rp) == 0)
                    await ws.send("after the hand-off")
                    assert await ws.recv() == "after the hand-off"
                    # mitmproxy's stream objects dropped: the TLS sockets stay ours
                    await dropped(s)
                    import gc

                    gc.collect()
                    await ws.send("after the drop")
                    assert await ws.recv() == "after the drop"
            await wait_until(lambda: not rp.capture._streams)
            [conn] = rp.session.connections.values()
            assert conn.clean is True
            sizes = [m.size for m in rp.session.items() if isinstance(m, Message)]
            assert sizes[:6] == [6, 6, 300_000, 300_000, 70_000, 70_000]


async def test_a_half_close_is_relayed_and_the_end_recorded(short_tmp: Path) -> None:
    """The client sends a frame and shuts down its sending side: the server reads EOF,
    can still answer, and the client receives that before the server's FIN."""
    answered = asyncio.Event()

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            data += chunk
        assert data == build_frame(Opcode.TEXT, b"last words", mask=MASK)
        writer.write(build_frame(Opcode.TEXT, b"heard you"))
        await writer.drain()
        answered.set()

    async with raw_ws_server(server) as port:
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            r, w = await asyncio.open_connection("127.0.0.1", rp.port)
            w.write(UPGRADE_REQ)
            await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            await wait_until(lambda: rp.capture._streams)
            assert stream(rp).fast is not None
            w.write(build_frame(Opcode.TEXT, b"last words", mask=MASK))
            w.write_eof()
            rest = await asyncio.wait_for(r.read(), 10)  # up to the server's FIN
            assert rest == build_frame(Opcode.TEXT, b"heard you")
            assert answered.is_set()
            w.close()
            await wait_until(lambda: not rp.capture._streams)
            [conn] = rp.session.connections.values()
            assert conn.ts_end is not None and conn.clean is False


async def test_a_peer_that_stops_reading_stops_the_sender(short_tmp: Path) -> None:
    """Backpressure: the server stops reading; the proxy buffers a bounded amount, stops
    reading the client (whose sends then block), and delivers everything once the server
    reads again."""
    reading = asyncio.Event()
    frame = build_frame(Opcode.BINARY, b"\x5a" * (1 << 20), mask=MASK)
    total = 32 * len(frame)
    got = bytearray()

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reading.wait()
        while len(got) < total:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
            if not chunk:
                break
            got.extend(chunk)

    async with raw_ws_server(server) as port:
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            r, w = await asyncio.open_connection("127.0.0.1", rp.port)
            w.write(UPGRADE_REQ)
            await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            await wait_until(lambda: rp.capture._streams)
            fast = stream(rp).fast
            assert fast is not None
            w.transport.set_write_buffer_limits(high=1 << 20)
            sent = 0

            async def send_all() -> None:
                nonlocal sent
                while sent < total:
                    w.write(frame)
                    sent += len(frame)
                    await w.drain()

            sender = asyncio.ensure_future(send_all())
            await wait_until(lambda: not fast.client.t.is_reading(), timeout=10)
            await asyncio.sleep(0.5)
            assert not sender.done()
            buffered = fast.server.t.get_write_buffer_size()
            assert buffered <= fastrelay.WRITE_HIGH + (1 << 20)
            assert sent < total
            reading.set()
            await asyncio.wait_for(sender, 30)
            await wait_until(lambda: len(got) >= total, timeout=30)
            assert bytes(got) == frame * 32
            w.close()


async def test_an_idle_connection_is_closed_after_the_tcp_timeout(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As mitmproxy does after ``tcp_timeout`` (600 s) without a byte either way."""
    monkeypatch.setattr(mitm_compat, "tcp_timeout", lambda: 1.0)
    async with ws_server(ping_interval=None) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            ws = await connect(f"ws://127.0.0.1:{rp.port}/idle", ping_interval=None)
            await ws.send("only once")
            await ws.recv()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            await wait_until(lambda: not rp.capture._streams)
            [conn] = rp.session.connections.values()
            assert conn.ts_end is not None


def _normalized(events: list[Event]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for ev in events:
        if isinstance(ev, Message):
            out.append(
                (
                    "msg",
                    ev.side,
                    ev.opcode,
                    ev.payload,
                    ev.size,
                    ev.frames,
                    ev.dropped,
                    ev.compressed,
                )
            )
        elif isinstance(ev, ControlFrame):
            out.append(("ctl", ev.side, ev.opcode, ev.payload, ev.code, ev.error, ev.injected))
        elif isinstance(ev, EndEvent):
            out.append(("end", ev.clean, ev.closed_by, ev.error))
        elif isinstance(ev, StateEvent):
            out.append(("state", ev.state))
        elif isinstance(ev, HandshakeEvent):
            out.append(("handshake", ev.handshake.status))
    return out


async def _conversation(
    short_tmp: Path, sets: list[str], compression: str | None = None
) -> list[tuple[Any, ...]]:
    async def server(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for msg in ws:
                if msg == "fragments":  # one message in three frames
                    await ws.send(["frag", "men", "ted"])
                    continue
                await ws.send(msg)
                if msg == "ping me":
                    await ws.ping(b"srv")

    async with ws_server(server, compression=compression) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp, sets=sets) as rp:
            async with viewer(rp.tap) as v:
                url = f"ws://127.0.0.1:{rp.port}/same"
                async with connect(url, compression=compression) as ws:
                    for m in ("text", b"\x00\x01binary", "x" * 70_000, "ping me"):
                        await ws.send(m)
                        assert await ws.recv() == m
                    await ws.send(["a", "b", "c"])  # fragmented, client to server
                    assert await ws.recv() == "abc"
                    await ws.send("fragments")
                    assert await ws.recv() == "fragmented"
                    await ws.ping(b"cli")
                    await ws.send("bye")
                    await ws.recv()
                    await ws.close(4000, "done")
                await v.wait_for(lambda v: any(isinstance(e, EndEvent) for e in v.events))
                return _normalized(v.events)


_FRAGMENTED = {("client", b"abc"), ("server", b"fragmented")}


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_the_tap_sees_the_same_events_as_under_mitmproxys_relay(
    short_tmp: Path, compression: str | None
) -> None:
    """Frame for frame: pings and pongs, fragmented messages (both ways), a 70 KB message,
    permessage-deflate (context takeover) or not, the close handshake."""
    fast = await _conversation(short_tmp / "a", [], compression)
    slow = await _conversation(short_tmp / "b", ["devconsole_fast_relay=false"], compression)
    assert fast == slow
    assert ("end", True, "client", None) in fast
    # the fragmented ones went through as several frames (websockets ends with an empty one)
    frag = [e[5] for e in fast if e[0] == "msg" and (e[1], e[3]) in _FRAGMENTED]
    assert len(frag) == 2 and min(frag) >= 3
    compressed = [e for e in fast if e[0] == "msg" and e[7]]
    assert len(compressed) > 0 if compression else not compressed
    assert ("ctl", "server", Opcode.PING, b"srv", None, None, False) in fast
    assert ("ctl", "client", Opcode.PONG, b"srv", None, None, False) in fast


async def test_a_server_that_vanishes_ends_the_client_too(short_tmp: Path) -> None:
    """The server's socket is reset mid-conversation (a crashed process): the client's
    connection ends at once (no close frame: 1006), the end is recorded, nothing is left."""
    import socket
    import struct

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(build_frame(Opcode.TEXT, b"about to crash"))
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST

    async with raw_ws_server(server) as port:
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with connect(f"ws://127.0.0.1:{rp.port}/crash", compression=None) as ws:
                await wait_until(lambda: rp.capture._streams)
                assert stream(rp).fast is not None
                await ws.send("hello")
                assert await asyncio.wait_for(ws.recv(), 10) == "about to crash"
                with pytest.raises(ConnectionClosed) as e:
                    await asyncio.wait_for(ws.recv(), 10)
                assert e.value.rcvd is None  # no close frame: the TCP connection ended
            await wait_until(lambda: not rp.capture._streams)
            [conn] = rp.session.connections.values()
            assert conn.ts_end is not None and conn.clean is False
            assert mitmproxy_connections(rp) == 0


async def test_a_rule_and_network_conditions_on_the_fast_relay(short_tmp: Path) -> None:
    """Rules and shaping are stages of the relay, driven by the fast relay's writes and the
    addon's clock: a rewrite rule, latency toward the client, and the server's FIN waiting
    for the bytes still delayed toward the client (no fallback to mitmproxy's relay)."""
    import time

    from devconsole.model import Shape, ShapeCommand, ShapeEvent

    async def server(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for msg in ws:
                if msg == "bye":
                    await ws.send("last words")
                    ws.transport.close()  # FIN right behind them, no closing handshake
                    return
                await ws.send(msg)

    rules = short_tmp / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "shout"\nmatch = "from:client hello"\n'
        'rewrite = { regex = "hello", replace = "HELLO" }\n'
    )
    async with ws_server(server, compression=None) as (_, port):
        async with running_proxy(
            f"reverse:http://127.0.0.1:{port}", short_tmp, rules=str(rules)
        ) as rp:
            async with viewer(rp.tap) as v:
                url = f"ws://127.0.0.1:{rp.port}/shaped"
                async with connect(url, compression=None, ping_interval=None) as ws:
                    await wait_until(lambda: rp.capture._streams)
                    s = stream(rp)
                    assert s.fast is not None
                    await ws.send("hello there")  # the rule, unshaped
                    assert await asyncio.wait_for(ws.recv(), 5) == "HELLO there"
                    res = await v.client.command(ShapeCommand(s.conn, "client", Shape(latency=0.3)))
                    assert res.ok, res.error
                    await v.wait_for(lambda v: any(isinstance(e, ShapeEvent) for e in v.events))
                    t0 = time.monotonic()
                    await ws.send("hello again")
                    assert await asyncio.wait_for(ws.recv(), 5) == "HELLO again"
                    assert time.monotonic() - t0 >= 0.29  # delayed toward the client
                    await ws.send("bye")
                    assert await asyncio.wait_for(ws.recv(), 5) == "last words"
                    with pytest.raises(ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), 5)
                    assert s.fast is not None and stream_is_fast(rp, s)
            await wait_until(lambda: not rp.capture._streams)


def stream_is_fast(rp: Any, s: Any) -> bool:
    """The stream was relayed by the fast relay to its end (mitmproxy let it go)."""
    return s.fast is not None and mitmproxy_connections(rp) == 0


# mitmproxy 11 closes its writers of both sockets soon after the hand-off; 12 keeps one
# open until the connection ends, so only the other one's objects can go early
MITMPROXY_LETS_GO_OF_BOTH = mitmproxy_version.VERSION.split(".")[0] == "11"


async def dropped(s: Any) -> None:
    """The drop pass ran: every socket mitmproxy let go of lost its stream objects."""
    await wait_until(lambda: s.fast.drop_checked)
    assert not any(mitm_compat.done_with(d) for d in s.fast._keep)
    if MITMPROXY_LETS_GO_OF_BOTH:
        assert s.fast._keep == []
    else:
        assert len(s.fast._keep) < 2


@pytest.mark.parametrize("end", ["client", "close", "abort"])
async def test_after_mitmproxys_stream_objects_are_dropped(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    """Once mitmproxy let go, its StreamReader/Writer/protocol of each socket are freed
    (an idle connection's memory, issue 18): the connection still relays both ways, and
    a close, an abort or the client's close still ends it (the sockets were not closed by
    the dropped StreamWriters)."""
    monkeypatch.setattr(fastrelay, "DROP_AFTER", 0.05)
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                ws = await connect(f"ws://127.0.0.1:{rp.port}/drop", close_timeout=3)
                await ws.send("before")
                assert await ws.recv() == "before"
                s = stream(rp)
                await dropped(s)
                import gc

                gc.collect()
                await asyncio.sleep(0.1)  # a StreamWriter's __del__ would have closed them
                assert s.fast.sockets() == 2
                for i in range(20):
                    await ws.send(f"after {i}")
                    assert await ws.recv() == f"after {i}"
                if end == "client":
                    await ws.close()
                    assert ws.close_code == 1000
                elif end == "close":
                    res = await v.client.command(CloseCommand(s.conn, 4001, "bye"))
                    assert res.ok, res.error
                    with pytest.raises(ConnectionClosed):
                        while True:
                            await asyncio.wait_for(ws.recv(), 5)
                    assert ws.close_code == 4001
                else:
                    res = await v.client.command(AbortCommand(s.conn, rst=True))
                    assert res.ok, res.error
                    with pytest.raises(ConnectionClosed):
                        while True:
                            await asyncio.wait_for(ws.recv(), 5)
                    assert ws.close_code == 1006
                await wait_until(lambda: not rp.capture._streams)
                [conn] = rp.session.connections.values()
                assert conn.ts_end is not None
                payloads = [m.payload for m in rp.session.items() if isinstance(m, Message)]
                assert payloads.count(b"after 19") == 2
