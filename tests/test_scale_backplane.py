"""The backplane made visible: a real Redis pub/sub backplane between app instances,
each behind its own proxy, recorded with --backplane and traced to the clients' frames.
Also against a backplane from the wild: python-socketio's AsyncRedisManager."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from devconsole.analysis.fanout import FanoutTracer
from devconsole.model import Publication
from devconsole.scale.source import RedisSource
from devconsole.session import Session
from tests.conftest import wait_until
from tests.scale_helpers import cli, proxy_process

CHANNEL = "chat:room1"
DELAYS = {"1": 0.05, "2": 0.10, "3": 0.15, "4": 0.20}  # per client, set by the app


@contextlib.asynccontextmanager
async def app_instance(url: str, skip: tuple[bytes, str] | None = None) -> AsyncIterator[int]:
    """One instance of a chat app: clients of /chat?c=N join its room; whatever is
    published on the backplane is sent to each of them after DELAYS[N] (and ``skip``,
    a (payload, client) pair, is the bug: that client never gets that message)."""
    room: dict[str, ServerConnection] = {}
    r = aioredis.from_url(url)
    ps = r.pubsub()
    await ps.subscribe(CHANNEL)
    sends: set[asyncio.Task[None]] = set()

    async def handler(ws: ServerConnection) -> None:
        cid = ws.request.path.rsplit("=", 1)[1] if ws.request else "?"
        room[cid] = ws
        try:
            await ws.wait_closed()
        finally:
            room.pop(cid, None)

    async def deliver(ws: ServerConnection, delay: float, data: bytes) -> None:
        await asyncio.sleep(delay)
        with contextlib.suppress(Exception):
            await ws.send(data.decode())

    async def listen() -> None:
        async for msg in ps.listen():
            if msg["type"] != "message":
                continue
            for cid, ws in list(room.items()):
                if skip is not None and (msg["data"], cid) == skip:
                    continue
                t = asyncio.ensure_future(deliver(ws, DELAYS[cid], msg["data"]))
                sends.add(t)
                t.add_done_callback(sends.discard)

    listener = asyncio.ensure_future(listen())
    try:
        async with serve(handler, "127.0.0.1", 0, compression=None) as srv:
            yield srv.sockets[0].getsockname()[1]
    finally:
        listener.cancel()
        with contextlib.suppress(BaseException):
            await listener
        await ps.aclose()
        await r.aclose()


async def test_a_publication_delivered_to_three_of_four_is_one_missed_with_delays(
    short_tmp: Path, redis_server
) -> None:
    url = redis_server.url
    got: dict[str, list[str]] = {c: [] for c in DELAYS}

    async def client(port: int, cid: str) -> None:
        async with connect(f"ws://127.0.0.1:{port}/chat?c={cid}", compression=None) as ws:
            async for m in ws:
                got[cid].append(str(m))

    async with (
        app_instance(url) as app1,
        app_instance(url, skip=(b'{"n": 2}', "4")) as app2,
    ):
        with (
            proxy_process(
                short_tmp / "a",
                "--mode", f"reverse:http://127.0.0.1:{app1}",
                "--publish", url, "--name", "app-a",
                "--backplane", url, "--channels", "chat:*",
            ) as pa,
            proxy_process(
                short_tmp / "b",
                "--mode", f"reverse:http://127.0.0.1:{app2}",
                "--publish", url, "--name", "app-b",
            ) as pb,
        ):  # fmt: skip
            ports = {"1": pa.port, "2": pa.port, "3": pb.port, "4": pb.port}
            tasks = [asyncio.ensure_future(client(p, c)) for c, p in ports.items()]
            viewer = RedisSource(url)
            session = Session()
            tracer = FanoutTracer()
            session.observers.append(tracer.on_event)
            vtask = asyncio.ensure_future(viewer.run(session.apply_all))
            r = aioredis.from_url(url)
            try:
                # everyone connected and the backplane subscribed, as the viewer sees it
                await wait_until(
                    lambda: sum(1 for c in session.connections.values() if c.state == "open") == 5,
                    timeout=20,
                )
                for n, want in ((1, 4), (2, 3), (3, 4)):
                    body = json.dumps({"n": n})
                    await r.publish(CHANNEL, body)
                    await wait_until(
                        lambda body=body, want=want: sum(body in v for v in got.values()) == want,
                        timeout=10,
                    )
                    if n == 2:  # the missing one must not simply be late
                        await asyncio.sleep(0.5)
                        assert body not in got["4"]
                await wait_until(lambda: len(tracer.publications) == 3 and all(
                    p.receivers == (3 if i == 1 else 4) for i, p in enumerate(tracer.publications)
                ), timeout=10)  # fmt: skip
                code, out, err = await cli("report", "--json", "--tap", url)
            finally:
                await viewer.close()
                vtask.cancel()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(vtask, *tasks, return_exceptions=True)
                await r.aclose()
    # the viewer's own trace
    cid_of = {c.id: c.url.rsplit("=", 1)[1] for c in session.connections.values() if "c=" in c.url}
    p2 = tracer.publications[1]
    assert p2.receivers == 3
    assert p2.instances == ["app-a", "app-b"]
    (missed,) = tracer.missed(p2, 0.0)  # it got n=3, never n=2
    assert missed.startswith("app-b/") and cid_of[missed] == "4"
    delays = {cid_of[d.conn]: d.delay for d in p2.deliveries.values()}
    assert set(delays) == {"1", "2", "3"}
    for cid, delay in delays.items():
        assert DELAYS[cid] - 0.01 <= delay < DELAYS[cid] + 1.0
    pubs = [e for e in session.buffer if isinstance(e, Publication)]
    assert [p.channel for p in pubs] == [CHANNEL] * 3
    # the report, as a user runs it
    assert code == 0, err
    report = json.loads(out)
    (ep,) = [e for e in report["endpoints"] if e["path"] == "/chat"]
    bp = ep["backplane"]
    assert (bp["publications"], bp["deliveries"], bp["missed"]) == (3, 11, 1)
    assert 0.1 - 0.01 <= bp["delay_p50"] < 0.1 + 1.0
    assert 0.2 - 0.01 <= bp["delay_p95"] < 0.2 + 1.0
    assert bp["instances"]["app-b"]["delay_p50"] > bp["instances"]["app-a"]["delay_p50"]
    item = ep["checklist"]["backplane"]
    assert item["ok"] is False and "1 missed" in item["detail"]
    assert not [e for e in report["endpoints"] if e["path"] == "chat:*"]


# ------------------------------------------------------------------ python-socketio


@contextlib.asynccontextmanager
async def socketio_instance(url: str) -> AsyncIterator[int]:
    socketio = pytest.importorskip("socketio")
    web = pytest.importorskip("aiohttp.web")
    mgr = socketio.AsyncRedisManager(url)
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=mgr)

    @sio.on("say")
    async def say(sid: str, data: dict) -> None:
        await sio.emit("chat", data)  # to every client of every instance, via Redis

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port
    finally:
        await runner.cleanup()


async def test_python_socketio_instances_joined_by_async_redis_manager(
    short_tmp: Path, redis_server
) -> None:
    socketio = pytest.importorskip("socketio")
    url = redis_server.url
    async with socketio_instance(url) as s1, socketio_instance(url) as s2:
        with (
            proxy_process(
                short_tmp / "a",
                "--mode", f"reverse:http://127.0.0.1:{s1}",
                "--publish", url, "--name", "sio-1",
                "--backplane", url, "--channels", "socketio", "--trace-key", "id",
            ) as pa,
            proxy_process(
                short_tmp / "b",
                "--mode", f"reverse:http://127.0.0.1:{s2}",
                "--publish", url, "--name", "sio-2",
            ) as pb,
        ):  # fmt: skip
            clients = []
            got: list[list[dict]] = []
            for port in (pa.port, pa.port, pb.port, pb.port):
                c = socketio.AsyncClient()
                inbox: list[dict] = []
                c.on("chat", inbox.append)
                await c.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
                clients.append(c)
                got.append(inbox)
            try:
                # the AsyncRedisManager listeners subscribe in the background
                for i in range(1, 50):
                    await clients[2].emit("say", {"id": 1000 + i, "text": "warm-up"})
                    await asyncio.sleep(0.1)
                    if all(any(m["id"] == 1000 + i for m in inbox) for inbox in got):
                        break
                for n in range(1, 4):
                    await clients[n % 4].emit("say", {"id": n, "text": f"hello {n}"})
                await wait_until(
                    lambda: all({m["id"] for m in inbox} >= {1, 2, 3} for inbox in got),
                    timeout=15,
                )
                tracer = FanoutTracer()
                session = Session()
                session.observers.append(tracer.on_event)
                from devconsole.tap import collect

                await collect(
                    url,
                    session=session,
                    until=lambda s: sum(1 for tr in tracer.publications if tr.receivers == 4) >= 3,
                    timeout=20,
                )
            finally:
                for c in clients:
                    await c.disconnect()
    full = [tr for tr in tracer.publications if tr.receivers == 4]
    assert len(full) >= 3
    for tr in full[-3:]:
        assert tr.channel == "socketio"
        assert tr.instances == ["sio-1", "sio-2"]
        assert tr.delay_max is not None and tr.delay_max < 5
