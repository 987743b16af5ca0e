"""Real protocol servers for the decoder tests (loopback only, every wait bounded), and a
tap viewer that decodes like a real viewer does.

- ``aiohttp_server(app)``: an aiohttp application (python-socketio's AsyncServer,
  strawberry's GraphQL view);
- ``mosquitto()``: Debian's mosquitto broker with a WebSocket listener;
- ``DecodingViewer``: a tap client with a Session, a ProtocolTracker, a PairTracker and
  a HeartbeatMonitor, wired as ``devconsole report`` wires them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from devconsole.analysis.readiness import observe
from devconsole.decoders.base import Decoded
from devconsole.model import Message
from tests.conftest import Viewer, need_binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def aiohttp_server(app: Any) -> AsyncIterator[int]:
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield int(port)
    finally:
        await asyncio.wait_for(runner.cleanup(), 10)


@contextlib.contextmanager
def mosquitto() -> Iterator[int]:
    """A mosquitto broker with a WebSocket listener on 127.0.0.1; yields its port."""
    exe = need_binary("mosquitto")
    port = free_port()
    d = tempfile.mkdtemp(prefix="dcmq")
    conf = Path(d) / "mosquitto.conf"
    # Debian's mosquitto 2.0.11 will not start with a WebSocket listener alone ("Unable
    # to start any listening sockets"): a plain MQTT listener on loopback comes first.
    conf.write_text(
        f"listener {free_port()} 127.0.0.1\n"
        f"listener {port} 127.0.0.1\nprotocol websockets\nallow_anonymous true\n"
        "persistence false\n"
    )
    proc = subprocess.Popen(
        [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"mosquitto exited: {err.strip()[-500:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise AssertionError("mosquitto did not start listening")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)


class DecodingViewer(Viewer):
    """A Viewer whose Session feeds a ProtocolTracker, a PairTracker and a heartbeat
    monitor (``devconsole.analysis.readiness.observe``)."""

    def __init__(self, tap: str, rules: Any = ()) -> None:
        super().__init__(tap)
        self.analysis = observe(self.session, rules)
        self.tracker = self.analysis.tracker

    def decoded(self) -> list[tuple[Message, Decoded]]:
        out = []
        for it in self.session.items():
            if isinstance(it, Message):
                d = self.tracker.decoded(it)
                if d is not None:
                    out.append((it, d))
        return out

    def packets(self, conn: str | None = None) -> list[tuple[Message, dict[str, Any]]]:
        return [
            (m, p.fields)
            for m, d in self.decoded()
            if conn is None or m.conn == conn
            for p in d.packets
        ]


@contextlib.asynccontextmanager
async def decoding_viewer(tap: str, rules: Any = ()) -> AsyncIterator[DecodingViewer]:
    v = DecodingViewer(tap, rules)
    await v.start()
    try:
        yield v
    finally:
        await v.close()
