"""Faults on live proxied connections (close with a code, abort, half-open, release,
inject), sent over the tap like the CLI and TUI do, observed by real websockets peers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from devconsole.model import (
    AbortCommand,
    CloseCommand,
    ConnState,
    ControlFrame,
    HalfOpenCommand,
    InjectCommand,
    Message,
    Opcode,
    ReleaseCommand,
)
from tests.conftest import running_proxy, viewer, wait_until, ws_server


class Recorder:
    """A server that records what it receives and how its connection ended."""

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.received: list[str | bytes] = []
        self.closed: asyncio.Event = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.conn: ServerConnection | None = None

    async def __call__(self, ws: ServerConnection) -> None:
        self.conn = ws
        try:
            async for msg in ws:
                self.received.append(msg)
                if self.echo:
                    await ws.send(msg)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason
            self.closed.set()


async def only_conn(rp) -> str:
    await wait_until(lambda: len(rp.session.connections) == 1)
    return next(iter(rp.session.connections))


async def recv_closed(ws: ClientConnection, timeout: float = 5) -> ConnectionClosed:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return info.value


@pytest.mark.parametrize("to", ["both", "client", "server"])
async def test_close_with_code_reaches_the_peers_exactly(short_tmp: Path, to: str) -> None:
    rec = Recorder()
    async with ws_server(rec) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                ws = await connect(f"ws://127.0.0.1:{rp.port}/k", close_timeout=3)
                await ws.send("warm up")
                assert await ws.recv() == "warm up"
                conn = await only_conn(rp)
                res = await v.client.command(CloseCommand(conn, 4001, "maintenance", to))
                assert res.ok, res.error
                closed = await recv_closed(ws)
                await asyncio.wait_for(rec.closed.wait(), 5)
                if to in ("both", "client"):
                    assert closed.rcvd is not None
                    assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "maintenance")
                    assert ws.close_code == 4001 and ws.close_reason == "maintenance"
                else:
                    assert closed.rcvd is None  # the client got no close frame: 1006
                    assert ws.close_code == 1006
                if to in ("both", "server"):
                    assert (rec.close_code, rec.close_reason) == (4001, "maintenance")
                else:
                    assert rec.close_code == 1006
                await v.wait_for(
                    lambda v: (
                        conn in v.session.connections
                        and v.session.connections[conn].ts_end is not None
                    )
                )
                c = v.session.connections[conn]
                assert c.state == ConnState.KILLED and c.closed_by == "proxy"
                injected = [i for i in v.session.items(conn) if i.injected]
                assert all(i.opcode == Opcode.CLOSE and i.code == 4001 for i in injected)
                assert len(injected) == (2 if to == "both" else 1)


async def test_close_with_invalid_code_is_refused(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v, connect(f"ws://127.0.0.1:{rp.port}/k") as ws:
                conn = await only_conn(rp)
                res = await v.client.command(CloseCommand(conn, 1006, ""))
                assert not res.ok and "1006" in res.error
                await ws.send("still alive")
                assert await ws.recv() == "still alive"


@pytest.mark.parametrize("rst", [False, True])
async def test_abort_on_an_idle_connection_is_1006_without_a_close_frame(
    short_tmp: Path, rst: bool
) -> None:
    rec = Recorder()
    async with ws_server(rec) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                ws = await connect(f"ws://127.0.0.1:{rp.port}/idle")
                conn = await only_conn(rp)
                await asyncio.sleep(0.2)  # idle: nothing in flight
                res = await v.client.command(AbortCommand(conn, rst=rst))
                assert res.ok, res.error
                closed = await recv_closed(ws, timeout=5)  # how fast: bench/timings.py
                assert closed.rcvd is None and ws.close_code == 1006
                if rst:  # a TCP reset, not a FIN
                    assert isinstance(closed.__cause__, ConnectionResetError)
                else:
                    assert not isinstance(closed.__cause__, ConnectionResetError)
                await asyncio.wait_for(rec.closed.wait(), 2)
                assert rec.close_code == 1006
                await v.wait_for(
                    lambda v: (
                        conn in v.session.connections
                        and v.session.connections[conn].ts_end is not None
                    )
                )
                assert v.session.connections[conn].state == ConnState.KILLED


async def test_half_open_forwards_nothing_and_keeps_sockets_open(short_tmp: Path) -> None:
    rec = Recorder()
    async with ws_server(rec) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                # no heartbeat: nothing may tell the client anything
                ws = await connect(f"ws://127.0.0.1:{rp.port}/tunnel", ping_interval=None)
                await ws.send("before")
                assert await ws.recv() == "before"
                conn = await only_conn(rp)
                res = await v.client.command(HalfOpenCommand(conn))
                assert res.ok, res.error
                await ws.send("into the tunnel")
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.recv(), 1.0)
                assert rec.received == ["before"]  # the server got nothing either
                assert ws.state.name == "OPEN" and not rec.closed.is_set()
                await v.wait_for(
                    lambda v: any(
                        isinstance(i, Message) and i.dropped for i in v.session.items(conn)
                    )
                )
                dropped = [i for i in v.session.items(conn) if i.dropped]
                assert dropped[0].payload == b"into the tunnel"
                assert v.session.connections[conn].state == ConnState.HALF_OPEN

                res = await v.client.command(ReleaseCommand(conn))
                assert res.ok, res.error
                await ws.send("out again")
                assert await asyncio.wait_for(ws.recv(), 5) == "out again"
                assert rec.received == ["before", "out again"]
                await ws.close()


async def test_half_open_is_detected_by_a_client_heartbeat(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                ws = await connect(
                    f"ws://127.0.0.1:{rp.port}/hb",
                    ping_interval=0.3,
                    ping_timeout=0.5,
                    close_timeout=0.5,
                )
                conn = await only_conn(rp)
                assert (await v.client.command(HalfOpenCommand(conn))).ok
                closed = await recv_closed(ws, timeout=5)
                # websockets reports a keepalive timeout as 1011 without a close frame rcvd
                assert closed.rcvd is None
                assert ws.close_code in (1006, 1011)
                await v.wait_for(
                    lambda v: any(
                        isinstance(i, ControlFrame) and i.opcode == Opcode.PING and i.dropped
                        for i in v.session.items(conn)
                    )
                )


async def test_inject_text_to_client_and_binary_to_server_mid_stream(short_tmp: Path) -> None:
    rec = Recorder(echo=True)
    async with ws_server(rec) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v, connect(f"ws://127.0.0.1:{rp.port}/inj") as ws:
                conn = await only_conn(rp)
                await ws.send("one")
                assert await ws.recv() == "one"
                r1 = await v.client.command(
                    InjectCommand(conn, "client", Opcode.TEXT, b'{"injected":true}')
                )
                assert r1.ok, r1.error
                assert await asyncio.wait_for(ws.recv(), 5) == '{"injected":true}'
                r2 = await v.client.command(
                    InjectCommand(conn, "server", Opcode.BINARY, b"\x01\x02\x03")
                )
                assert r2.ok, r2.error
                # the echo server echoes the injected binary back to the client
                assert await asyncio.wait_for(ws.recv(), 5) == b"\x01\x02\x03"
                assert rec.received == ["one", b"\x01\x02\x03"]
                await ws.send("two")
                assert await ws.recv() == "two"
                await v.wait_for(lambda v: sum(1 for i in v.session.items(conn) if i.injected) == 2)
                inj = [i for i in v.session.items(conn) if i.injected]
                assert inj[0].side == "server" and inj[0].payload == b'{"injected":true}'
                assert inj[1].side == "client" and inj[1].payload == b"\x01\x02\x03"


async def test_inject_while_a_large_fragmented_message_is_relayed(short_tmp: Path) -> None:
    """The injected message must wait for the fragmented message's final frame: both
    arrive intact at the client."""
    fragments = [bytes([i]) * 65536 for i in range(64)]  # 4 MiB in 64 frames
    started = asyncio.Event()

    async def slow_fragmenter(ws: ServerConnection) -> None:
        async def gen():
            for i, f in enumerate(fragments):
                yield f
                if i == 2:
                    started.set()
                await asyncio.sleep(0.01)

        await ws.recv()
        await ws.send(gen())
        await ws.wait_closed()

    async with ws_server(slow_fragmenter, compression=None) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with (
                viewer(rp.tap) as v,
                connect(f"ws://127.0.0.1:{rp.port}/frag", max_size=None, compression=None) as ws,
            ):
                conn = await only_conn(rp)
                await ws.send("go")
                await asyncio.wait_for(started.wait(), 5)
                res = await v.client.command(
                    InjectCommand(conn, "client", Opcode.TEXT, b"squeezed in")
                )
                assert res.ok, res.error
                big = await asyncio.wait_for(ws.recv(), 10)
                assert big == b"".join(fragments)
                assert await asyncio.wait_for(ws.recv(), 5) == "squeezed in"


async def test_injected_ping_gets_a_pong_that_is_not_forwarded(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v, connect(f"ws://127.0.0.1:{rp.port}/p") as ws:
                conn = await only_conn(rp)
                res = await v.client.command(InjectCommand(conn, "server", Opcode.PING, b"dc1"))
                assert res.ok, res.error
                await v.wait_for(
                    lambda v: any(
                        isinstance(i, ControlFrame) and i.opcode == Opcode.PONG
                        for i in v.session.items(conn)
                    )
                )
                [pong] = [
                    i
                    for i in v.session.items(conn)
                    if isinstance(i, ControlFrame) and i.opcode == Opcode.PONG
                ]
                assert pong.side == "server" and pong.payload == b"dc1" and pong.dropped
                await ws.send("still fine")  # the client saw no unsolicited pong problem
                assert await ws.recv() == "still fine"


async def test_commands_on_unknown_or_closed_connections_fail_clearly(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                res = await v.client.command(AbortCommand("999"))
                assert not res.ok and "unknown connection" in res.error
                async with connect(f"ws://127.0.0.1:{rp.port}/c") as ws:
                    await ws.send("x")
                    await ws.recv()
                conn = await only_conn(rp)
                await wait_until(lambda: rp.session.connections[conn].ts_end is not None)
                res = await v.client.command(CloseCommand(conn, 1000))
                assert not res.ok and "closed" in res.error
