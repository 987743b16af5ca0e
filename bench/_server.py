"""Benchmark WebSocket server (a separate process): ``websockets`` asyncio, loopback only.

Paths:

- ``/echo``: sends every message back.
- ``/sink?ack=K``: counts the messages it receives and sends the text ``ack:<count>``
  after every K of them (the flood sender keeps a bounded window with these acks).
- ``/source?n=N&size=S&ack=K``: sends N text messages of S bytes to the client, at most
  ``window`` ahead of the client's acks (text ``ack:<count>`` every K messages).

Prints ``port <N>`` on stdout once listening, then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve


async def _echo(ws: ServerConnection) -> None:
    async for msg in ws:
        await ws.send(msg)


async def _sink(ws: ServerConnection, ack: int) -> None:
    n = 0
    nxt = ack
    async for _ in ws:
        n += 1
        if n == nxt:
            nxt += ack
            await ws.send(f"ack:{n}")


async def _source(ws: ServerConnection, n: int, size: int, ack: int, window: int) -> None:
    payload = ("x" * size)[:size]
    acked = 0
    done = asyncio.Event()
    progress = asyncio.Event()

    async def reader() -> None:
        nonlocal acked
        try:
            async for msg in ws:
                if isinstance(msg, str) and msg.startswith("ack:"):
                    acked = int(msg[4:])
                    progress.set()
                    if acked >= n:
                        return
        finally:  # all acked, or the client went away (it stops at its time limit)
            done.set()
            progress.set()

    task = asyncio.ensure_future(reader())
    try:
        sent = 0
        while sent < n and not done.is_set():
            while sent - acked >= window and not done.is_set():
                progress.clear()
                await progress.wait()
            burst = min(ack, n - sent)
            for _ in range(burst):
                await ws.send(payload)
            sent += burst
        await done.wait()
    finally:
        task.cancel()


async def handler(ws: ServerConnection) -> None:
    url = urlsplit(ws.request.path if ws.request is not None else "/")
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    with contextlib.suppress(Exception):
        if url.path == "/echo":
            await _echo(ws)
        elif url.path == "/sink":
            await _sink(ws, int(q.get("ack", "100")))
        elif url.path == "/source":
            await _source(
                ws,
                int(q["n"]),
                int(q["size"]),
                int(q.get("ack", "100")),
                int(q.get("window", "5000")),
            )
        else:
            await ws.close(4404, "unknown path")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert", help="serve wss with this certificate (PEM)")
    ap.add_argument("--key", help="... and this key")
    args = ap.parse_args()
    ctx = None
    if args.cert:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        handler,
        "127.0.0.1",
        args.port,
        compression=None,
        max_size=64 << 20,
        max_queue=64,
        ping_interval=None,
        ssl=ctx,
    ) as srv:
        port = srv.sockets[0].getsockname()[1]
        print(f"port {port}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    sys.exit(0)
