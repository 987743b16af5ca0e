"""A bare asyncio TCP relay (a separate process): the floor of any asyncio proxy.

Accepts on 127.0.0.1, connects to ``--target`` and copies bytes both ways with two
``asyncio.Protocol`` objects: one ``data_received`` and one ``transport.write`` per read,
half-closes relayed, no parsing, no capture, no HTTP. What devconsole's fast relay does,
minus devconsole. Prints ``port <N>`` once listening; serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any


class _Side(asyncio.Protocol):
    def __init__(self) -> None:
        self.t: Any = None
        self.other: _Side | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        o = self.other
        if o is None or o.t is None:
            self.pending.append(data)
        else:
            o.t.write(data)

    def eof_received(self) -> bool:
        o = self.other
        if o is not None and o.t is not None and o.t.can_write_eof():
            o.t.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        o = self.other
        if o is not None and o.t is not None:
            o.t.close()

    def pause_writing(self) -> None:
        if self.other is not None and self.other.t is not None:
            self.other.t.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.t is not None:
            self.other.t.resume_reading()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=int, required=True)
    args = ap.parse_args()
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def accept() -> _Side:
        client = _Side()

        async def connect() -> None:
            try:
                _, server = await loop.create_connection(_Side, "127.0.0.1", args.target)
            except OSError:
                if client.t is not None:
                    client.t.close()
                return
            server.other = client
            client.other = server
            for d in client.pending:
                server.t.write(d)
            client.pending.clear()

        t = loop.create_task(connect())
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        return client

    srv = await loop.create_server(accept, "127.0.0.1", 0, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"port {srv.sockets[0].getsockname()[1]}", flush=True)
    async with srv:
        await stop.wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    sys.exit(0)
