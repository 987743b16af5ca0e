"""How long the one-shot viewers (``devconsole conns --json``, ``devconsole report
--json``) take to answer, quiet and under a 5,000 messages/s flood.

They read the proxy's backlog and stop at the end-of-backlog marker (``BacklogEnd``);
before it they waited for 0.3 s without events, which a flood never has, until their 10 s
timeout (issue 16.4): that old loop is measured too, in this process. The commands are
measured against the same process doing nothing (``devconsole --version``: interpreter
start and imports) in the same run:

    .venv/bin/python bench/oneshot.py [--rate 5000] [--fill 5] [--runs 5]

A devconsole proxy (reverse, loopback) in front of the benchmark server; a paced client
floods ``/sink`` with small text messages at ``--rate`` for ``--fill`` seconds (the backlog
the viewers get), then keeps flooding while each command runs ``--runs`` times; then the
flood stops and the commands run again on the quiet proxy. Every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import (  # noqa: E402
    HOST,
    env,
    machine,
    start_devconsole,
    start_server,
    table,
    tempdir,
    tool,
)


async def timed(*args: str) -> float:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        tool("devconsole"),
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env(),
        cwd=str(ROOT),
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0:
        raise RuntimeError(f"devconsole {' '.join(args)}: {err.decode().strip()}")
    return time.perf_counter() - start


async def as_before(tap: str) -> float:
    """What `conns` did before the marker (in this process): attach, apply events until
    the stream has been quiet for 0.3 s, at most 10 s."""
    from devconsole.session import Session
    from devconsole.tap import TapClient

    start = time.perf_counter()
    client = TapClient(tap)  # asks for no marker, like an older viewer
    await client.connect()
    session = Session(max_items=10_000_000, max_bytes=1 << 40)
    last = time.monotonic()

    def on_events(evs: list) -> None:  # type: ignore[type-arg]
        nonlocal last
        session.apply_all(evs)
        last = time.monotonic()

    task = asyncio.ensure_future(client.run(on_events))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and time.monotonic() - last < 0.3:
        await asyncio.sleep(0.02)
    await client.close()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    return time.perf_counter() - start


async def flood(port: int, rate: int, stop: asyncio.Event, sent: list[int]) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://{HOST}:{port}/sink?ack=1000000", compression=None) as ws:
        start = time.monotonic()
        while not stop.is_set() and time.monotonic() - start < 600:
            for _ in range(50):
                await ws.send('{"type":"presence","user":"bob","online":true}')
            sent[0] += 50
            ahead = sent[0] / rate - (time.monotonic() - start)
            await asyncio.sleep(max(ahead, 0))


async def run(args: argparse.Namespace) -> None:
    server = start_server()
    rows = []
    try:
        with tempdir() as d:
            tap = str(Path(d) / "tap.sock")
            proxy = start_devconsole(server.port, str(Path(d) / "conf"), tap)
            try:
                stop = asyncio.Event()
                sent = [0]
                task = asyncio.ensure_future(flood(proxy.port, args.rate, stop, sent))
                await asyncio.sleep(args.fill)
                t0, n0 = time.monotonic(), sent[0]
                times: dict[str, list[float]] = {}
                for _ in range(args.runs):
                    for name, cmd in (
                        ("baseline (devconsole --version)", ["--version"]),
                        ("conns --json, flood", ["conns", "--json", "--tap", tap]),
                        ("report --json, flood", ["report", "--json", "--tap", tap]),
                    ):
                        times.setdefault(name, []).append(await timed(*cmd))
                for _ in range(min(args.runs, 2)):
                    times.setdefault("as before the marker (in-process), flood", []).append(
                        await as_before(tap)
                    )
                achieved = (sent[0] - n0) / (time.monotonic() - t0)
                stop.set()
                await task
                await asyncio.sleep(0.5)
                for _ in range(args.runs):
                    for name, cmd in (
                        ("conns --json, quiet", ["conns", "--json", "--tap", tap]),
                        ("report --json, quiet", ["report", "--json", "--tap", tap]),
                    ):
                        times.setdefault(name, []).append(await timed(*cmd))
            finally:
                proxy.stop()
    finally:
        server.stop()
    base = statistics.median(times["baseline (devconsole --version)"])
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append((name, f"{med:.3f}", f"{max(ts):.3f}", f"{med - base:+.3f}"))
    print(machine())
    print(
        f"flood {args.rate} msg/s requested, {achieved:,.0f} msg/s achieved while measuring; "
        f"{sent[0]:,} messages in all; {args.runs} runs each"
    )
    print(table(("command", "median s", "max s", "minus baseline s"), rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--fill", type=float, default=5.0, help="seconds of flood before measuring")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
