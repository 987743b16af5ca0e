"""Memory of the proxy process over one long WebSocket connection.

One connection carries N text messages of 100 bytes, client -> server (a raw-socket
sender of pre-built masked frames, acked by the websockets server every 100 messages,
at most 5000 in flight; see bench/_client.py). Every ``--every`` acked messages the
proxy's RSS is read from /proc/PID/status (VmRSS). Runs:

  (d) paced              devconsole proxy, default buffer (100,000 messages / 256 MiB),
                         a tap client attached, the flood paced to --rate msgs/s (default
                         20,000) so that the viewer keeps up: the steady state
  (d) paced, 10k         the same with --buffer-messages 10000
  (d) flood              default buffer, tap client attached, unpaced: the viewer falls
                         behind and its queue in the proxy grows (bounded at 200,000
                         events by devconsole.tap.MAX_QUEUE)
  (d) flood, no viewer   default buffer, no tap client, unpaced: the ring buffer alone
  (b) mitmdump           plain mitmdump (WebSocket layer), no addon, unpaced (time-limited)
  (d) stalled viewer     (--stalled-viewer, and in --full) 64 KiB messages, --buffer-bytes
                         64m, a tap client attached but stopped (SIGSTOP), like a suspended
                         TUI: 12,000 messages

devconsole must stay flat once its buffer is full (growth < 20 MB); mitmdump grows.

    .venv/bin/python bench/memory.py [--quick] [--full] [--messages N] [--every K]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _client import flood_up
from _common import (
    HOST,
    Proc,
    machine,
    rss_kib,
    save_json,
    start_devconsole,
    start_mitmdump,
    start_server,
    start_tapsink,
    stop_tapsink,
    table,
    tempdir,
)

GROWTH_LIMIT_MB = 20.0


def run(
    label: str,
    proxy: Proc,
    messages: int,
    every: int,
    seconds: float,
    size: int = 100,
    window: int = 5000,
    ack: int = 100,
    rate: float = 0.0,
) -> dict[str, Any]:
    series: list[tuple[int, float, float]] = []  # (messages, RSS MB, seconds)
    t0 = time.perf_counter()

    def sample(n: int) -> None:
        mb = rss_kib(proxy.pid) / 1024
        series.append((n, mb, time.perf_counter() - t0))
        print(f"  {label}: {n:>9,} messages  RSS {mb:8.1f} MB", flush=True)

    series.append((0, rss_kib(proxy.pid) / 1024, 0.0))
    try:
        res = flood_up(HOST, proxy.port, size, messages, seconds, window, ack, sample, every, rate)
    except Exception as e:
        print(f"  {label}: FAILED {e}", flush=True)
        res = {"messages": series[-1][0], "error": str(e)}
    time.sleep(0.5)
    final = rss_kib(proxy.pid) / 1024
    return {"label": label, "series": series, "result": res, "final_mb": final, "every": every}


def growth_after(series: list[tuple[int, float, float]], start: int) -> tuple[float, float]:
    """(last - first, max - first) of the RSS samples at or after ``start`` messages."""
    after = [mb for n, mb, _ in series if n >= start]
    if len(after) < 2:
        return float("nan"), float("nan")
    return after[-1] - after[0], max(after) - after[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200,000 messages, a sample per 20,000")
    ap.add_argument("--full", action="store_true", help="also the stalled-viewer run")
    ap.add_argument("--messages", type=int, default=None)
    ap.add_argument("--every", type=int, default=None)
    ap.add_argument(
        "--seconds", type=float, default=None, help="time limit per run (mitmdump is slow)"
    )
    ap.add_argument("--stalled-viewer", action="store_true")
    ap.add_argument("--rate", type=float, default=20_000, help="pace of the paced runs")
    ap.add_argument("--skip-mitmdump", action="store_true")
    args = ap.parse_args(argv)
    messages = args.messages or (200_000 if args.quick else 1_000_000)
    every = args.every or (20_000 if args.quick else 100_000)
    seconds = args.seconds or (90.0 if args.quick else 600.0)
    print(f"# memory: {machine()}")
    print(
        f"# {messages:,} messages of 100 B on one connection, RSS every {every:,}; "
        f"time limit {seconds:g} s per run",
        flush=True,
    )
    runs: list[dict[str, Any]] = []
    server = start_server()
    try:
        with tempdir() as tmp:
            conf = os.path.join(tmp, "conf")
            # label, proxy options, buffer size, tap client, pace
            plans: list[tuple[str, list[str], int, bool, float]] = [
                ("(d) paced", [], 100_000, True, args.rate),
                ("(d) paced, 10k", ["--buffer-messages", "10000"], 10_000, True, args.rate),
                ("(d) flood", [], 100_000, True, 0.0),
                ("(d) flood, no viewer", [], 100_000, False, 0.0),
            ]
            for label, extra, buf, viewer, rate in plans:
                tap = os.path.join(tmp, f"tap{len(runs)}.sock")
                proxy = start_devconsole(server.port, conf, tap, extra)
                sink = start_tapsink(tap) if viewer else None
                try:
                    r = run(label, proxy, messages, every, seconds, rate=rate)
                finally:
                    r_tap = stop_tapsink(sink) if sink else {}
                    proxy.stop()
                r["buffer"] = buf
                r["tap"] = r_tap
                runs.append(r)
            if not args.skip_mitmdump:
                proxy = start_mitmdump(server.port, conf, websocket=True)
                try:
                    r = run("(b) mitmdump", proxy, messages, every, seconds)
                finally:
                    proxy.stop()
                r["buffer"] = None
                runs.append(r)
            if args.stalled_viewer or args.full:
                runs.append(stalled_viewer(server, conf, tmp, seconds))
    finally:
        server.stop()

    print()
    rows = []
    for r in runs:
        s = r["series"]
        done = s[-1][0]
        buf = r.get("buffer")
        rate = r["result"].get("rate", float("nan"))
        if buf:
            full_at = next((n for n, _, _ in s if n >= buf + r["every"]), done)
            last, peak = growth_after(s, full_at)
            verdict = (
                "-"
                if last != last
                else ("ok" if peak < GROWTH_LIMIT_MB else f"MISS (> {GROWTH_LIMIT_MB:g} MB)")
            )
            growth = f"{last:+.1f} (max {peak:+.1f}) after {full_at:,}"
        else:
            first = s[1][1] if len(s) > 1 else s[0][1]
            growth = f"{s[-1][1] - first:+.1f} from {s[1][0] if len(s) > 1 else 0:,}"
            verdict = "grows" if s[-1][1] - first > GROWTH_LIMIT_MB else "flat"
        rows.append(
            [
                r["label"],
                f"{done:,}",
                f"{rate:,.0f}" if rate == rate else "-",
                f"{s[0][1]:.0f}",
                f"{max(mb for _, mb, _ in s):.0f}",
                f"{s[-1][1]:.0f}",
                growth,
                verdict,
            ]
        )
    print(
        table(
            [
                "run",
                "messages",
                "msgs/s",
                "RSS start MB",
                "peak MB",
                "end MB",
                "growth MB once full",
                "verdict",
            ],
            rows,
        )
    )
    print()
    print("RSS series (MB) by messages sent:")
    for r in runs:
        print(f"  {r['label']}: " + ", ".join(f"{n // 1000}k={mb:.0f}" for n, mb, _ in r["series"]))
    for r in runs:
        t = r.get("tap")
        if t:
            print(
                f"  {r['label']}: the tap client received {t.get('messages', 0):,} messages, "
                f"{t.get('missed', 0):,} events skipped (viewer too slow)"
            )
    save_json("memory", {"machine": machine(), "runs": runs})
    return 0


def stalled_viewer(server: Proc, conf: str, tmp: str, seconds: float) -> dict[str, Any]:
    """64 KiB messages, a 64 MiB ring buffer, and a viewer that stops reading."""
    tap = os.path.join(tmp, "tap-stalled.sock")
    proxy = start_devconsole(server.port, conf, tap, ["--buffer-bytes", "64m"])
    sink = start_tapsink(tap)
    n = 12_000  # 750 MiB of payload; bounded so that a leak cannot exhaust the machine
    try:
        os.kill(sink.pid, signal.SIGSTOP)
        r = run(
            "(d) stalled viewer, 64 KiB",
            proxy,
            n,
            1000,
            seconds,
            size=65536,
            window=64,
            ack=4,
        )
    finally:
        os.kill(sink.pid, signal.SIGCONT)
        stop_tapsink(sink)
        proxy.stop()
    r["buffer"] = 1024  # 64 MiB / 64 KiB
    return r


if __name__ == "__main__":
    sys.exit(main())
