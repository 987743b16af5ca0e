"""The TUI's CPU cost at everyday rates: the real ``devconsole`` in a real terminal.

Runs ``devconsole`` (the proxy as a child process and the TUI attached to its tap, as a
user starts it) in a pseudo-terminal of the given size (``TIOCSWINSZ`` on the pty: what
a terminal emulator does), in reverse mode in front of the bench's websockets echo
server. This process plays the terminal (it reads and counts every byte the TUI writes)
and the application: one ``websockets`` client sending a small JSON message and getting
it echoed back, paced at ``rate / 2`` sends per second (``rate`` messages/s through the
proxy, both directions together; 40/s = one message every 50 ms each way).

Steps, each ``--seconds`` long after ``--warmup`` seconds at that rate:

- ``idle``: the TUI with one open connection and no traffic (the baseline of the run:
  it should cost nothing);
- each rate of ``--rates`` (default 40 and 1,000 messages/s).

Per step: the CPU of the TUI process (user + system time from ``/proc/<pid>/stat`` over
the window, every thread: the app, Textual's writer thread, the tap reader) as % of one
core, the proxy child's CPU, the bytes the TUI wrote to the terminal per second, the
messages the client got back (so the rate was really offered) and the CPU of other
processes (``/proc/stat``: the noise of a shared machine).

    .venv/bin/python bench/tui_steady.py [--sizes 160x45,80x24] [--rates 40,1000]
        [--seconds 30] [--warmup 3] [--repeat 1] [--profile PREFIX]

``--profile PREFIX`` runs the TUI under cProfile (``python -m cProfile -o``) and writes
``PREFIX-<size>.prof`` when it quits: the profile of the whole run (it slows the app;
use it to find hot functions, not for the numbers).

Loopback only; every wait is bounded; the processes started here are stopped by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import (  # noqa: E402
    HOST,
    cpu_seconds,
    env,
    free_port,
    machine,
    start_server,
    tempdir,
    tool,
)

MESSAGE = {"type": "tick", "room": "lobby", "user": "alice", "n": 0, "text": "hello there"}


@dataclass
class Step:
    size: str
    step: str
    rate: int  # offered messages/s through the proxy (both directions)
    seconds: float
    tui_cpu_pct: float
    proxy_cpu_pct: float
    tty_bytes_per_s: float
    echoed_per_s: float  # messages the client got back per second (x2 = through the proxy)
    others_cpu_pct: float


class Terminal:
    """A pty of ``cols`` x ``rows`` running ``cmd``; a thread drains what it writes."""

    def __init__(self, cmd: list[str], cols: int, rows: int) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        e = env()
        e["TERM"] = "xterm-256color"
        e["COLORTERM"] = "truecolor"
        e.pop("TEXTUAL", None)
        e.pop("NO_COLOR", None)
        self.master = master
        self.popen = subprocess.Popen(
            cmd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=e,
            cwd=str(ROOT),
            start_new_session=True,
        )
        os.close(slave)
        self.bytes = 0
        self.record: list[bytes] | None = None  # what the TUI wrote, when set to a list
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="bench-tty", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        import select

        while not self._stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.2)
            if not r:
                continue
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:
                return
            if not data:
                return
            self.bytes += len(data)
            if self.record is not None:
                self.record.append(data)

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self.master, data)

    def stop(self) -> None:
        """``q`` (the TUI quits and stops its proxy), then SIGTERM, then SIGKILL."""
        p = self.popen
        if p.poll() is None:
            self.write(b"q")
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                    p.wait(5)
        self._stop.set()
        self._thread.join(2)
        with contextlib.suppress(OSError):
            os.close(self.master)


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(x) for x in fh.read().split()]
    return out


def wait_port(port: int, term: Terminal, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if term.popen.poll() is not None:
            raise RuntimeError(f"devconsole exited with {term.popen.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"devconsole not listening on {port} after {timeout}s")


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f) - idle, sum(f)


class Client:
    """One websockets client on ``/echo`` through the proxy, paced on a 10 ms schedule."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.rate = 0.0  # sends per second (each one echoed: 2 messages through the proxy)
        self.sent = 0
        self.received = 0
        self.done = False

    async def run(self, ready: asyncio.Event) -> None:
        from websockets.asyncio.client import connect

        async with connect(
            f"ws://{HOST}:{self.port}/echo",
            compression=None,
            ping_interval=None,
            open_timeout=30,
        ) as ws:

            async def reader() -> None:
                async for _ in ws:
                    self.received += 1

            rd = asyncio.ensure_future(reader())
            ready.set()
            t0 = time.perf_counter()
            base = 0.0  # sends due at t0 (the rate changes between steps)
            rate = self.rate
            msg = dict(MESSAGE)
            while not self.done:
                if self.rate != rate:
                    base += rate * (time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    rate = self.rate
                due = int(base + rate * (time.perf_counter() - t0))
                while self.sent < due and self.sent - self.received < 5_000:
                    msg["n"] = self.sent
                    await ws.send(json.dumps(msg, separators=(",", ":")))
                    self.sent += 1
                if self.sent < due:  # far behind (a stuck proxy): do not queue more
                    base = self.sent - rate * (time.perf_counter() - t0)
                await asyncio.sleep(0.01)
            rd.cancel()
            with contextlib.suppress(BaseException):
                await rd


async def measure(
    term: Terminal, client: Client, size: str, name: str, rate: int, seconds: float, warmup: float
) -> Step:
    client.rate = rate / 2
    await asyncio.sleep(warmup)
    pid = term.popen.pid
    proxies = children(pid)
    t0 = time.perf_counter()
    c0 = cpu_seconds(pid)
    p0 = sum(cpu_seconds(p) for p in proxies)
    b0 = term.bytes
    r0 = client.received
    j0 = busy_jiffies()
    own0 = os.times()
    await asyncio.sleep(seconds)
    dt = time.perf_counter() - t0
    c1 = cpu_seconds(pid)
    p1 = sum(cpu_seconds(p) for p in proxies)
    j1 = busy_jiffies()
    own1 = os.times()
    busy = (j1[0] - j0[0]) / max(1, j1[1] - j0[1]) * (os.cpu_count() or 1) * dt  # core-s
    own = (own1.user - own0.user) + (own1.system - own0.system)
    others = max(0.0, busy - (c1 - c0) - (p1 - p0) - own)
    return Step(
        size=size,
        step=name,
        rate=rate,
        seconds=round(dt, 2),
        tui_cpu_pct=round((c1 - c0) / dt * 100, 2),
        proxy_cpu_pct=round((p1 - p0) / dt * 100, 2),
        tty_bytes_per_s=round((term.bytes - b0) / dt),
        echoed_per_s=round((client.received - r0) / dt, 1),
        others_cpu_pct=round(others / dt * 100, 1),
    )


async def run_size(
    size: str, rates: list[int], seconds: float, warmup: float, profile: str | None
) -> list[Step]:
    cols, rows = (int(x) for x in size.lower().split("x"))
    server = start_server()
    steps: list[Step] = []
    try:
        with tempdir("dcts") as confdir:
            port = free_port()
            args = [
                "--mode",
                f"reverse:http://{HOST}:{server.port}",
                "--listen",
                f"{HOST}:{port}",
                "--confdir",
                confdir,
            ]
            if profile:
                out = f"{profile}-{size}.prof"
                cmd = [sys.executable, "-m", "cProfile", "-o", out, "-m", "devconsole", *args]
            else:
                cmd = [tool("devconsole"), *args]
            term = Terminal(cmd, cols, rows)
            try:
                wait_port(port, term)
                client = Client(port)
                ready = asyncio.Event()
                task = asyncio.ensure_future(client.run(ready))
                await asyncio.wait_for(ready.wait(), 30)
                try:
                    steps.append(await measure(term, client, size, "idle", 0, seconds, warmup))
                    for rate in rates:
                        steps.append(
                            await measure(term, client, size, f"{rate}/s", rate, seconds, warmup)
                        )
                    client.rate = 0
                finally:
                    client.done = True
                    with contextlib.suppress(BaseException):
                        await asyncio.wait_for(task, 10)
            finally:
                term.stop()
    finally:
        server.stop()
    return steps


def fmt(steps: list[Step]) -> str:
    head = (
        f"{'size':>7} {'step':>8} {'TUI CPU%':>8} {'proxy CPU%':>10} {'tty B/s':>9} "
        f"{'echoed/s':>8} {'others%':>7}"
    )
    lines = [head, "-" * len(head)]
    for s in steps:
        lines.append(
            f"{s.size:>7} {s.step:>8} {s.tui_cpu_pct:>8.1f} {s.proxy_cpu_pct:>10.1f} "
            f"{s.tty_bytes_per_s:>9,.0f} {s.echoed_per_s:>8.1f} {s.others_cpu_pct:>7.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="160x45,80x24", help="terminal sizes, COLSxROWS")
    ap.add_argument("--rates", default="40,1000", help="messages/s through the proxy")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds per step")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    ap.add_argument("--repeat", type=int, default=1, help="runs per size (all are printed)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--profile", help="cProfile the TUI: PREFIX-<size>.prof")
    args = ap.parse_args(argv)
    rates = [int(x) for x in args.rates.split(",") if x]
    if any(r < 0 or r > 20_000 for r in rates):
        raise SystemExit("--rates: 0..20000 messages/s (this is the everyday-rate bench)")
    seconds = max(1.0, min(args.seconds, 120.0))
    print(f"devconsole TUI steady-rate bench: {machine()}")
    print(
        f"sizes {args.sizes}; rates {rates} msgs/s; {seconds:g} s per step after "
        f"{args.warmup:g} s warm-up; x{args.repeat}"
    )
    steps: list[Step] = []
    for _ in range(max(1, args.repeat)):
        for size in args.sizes.split(","):
            got = asyncio.run(run_size(size, rates, seconds, args.warmup, args.profile))
            print(fmt(got).split("\n", 2)[2] if steps else fmt(got), flush=True)
            steps += got
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(s) for s in steps], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
