"""``devconsole attach``: the TUI as a process, on a pseudo-terminal (it refuses to draw
into a pipe), against a real redis-server and a real publishing proxy."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

from websockets.asyncio.client import connect

from tests.conftest import ROOT, devconsole_cmd, ws_server
from tests.scale_helpers import cli, env, proxy_process

CSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


class PtyProcess:
    """A command on its own pseudo-terminal of ``cols`` x ``rows``: what it draws (escape
    sequences stripped) and keys typed into it."""

    def __init__(self, argv: list[str], cols: int = 120, rows: int = 40) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        e = env()
        e["TERM"] = "xterm-256color"
        e.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=e, cwd=str(ROOT),
            start_new_session=True, close_fds=True,
        )  # fmt: skip
        os.close(slave)
        self.master = master
        self.raw = b""

    def read_until(self, pattern: bytes, timeout: float) -> bool:
        """Read what it draws until ``pattern`` shows (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pattern in self.text:
                return True
            r, _, _ = select.select([self.master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the process ended and closed the terminal
                    return pattern in self.text
                if not chunk:
                    return pattern in self.text
                self.raw += chunk
        return pattern in self.text

    @property
    def text(self) -> bytes:
        return CSI.sub(b"", self.raw)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read_until(b"\x00never", 0.2)  # keep draining its output
            rc = self.proc.poll()
            if rc is not None:
                return rc
        return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)


async def test_attach_redis_shows_the_instances_connections_and_quits(
    short_tmp: Path, redis_server
) -> None:
    url = redis_server.url
    async with ws_server() as (_, up):
        mode = f"reverse:http://127.0.0.1:{up}"
        with proxy_process(
            short_tmp / "b", "--mode", mode, "--publish", url, "--name", "app-a"
        ) as pa:
            async with connect(f"ws://127.0.0.1:{pa.port}/attached-here") as ws:
                await ws.send("over redis")
                assert await ws.recv() == "over redis"
                term = PtyProcess(devconsole_cmd("attach", url))
                try:
                    # the connection of app-a (its id INSTANCE/ID) and its path, drawn by
                    # the attached TUI from the stream's history
                    seen = await asyncio.to_thread(term.read_until, b"/attached-here", 30)
                    assert seen, term.text[-3000:]
                    assert await asyncio.to_thread(term.read_until, b"app-a/1", 10)
                    await ws.send("zebra-live-7781")  # and it follows the stream live
                    assert await ws.recv() == "zebra-live-7781"
                    seen = await asyncio.to_thread(term.read_until, b"zebra-live-7781", 15)
                    assert seen, term.text[-3000:]
                    term.type(b"q")
                    rc = await asyncio.to_thread(term.wait, 15)
                    assert rc == 0, term.text[-3000:]
                finally:
                    term.close()


async def test_attach_refuses_a_pipe_and_an_unreachable_redis(short_tmp: Path) -> None:
    # no terminal: one line saying what to use instead
    code, _, err = await cli("attach", "redis://127.0.0.1:1/0")
    assert code == 1
    assert "needs a terminal" in err and "tail" in err
    # a terminal, but nothing listens on that port: one line, exit 1, no screen left over
    term = PtyProcess(devconsole_cmd("attach", "redis://127.0.0.1:1/0"))
    try:
        rc = await asyncio.to_thread(term.wait, 30)
        assert rc == 1
        assert b"cannot reach redis://127.0.0.1:1/0" in term.text, term.text[-2000:]
    finally:
        term.close()
