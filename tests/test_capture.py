"""End to end: real websockets clients and servers through a real devconsole proxy
(mitmproxy on loopback), observed through the tap like any viewer."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from devconsole.model import (
    ConnState,
    ControlFrame,
    EndEvent,
    Message,
    Opcode,
    RefusedEvent,
)
from tests.conftest import (
    client_ssl_trusting,
    running_proxy,
    server_ssl,
    viewer,
    wait_until,
    ws_server,
)


def items(session, conn=None):
    return list(session.items(conn))


def messages(session, conn=None):
    return [i for i in items(session, conn) if isinstance(i, Message)]


async def test_reverse_mode_captures_every_frame_exactly(short_tmp: Path) -> None:
    big = "x" * 70_000  # 64-bit length frame
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with connect(
                    f"ws://127.0.0.1:{rp.port}/chat?room=1&ticket=abc",
                    additional_headers={"Cookie": "session=s1; theme=dark", "X-Dup": "a"},
                    compression=None,
                ) as ws:
                    await ws.send("hello")
                    assert await ws.recv() == "hello"
                    await ws.send(b"\x00\x01\xff")
                    assert await ws.recv() == b"\x00\x01\xff"
                    await ws.send(["frag-", "mented ", "message"])
                    assert await ws.recv() == "frag-mented message"
                    await ws.send(big)
                    assert await ws.recv() == big
                    pong = await ws.ping(b"are you there")
                    await asyncio.wait_for(pong, 5)
                    await ws.close(4001, "done here")
                await v.wait_for(lambda v: any(isinstance(e, EndEvent) for e in v.events))

            s = v.session
            [conn] = s.connections.values()
            hs = conn.handshake
            assert hs.path == "/chat"
            assert hs.query == [("room", "1"), ("ticket", "abc")]
            assert ("session", "s1") in hs.cookies and ("theme", "dark") in hs.cookies
            assert [k.lower() for k, _ in hs.request_headers].count("x-dup") == 1
            assert hs.status == 101
            assert hs.client.startswith("127.0.0.1:")
            assert hs.url.startswith("ws://") and hs.url.endswith("/chat?room=1&ticket=abc")

            msgs = messages(s)
            assert [(m.side, m.payload) for m in msgs[:6]] == [
                ("client", b"hello"),
                ("server", b"hello"),
                ("client", b"\x00\x01\xff"),
                ("server", b"\x00\x01\xff"),
                ("client", b"frag-mented message"),
                ("server", b"frag-mented message"),
            ]
            assert msgs[0].opcode == Opcode.TEXT and msgs[2].opcode == Opcode.BINARY
            # websockets ends a fragmented send with an empty final frame
            assert msgs[4].frames == 4 and msgs[4].frame_sizes == (5, 7, 7, 0)
            assert msgs[6].size == 70_000 and msgs[6].payload == big.encode()
            assert not any(m.compressed for m in msgs)

            controls = [i for i in items(s) if isinstance(i, ControlFrame)]
            kinds = [(c.side, c.opcode) for c in controls]
            assert ("client", Opcode.PING) in kinds and ("server", Opcode.PONG) in kinds
            closes = [c for c in controls if c.opcode == Opcode.CLOSE]
            assert closes[0].side == "client" and closes[0].code == 4001
            assert closes[0].reason == "done here"
            assert conn.close_code == 4001 and conn.closed_by == "client"
            assert conn.state == ConnState.CLOSED and conn.clean is True
            seqs = [i.seq for i in items(s)]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_compressed_messages_are_inflated(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with connect(f"ws://127.0.0.1:{rp.port}/z") as ws:  # permessage-deflate
                payloads = [json.dumps({"n": i, "text": "compress me " * 20}) for i in range(20)]
                for p in payloads:
                    await ws.send(p)
                    assert await ws.recv() == p
            await wait_until(lambda: len(messages(rp.session)) >= 40)
            [conn] = rp.session.connections.values()
            assert any("permessage-deflate" in e for e in conn.handshake.extensions)
            msgs = messages(rp.session)
            assert [m.payload.decode() for m in msgs if m.side == "client"] == payloads
            assert [m.payload.decode() for m in msgs if m.side == "server"] == payloads
            assert all(m.compressed for m in msgs)
            # compression with context takeover: later messages are much smaller on the wire
            assert msgs[-1].wire_size < msgs[-1].size / 4


async def test_refused_upgrade_is_captured_with_headers_and_body(short_tmp: Path) -> None:
    def refuse(conn: ServerConnection, request):
        if "session=" not in request.headers.get("Cookie", ""):
            body = b'{"error":"missing session cookie"}'
            return Response(
                401,
                "Unauthorized",
                Headers({"Content-Type": "application/json", "WWW-Authenticate": "Cookie"}),
                body,
            )
        return None

    async with ws_server(process_request=refuse) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                with pytest.raises(Exception, match="401"):
                    async with connect(
                        f"ws://127.0.0.1:{rp.port}/private", additional_headers={"Origin": "x"}
                    ):
                        pass
                await v.wait_for(lambda v: any(isinstance(e, RefusedEvent) for e in v.events))
            [ev] = [e for e in v.events if isinstance(e, RefusedEvent)]
            hs = ev.handshake
            assert hs.status == 401 and hs.reason == "Unauthorized"
            assert ("WWW-Authenticate", "Cookie") in hs.response_headers
            assert hs.body == b'{"error":"missing session cookie"}'
            assert hs.request_header("origin") == "x"
            assert v.session.connections[hs.conn].state == ConnState.REFUSED


async def test_200_instead_of_101_is_a_refused_upgrade(short_tmp: Path) -> None:
    async def http_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/html\r\n\r\nhello"
        )
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(http_server, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv, running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
        with pytest.raises(Exception, match="200"):
            async with connect(f"ws://127.0.0.1:{rp.port}/ws"):
                pass
        await wait_until(lambda: len(rp.session.connections) == 1)
        [conn] = rp.session.connections.values()
        assert conn.state == ConnState.REFUSED
        assert conn.handshake.status == 200 and conn.handshake.body == b"hello"


async def test_burst_of_10000_messages_captured_in_order(short_tmp: Path) -> None:
    n = 10_000
    done = asyncio.Event()

    async def sink(ws: ServerConnection) -> None:
        count = 0
        async for _ in ws:
            count += 1
            if count == n:
                await ws.send("all received")
                done.set()

    async with ws_server(sink) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with connect(f"ws://127.0.0.1:{rp.port}/flood", compression=None) as ws:
                    for i in range(n):
                        await ws.send(f"msg {i:05d}")
                    assert await asyncio.wait_for(ws.recv(), 30) == "all received"
                await v.wait_for(lambda v: len(messages(v.session)) >= n + 1, timeout=30)
            got = [m.payload.decode() for m in messages(v.session) if m.side == "client"]
            assert got == [f"msg {i:05d}" for i in range(n)]
            [conn] = v.session.connections.values()
            assert conn.msgs_out == n


async def test_late_attach_receives_backlog_then_live(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with connect(f"ws://127.0.0.1:{rp.port}/late") as ws:
                for i in range(50):
                    await ws.send(f"early {i}")
                    await ws.recv()
                await wait_until(lambda: len(messages(rp.session)) == 100)
                async with viewer(rp.tap) as v:
                    await v.wait_for(lambda v: len(messages(v.session)) == 100)
                    [conn] = v.session.connections.values()
                    assert conn.msgs_out == 50 and conn.msgs_in == 50
                    await ws.send("live")
                    await ws.recv()
                    await v.wait_for(lambda v: len(messages(v.session)) == 102)
                    assert conn.msgs_out == 51  # not double counted
                    payloads = [m.payload for m in messages(v.session)]
                    assert payloads[0] == b"early 0" and payloads[-2] == b"live"


async def test_mitmproxy_message_list_is_trimmed(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with connect(f"ws://127.0.0.1:{rp.port}/t") as ws:
                for i in range(200):
                    await ws.send(f"m{i}")
                    await ws.recv()
                streams = list(rp.capture._streams.values())
                assert len(streams) == 1
                assert len(streams[0].flow.messages) <= 1


async def test_ring_buffer_bounds_the_proxy(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(
            f"reverse:http://127.0.0.1:{port}", short_tmp, buffer_messages=100
        ) as rp:
            async with connect(f"ws://127.0.0.1:{rp.port}/b") as ws:
                for i in range(300):
                    await ws.send(f"m{i}")
                    await ws.recv()
            await wait_until(lambda: rp.session.buffer.evicted_items >= 500)
            assert len(rp.session.buffer) == 100
            [conn] = rp.session.connections.values()
            assert conn.msgs_out == 300  # counters are exact even when items are evicted


async def test_large_message_is_truncated_with_true_size(short_tmp: Path) -> None:
    payload = b"\xab" * (3 << 20)
    async with ws_server() as (_, port):
        async with running_proxy(
            f"reverse:http://127.0.0.1:{port}", short_tmp, max_payload="64k"
        ) as rp:
            async with connect(f"ws://127.0.0.1:{rp.port}/big", max_size=None) as ws:
                await ws.send(payload)
                assert await ws.recv() == payload  # forwarded intact
            await wait_until(lambda: len(messages(rp.session)) == 2)
            for m in messages(rp.session):
                assert m.size == len(payload)
                assert m.payload == payload[: 64 * 1024]
                assert m.truncated


def _rst(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_abrupt_reset_by_client_is_an_unclean_end(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            ws = await connect(f"ws://127.0.0.1:{rp.port}/rst")
            await ws.send("hi")
            await ws.recv()
            _rst(ws.transport.get_extra_info("socket"))
            ws.transport.abort()
            await wait_until(lambda: any(c.ts_end for c in rp.session.connections.values()))
            [conn] = rp.session.connections.values()
            assert conn.clean is False and conn.close_code is None
            assert conn.state == ConnState.CLOSED


async def test_abrupt_reset_by_server_is_an_unclean_end(short_tmp: Path) -> None:
    async def resetter(ws: ServerConnection) -> None:
        await ws.recv()
        _rst(ws.transport.get_extra_info("socket"))
        ws.transport.abort()

    async with ws_server(resetter) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with connect(f"ws://127.0.0.1:{rp.port}/rst") as ws:
                await ws.send("bye")
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 5)
                assert info.value.rcvd is None  # no close frame: 1006 for the client
            await wait_until(lambda: any(c.ts_end for c in rp.session.connections.values()))
            [conn] = rp.session.connections.values()
            assert conn.clean is False


async def test_invalid_frames_are_flagged_and_forwarded_unchanged(short_tmp: Path) -> None:
    """A server that upgrades and then sends bytes that are not valid frames: the client
    receives exactly those bytes, and the capture reports a protocol error."""
    garbage = bytes([0x83, 0x03]) + b"abc"  # reserved opcode 3
    received = bytearray()

    async def raw_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        req = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in req.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        import base64
        import hashlib

        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        writer.write(b"\x81\x02ok" + garbage)
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    srv = await asyncio.start_server(raw_server, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv, running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
        r, w = await asyncio.open_connection("127.0.0.1", rp.port)
        w.write(
            b"GET /raw HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        while len(received) < 4 + len(garbage):
            chunk = await asyncio.wait_for(r.read(100), 5)
            if not chunk:
                break
            received.extend(chunk)
        w.close()
        assert bytes(received) == b"\x81\x02ok" + garbage
        await wait_until(lambda: any(c.errors for c in rp.session.connections.values()), timeout=5)
        [conn] = rp.session.connections.values()
        assert "opcode" in conn.errors[0]
        assert [m.payload for m in messages(rp.session)] == [b"ok"]
        # the ProtocolErrorEvent: the server's direction, right after the valid frame
        assert conn.errors == ["server stream at byte 4: reserved opcode 0x3"]


async def test_regular_proxy_mode_ws(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy("regular", short_tmp) as rp:
            async with connect(
                f"ws://127.0.0.1:{port}/plain", proxy=f"http://127.0.0.1:{rp.port}"
            ) as ws:
                await ws.send("through the proxy")
                assert await ws.recv() == "through the proxy"
            await wait_until(lambda: len(messages(rp.session)) == 2)
            [conn] = rp.session.connections.values()
            assert conn.handshake.scheme == "ws"
            assert conn.url == f"ws://127.0.0.1:{port}/plain"


async def test_regular_proxy_mode_wss_through_the_mitmproxy_ca(
    short_tmp: Path, server_cert: tuple[Path, Path]
) -> None:
    async with ws_server(ssl=server_ssl(server_cert)) as (_, port):
        async with running_proxy("regular", short_tmp, sets=["ssl_insecure=true"]) as rp:
            ca = Path(rp.confdir) / "mitmproxy-ca-cert.pem"
            assert ca.exists()
            async with connect(
                f"wss://127.0.0.1:{port}/secure",
                proxy=f"http://127.0.0.1:{rp.port}",
                ssl=client_ssl_trusting(ca),
            ) as ws:
                await ws.send("secret")
                assert await ws.recv() == "secret"
            await wait_until(lambda: len(messages(rp.session)) == 2)
            [conn] = rp.session.connections.values()
            assert conn.handshake.scheme == "wss"
            assert conn.url == f"wss://127.0.0.1:{port}/secure"
            assert [m.payload for m in messages(rp.session)] == [b"secret", b"secret"]


async def test_non_websocket_http_traffic_is_ignored(short_tmp: Path) -> None:
    async def http_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(http_server, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv, running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
        r, w = await asyncio.open_connection("127.0.0.1", rp.port)
        w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await w.drain()
        assert b"ok" in await asyncio.wait_for(r.read(1000), 5)
        w.close()
        await asyncio.sleep(0.2)
        assert rp.session.connections == {}


async def test_an_unanswered_upgrade_shows_as_connecting(short_tmp: Path) -> None:
    answer = asyncio.Event()

    async def slow_process_request(conn: ServerConnection, request):
        await answer.wait()
        return None

    async with ws_server(process_request=slow_process_request) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                task = asyncio.ensure_future(connect(f"ws://127.0.0.1:{rp.port}/slow"))
                await v.wait_for(lambda v: len(v.session.connections) == 1)
                [conn] = v.session.connections.values()
                assert conn.state == ConnState.CONNECTING and conn.handshake.status is None
                answer.set()
                ws = await asyncio.wait_for(task, 5)
                await v.wait_for(lambda v: conn.state == ConnState.OPEN)
                assert conn.handshake.status == 101
                await ws.close()


# ------------------------------------------------------------------ an upstream that is down


def _dead_port() -> int:
    """A loopback port nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _assert_refused_for_the_error(v, path: str, port: int) -> None:  # type: ignore[no-untyped-def]
    from devconsole.store.lines import event_json

    [conn] = v.session.connections.values()
    assert conn.state == ConnState.REFUSED
    assert conn.handshake.status is None and conn.handshake.path == path
    assert conn.handshake.error and str(port) in conn.handshake.error
    [refused] = [e for e in v.events if isinstance(e, RefusedEvent)]
    obj = event_json(refused)
    assert obj is not None and obj["event"] == "refused"
    assert obj["response"]["status"] is None and obj["error"] == conn.handshake.error


async def test_reverse_mode_with_the_upstream_down_answers_502_and_records_it(
    short_tmp: Path,
) -> None:
    from websockets.exceptions import InvalidStatus

    port = _dead_port()
    async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
        async with viewer(rp.tap) as v:
            with pytest.raises(InvalidStatus) as info:
                await connect(f"ws://127.0.0.1:{rp.port}/down", open_timeout=5)
            resp = info.value.response
            assert resp.status_code == 502
            assert str(port) in resp.body.decode()  # a body that says what failed
            await v.wait_for(lambda v: any(isinstance(e, RefusedEvent) for e in v.events))
            _assert_refused_for_the_error(v, "/down", port)


async def test_a_connect_tunnel_to_a_target_that_is_down_is_recorded(short_tmp: Path) -> None:
    """How websockets and browsers use a proxy: CONNECT, then the upgrade in the tunnel."""
    from websockets.exceptions import InvalidStatus

    port = _dead_port()
    async with running_proxy("regular", short_tmp) as rp:
        async with viewer(rp.tap) as v:
            with pytest.raises(InvalidStatus) as info:
                await connect(
                    f"ws://127.0.0.1:{port}/tunnel",
                    proxy=f"http://127.0.0.1:{rp.port}",
                    open_timeout=5,
                )
            assert info.value.response.status_code == 502
            assert str(port) in info.value.response.body.decode()
            await v.wait_for(lambda v: any(isinstance(e, RefusedEvent) for e in v.events))
            _assert_refused_for_the_error(v, "/tunnel", port)
