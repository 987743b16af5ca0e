"""Network conditions end to end: real websockets peers through the real proxy, each
effect measured at the receiving peer (docs/shaping.md). Tolerances are the issue's
(latency within 20 ms of 100 ms, rate within 15 %); the waits are on conditions.
``bench/shaping.py`` measures the accuracy of each condition under load."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from devconsole.model import Shape, ShapeCommand, ShapeEvent
from tests.conftest import running_proxy, viewer, wait_until, ws_server


class RawClient:
    """A WebSocket client on a plain socket (websockets' sans-I/O protocol): records every
    read (its time and size) and every frame, continuation frames included."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.proto = ClientProtocol(parse_uri(url), max_size=None)
        self.reads: list[tuple[float, int]] = []
        self.frames: list[tuple[float, Frame]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RawClient:
        u = parse_uri(self.url)
        self.reader, self.writer = await asyncio.open_connection(u.host, u.port)
        self.proto.send_request(self.proto.connect())
        self.writer.write(b"".join(self.proto.data_to_send()))
        self.opened = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())
        await asyncio.wait_for(self.opened.wait(), 10)
        return self

    async def _run(self) -> None:
        while True:
            data = await self.reader.read(65536)
            now = time.monotonic()
            if not data:
                return
            self.reads.append((now, len(data)))
            self.proto.receive_data(data)
            for ev in self.proto.events_received():
                if isinstance(ev, Response):
                    self.opened.set()
                elif isinstance(ev, Frame):
                    self.frames.append((now, ev))
            out = self.proto.data_to_send()
            if out:
                self.writer.write(b"".join(out))

    def send(self, text: str) -> None:
        self.proto.send_text(text.encode())
        self.writer.write(b"".join(self.proto.data_to_send()))

    async def __aexit__(self, *exc: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self.writer.close()


async def shape(v: Any, conn: str, to: str = "both", **conditions: Any) -> None:
    res = await v.client.command(ShapeCommand(conn, to, Shape(**conditions)))  # type: ignore[arg-type]
    assert res.ok, res.error
    await v.wait_for(lambda v: any(isinstance(e, ShapeEvent) and e.conn == conn for e in v.events))


async def clear(v: Any, conn: str, to: str = "both") -> None:
    res = await v.client.command(ShapeCommand(conn, to, Shape(), clear=True))  # type: ignore[arg-type]
    assert res.ok, res.error


async def only_conn(v: Any) -> str:
    await v.wait_for(lambda v: any(c.live for c in v.session.connections.values()))
    return next(c.id for c in v.session.connections.values() if c.live)


class Pusher:
    """A server that sends what the client asks for: ``N SIZE`` sends N messages of SIZE
    bytes, each starting with the time it was sent; anything else is echoed."""

    async def __call__(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for msg in ws:
                assert isinstance(msg, str)
                parts = msg.split()
                if len(parts) == 3 and parts[0] == "push":
                    n, size = int(parts[1]), int(parts[2])
                    for _ in range(n):
                        head = f"{time.monotonic():.6f} "
                        await ws.send(head + "x" * (size - len(head)))
                elif len(parts) == 2 and parts[0] == "tick":
                    for _ in range(int(parts[1])):
                        await ws.send(f"{time.monotonic():.6f}")
                        await asyncio.sleep(0.03)
                else:
                    await ws.send(msg)


async def one_way_delays(ws: Any, n: int) -> list[float]:
    """The server sends ``n`` timestamped messages, 30 ms apart: their one-way delays."""
    await ws.send(f"tick {n}")
    out = []
    for _ in range(n):
        msg = await asyncio.wait_for(ws.recv(), 10)
        out.append(time.monotonic() - float(msg))
    return out


# --------------------------------------------------------------------------- latency


async def test_latency_is_within_20ms_of_100ms_at_the_client(short_tmp: Path) -> None:
    async with ws_server(Pusher()) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with connect(f"ws://127.0.0.1:{rp.port}/lat", ping_interval=None) as ws:
                    conn = await only_conn(v)
                    base = statistics.median(await one_way_delays(ws, 10))
                    await shape(v, conn, "client", latency=0.1)
                    shaped = statistics.median(await one_way_delays(ws, 15))
                    assert abs(shaped - base - 0.1) <= 0.02, (base, shaped)
                    # the other direction stays as fast as before
                    t0 = time.monotonic()
                    await ws.send("echo")
                    await asyncio.wait_for(ws.recv(), 5)
                    assert time.monotonic() - t0 >= 0.09  # only the answer is delayed
                await v.wait_for(lambda v: bool(v.session.connections[conn].shape))
                assert v.session.connections[conn].shape == {"client": Shape(latency=0.1)}


async def test_jitter_varies_within_its_range_and_keeps_order(short_tmp: Path) -> None:
    async with ws_server(Pusher()) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with connect(f"ws://127.0.0.1:{rp.port}/j", ping_interval=None) as ws:
                    conn = await only_conn(v)
                    await shape(v, conn, "client", latency=0.1, jitter=0.04)
                    delays = await one_way_delays(ws, 20)  # each must arrive, in order
                    assert min(delays) >= 0.06 - 0.005  # never early
                    assert max(delays) - min(delays) >= 0.01  # it varies
                    assert abs(statistics.median(delays) - 0.1) <= 0.03


# --------------------------------------------------------------------------- rate


async def test_rate_is_within_15_percent_at_the_client(short_tmp: Path) -> None:
    rate = 125_000  # 1mbit
    async with ws_server(Pusher(), compression=None) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with connect(
                    f"ws://127.0.0.1:{rp.port}/rate", ping_interval=None, compression=None
                ) as ws:
                    conn = await only_conn(v)
                    await shape(v, conn, "client", rate=rate)
                    n, size = 30, 10_000
                    await ws.send(f"push {n} {size}")
                    arrivals = []
                    for _ in range(n):
                        await asyncio.wait_for(ws.recv(), 30)
                        arrivals.append(time.monotonic())
                    measured = (n - 1) * (size + 4) / (arrivals[-1] - arrivals[0])
                    assert abs(measured - rate) / rate <= 0.15, measured


# --------------------------------------------------------------------------- slicing


async def test_slicing_cuts_what_the_client_reads(short_tmp: Path) -> None:
    async with ws_server(Pusher(), compression=None) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with RawClient(f"ws://127.0.0.1:{rp.port}/slice") as c:
                    conn = await only_conn(v)
                    await shape(v, conn, "client", slice=100, slice_delay=0.005)
                    start = len(c.reads)
                    c.send("push 1 2000")
                    await wait_until(lambda: any(f.opcode == Opcode.TEXT for _, f in c.frames))
                    sizes = [n for _, n in c.reads[start:]]
                    assert sum(sizes) == 2004
                    assert len(sizes) >= 10  # 21 writes of at most 100 bytes
                    assert statistics.median(sizes) <= 100
                    [(_, frame)] = [(t, f) for t, f in c.frames if f.opcode == Opcode.TEXT]
                    assert len(frame.data) == 2000  # the message itself is intact


# --------------------------------------------------------------------------- fragments


async def test_messages_arrive_in_continuation_frames_of_the_set_size(short_tmp: Path) -> None:
    async with ws_server(Pusher()) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with RawClient(f"ws://127.0.0.1:{rp.port}/frag") as c:
                    conn = await only_conn(v)
                    await shape(v, conn, "client", fragment=100)
                    c.send("push 1 1050")
                    await wait_until(lambda: any(f.fin for _, f in c.frames))
                    frames = [f for _, f in c.frames]
                    assert [f.opcode for f in frames] == [Opcode.TEXT] + [Opcode.CONT] * 10
                    assert [len(f.data) for f in frames] == [100] * 10 + [50]
                    assert [f.fin for f in frames] == [False] * 10 + [True]


async def test_fragmenting_a_compressed_stream_keeps_the_client_decoding(short_tmp: Path) -> None:
    async with ws_server(Pusher()) as (_, port):  # permessage-deflate with context takeover
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with connect(f"ws://127.0.0.1:{rp.port}/frag", ping_interval=None) as ws:
                    conn = await only_conn(v)
                    await shape(v, conn, "both", fragment=7)
                    for i in range(20):
                        text = f"message {i} " + "abc" * (i * 10)
                        await ws.send(text)
                        assert await asyncio.wait_for(ws.recv(), 5) == text


# --------------------------------------------------------------------------- stall


async def test_stall_is_backpressure_then_everything_arrives(short_tmp: Path) -> None:
    sent = 0
    blocked = asyncio.Event()

    async def flood(ws: ServerConnection) -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionClosed):
            await ws.recv()
            for i in range(2000):
                send = asyncio.ensure_future(ws.send(f"{i:06d}" + "y" * 10_000))
                done, _ = await asyncio.wait({send}, timeout=0.5)
                if not done:
                    blocked.set()  # the send waits: backpressure reached the server
                    await send
                sent += 1
            await ws.wait_closed()

    async with ws_server(flood, compression=None) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with connect(
                    f"ws://127.0.0.1:{rp.port}/stall",
                    ping_interval=None,
                    compression=None,
                    max_queue=4,
                ) as ws:
                    conn = await only_conn(v)
                    await shape(v, conn, "client", stall=True)
                    await ws.send("go")
                    await asyncio.wait_for(blocked.wait(), 20)
                    stalled_at = sent
                    assert stalled_at < 2000
                    await asyncio.sleep(0.3)
                    assert sent - stalled_at <= 1  # it stays stopped
                    # the proxy holds a bounded amount, not the flood
                    assert rp.capture._by_conn[conn].relay.down.qbytes == 0
                    await clear(v, conn, "client")
                    got = [await asyncio.wait_for(ws.recv(), 10) for _ in range(2000)]
                    assert [int(g[:6]) for g in got] == list(range(2000))


# --------------------------------------------------------------------------- pongs


async def test_suppressed_pongs_fire_the_clients_heartbeat_timeout(short_tmp: Path) -> None:
    async with ws_server(Pusher()) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with connect(
                    f"ws://127.0.0.1:{rp.port}/hb", ping_interval=0.2, ping_timeout=0.5
                ) as ws:
                    conn = await only_conn(v)
                    await asyncio.sleep(0.6)  # answered pings: nothing happens
                    await ws.send("still here")
                    assert await asyncio.wait_for(ws.recv(), 5) == "still here"
                    await shape(v, conn, "client", pongs="drop")
                    t0 = time.monotonic()
                    with pytest.raises(ConnectionClosed) as exc:
                        while True:
                            await asyncio.wait_for(ws.recv(), 10)
                    fired = time.monotonic() - t0
                    assert exc.value.sent is not None and exc.value.sent.code == 1011
                    assert "keepalive ping timeout" in exc.value.sent.reason
                    assert fired < 0.2 + 0.5 + 0.5
                await v.wait_for(
                    lambda v: any(
                        getattr(e, "action", "").startswith("pong dropped") for e in v.events
                    )
                )


async def test_delayed_pongs_arrive_late(short_tmp: Path) -> None:
    async with ws_server(Pusher()) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with connect(f"ws://127.0.0.1:{rp.port}/hb", ping_interval=None) as ws:
                    conn = await only_conn(v)
                    await shape(v, conn, "client", pongs="delay", pong_delay=0.3)
                    rtt = await asyncio.wait_for(await ws.ping(), 5)
                    assert 0.3 <= rtt <= 0.3 + 0.1
                    t0 = time.monotonic()
                    await ws.send("data is not held up")
                    await asyncio.wait_for(ws.recv(), 5)
                    assert time.monotonic() - t0 < 0.2


async def test_a_server_that_sends_then_closes_under_latency(short_tmp: Path) -> None:
    """The server's FIN waits for the bytes still delayed toward the client (mitmproxy
    would pass it on at once and cut them off)."""

    async def last_words(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send("last words")
        ws.transport.close()  # FIN right after them, no closing handshake

    async with ws_server(last_words) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with connect(f"ws://127.0.0.1:{rp.port}/bye", ping_interval=None) as ws:
                    conn = await only_conn(v)
                    await shape(v, conn, "client", latency=0.3)
                    await ws.send("go")
                    assert await asyncio.wait_for(ws.recv(), 5) == "last words"
                    with pytest.raises(ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), 5)
