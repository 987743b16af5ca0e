from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

import msgpack
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from devconsole.demo import (
    TICKET,
    DemoConfig,
    DemoStats,
    backoff_delay,
    run_demo,
    start_demo_server,
)

pytestmark = pytest.mark.timeout(60)


def test_backoff_delay_grows_caps_and_jitters() -> None:
    rng = random.Random(0)
    exact = [backoff_delay(i, 0.5, 2.0, 8.0, 0.0, rng) for i in range(8)]
    assert exact == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    for i in range(8):
        d = backoff_delay(i, 0.5, 2.0, 8.0, 0.2, rng)
        assert 0.8 * exact[i] <= d <= 1.2 * exact[i]
    assert backoff_delay(10_000, 0.5, 2.0, 8.0, 0.0, rng) == 8.0


async def test_server_alone_refuses_and_serves() -> None:
    stats = DemoStats()
    server, port = await start_demo_server("127.0.0.1", config=DemoConfig.fast(), stats=stats)
    try:
        assert stats.ready.is_set() and stats.port == port > 0
        base = f"ws://127.0.0.1:{port}"
        with pytest.raises(InvalidStatus) as info:
            async with connect(base + "/private", proxy=None):
                pass
        assert info.value.response.status_code == 401
        assert json.loads(info.value.response.body) == {"error": "unauthorized", "login": "/login"}
        with pytest.raises(InvalidStatus) as info:
            async with connect(base + "/events?ticket=wrong", proxy=None):
                pass
        assert info.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as info:
            async with connect(base + "/nowhere", proxy=None):
                pass
        assert info.value.response.status_code == 404
        async with connect(base + f"/events?ticket={TICKET}", proxy=None) as ws:
            assert json.loads(await ws.recv())["type"] == "event"
        async with connect(base + "/ticker", proxy=None) as ws:
            assert ws.response is not None
            assert "permessage-deflate" in (
                ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            )
            quote = msgpack.unpackb(await ws.recv())
            assert set(quote) == {"sym", "px", "ts", "raw"}
        async with connect(
            base + "/private", proxy=None, additional_headers={"Cookie": "session=x"}
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "event"
        assert stats.refused == Counter({"/private 401": 1, "/events 403": 1, "/nowhere 404": 1})
    finally:
        server.close()
        await server.wait_closed()


def _scenario_seen(stats: DemoStats, rate: int) -> bool:
    """Every behaviour of the demo happened at least once (and a second of flood)."""
    return (
        stats.accepted["/chat"] >= 3
        and stats.received["/chat"] >= 5
        and stats.sent["/chat"] >= 10
        and stats.accepted["/ticker"] >= 1
        and stats.sent["/ticker"] >= 20
        and stats.accepted["/events"] >= 1
        and stats.sent["/events"] >= 3
        and stats.refused["/private 401"] >= 2
        and stats.feed_restarts >= 1
        and stats.accepted["/feed"] >= 2
        and stats.reconnects["/feed"] >= 1
        and bool(stats.feed_delays)
        and stats.flood_received >= rate
    )


async def _run(proxy: str | None, rate: int, timeout: float = 30.0) -> tuple[DemoStats, float]:
    """Run the demo until every behaviour was seen (bounded by ``timeout``); returns the
    stats and how long it ran."""
    stats = DemoStats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(
        run_demo(proxy, rate=rate, stop=stop, config=DemoConfig.fast(), stats=stats, seed=3)
    )
    while not _scenario_seen(stats, rate) and loop.time() - started < timeout:
        assert not task.done(), task.exception()
        await asyncio.sleep(0.05)
    stop.set()
    elapsed = loop.time() - started
    await asyncio.wait_for(task, timeout=10)
    return stats, elapsed


def _check(stats: DemoStats, seconds: float, rate: int) -> None:
    s = stats.summary()
    assert _scenario_seen(stats, rate), s
    # the flood: about ``rate`` messages a second, all received
    expected = rate * seconds
    assert 0.6 * expected <= stats.flood_received <= 1.1 * expected, (s, seconds)
    assert stats.flood_received == stats.flood_sent, s


async def test_demo_direct() -> None:
    stats, seconds = await _run(None, 200)
    _check(stats, seconds, 200)
    assert stats.refused["/feed 503"] >= 1, stats.summary()
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not leftover


class _FlowCounter:
    """A mitmproxy addon that counts what went through the proxy."""

    def __init__(self) -> None:
        self.upgrades: Counter[str] = Counter()
        self.responses: Counter[str] = Counter()
        self.ws_messages: Counter[str] = Counter()

    def response(self, flow: Any) -> None:
        path = flow.request.path.split("?")[0]
        self.responses[f"{path} {flow.response.status_code}"] += 1

    def websocket_start(self, flow: Any) -> None:
        self.upgrades[flow.request.path.split("?")[0]] += 1

    def websocket_message(self, flow: Any) -> None:
        self.ws_messages[flow.request.path.split("?")[0]] += 1
        del flow.websocket.messages[:-1]  # keep memory bounded


@pytest.mark.slow
async def test_demo_through_mitmproxy() -> None:
    dump = pytest.importorskip("mitmproxy.tools.dump")
    from mitmproxy import options

    opts = options.Options(listen_host="127.0.0.1", listen_port=0)
    master = dump.DumpMaster(opts, with_termlog=False, with_dumper=False)
    counter = _FlowCounter()
    master.addons.add(counter)
    running = asyncio.create_task(master.run())
    try:
        proxyserver = master.addons.get("proxyserver")
        for _ in range(200):
            if proxyserver.listen_addrs():
                break
            await asyncio.sleep(0.025)
        addrs = proxyserver.listen_addrs()
        assert addrs, "mitmproxy did not start listening"
        port = addrs[0][1]

        stats, seconds = await _run(f"127.0.0.1:{port}", 200)
        _check(stats, seconds, 200)
        # The traffic really went through the proxy.
        assert counter.upgrades["/chat"] >= 3, counter.upgrades
        assert counter.upgrades["/feed"] >= 2, counter.upgrades
        assert counter.upgrades["/events"] >= 1, counter.upgrades
        assert counter.responses["/private 401"] >= 2, counter.responses
        assert counter.ws_messages["/flood"] >= stats.flood_received, counter.ws_messages
        assert counter.ws_messages["/ticker"] >= 20, counter.ws_messages
    finally:
        master.shutdown()
        await asyncio.wait_for(running, timeout=10)
