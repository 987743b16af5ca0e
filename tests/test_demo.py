from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgpack
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from devconsole.analysis.handshake_diff import diff_connections, reference_for
from devconsole.analysis.readiness import build_report
from devconsole.demo import (
    TICKET,
    DemoConfig,
    DemoStats,
    backoff_delay,
    run_demo,
    start_demo_server,
)
from devconsole.model import Connection
from tests.conftest import running_proxy, viewer

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
        with pytest.raises(InvalidStatus) as info:
            async with connect(base + "/feed", proxy=None):
                pass
        assert info.value.response.status_code == 403
        assert json.loads(info.value.response.body) == {"error": "no session", "login": "/login"}
        async with connect(
            base + "/feed", proxy=None, additional_headers={"Cookie": "session=x"}
        ) as ws:
            assert ws.response is not None and ws.response.status_code == 101
        assert stats.refused == Counter(
            {"/private 401": 1, "/events 403": 1, "/nowhere 404": 1, "/feed 403": 1}
        )
    finally:
        server.close()
        await server.wait_closed()


def _scenario_seen(stats: DemoStats, rate: int) -> bool:
    """Every behaviour of the demo happened at least once (and a second of flood),
    the application protocols' answers included."""
    return (
        stats.accepted["/chat"] >= 3
        and stats.received["/chat"] >= 5
        and stats.sent["/chat"] >= 10
        and stats.accepted["/ticker"] >= 1
        and stats.sent["/ticker"] >= 20
        and stats.accepted["/events"] >= 1
        and stats.sent["/events"] >= 3
        and stats.refused["/private 401"] >= 2
        and stats.refused["/feed 403"] >= 2
        and stats.feed_restarts >= 1
        and stats.accepted["/feed"] >= 2
        and stats.reconnects["/feed"] >= 1
        and bool(stats.feed_delays)
        and stats.accepted["/socket.io/"] >= 2
        and stats.sio_acks >= 3
        and stats.accepted["/rpc"] >= 1
        and stats.rpc_results >= 3
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
    # the application protocols: Socket.IO acks and JSON-RPC answers came back
    assert stats.accepted["/socket.io/"] >= 2 and stats.sio_acks >= 3, s
    assert stats.accepted["/rpc"] >= 1 and stats.rpc_results >= 3, s


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
        assert counter.responses["/feed 403"] >= 2, counter.responses
        assert counter.ws_messages["/flood"] >= stats.flood_received, counter.ws_messages
        assert counter.ws_messages["/ticker"] >= 20, counter.ws_messages
    finally:
        master.shutdown()
        await asyncio.wait_for(running, timeout=10)


async def test_a_real_socketio_client_talks_to_the_demo_server() -> None:
    """The demo's Socket.IO server is built with devconsole's codec: python-socketio's
    client connects to it, emits with an ack (binary attachment included) and gets
    the broadcast."""
    import socketio

    stats = DemoStats()
    server, port = await start_demo_server("127.0.0.1", config=DemoConfig.fast(), stats=stats)
    client = socketio.AsyncClient()
    news: list[Any] = []
    client.on("news", lambda data: news.append(data))
    try:
        await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=10)
        reply = await client.call("chat", {"user": "zoe", "text": "hi"}, timeout=10)
        assert reply["ok"] is True
        assert await client.call("upload", ("a.png", b"\x89PNG" + bytes(100)), timeout=10) == {
            "ok": True, "bytes": 104
        }  # fmt: skip
        for _ in range(100):
            if news:
                break
            await asyncio.sleep(0.02)
        assert news == [{"user": "zoe", "text": "hi"}]
        await client.disconnect()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.slow
async def test_demo_report_shows_latency_per_method(short_tmp: Any) -> None:
    """Through devconsole: the report of the demo gives request/reply latency per
    JSON-RPC method and Socket.IO event, and lists the never-answered
    debug_traceTransaction calls."""
    from devconsole.analysis.readiness import render_text
    from tests.conftest import wait_until
    from tests.protocol_servers import decoding_viewer

    def seen(v: Any) -> bool:
        """Every answered method, a never-answered debug_traceTransaction and the
        Socket.IO events the assertions below look for."""
        rpc = v.analysis.pairs.endpoint_report("/rpc")
        sio = v.analysis.pairs.endpoint_report("/socket.io/")
        waiting = rpc["pending_requests"] + rpc["unanswered_requests"]
        return (
            {"eth_subscribe", "eth_blockNumber", "eth_getBalance", "eth_call"}
            <= {m["method"] for m in rpc["methods"]}
            and any("debug_traceTransaction" in u["summary"] for u in waiting)
            and {"connect", "chat", "upload"} <= {m["method"] for m in sio["methods"]}
        )

    async with running_proxy("regular", short_tmp) as rp:
        async with decoding_viewer(rp.tap) as v:
            stop = asyncio.Event()
            task = asyncio.create_task(
                run_demo(
                    f"127.0.0.1:{rp.port}",
                    stop=stop,
                    config=DemoConfig.fast(),
                    stats=DemoStats(),
                    seed=3,
                )
            )
            try:
                await wait_until(lambda: seen(v), timeout=30)
            finally:
                stop.set()
                await asyncio.wait_for(task, timeout=10)

            def ended() -> bool:
                return all(c.ts_end is not None for c in v.session.connections.values())

            deadline = asyncio.get_running_loop().time() + 10
            while not ended() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            report = build_report(v.session, None, 1e12, analysis=v.analysis)
    eps = {e["path"]: e for e in report["endpoints"]}
    rpc = eps["/rpc"]
    assert rpc["protocols"] == ["jsonrpc"]
    methods = {m["method"]: m for m in rpc["latency"]["methods"]}
    assert {"eth_subscribe", "eth_blockNumber", "eth_getBalance", "eth_call"} <= set(methods)
    for m in methods.values():
        assert m["count"] >= 1 and 0 <= m["p50"] <= m["p95"] <= m["max"]
    assert rpc["checklist"]["replies"]["ok"] is False
    assert "debug_traceTransaction" in rpc["checklist"]["replies"]["detail"]
    sio = eps["/socket.io/"]
    assert sio["protocols"] == ["socket.io"]
    sio_methods = {m["method"] for m in sio["latency"]["methods"]}
    assert {"connect", "chat", "upload"} <= sio_methods
    assert any(p["protocol"] == "socket.io" and p["negotiated_interval"] == 0.5
               for p in sio["heartbeat"]["protocol"])  # fmt: skip
    assert "eth_blockNumber" in render_text(report)


async def test_demo_through_devconsole_shows_the_refused_retries_and_their_missing_cookie(
    short_tmp: Path,
) -> None:
    """Issue 15 and 16's demo: on /feed, a client refused with 403 retries at a fixed
    interval beside the client with exponential backoff; the diff of a refusal names the
    missing cookie, and only that; the report's auth item names the refused connections."""
    cfg = DemoConfig.fast()
    async with running_proxy("regular", short_tmp) as px, viewer(px.tap) as v:

        def feed(status: int) -> list[Connection]:
            return sorted(
                (
                    c
                    for c in v.session.connections.values()
                    if c.path == "/feed" and c.handshake.status == status
                ),
                key=lambda c: c.ts_start,
            )

        def refused_retries() -> list[Connection]:
            return [c for c in feed(403) if c.handshake.request_header("cookie") is None]

        stop = asyncio.Event()
        task = asyncio.create_task(run_demo(f"127.0.0.1:{px.port}", stop=stop, config=cfg, seed=5))
        try:
            await v.wait_for(lambda _: len(refused_retries()) >= 4 and len(feed(101)) >= 1, 30)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=15)
        conns = list(v.session.connections.values())
        refused = refused_retries()
        last = refused[-1]
        ref = reference_for(last, conns)
        assert ref is not None and ref.handshake.status == 101 and ref.path == "/feed"
        diff = diff_connections(last, ref).to_dict()
        assert diff["missing"]["cookies"] == ["session"]
        assert all(not names for kind, names in diff["missing"].items() if kind != "cookies")
        assert all(not names for names in diff["extra"].values())
        assert all(not pairs for pairs in diff["different"].values())
        # a fixed interval, about feed_retry_every apart (plus the refusal's round trip)
        gaps = [b.ts_start - a.ts_start for a, b in pairwise(refused)]
        assert all(cfg.feed_retry_every * 0.9 <= g <= cfg.feed_retry_every + 1.0 for g in gaps)
        # the backoff client on the same endpoint reconnected too
        assert len(feed(101)) >= 1
        report = build_report(v.session, None, now=time.time())
        lacking = [
            g
            for ep in report["endpoints"]
            if ep["path"] == "/feed"
            for g in ep["checklist"]["auth"]["lacking"]
        ]
        named = {cid for g in lacking for cid in g["connections"]}
        assert {c.id for c in refused} <= named
        assert all(g["missing"] == ["cookie session"] for g in lacking)
