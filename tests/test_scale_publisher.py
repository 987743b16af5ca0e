"""The publisher under stress: Redis restarted mid-run, and a flood against a small
MAXLEN. Real redis-server, real proxy processes, real websockets clients."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from devconsole.model import GapEvent
from devconsole.scale.source import RedisSource
from devconsole.session import Session
from tests.conftest import wait_until, ws_server
from tests.scale_helpers import proxy_process


async def test_redis_restart_relaying_goes_on_gap_reported_publishing_resumes(
    short_tmp: Path, redis_server
) -> None:
    rs = redis_server
    async with ws_server() as (_, up):
        with proxy_process(
            short_tmp / "run",
            "--mode", f"reverse:http://127.0.0.1:{up}",
            "--publish", rs.url,
            "--name", "p",
            "--set", "devconsole_publish_buffer=50",
        ) as px:  # fmt: skip
            src = RedisSource(rs.url)
            session = Session()
            events: list = []

            def on(evs: list) -> None:
                events.extend(evs)
                session.apply_all(evs)

            async with connect(f"ws://127.0.0.1:{px.port}/echo", compression=None) as ws:
                await ws.send("before")
                assert await ws.recv() == "before"
                task = asyncio.ensure_future(src.run(on))
                try:
                    await wait_until(
                        lambda: (
                            "p/1" in session.connections and session.connections["p/1"].msgs_in == 1
                        )
                    )
                    rs.kill()  # Redis is gone, with everything it held
                    for i in range(300):  # relaying never stops
                        await ws.send(f"during {i}")
                        assert await ws.recv() == f"during {i}"
                    await wait_until(
                        lambda: (
                            session.instances.get("p") is not None
                            and session.instances["p"].state == "gone"
                        ),
                        timeout=15,
                    )
                    rs.start()  # back, empty, on the same port
                    for i in range(5):
                        await ws.send(f"after {i}")
                        assert await ws.recv() == f"after {i}"
                    await wait_until(
                        lambda: (
                            session.connections["p/1"].msgs_out == 306
                            and any(getattr(e, "payload", b"") == b"after 4" for e in events)
                        ),
                        timeout=30,
                    )
                finally:
                    await src.close()
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
    gaps = [e for e in events if isinstance(e, GapEvent)]
    assert gaps, "the outage must be reported"
    assert all(g.instance == "p" for g in gaps)
    assert any("not published" in g.reason and g.missed >= 250 for g in gaps)
    assert session.instances["p"].state == "up"
    # counters are right again after the re-sync: every message counted once
    c = session.connections["p/1"]
    assert (c.msgs_out, c.msgs_in) == (306, 306)


async def test_stream_stays_bounded_under_a_flood(short_tmp: Path, redis_server) -> None:
    r = aioredis.from_url(redis_server.url)
    # trim granularity: with the default 100 entries per node, MAXLEN ~ trims in steps of 100
    await r.config_set("stream-node-max-entries", 10)
    try:
        async with ws_server() as (_, up):
            with proxy_process(
                short_tmp,
                "--mode", f"reverse:http://127.0.0.1:{up}",
                "--publish", redis_server.url,
                "--stream-maxlen", "20",
            ) as px:  # fmt: skip
                async with connect(f"ws://127.0.0.1:{px.port}/flood", compression=None) as ws:
                    for _ in range(500):  # the publisher's first entry
                        if await r.exists("devconsole"):
                            break
                        await asyncio.sleep(0.02)
                    added = 0
                    for _round in range(200):
                        for i in range(200):
                            await ws.send(f"flood {i}")
                        for _ in range(200):
                            await ws.recv()
                        info = await r.xinfo_stream("devconsole")
                        added = info["entries-added"]
                        assert info["length"] <= 20 + 10
                        if added >= 200:
                            break
                    assert added >= 200  # ten times what the stream may keep
                    assert await r.xlen("devconsole") <= 30
    finally:
        await r.aclose()
