"""``devconsole demo --scale N``: N instances of the demo app joined by a Redis backplane,
each behind its own devconsole proxy publishing to Redis, and one TUI showing them all.

- A private ``redis-server`` on a free loopback port (without it: how to get it, exit 1).
- Instance ``app-K`` serves the demo app; its chat room is shared through Redis pub/sub,
  the classic backplane: a chat message is published on ``demo:chat`` and every
  instance sends it to its own clients. Instance 1 also runs the rest of the demo
  traffic (ticker, feed with backoff, refused upgrades...).
- Every instance after the first is a little slow (50-400 ms) and, now and then, skips
  one of its clients: the fan-out trace shows the delays and the missed deliveries.
- Proxy ``app-K`` listens on the ``--listen`` port + K-1, publishes to the stream, accepts
  commands from it (the Redis is private to the demo); proxy ``app-1`` also records the
  backplane (``--backplane ... --channels demo:* --trace-key id``).

The command itself (the Redis server, the child proxies, the TUI) is
``devconsole.commands.demo``; this module is the traffic, like ``devconsole.demo_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from devconsole.demo import (
    USERS,
    DemoConfig,
    DemoServer,
    DemoStats,
    _chat_client,
    _Clients,
    _events_client,
    _feed_client,
    _log_crash,
    _private_client,
    _ticker_client,
)

log = logging.getLogger("devconsole.scale.demo")

CHANNEL = "demo:chat"


class ScaledDemoServer(DemoServer):
    """The demo app, its chat room joined to the other instances through Redis."""

    def __init__(
        self,
        name: str,
        redis_url: str,
        config: DemoConfig,
        stats: DemoStats,
        *,
        slow: bool,
        seed: int | None = None,
    ) -> None:
        super().__init__(config, stats, seed)
        self.name = name
        self.redis_url = redis_url
        self.slow = slow
        self.published = 0
        self.redis: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(self.redis_url)
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(CHANNEL)
        self._spawn(self._listen(pubsub))

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _broadcast(
        self, msg: dict[str, Any], exclude: ServerConnection | None = None
    ) -> None:
        # Not to the local room: to every instance's room, through the backplane.
        self.published += 1
        msg = {**msg, "id": f"{self.name}-{self.published}", "via": self.name}
        with contextlib.suppress(Exception):
            await self.redis.publish(CHANNEL, json.dumps(msg))

    async def _listen(self, pubsub: Any) -> None:
        async for m in pubsub.listen():
            if m.get("type") != "message":
                continue
            data = m["data"].decode() if isinstance(m["data"], bytes) else str(m["data"])
            peers = list(self.room)
            if self.slow and peers and self.rng.random() < 0.07:
                peers.remove(self.rng.choice(peers))  # the bug: one client never gets it
            for peer in peers:
                delay = self.rng.uniform(0.05, 0.4) if self.slow else 0.0
                self._spawn(self._deliver(peer, data, delay))

    async def _deliver(self, peer: ServerConnection, data: str, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        with contextlib.suppress(ConnectionClosed):
            await self._send(peer, "/chat", data)


async def _serve(app: ScaledDemoServer, cfg: DemoConfig) -> tuple[Server, int]:
    await app.start()
    server = await serve(
        app.handler,
        "127.0.0.1",
        0,
        process_request=app.process_request,
        ping_interval=cfg.ping_interval,
        ping_timeout=max(cfg.ping_interval * 3, 5.0),
        logger=logging.getLogger("devconsole.demo.server"),
    )
    return server, int(server.sockets[0].getsockname()[1])


async def run_scaled_traffic(
    proxies: list[str],
    redis_url: str,
    *,
    stop: asyncio.Event,
    config: DemoConfig | None = None,
    chat_clients: int = 2,
    seed: int | None = None,
) -> list[DemoStats]:
    """The N app instances and their clients, each instance's clients through its own
    proxy (``proxies[K]``, an HTTP proxy ``host:port``), until ``stop`` is set."""
    cfg = config or DemoConfig()
    rng = random.Random(seed)
    halt = asyncio.Event()
    apps: list[ScaledDemoServer] = []
    servers: list[Server] = []
    stats: list[DemoStats] = []
    coros: list[Awaitable[None]] = []
    for k, proxy in enumerate(proxies):
        st = DemoStats()
        app = ScaledDemoServer(f"app-{k + 1}", redis_url, cfg, st, slow=k > 0, seed=seed)
        server, port = await _serve(app, cfg)
        st.port = port
        apps.append(app)
        servers.append(server)
        stats.append(st)
        clients = _Clients(f"ws://127.0.0.1:{port}", proxy, cfg, st, halt, rng)
        users = USERS[k % len(USERS) :] + USERS[: k % len(USERS)]
        coros += [_chat_client(clients, users[i % len(users)]) for i in range(chat_clients)]
        if k == 0:  # the rest of the demo's variety on the first instance
            coros += [
                _ticker_client(clients),
                _feed_client(clients),
                _private_client(clients),
                _events_client(clients),
            ]
    tasks = [asyncio.ensure_future(c) for c in coros]
    for t in tasks:
        t.add_done_callback(_log_crash)
    try:
        await stop.wait()
    finally:
        halt.set()
        await asyncio.wait(tasks, timeout=2.0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for app in apps:
            await app.stop()
        for server in servers:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)
    return stats


def start_scaled_demo_thread(proxies: list[str], redis_url: str) -> Callable[[], None]:
    """Run the N instances and their clients in a thread with its own loop (the TUI owns
    the main one); returns the function that stops them."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def runner() -> None:
        asyncio.set_event_loop(loop)
        with contextlib.suppress(Exception):
            loop.run_until_complete(run_scaled_traffic(proxies, redis_url, stop=stop))

    t = threading.Thread(target=runner, name="devconsole-scale-demo", daemon=True)
    t.start()

    def stopper() -> None:
        loop.call_soon_threadsafe(stop.set)
        t.join(5)

    return stopper
