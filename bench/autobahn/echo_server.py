"""The testee for wstest's fuzzingclient: a ``websockets`` asyncio echo server.

Limits raised as the Autobahn cases need: 9.1.6/9.2.6 send 16 MiB messages (max_size
64 MiB), 9.3.x/9.4.x send messages of up to 4 million fragments (websockets' fragment
limit is the module constant ``websockets.asyncio.messages.MAX_FRAGMENTS``, read from
``WEBSOCKETS_MAX_FRAGMENTS`` at import), and flow control off (max_queue=None).
permessage-deflate is on (the websockets default), for cases 12.* and 13.*.

    python bench/autobahn/echo_server.py [--port N]   # prints "port N" when listening
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal

os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 24))

import websockets.asyncio.messages
from websockets.asyncio.server import ServerConnection, serve

websockets.asyncio.messages.MAX_FRAGMENTS = max(  # type: ignore[attr-defined]
    websockets.asyncio.messages.MAX_FRAGMENTS,  # type: ignore[attr-defined]
    1 << 24,
)


async def echo(ws: ServerConnection) -> None:
    with contextlib.suppress(Exception):
        async for msg in ws:
            await ws.send(msg)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        echo,
        "127.0.0.1",
        args.port,
        max_size=64 << 20,
        max_queue=None,
        ping_interval=None,
    ) as srv:
        print(f"port {srv.sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
