"""Throughput of a WebSocket connection through four set-ups, measured in the same run.

  (a) direct          client -> server
  (b) mitmdump        plain ``mitmdump --mode reverse:...`` (its WebSocket layer), no addon
  (c) mitmdump raw    ``mitmdump --set websocket=false`` (raw TCP relay), no addon
  (d) devconsole      ``devconsole proxy`` with full capture AND a tap client attached
                      (a separate process decoding every event into a Session, like the TUI)
  (e) devconsole, no tap client (only with --configs ...e or --full)

Workloads (text messages, ASCII payload, no compression; see bench/_client.py):

  echo-100 / echo-16k   websockets client, up to 16 messages in flight, echo server;
                        rate = round trips/s
  flood-100 / flood-16k one-way flood client -> server at the speed of a websockets
                        asyncio sender (``await ws.send()`` in a loop): what an application
                        produces; the websockets server counts and acks every 100 (16k:
                        every 4); the sender keeps at most 5000 (16k: 64) unacked
  raw-100 / raw-16k     the same flood from a raw socket writing pre-built masked frames
                        (a sender that costs ~nothing): the capacity of the proxy itself
  down-100              one-way flood server -> client: the websockets server sends, a raw
                        socket receiver counts frames and acks

Each (config, workload) runs ``--reps`` times (default 3), configs interleaved and rotated
between repetitions; the table shows medians, ratios of medians, and the proxy process's
CPU time per message (less sensitive to other load on the machine than msgs/s).

    .venv/bin/python bench/throughput.py [--quick] [--seconds S] [--reps N] [--configs abcd]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    Proc,
    cpu_seconds,
    fmt_num,
    machine,
    median,
    run_client,
    save_json,
    start_devconsole,
    start_mitmdump,
    start_server,
    start_tapsink,
    stop_tapsink,
    table,
    tempdir,
)

CONFIGS = {
    "a": "direct",
    "b": "mitmdump",
    "c": "mitmdump raw",
    "d": "devconsole+tap",
    "e": "devconsole",
}

# name: (workload, size, client options)
WORKLOADS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "echo-100": ("echo", 100, {"window": 16, "count": 2_000_000}),
    "echo-16k": ("echo", 16384, {"window": 16, "count": 500_000}),
    "flood-100": ("wsup", 100, {"window": 5000, "ack": 100, "count": 10_000_000}),
    "flood-16k": ("wsup", 16384, {"window": 64, "ack": 4, "count": 1_000_000}),
    "raw-100": ("up", 100, {"window": 5000, "ack": 100, "count": 10_000_000}),
    "raw-16k": ("up", 16384, {"window": 64, "ack": 4, "count": 1_000_000}),
    "down-100": ("down", 100, {"window": 5000, "ack": 100, "count": 5_000_000}),
}

TARGETS = [("d", "b", 10.0), ("d", "c", 0.9), ("d", "a", None)]


def run_config(
    cfg: str, server: Proc, confdir: str, tmp: str, workloads: list[str], seconds: float
) -> list[dict[str, Any]]:
    proxy: Proc | None = None
    sink: Proc | None = None
    results: list[dict[str, Any]] = []
    try:
        if cfg == "a":
            port = server.port
        elif cfg in ("b", "c"):
            proxy = start_mitmdump(server.port, confdir, websocket=cfg == "b")
            port = proxy.port
        else:
            tap = os.path.join(tmp, f"tap-{cfg}.sock")
            proxy = start_devconsole(server.port, confdir, tap)
            port = proxy.port
            if cfg == "d":
                sink = start_tapsink(tap)
        time.sleep(0.3)
        for wl in workloads:
            kind, size, opts = WORKLOADS[wl]
            cpu0 = cpu_seconds(proxy.pid) if proxy else 0.0
            tcpu0 = cpu_seconds(sink.pid) if sink else 0.0
            rec: dict[str, Any] = {"config": cfg, "workload": wl}
            try:
                res = run_client(
                    kind, port, timeout=seconds * 4 + 60, size=size, seconds=seconds, **opts
                )
            except Exception as e:
                rec.update(rate=float("nan"), error=str(e)[-300:])
                print(f"  {CONFIGS[cfg]:>15} {wl:>9}: FAILED {str(e)[-200:]}", flush=True)
            else:
                rec.update(res)
                msgs = res["messages"] * (2 if kind == "echo" else 1)  # through the proxy
                if proxy:
                    rec["proxy_cpu_us"] = (cpu_seconds(proxy.pid) - cpu0) / msgs * 1e6
                if sink:
                    rec["tap_cpu_us"] = (cpu_seconds(sink.pid) - tcpu0) / msgs * 1e6
                print(
                    f"  {CONFIGS[cfg]:>15} {wl:>9}: {fmt_num(res['rate']):>9} msgs/s"
                    + (
                        f"  proxy CPU {rec['proxy_cpu_us']:.1f} us/msg"
                        if "proxy_cpu_us" in rec
                        else ""
                    ),
                    flush=True,
                )
            results.append(rec)
            time.sleep(0.2)
    finally:
        if sink is not None:
            stats = stop_tapsink(sink)
            if results:
                results[-1]["tap_stats"] = stats
        if proxy is not None:
            proxy.stop()
    return results


def summarize(results: list[dict[str, Any]], configs: str, workloads: list[str]) -> str:
    def vals(cfg: str, wl: str, key: str) -> list[float]:
        return [
            r[key]
            for r in results
            if r["config"] == cfg and r["workload"] == wl and key in r and r[key] == r[key]
        ]

    med = {(c, w): median(vals(c, w, "rate")) for c in configs for w in workloads}
    headers = ["workload", *(f"({c}) {CONFIGS[c]}" for c in configs)]
    ratio_cols = [(x, y, t) for x, y, t in TARGETS if x in configs and y in configs]
    headers += [f"({x})/({y})" + (f" [target >= {t:g}x]" if t else "") for x, y, t in ratio_cols]
    rows = []
    for w in workloads:
        row = [w + (" (round trips/s)" if w.startswith("echo") else " (msgs/s)")]
        row += [fmt_num(med[(c, w)]) for c in configs]
        for x, y, t in ratio_cols:
            r = med[(x, w)] / med[(y, w)] if med[(y, w)] else float("nan")
            mark = "" if t is None or r != r else (" ok" if r >= t else " MISS")
            row.append(f"{r:.2f}x{mark}")
        rows.append(row)
    out = [table(headers, rows)]
    pcs = [c for c in configs if c != "a"]
    if pcs:
        rows = []
        for w in workloads:
            row = [w]
            for c in pcs:
                v = median(vals(c, w, "proxy_cpu_us"))
                row.append(fmt_num(v))
            if "d" in configs:
                row.append(fmt_num(median(vals("d", w, "tap_cpu_us"))))
            rows.append(row)
        hdr = ["proxy CPU us/message", *(f"({c}) {CONFIGS[c]}" for c in pcs)]
        if "d" in configs:
            hdr.append("(d) tap client process")
        out.append(table(hdr, rows))
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs (1.5 s per workload)")
    ap.add_argument("--seconds", type=float, default=None, help="time limit per run")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--configs", default="abcd", help="subset of abcde")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    args = ap.parse_args(argv)
    seconds = args.seconds or (1.5 if args.quick else 5.0)
    configs = "".join(c for c in args.configs if c in CONFIGS)
    workloads = [w for w in args.workloads.split(",") if w in WORKLOADS]
    print(f"# throughput: {machine()}")
    print(f"# {seconds:g} s per run, {args.reps} repetitions, configs {configs}", flush=True)
    server = start_server()
    results: list[dict[str, Any]] = []
    try:
        with tempdir() as tmp:
            confdir = os.path.join(tmp, "conf")
            for rep in range(args.reps):
                order = configs[rep % len(configs) :] + configs[: rep % len(configs)]
                print(f"repetition {rep + 1}/{args.reps}", flush=True)
                for cfg in order:
                    for r in run_config(cfg, server, confdir, tmp, workloads, seconds):
                        r["rep"] = rep
                        results.append(r)
    finally:
        server.stop()
    print()
    print(summarize(results, configs, workloads))
    taps = [r["tap_stats"] for r in results if "tap_stats" in r]
    if taps:
        missed = sum(t.get("missed", 0) for t in taps)
        got = sum(t.get("messages", 0) for t in taps)
        print(
            f"\ntap client: {got:,} messages received in all, {missed:,} events skipped by "
            "the proxy because the client was too slow (by design: a slow viewer never slows "
            "the proxy)"
        )
    with contextlib.suppress(OSError):
        p = save_json("throughput", {"machine": machine(), "seconds": seconds, "results": results})
        print(f"raw results: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
