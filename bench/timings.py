"""Costs and latencies that the test suite used to assert with timing bounds.

The suite checks behaviour; how fast it is gets measured here, each against a baseline
measured in the same run:

- ``publish``: ``TapServer.publish`` per event while one tap client has stopped reading
  (its queue fills, overflows and is skipped ahead), against publishing with no client
  attached. Was ``< 10 us per event`` in tests/test_tap.py.
- ``tap_stop``: ``TapServer.stop()`` with a viewer attached, against ``stop()`` with
  none (Python 3.12's ``wait_closed()`` also waits for open connections). Was ``< 0.9 s``.
- ``abort``: ``AbortCommand`` over the tap to an idle ``websockets`` client seeing the
  connection end (1006), through a real devconsole proxy on loopback, with and without
  ``--rst``; against a ``CloseCommand`` round trip (which waits for the close handshake).
  Was ``< 1 s`` in tests/test_capture_faults.py.
- ``backoff``: ``analyze_endpoints`` over 10,000 connections, against building the
  Session that holds them. Was ``< 5 s`` in tests/test_analysis_backoff.py.

    .venv/bin/python bench/timings.py [--quick] [--only publish,tap_stop,abort,backoff]

Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devconsole import wire  # noqa: E402
from devconsole.analysis.backoff import analyze_endpoints  # noqa: E402
from devconsole.model import (  # noqa: E402
    AbortCommand,
    CloseCommand,
    CommandResult,
    EndEvent,
    Handshake,
    HandshakeEvent,
    Message,
    Opcode,
    RefusedEvent,
)
from devconsole.session import Session  # noqa: E402
from devconsole.tap import TapAddress, TapClient, TapServer  # noqa: E402


def handshake(conn: str, ts: float = 1.0, **kw: Any) -> Handshake:
    fields: dict[str, Any] = dict(
        conn=conn,
        ts=ts,
        client="127.0.0.1:5000",
        server="srv.test:80",
        scheme="ws",
        url=f"ws://srv.test/{conn}",
        method="GET",
        path=f"/{conn}",
        query=[],
        http_version="HTTP/1.1",
        request_headers=[("Host", "srv.test"), ("Cookie", f"session=u{hash(conn) % 100}")],
        cookies=[("session", f"u{hash(conn) % 100}")],
        status=101,
        reason="Switching Protocols",
        ts_response=ts + 0.01,
    )
    fields.update(kw)
    return Handshake(**fields)


async def _no_commands(cmd: Any) -> CommandResult:
    return CommandResult(cmd.id, False, "no commands here")


# ------------------------------------------------------------------ publish


async def bench_publish(quick: bool) -> dict[str, Any]:
    total = 50_000 if quick else 250_000
    events = [
        Message(i, "c1", float(i), "client", Opcode.TEXT, b"m" * 64, 64, 66)
        for i in range(1, total + 1)
    ]

    async def run(with_client: bool) -> float:
        with tempfile.TemporaryDirectory(prefix="dcb", dir="/tmp") as d:
            session = Session(max_items=5_000)
            server = TapServer(session, _no_commands, max_queue=1_000)
            await server.start(TapAddress(path=f"{d}/tap.sock"))
            sock = None
            try:
                session.apply(HandshakeEvent(handshake("c1")))
                if with_client:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.connect(f"{d}/tap.sock")
                    sock.sendall(
                        wire.pack(wire.HELLO, {"version": wire.PROTOCOL_VERSION, "token": None})
                    )
                    deadline = time.monotonic() + 5
                    while not server.clients and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)
                    assert server.clients, "the client did not attach"
                spent = 0.0
                for start in range(0, total, 1_000):
                    part = events[start : start + 1_000]
                    for ev in part:
                        session.apply(ev)
                    t0 = time.perf_counter()
                    for ev in part:
                        server.publish(ev)
                    spent += time.perf_counter() - t0
                    await asyncio.sleep(0)  # the sender runs and blocks on the full socket
                return spent / total
            finally:
                if sock is not None:
                    sock.close()
                await server.stop()

    base = statistics.median([await run(False) for _ in range(3)])
    stalled = statistics.median([await run(True) for _ in range(3)])
    return {
        "events": total,
        "no_client_us": base * 1e6,
        "stalled_client_us": stalled * 1e6,
        "ratio": stalled / base if base else float("nan"),
    }


# ------------------------------------------------------------------ tap stop


async def bench_tap_stop(quick: bool) -> dict[str, Any]:
    runs = 3 if quick else 7

    async def once(viewer: bool) -> float:
        with tempfile.TemporaryDirectory(prefix="dcb", dir="/tmp") as d:
            session = Session()
            session.apply(HandshakeEvent(handshake("c1")))
            server = TapServer(session, _no_commands)
            await server.start(TapAddress(path=f"{d}/tap.sock"))
            client = None
            task = None
            if viewer:
                client = TapClient(f"{d}/tap.sock")
                await client.connect()
                task = asyncio.ensure_future(client.run(lambda evs: None))
                deadline = time.monotonic() + 5
                while not server.clients and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
            t0 = time.perf_counter()
            await server.stop()
            took = time.perf_counter() - t0
            if client is not None:
                await client.close()
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            return took

    base = statistics.median([await once(False) for _ in range(runs)])
    attached = statistics.median([await once(True) for _ in range(runs)])
    return {"no_viewer_ms": base * 1e3, "viewer_ms": attached * 1e3}


# ------------------------------------------------------------------ abort


async def bench_abort(quick: bool) -> dict[str, Any]:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    from devconsole.proxy import DevconsoleProxy, ProxyConfig

    runs = 3 if quick else 10

    async def echo(ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for m in ws:
                await ws.send(m)

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dcb", dir="/tmp") as d:
        async with serve(echo, "127.0.0.1", 0) as srv:
            port = srv.sockets[0].getsockname()[1]
            proxy = DevconsoleProxy(
                ProxyConfig(
                    listen_port=0,
                    mode=f"reverse:http://127.0.0.1:{port}",
                    confdir=f"{d}/conf",
                    tap=f"{d}/tap.sock",
                )
            )
            addrs = await proxy.start()
            try:
                client = TapClient(f"{d}/tap.sock")
                await client.connect()
                seen: list[Any] = []
                task = asyncio.ensure_future(client.run(seen.extend))

                async def one(cmd_for: Any) -> float:
                    ws = await connect(f"ws://127.0.0.1:{addrs[0][1]}/idle")
                    await ws.send("x")
                    await ws.recv()
                    conns = [c for c in proxy.capture.session.connections.values() if c.live]
                    conn = conns[-1].id
                    await asyncio.sleep(0.1)  # idle
                    t0 = time.perf_counter()
                    res = await client.command(cmd_for(conn))
                    assert res.ok, res.error
                    with contextlib.suppress(ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), 10)
                    took = time.perf_counter() - t0
                    await ws.close()
                    return took

                for name, make in (
                    ("abort_ms", lambda c: AbortCommand(c)),
                    ("abort_rst_ms", lambda c: AbortCommand(c, rst=True)),
                    ("close_ms", lambda c: CloseCommand(c, 1001, "bench")),
                ):
                    out[name] = statistics.median([await one(make) for _ in range(runs)]) * 1e3
                await client.close()
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            finally:
                await proxy.stop()
    return out


# ------------------------------------------------------------------ backoff


def bench_backoff(quick: bool) -> dict[str, Any]:
    n = 10_000
    rng = random.Random(2)
    t0 = time.perf_counter()
    session = Session()
    t = 0.0
    for i in range(n):
        h = handshake(f"c{i}", t, request_headers=[("Cookie", f"session=u{i % 100}")])
        if i % 7 == 0:
            h.status = 503
            session.apply(RefusedEvent(h))
        else:
            session.apply(HandshakeEvent(h))
            session.apply(EndEvent(h.conn, t + rng.uniform(0.1, 5.0), True, "server"))
        t += rng.uniform(0.001, 0.2)
    build = time.perf_counter() - t0
    runs = []
    for _ in range(3 if quick else 7):
        t0 = time.perf_counter()
        eps = analyze_endpoints(session.connections.values())
        runs.append(time.perf_counter() - t0)
    assert sum(e.connections for e in eps) == n
    analyze = statistics.median(runs)
    return {
        "connections": n,
        "build_session_s": build,
        "analyze_s": analyze,
        "ratio": analyze / build,
    }


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="publish,tap_stop,abort,backoff")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    if "publish" in only:
        r = asyncio.run(bench_publish(args.quick))
        print(
            f"publish: {r['no_client_us']:.2f} us/event with no client, "
            f"{r['stalled_client_us']:.2f} us/event with a stalled client "
            f"(x{r['ratio']:.2f}; {r['events']} events)"
        )
    if "tap_stop" in only:
        r = asyncio.run(bench_tap_stop(args.quick))
        print(
            f"tap_stop: {r['no_viewer_ms']:.1f} ms with no viewer, "
            f"{r['viewer_ms']:.1f} ms with a viewer attached"
        )
    if "abort" in only:
        r = asyncio.run(bench_abort(args.quick))
        print(
            f"abort: the idle client sees the end {r['abort_ms']:.1f} ms after the command "
            f"({r['abort_rst_ms']:.1f} ms with --rst); a close with a code takes "
            f"{r['close_ms']:.1f} ms"
        )
    if "backoff" in only:
        r = bench_backoff(args.quick)
        print(
            f"backoff: analyze_endpoints over {r['connections']} connections "
            f"{r['analyze_s'] * 1e3:.0f} ms, building their Session "
            f"{r['build_session_s'] * 1e3:.0f} ms (x{r['ratio']:.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
