"""How accurately each network condition and rule delay is applied, measured at the
receiving peer (docs/performance.md, docs/shaping.md).

    .venv/bin/python bench/shaping.py [--quick] [--load N] [--repeat R]

A real devconsole proxy (``devconsole.testing.Proxy``: ``devconsole proxy`` in a child
process) in front of a websockets server; the client and the server run in this process
and timestamp with one monotonic clock. ``--load N`` runs N busy processes next to it (a
loaded machine); each lasts at most the run. Loopback only, every wait bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.client import ClientProtocol  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.frames import Frame, Opcode  # noqa: E402
from websockets.http11 import Response  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

from bench._common import machine, save_json, table  # noqa: E402
from devconsole.testing import Proxy  # noqa: E402


async def handler(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for msg in ws:
            assert isinstance(msg, str)
            cmd, *args = msg.split()
            if cmd == "tick":
                n, gap = int(args[0]), float(args[1])
                for _ in range(n):
                    await ws.send(f"{time.monotonic():.6f}")
                    await asyncio.sleep(gap)
            elif cmd == "push":
                n, size = int(args[0]), int(args[1])
                for _ in range(n):
                    await ws.send("x" * size)
            elif cmd == "flood":
                for _ in range(int(args[0])):
                    await ws.send("f" * 10_000)
            else:
                await ws.send(msg)


class Raw:
    """A client on a plain socket: every read's size and every frame."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.proto = ClientProtocol(parse_uri(url), max_size=None)
        self.reads: list[int] = []
        self.frames: list[Frame] = []

    async def __aenter__(self) -> Raw:
        u = parse_uri(self.url)
        self.reader, self.writer = await asyncio.open_connection(u.host, u.port)
        self.proto.send_request(self.proto.connect())
        self.writer.write(b"".join(self.proto.data_to_send()))
        self.opened = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())
        await asyncio.wait_for(self.opened.wait(), 10)
        return self

    async def _run(self) -> None:
        while data := await self.reader.read(65536):
            self.reads.append(len(data))
            self.proto.receive_data(data)
            for ev in self.proto.events_received():
                if isinstance(ev, Response):
                    self.opened.set()
                elif isinstance(ev, Frame):
                    self.frames.append(ev)

    def send(self, text: str) -> None:
        self.proto.send_text(text.encode())
        self.writer.write(b"".join(self.proto.data_to_send()))

    async def __aexit__(self, *exc: Any) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
        self.writer.close()


async def one_way(ws: Any, n: int, gap: float = 0.03) -> list[float]:
    await ws.send(f"tick {n} {gap}")
    out = []
    for _ in range(n):
        sent = float(await asyncio.wait_for(ws.recv(), 30))
        out.append(time.monotonic() - sent)
    return out


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


async def measure(proxy: Proxy, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n = 20 if quick else 60
    url = proxy.url
    async with connect(url + "/a", ping_interval=None, compression=None) as ws:
        conn = await proxy.wait_for_connection_async("/a")
        base = await one_way(ws, n)
        out["base_one_way_ms"] = statistics.median(base) * 1000
        for lat in (0.02, 0.1, 0.5):
            proxy.shape(conn, to="client", latency=lat)
            d = await one_way(ws, n)
            err = [(x - statistics.median(base) - lat) * 1000 for x in d]
            out[f"latency_{int(lat * 1000)}ms"] = {
                "median_err_ms": statistics.median(err),
                "p95_abs_err_ms": pct([abs(e) for e in err], 0.95),
                "max_abs_err_ms": max(abs(e) for e in err),
            }
        proxy.shape(conn, to="client", latency="100ms", jitter="30ms")
        d = [(x - statistics.median(base)) * 1000 for x in await one_way(ws, n * 2, 0.1)]
        out["jitter_100ms_30ms"] = {
            "min_ms": min(d),
            "max_ms": max(d),
            "stdev_ms": statistics.pstdev(d),
            "uniform_stdev_ms": 60 / 12**0.5,
        }
        proxy.shape(conn)
        for label, rate in (("64kbit", 8_000), ("1mbit", 125_000), ("10mbit", 1_250_000)):
            proxy.shape(conn, to="client", rate=rate)
            secs = 1.5 if quick else 4.0
            size = max(200, min(20_000, int(rate / 20)))
            count = max(4, int(rate * secs / size))
            await ws.send(f"push {count} {size}")
            times = []
            for _ in range(count):
                await asyncio.wait_for(ws.recv(), 120)
                times.append(time.monotonic())
            wire = size + (2 if size < 126 else 4)
            measured = (count - 1) * wire / (times[-1] - times[0])
            out[f"rate_{label}"] = {"set_Bps": rate, "measured_Bps": measured,
                                    "err_pct": (measured - rate) / rate * 100}  # fmt: skip
            proxy.shape(conn)
        proxy.shape(conn, to="client", pongs="delay:300ms")
        rtts = [await asyncio.wait_for(await ws.ping(), 10) for _ in range(5 if quick else 15)]
        out["pong_delay_300ms"] = {"median_err_ms": (statistics.median(rtts) - 0.3) * 1000,
                                   "max_err_ms": (max(rtts) - 0.3) * 1000}  # fmt: skip
        proxy.shape(conn)
    # rule delay (a rules file loaded over the tap)
    proxy.load_rules('[[rule]]\nmatch = "from:client slow"\ndelay = "300ms"\n')
    async with connect(url + "/r", ping_interval=None) as ws:
        errs = []
        for _ in range(5 if quick else 15):
            t0 = time.monotonic()
            await ws.send("slow")
            await asyncio.wait_for(ws.recv(), 10)
            errs.append((time.monotonic() - t0 - 0.3) * 1000)
        out["rule_delay_300ms"] = {
            "median_err_ms": statistics.median(errs),
            "max_err_ms": max(errs),
        }
    proxy.load_rules("")
    # slicing and fragments at a raw client
    async with Raw(url + "/s") as c:
        conn = await proxy.wait_for_connection_async("/s")
        for delay in (0.0, 0.005):
            proxy.shape(conn, to="client", slice=100, slice_delay=delay)
            c.reads.clear()
            c.frames.clear()
            c.send("push 1 10000")
            deadline = time.monotonic() + 30
            while not c.frames and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            out[f"slice_100B_{int(delay * 1000)}ms"] = {
                "reads": len(c.reads),
                "ideal_reads": 101,
                "max_read": max(c.reads),
                "reads_over_100B": sum(1 for r in c.reads if r > 100),
            }
        proxy.shape(conn, to="client", fragment=1000)
        c.frames.clear()
        c.send("push 1 10500")
        deadline = time.monotonic() + 30
        while (
            not any(f.fin and f.opcode == Opcode.CONT for f in c.frames)
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.01)
        sizes = [len(f.data) for f in c.frames]
        out["fragment_1000B"] = {"frames": len(sizes), "sizes": sorted(set(sizes))}
    # pongs dropped: how long the client's heartbeat takes to give up
    async with connect(url + "/hb", ping_interval=0.2, ping_timeout=0.5) as ws:
        conn = await proxy.wait_for_connection_async("/hb")
        await asyncio.sleep(0.3)
        proxy.shape(conn, to="client", pongs="drop")
        t0 = time.monotonic()
        code = None
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as e:
            code = e.sent.code if e.sent else None
        out["pongs_drop_heartbeat"] = {
            "fired_after_s": time.monotonic() - t0,
            "expected_within_s": 0.7,
            "code": code,
        }
    # stall: what the proxy holds while the server floods a stalled client
    async with connect(url + "/st", ping_interval=None, compression=None, max_queue=2) as ws:
        conn = await proxy.wait_for_connection_async("/st")
        proxy.shape(conn, to="client", stall=True)
        rss0 = _rss(proxy)
        await ws.send("flood 3000")  # 30 MB
        await asyncio.sleep(2.0)
        held = _rss(proxy) - rss0
        proxy.shape(conn)
        got = 0
        with contextlib.suppress(TimeoutError):
            while got < 3000:
                await asyncio.wait_for(ws.recv(), 10)
                got += 1
        out["stall_30MB_flood"] = {"proxy_rss_growth_kib": held, "delivered_after": got}
    return out


def _rss(proxy: Proxy) -> int:
    pid = proxy._proc.pid  # type: ignore[union-attr]
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _burn(until: float) -> None:
    x = 0
    while time.monotonic() < until:
        x += 1


async def run(quick: bool) -> dict[str, Any]:
    async with serve(handler, "127.0.0.1", 0, max_size=None) as srv:
        port = srv.sockets[0].getsockname()[1]
        with Proxy(f"http://127.0.0.1:{port}") as proxy:
            return await measure(proxy, quick)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--load", type=int, default=0, help="busy processes running alongside")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    burners = []
    results = []
    try:
        if args.load:
            until = time.monotonic() + 600
            for _ in range(args.load):
                p = multiprocessing.Process(target=_burn, args=(until,), daemon=True)
                p.start()
                burners.append(p)
        for _ in range(args.repeat):
            results.append(asyncio.run(run(args.quick)))
    finally:
        for p in burners:
            p.terminate()
            p.join(5)
    r = results[-1]
    rows = []
    for key in ("latency_20ms", "latency_100ms", "latency_500ms"):
        v = r[key]
        med = f"median {v['median_err_ms']:+.1f} ms"
        p95 = f"p95 |err| {v['p95_abs_err_ms']:.1f} ms"
        rows.append((key, med, p95, f"max |err| {v['max_abs_err_ms']:.1f} ms"))
    j = r["jitter_100ms_30ms"]
    span = f"{j['min_ms']:.0f}..{j['max_ms']:.0f} ms"
    uni = f"(uniform: {j['uniform_stdev_ms']:.1f})"
    rows.append(("jitter 100+-30ms", span, f"stdev {j['stdev_ms']:.1f} ms", uni))
    for label in ("64kbit", "1mbit", "10mbit"):
        v = r[f"rate_{label}"]
        rows.append(
            (f"rate {label}", f"{v['measured_Bps']:.0f} B/s", f"err {v['err_pct']:+.1f} %", "")
        )
    for key in ("pong_delay_300ms", "rule_delay_300ms"):
        v = r[key]
        rows.append(
            (key, f"median {v['median_err_ms']:+.1f} ms", f"max {v['max_err_ms']:+.1f} ms", "")
        )
    for key in ("slice_100B_0ms", "slice_100B_5ms"):
        v = r[key]
        reads = f"{v['reads']} reads (ideal {v['ideal_reads']})"
        over = f"{v['reads_over_100B']} over 100 B"
        rows.append((key, reads, f"max read {v['max_read']} B", over))
    f = r["fragment_1000B"]
    rows.append(("fragment 1000B", f"{f['frames']} frames", f"sizes {f['sizes']}", ""))
    p = r["pongs_drop_heartbeat"]
    fired = f"1011 after {p['fired_after_s']:.2f} s"
    expect = f"(<= {p['expected_within_s']} s)"
    rows.append(("pongs drop", fired, expect, f"code {p['code']}"))
    s = r["stall_30MB_flood"]
    rows.append(
        (
            "stall, 30 MB flood",
            f"proxy RSS +{s['proxy_rss_growth_kib']} KiB",
            f"then {s['delivered_after']} delivered",
            "",
        )
    )
    print(
        f"# shaping accuracy ({machine()}, load {args.load}, {'quick' if args.quick else 'full'})"
    )
    print(table(["condition", "measured", "", ""], rows))
    save_json(f"shaping-load{args.load}", {"load": args.load, "runs": results})
    print(json.dumps(r["base_one_way_ms"]), "ms one way without conditions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
