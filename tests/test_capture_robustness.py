"""Odd and hostile input through the real proxy: forwarding stays byte-exact, the capture
marks what it could not parse, and nothing leaks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection

from devconsole.frames import build_frame
from devconsole.model import ControlFrame, Message, Opcode
from tests.conftest import running_proxy, wait_until, ws_server

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
UPGRADE_REQ = (
    b"GET /raw HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@contextlib.asynccontextmanager
async def raw_ws_server(
    after_upgrade: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A server that completes the upgrade by hand, then runs ``after_upgrade``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        req = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in req.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        await writer.drain()
        with contextlib.suppress(Exception):
            await after_upgrade(reader, writer)
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with srv:
        yield srv.sockets[0].getsockname()[1]


async def raw_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
    w.write(UPGRADE_REQ)
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return r, w


async def read_exactly(r: asyncio.StreamReader, n: int, timeout: float = 10) -> bytes:
    return await asyncio.wait_for(r.readexactly(n), timeout)


def items(rp):
    return list(rp.session.items())


@pytest.mark.parametrize(
    ("name", "wire", "expect_error"),
    [
        ("unknown opcode", b"\x83\x03abc", "opcode"),
        ("reserved bit", b"\xa1\x02hi", "RSV"),
        ("invalid utf-8 text", b"\x81\x04\xff\xfe\xfd\xfc", None),
        ("close with bad code", b"\x88\x02\x03\xe7", None),
        ("control frame too long", b"\x89\x7e\x00\x80" + b"p" * 128, "control"),
    ],
)
async def test_odd_frames_are_forwarded_unchanged_and_marked(
    short_tmp: Path, name: str, wire: bytes, expect_error: str | None
) -> None:
    async def send_then_wait(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(wire)
        await w.drain()
        await asyncio.sleep(1)

    async with raw_ws_server(send_then_wait) as port:
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            r, w = await raw_client(rp.port)
            assert await read_exactly(r, len(wire)) == wire  # byte for byte
            w.close()
            await wait_until(
                lambda: bool(items(rp)) or any(c.errors for c in rp.session.connections.values())
            )
            [conn] = rp.session.connections.values()
            if expect_error:
                await wait_until(lambda: bool(conn.errors))
                assert expect_error.lower() in conn.errors[0].lower(), conn.errors
            elif name == "invalid utf-8 text":
                [m] = [i for i in items(rp) if isinstance(i, Message)]
                assert m.opcode == Opcode.TEXT and m.utf8_ok is False
                assert m.payload == b"\xff\xfe\xfd\xfc"
            else:
                [c] = [i for i in items(rp) if isinstance(i, ControlFrame)]
                assert c.code == 999 and c.error and "999" in c.error


async def test_a_message_in_20000_tiny_frames(short_tmp: Path) -> None:
    n = 20_000
    text = bytes(ord("a") + i % 26 for i in range(n))
    wire = b"".join(
        build_frame(Opcode.TEXT if i == 0 else Opcode.CONTINUATION, text[i : i + 1], fin=i == n - 1)
        for i in range(n)
    )

    async def send(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        for i in range(0, len(wire), 7_777):  # odd chunking on purpose
            w.write(wire[i : i + 7_777])
            await w.drain()
        await asyncio.sleep(1)

    async with raw_ws_server(send) as port:
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            r, w = await raw_client(rp.port)
            assert await read_exactly(r, len(wire)) == wire
            w.close()
            await wait_until(lambda: any(isinstance(i, Message) for i in items(rp)))
            [m] = [i for i in items(rp) if isinstance(i, Message)]
            assert m.frames == n and m.payload == text and m.size == n


async def test_16_mib_messages_both_ways(short_tmp: Path) -> None:
    payload = os.urandom(16 << 20)
    async with ws_server(max_size=None) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with connect(
                f"ws://127.0.0.1:{rp.port}/huge", max_size=None, compression=None
            ) as ws:
                await ws.send(payload)
                assert await asyncio.wait_for(ws.recv(), 60) == payload
                await ws.send("small after huge")
                assert await ws.recv() == "small after huge"
            await wait_until(lambda: len([i for i in items(rp) if isinstance(i, Message)]) == 4)
            msgs = [i for i in items(rp) if isinstance(i, Message)]
            assert [m.size for m in msgs] == [16 << 20, 16 << 20, 16, 16]
            assert msgs[0].payload == payload[: 1 << 20]  # kept truncated (default 1 MiB)
            assert msgs[2].payload == b"small after huge"


def _rst_and_abort(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@pytest.mark.slow
async def test_500_concurrent_connections_then_abrupt_resets(short_tmp: Path) -> None:
    n = 500
    per_conn = 4
    server_conns: list[ServerConnection] = []
    received: dict[str, int] = {}

    async def handler(ws: ServerConnection) -> None:
        server_conns.append(ws)
        with contextlib.suppress(Exception):
            async for msg in ws:
                key = msg.split(":", 1)[0] if isinstance(msg, str) else "?"
                received[key] = received.get(key, 0) + 1
                await ws.send(msg)

    async with ws_server(handler, compression=None) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            baseline_tasks = len(asyncio.all_tasks())

            async def client(i: int) -> object:
                ws = await connect(
                    f"ws://127.0.0.1:{rp.port}/c{i}", compression=None, open_timeout=30
                )
                for k in range(per_conn):
                    await ws.send(f"c{i}:{k}")
                    await asyncio.wait_for(ws.recv(), 30)
                return ws

            clients = await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(n))), 120)
            assert len(rp.session.connections) == n
            assert sum(received.values()) == n * per_conn
            # half reset by clients, half by servers
            for ws in clients[: n // 2]:
                _rst_and_abort(ws.transport)  # type: ignore[attr-defined]
            for sws in server_conns:
                if sws.request and int(sws.request.path[2:]) >= n // 2:
                    _rst_and_abort(sws.transport)
            await wait_until(
                lambda: all(c.ts_end is not None for c in rp.session.connections.values()),
                timeout=60,
            )
            for ws in clients[n // 2 :]:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.wait_closed(), 10)  # type: ignore[attr-defined]
            await wait_until(lambda: not rp.capture._streams, timeout=30)
            ps = rp.proxy.master.addons.get("proxyserver")
            await wait_until(lambda: len(ps.connections) == 0, timeout=30)
            await wait_until(lambda: len(asyncio.all_tasks()) <= baseline_tasks + 5, timeout=30)
            for c in rp.session.connections.values():
                assert c.msgs_out == per_conn and c.msgs_in == per_conn, c
                assert c.clean is False


async def test_slow_and_vanishing_tap_clients_do_not_hold_up_forwarding(short_tmp: Path) -> None:
    """A viewer that never reads: forwarding completes, its queue stays bounded, and when it
    finally reads it is told how many events it missed, then gets a fresh snapshot."""
    from devconsole import wire
    from devconsole.model import GapEvent, Snapshot

    n = 20_000
    payload = "x" * 100
    async with ws_server(compression=None) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            rp.capture.tap.max_queue = 5_000
            stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stuck.connect(rp.tap)
            stuck.sendall(wire.pack(wire.HELLO, {"version": wire.PROTOCOL_VERSION}))
            gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            gone.connect(rp.tap)
            gone.sendall(wire.pack(wire.HELLO, {"version": wire.PROTOCOL_VERSION}))
            await wait_until(lambda: len(rp.capture.tap.clients) == 2)
            gone.recv(100)
            gone.close()  # vanishes mid-stream
            try:
                async with connect(f"ws://127.0.0.1:{rp.port}/f", compression=None) as ws:
                    for i in range(n):
                        await ws.send(f"{i:06d}{payload}")
                    for _ in range(n):
                        await asyncio.wait_for(ws.recv(), 30)
                assert rp.session.connections["1"].msgs_out == n
                await wait_until(lambda: len(rp.capture.tap.clients) == 1)
                [client] = rp.capture.tap.clients
                assert len(client.queue) <= 5_000
                assert client.missed > 0  # 5.6 MB of events: far more than the socket holds

                # now the stuck viewer reads: a gap with the count, then a snapshot
                stuck.setblocking(False)
                dec = wire.Decoder()
                seen: list[object] = []
                loop = asyncio.get_running_loop()

                def got_gap() -> bool:
                    return any(isinstance(e, GapEvent) for e in seen)

                deadline = loop.time() + 20
                while not got_gap() and loop.time() < deadline:
                    try:
                        data = await asyncio.wait_for(loop.sock_recv(stuck, 1 << 16), 5)
                    except TimeoutError:
                        break
                    dec.feed(data)
                    for kind, body in dec.frames():
                        if kind == wire.EVENTS:
                            seen.extend(wire.decode_events(body))
                gaps = [i for i, e in enumerate(seen) if isinstance(e, GapEvent)]
                assert gaps, "no gap event reached the slow viewer"
                gap = seen[gaps[0]]
                assert isinstance(gap, GapEvent) and gap.missed > 0
                assert isinstance(seen[gaps[0] + 1], Snapshot)
            finally:
                stuck.close()


async def test_an_unmasked_client_frame_is_flagged_and_still_forwarded(short_tmp: Path) -> None:
    """The server rejects it (1002); the capture says why instead of showing a normal
    message only."""
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            r, w = await raw_client(rp.port)
            w.write(b"\x81\x05hello")  # no mask: a client must mask
            await w.drain()
            head = await read_exactly(r, 2)  # the server's close frame: forwarded, rejected
            assert head[0] == 0x88
            body = await read_exactly(r, head[1] & 0x7F)
            assert int.from_bytes(body[:2], "big") == 1002
            w.close()
            await wait_until(lambda: any(c.errors for c in rp.session.connections.values()))
            [conn] = rp.session.connections.values()
            assert "unmasked client frame" in conn.errors[0]
            [m] = [i for i in items(rp) if isinstance(i, Message)]
            assert m.payload == b"hello"


async def test_an_invalid_close_then_a_second_close_is_recorded_as_the_peers_did(
    short_tmp: Path,
) -> None:
    """The client's close has a reason that is not UTF-8; the server answers 1007; the
    client sends a second close. Not "clean 1000": the server's 1007, not clean."""
    mask = b"\x11\x22\x33\x44"
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            r, w = await raw_client(rp.port)
            w.write(build_frame(Opcode.CLOSE, b"\x03\xe8\xff\xfe", mask=mask))
            await w.drain()
            head = await read_exactly(r, 2)
            body = await read_exactly(r, head[1] & 0x7F)
            assert int.from_bytes(body[:2], "big") == 1007
            w.write(build_frame(Opcode.CLOSE, b"\x03\xe8", mask=mask))
            await w.drain()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(r.read(), 5)
            w.close()
            await wait_until(lambda: any(c.ts_end for c in rp.session.connections.values()))
            [conn] = rp.session.connections.values()
            assert (conn.close_code, conn.closed_by, conn.clean) == (1007, "server", False)
            closes = [i for i in items(rp) if isinstance(i, ControlFrame)]
            assert [c.error for c in closes[:2]] == ["close reason not UTF-8", None]
            # the second close reaches the proxy only if the server has not closed the TCP
            # connection first (tests/test_relay.py checks that it is flagged)
            assert [c.error for c in closes[2:]] in ([], ["a second close frame"])
