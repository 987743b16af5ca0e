"""The demo's ``/feed`` application on its own, for ``devconsole chaos`` (docs/chaos.md).

    python -m devconsole.demo_feed serve [--port 9000]         the demo server
    python -m devconsole.demo_feed client ws://127.0.0.1:PORT   the backoff client

I/O module (websockets; no mitmproxy). The server is the demo's (``devconsole.demo``):
``/feed`` sends items and answers the client's ``{"type":"ping"}`` heartbeat; unlike in
``devconsole demo`` it does not restart itself, so only the scenario's faults break the
connection. The client is the demo's ``/feed`` client: it reconnects with exponential
backoff and jitter (0.5 s, x2, cap 8 s, +-20 %; ``--fast``: 0.1 s, cap 1 s) and sends
protocol pings every ``--ping-interval`` seconds, giving up on the connection when a pong
takes longer than ``--ping-timeout`` (its heartbeat: how it notices a half-open link).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
from typing import Any

from devconsole.demo import DemoConfig, DemoStats, _Clients, _feed_client, start_demo_server


class _Direct(_Clients):
    """The demo's clients, straight to ``base`` (a reverse proxy), with a heartbeat."""

    ping_interval = 1.0
    ping_timeout = 2.0

    def connect(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("ping_interval", self.ping_interval)
        kwargs.setdefault("ping_timeout", self.ping_timeout)
        return super().connect(path, **kwargs)


def _config(fast: bool) -> DemoConfig:
    cfg = DemoConfig.fast() if fast else DemoConfig()
    cfg.feed_lifetime = (1e9, 1e9)  # no restarts of its own
    return cfg


async def _serve(args: argparse.Namespace) -> None:
    server, port = await start_demo_server(args.host, args.port, config=_config(args.fast))
    print(f"demo server on ws://{args.host}:{port} (/feed, /chat, /ticker, ...)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


async def _client(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    stats = DemoStats()
    c = _Direct(args.url.rstrip("/"), None, _config(args.fast), stats, stop, random.Random())
    c.ping_interval = args.ping_interval
    c.ping_timeout = args.ping_timeout
    task = asyncio.ensure_future(_feed_client(c))
    await stop.wait()
    await asyncio.wait({task}, timeout=2)
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    print(f"feed client: {stats.reconnects['/feed']} reconnect(s), delays {stats.feed_delays}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devconsole.demo_feed", description=__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("serve", help="the demo server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=9000)
    s.add_argument("--fast", action="store_true", help="the test timings (DemoConfig.fast)")
    c = sub.add_parser("client", help="the /feed backoff client")
    c.add_argument("url", help="ws://HOST:PORT (the proxy); the client connects to /feed")
    c.add_argument("--fast", action="store_true", help="backoff 0.1 s x2, cap 1 s")
    c.add_argument("--ping-interval", type=float, default=1.0, metavar="SECONDS")
    c.add_argument("--ping-timeout", type=float, default=2.0, metavar="SECONDS")
    args = p.parse_args(argv)
    try:
        asyncio.run(_serve(args) if args.what == "serve" else _client(args))
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        print(f"demo_feed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
