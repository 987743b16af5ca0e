"""How fast one proxy publishes its events to Redis, and what it costs per message.

  python bench/redis_publish.py [--seconds 3] [--reps 3] [--events 300000]

Needs redis-server (a private one is started on a free loopback port). Two parts:

1. the publisher alone (``RedisPublisher``, in this process): N ready-made 100-byte
   message events are queued as fast as the loop allows; the time until Redis has
   acknowledged all of them gives events/s, and this process's CPU time per event the
   cost of batching, encoding and redis-py (redis-server's own CPU is shown beside it);
2. the proxy end to end: a one-way flood of 100-byte messages from a raw socket (the
   fastest sender) through ``devconsole proxy`` without and with ``--publish``, the same
   run alternated ``--reps`` times: messages/s and the proxy process's CPU per message;
   the difference is what publishing adds. The stream is then read back to check that
   every event arrived (or was reported as a gap).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    cpu_seconds,
    fmt_num,
    machine,
    median,
    run_client,
    save_json,
    start_devconsole,
    start_server,
    table,
    tempdir,
)
from devconsole.model import GapEvent, Message, Snapshot
from devconsole.scale.config import parse_redis_url
from devconsole.scale.publisher import RedisPublisher
from devconsole.scale.redisserver import RedisServer


async def publisher_alone(url: str, n: int) -> dict[str, float]:
    pub = RedisPublisher(
        parse_redis_url(url),
        "bench",
        stream="bench",
        maxlen=2_000,
        snapshot=lambda: Snapshot(0, [], "", 0),
        max_pending=n + 1,
        max_pending_bytes=1 << 40,
    )
    payload = b"x" * 100
    events = [Message(i, "1", time.time(), "client", 1, payload, 100, 106) for i in range(n)]
    pub.start()
    while not pub.connected:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    base = pub.count
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(0, n, 1000):
        for ev in events[i : i + 1000]:
            pub.publish(ev)
        await asyncio.sleep(0)
    while pub.published_events - base < n:
        await asyncio.sleep(0.001)
    t1 = time.perf_counter()
    cpu = time.process_time() - cpu0
    await pub.stop()
    return {
        "events": n,
        "seconds": t1 - t0,
        "rate": n / (t1 - t0),
        "cpu_us": cpu / n * 1e6,
        "entries": pub.published_entries,
        "missed": pub.missed_total,
    }


async def read_back(url: str, name: str) -> tuple[int, int]:
    """(events in the stream for ``name``, events it reported as gaps)."""
    from devconsole.instances import KIND_EVENTS, decode_entry

    r = parse_redis_url(url).client()
    events = gaps = 0
    try:
        for _eid, fields in await r.xrange("devconsole"):
            e = decode_entry(fields)
            if e.name != name or e.kind != KIND_EVENTS:
                continue
            for ev in e.events():
                if isinstance(ev, GapEvent):
                    gaps += ev.missed
                elif isinstance(ev, Message):
                    events += 1
        await r.delete("devconsole")
    finally:
        await r.aclose()
    return events, gaps


def end_to_end(rs: RedisServer, seconds: float, reps: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    server = start_server()
    try:
        with tempdir() as tmp:
            confdir = os.path.join(tmp, "conf")
            for rep in range(reps):
                for cfg in ("devconsole", "devconsole --publish"):
                    extra = ["--publish", rs.url, "--name", f"b{rep}"] if "publish" in cfg else []
                    tap = os.path.join(tmp, f"tap{rep}.sock")
                    proxy = start_devconsole(server.port, confdir, tap, extra)
                    try:
                        time.sleep(0.5)
                        cpu0 = cpu_seconds(proxy.pid)
                        rcpu0 = cpu_seconds(rs.proc.pid) if rs.proc else 0.0
                        res = run_client(
                            "up",
                            proxy.port,
                            timeout=seconds * 4 + 60,
                            size=100,
                            seconds=seconds,
                            window=5000,
                            ack=100,
                            count=10_000_000,
                        )
                        msgs = res["messages"]
                        rec = {
                            "config": cfg,
                            "rep": rep,
                            "rate": res["rate"],
                            "messages": msgs,
                            "proxy_cpu_us": (cpu_seconds(proxy.pid) - cpu0) / msgs * 1e6,
                            "redis_cpu_us": (
                                (cpu_seconds(rs.proc.pid) - rcpu0) / msgs * 1e6 if rs.proc else 0
                            ),
                        }
                    finally:
                        proxy.stop()
                    if "publish" in cfg:
                        got, gaps = asyncio.run(read_back(rs.url, f"b{rep}"))
                        rec["stream_messages"] = got
                        rec["gap_events"] = gaps
                    print(
                        f"  {cfg:>21} rep {rep}: {fmt_num(rec['rate']):>8} msgs/s, proxy CPU "
                        f"{rec['proxy_cpu_us']:.1f} us/msg"
                        + (
                            f", {rec['stream_messages']} messages in the stream (the flood and"
                            f" its acks), {rec['gap_events']} reported as gaps"
                            if "publish" in cfg
                            else ""
                        ),
                        flush=True,
                    )
                    results.append(rec)
    finally:
        server.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--events", type=int, default=300_000)
    args = ap.parse_args(argv)
    print(machine())
    with RedisServer() as rs:
        print("1. the publisher alone")
        alone = []
        for rep in range(args.reps):
            rcpu0 = cpu_seconds(rs.proc.pid) if rs.proc else 0.0
            r = asyncio.run(publisher_alone(rs.url, args.events))
            r["redis_cpu_us"] = (
                (cpu_seconds(rs.proc.pid) - rcpu0) / args.events * 1e6 if rs.proc else 0
            )
            print(
                f"  rep {rep}: {fmt_num(r['rate'])} events/s, {r['cpu_us']:.2f} us CPU/event "
                f"(redis-server {r['redis_cpu_us']:.2f} us), {r['entries']} entries",
                flush=True,
            )
            alone.append(r)
        print("2. the proxy end to end (raw-socket flood of 100-byte messages)")
        e2e = end_to_end(rs, args.seconds, args.reps)
    rows = [
        [
            "publisher alone",
            fmt_num(median([r["rate"] for r in alone])) + " events/s",
            f"{median([r['cpu_us'] for r in alone]):.2f}",
            f"{median([r['redis_cpu_us'] for r in alone]):.2f}",
        ]
    ]
    for cfg in ("devconsole", "devconsole --publish"):
        rs_ = [r for r in e2e if r["config"] == cfg]
        rows.append(
            [
                cfg,
                fmt_num(median([r["rate"] for r in rs_])) + " msgs/s",
                f"{median([r['proxy_cpu_us'] for r in rs_]):.2f}",
                f"{median([r['redis_cpu_us'] for r in rs_]):.2f}",
            ]
        )
    plain = median([r["proxy_cpu_us"] for r in e2e if r["config"] == "devconsole"])
    pub = median([r["proxy_cpu_us"] for r in e2e if r["config"] != "devconsole"])
    print()
    print(table(["", "rate (median)", "CPU us/msg (this/proxy)", "redis-server us/msg"], rows))
    print(f"\npublishing adds {pub - plain:.2f} us of proxy CPU per message ({pub / plain:.2f}x)")
    save_json("redis_publish", {"alone": alone, "end_to_end": e2e})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
