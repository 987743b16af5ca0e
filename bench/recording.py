"""Recording without limit: proxy RSS and throughput with and without --record, and the
disk bandwidth of the recording.

One connection carries N text messages of 100 bytes, client -> server, through
``devconsole proxy`` (reverse mode, default ring buffer of 100,000 messages, no viewer),
unpaced (bench/_client.py flood_up: at most 5000 in flight, acked every 100). Every
``--every`` messages the proxy's RSS is read from /proc. Runs, in the same session:

  no record      devconsole proxy
  --record DIR   devconsole proxy --record DIR (segments of 64 MiB, written by a thread)

Then the recording is read back and its messages counted (all N must be there), and its
size divided by the run's time is the disk bandwidth.

    .venv/bin/python bench/recording.py [--messages 1000000] [--every 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _client import flood_up
from _common import HOST, machine, rss_kib, save_json, start_devconsole, start_server, tempdir

from devconsole.model import Message
from devconsole.store.segments import RecordingReader


def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def one(label: str, target: int, messages: int, every: int, record: str | None) -> dict[str, Any]:
    with tempdir() as tmp:
        extra = ["--record", record] if record else []
        proxy = start_devconsole(
            target, os.path.join(tmp, "conf"), os.path.join(tmp, "t.sock"), extra
        )
        series: list[tuple[int, float]] = [(0, rss_kib(proxy.pid) / 1024)]

        def sample(n: int) -> None:
            mb = rss_kib(proxy.pid) / 1024
            series.append((n, mb))
            print(f"  {label}: {n:>9,} messages  RSS {mb:8.1f} MB", flush=True)

        t0 = time.perf_counter()
        try:
            res = flood_up(HOST, proxy.port, 100, messages, 600, 5000, 100, sample, every)
        finally:
            elapsed = time.perf_counter() - t0
            time.sleep(0.5)
            final = rss_kib(proxy.pid) / 1024
            proxy.stop(30)
    out: dict[str, Any] = {
        "label": label,
        "messages": res.get("messages", 0),
        "seconds": elapsed,
        "msgs_per_s": res.get("messages", 0) / elapsed if elapsed else 0,
        "rss_series_mb": series,
        "final_rss_mb": final,
    }
    if record:
        size = dir_bytes(record)
        t1 = time.perf_counter()
        r = RecordingReader(record)
        n = sum(1 for ev in r if isinstance(ev, Message))
        out.update(
            disk_bytes=size,
            disk_mb_per_s=size / elapsed / 1e6,
            bytes_per_message=size / max(1, n),
            messages_on_disk=n,
            read_back_s=time.perf_counter() - t1,
            read_error=r.error,
            segments=len([f for f in os.listdir(record) if f.endswith(".dcap")]),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--every", type=int, default=100_000)
    args = ap.parse_args(argv)
    print(machine())
    server = start_server()
    results = []
    try:
        results.append(one("no record", server.port, args.messages, args.every, None))
        with tempdir("dcrec") as d:
            rec = os.path.join(d, "rec.dcap")
            results.append(one("--record", server.port, args.messages, args.every, rec))
    finally:
        server.stop()
    for r in results:
        after = [mb for n, mb in r["rss_series_mb"] if n >= 200_000]
        growth = (after[-1] - after[0]) if len(after) > 1 else float("nan")
        peak = max(mb for _, mb in r["rss_series_mb"])
        line = (
            f"{r['label']:<10} {r['messages']:>9,} msgs in {r['seconds']:6.1f} s "
            f"({r['msgs_per_s']:>8,.0f}/s)  RSS max {peak:6.1f} MB"
            f", growth after 200k {growth:+.1f} MB"
        )
        if "disk_bytes" in r:
            line += (
                f"  disk {r['disk_bytes'] / 1e6:.1f} MB in {r['segments']} segments "
                f"({r['disk_mb_per_s']:.1f} MB/s, {r['bytes_per_message']:.0f} B/msg), "
                f"{r['messages_on_disk']:,} messages read back in {r['read_back_s']:.1f} s"
            )
        print(line)
    if len(results) == 2 and results[0]["msgs_per_s"]:
        print(
            f"throughput with --record: {results[1]['msgs_per_s'] / results[0]['msgs_per_s']:.2f}x"
        )
    save_json("recording", {"machine": machine(), "runs": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
