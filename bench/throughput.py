"""Throughput, latency and many connections through several set-ups, in the same run.

  (a) direct          client -> server
  (b) mitmdump        plain ``mitmdump --mode reverse:...`` (its WebSocket layer), no addon
  (c) mitmdump raw    ``mitmdump --set websocket=false`` (raw TCP relay), no addon
  (d) devconsole      ``devconsole proxy`` with full capture AND a tap client attached
                      (a separate process decoding every event into a Session, like the TUI)
  (e) devconsole, no tap client (only with --configs ...e)
  (g) bare asyncio relay (bench/_bare_relay.py): two asyncio protocols copying bytes, no
      capture, no HTTP; the floor of an asyncio proxy on this machine
  (f) devconsole + tap client, fast relay off (``--set devconsole_fast_relay=false``:
      mitmproxy's raw TCP relay all along, the path before issue 18)
  (h) (d) with the tap client at ``nice -n 19``: the same proxy work, but the viewer's
      CPU yields to client, server and proxy (how much of (d)-(e) is the viewer's CPU
      competing for the machine's cores rather than the proxy's own work)

Workloads (text messages, ASCII payload, no compression; see bench/_client.py):

  echo-100 / echo-16k   websockets client, up to 16 messages in flight, echo server;
                        rate = round trips/s
  flood-100 / flood-16k one-way flood client -> server at the speed of a websockets
                        asyncio sender (``await ws.send()`` in a loop): what an application
                        produces; the websockets server counts and acks every 100 (16k:
                        every 4); the sender keeps at most 5000 (16k: 64) unacked
  raw-100 / raw-16k     the same flood from a raw socket writing pre-built masked frames
                        (a sender that costs ~nothing): the capacity of the proxy itself
  down-100 / down-16k   one-way flood server -> client: the websockets server sends, a raw
                        socket receiver counts frames and acks
  echo64-100            echo with 64 messages in flight
  rtt-100               one message in flight (websockets client and echo server): every
                        round trip timed; p50/p99, and what the proxy adds to direct's
  many-2000             2,000 websockets connections, each one round trip per second
                        (random phase): p50/p99 round trip, proxy CPU in % of a core and
                        per message, proxy RSS per connection (``--conns`` changes N)
  idle-10000            10,000 upgraded connections that send nothing: proxy RSS
                        (``--idle-conns`` changes N)

Each (config, workload) runs ``--reps`` times (default 3), configs interleaved and rotated
between repetitions; the table shows medians, ratios of medians, and the proxy process's
CPU time per message (less sensitive to other load on the machine than msgs/s).

    .venv/bin/python bench/throughput.py [--quick] [--seconds S] [--reps N] [--configs abcd]
        [--workloads rtt-100,echo64-100,...|issue18]

``--tls``: the same over wss: the server has a self-signed certificate, the proxies
terminate TLS on both sides (``reverse:https://``, ``ssl_insecure``), clients do not
verify; not with the raw flood sender (raw-*) or the bare relay (g).

``--workloads issue18`` is the set of issue 18's goals (rtt-100, many-2000, idle-10000,
echo64-100, down-100, down-16k, flood-100, flood-16k). Many connections need file
descriptors: the script raises its limit (inherited by every process it starts) with
``resource.setrlimit``, up to the hard limit (raised too when running as root).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common
from _common import (
    Proc,
    cpu_seconds,
    fmt_num,
    machine,
    median,
    run_client,
    save_json,
    start_bare_relay,
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
    "f": "devconsole+tap slow",
    "g": "bare asyncio relay",
    "h": "devconsole+tap nice",
}
EXTRA = {"f": ["--set", "devconsole_fast_relay=false"]}

# name: (workload, size, client options)
WORKLOADS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "echo-100": ("echo", 100, {"window": 16, "count": 2_000_000}),
    "echo-16k": ("echo", 16384, {"window": 16, "count": 500_000}),
    "flood-100": ("wsup", 100, {"window": 5000, "ack": 100, "count": 10_000_000}),
    "flood-16k": ("wsup", 16384, {"window": 64, "ack": 4, "count": 1_000_000}),
    "raw-100": ("up", 100, {"window": 5000, "ack": 100, "count": 10_000_000}),
    "raw-16k": ("up", 16384, {"window": 64, "ack": 4, "count": 1_000_000}),
    "down-100": ("down", 100, {"window": 5000, "ack": 100, "count": 5_000_000}),
    "down-16k": ("down", 16384, {"window": 64, "ack": 4, "count": 400_000}),
    "echo64-100": ("echo", 100, {"window": 64, "count": 2_000_000}),
    "rtt-100": ("rtt", 100, {"count": 1_000_000}),
    "many-2000": ("many", 100, {"conns": 2000, "interval": 1.0}),
    "idle-10000": ("idle", 0, {"conns": 10_000, "hold": 3.0}),
}
PRESETS = {
    "issue18": [
        "rtt-100",
        "many-2000",
        "idle-10000",
        "echo64-100",
        "down-100",
        "down-16k",
        "flood-100",
        "flood-16k",
    ],
}
LATENCY = ("rtt",)
MANY = ("many", "idle")
# issue 18: (d) against direct (its floods are server -> client)
DIRECT_TARGETS = {"echo64-100": 0.8, "down-100": 0.8, "down-16k": 0.7}

TARGETS = [("d", "b", 10.0), ("d", "c", 0.9), ("d", "a", None)]


def run_config(
    cfg: str,
    server: Proc,
    confdir: str,
    tmp: str,
    workloads: list[str],
    seconds: float,
    conns: dict[str, int],
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
        elif cfg == "g":
            proxy = start_bare_relay(server.port)
            port = proxy.port
        else:
            tap = os.path.join(tmp, f"tap-{cfg}.sock")
            proxy = start_devconsole(server.port, confdir, tap, EXTRA.get(cfg, ()))
            port = proxy.port
            if cfg in ("d", "f", "h"):
                sink = start_tapsink(tap, nice=19 if cfg == "h" else 0)
        time.sleep(0.3)
        for wl in workloads:
            kind, size, opts = WORKLOADS[wl]
            cpu0 = cpu_seconds(proxy.pid) if proxy else 0.0
            tcpu0 = cpu_seconds(sink.pid) if sink else 0.0
            rec: dict[str, Any] = {"config": cfg, "workload": wl}
            if kind in MANY:
                opts = {**opts, "pid": proxy.pid if proxy else 0}
                if kind == "many" and conns.get("many"):
                    opts["conns"] = conns["many"]
                if kind == "idle" and conns.get("idle"):
                    opts["conns"] = conns["idle"]
            timeout = seconds * 4 + 60 + (int(opts.get("conns", 0)) * 0.1)
            try:
                res = run_client(kind, port, timeout=timeout, size=size, seconds=seconds, **opts)
            except Exception as e:
                rec.update(rate=float("nan"), error=str(e)[-300:])
                print(f"  {CONFIGS[cfg]:>15} {wl:>9}: FAILED {str(e)[-200:]}", flush=True)
            else:
                rec.update(res)
                # messages through the proxy
                msgs = res["messages"] * (2 if kind in ("echo", "rtt", "many") else 1)
                if proxy and msgs:
                    if kind == "many":  # the measuring window only, not the set-up
                        rec["proxy_cpu_us"] = res["proxy_cpu_s"] / msgs * 1e6
                        rec["proxy_cpu_pct"] = 100 * res["proxy_cpu_s"] / res["seconds"]
                    else:
                        rec["proxy_cpu_us"] = (cpu_seconds(proxy.pid) - cpu0) / msgs * 1e6
                if sink and msgs:
                    rec["tap_cpu_us"] = (cpu_seconds(sink.pid) - tcpu0) / msgs * 1e6
                if kind == "idle":
                    what = (
                        f"{res['alive']:,.0f}/{res['conns']:,.0f} open, proxy RSS "
                        f"{res['rss1_kib'] / 1024:.0f} MB ({res['rss_per_conn_kib']:.1f} KiB/conn)"
                    )
                elif kind in ("rtt", "many"):
                    what = f"p50 {res['p50_us']:,.0f} us, p99 {res['p99_us']:,.0f} us"
                else:
                    what = f"{fmt_num(res['rate']):>9} msgs/s"
                print(
                    f"  {CONFIGS[cfg]:>15} {wl:>10}: {what}"
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

    def med(cfg: str, wl: str, key: str) -> float:
        return median(vals(cfg, wl, key))

    def kind(wl: str) -> str:
        return WORKLOADS[wl][0]

    out = []
    flows = [w for w in workloads if kind(w) not in LATENCY + MANY]
    if flows:
        rate = {(c, w): med(c, w, "rate") for c in configs for w in flows}
        headers = ["workload", *(f"({c}) {CONFIGS[c]}" for c in configs)]
        ratio_cols = [(x, y, t) for x, y, t in TARGETS if x in configs and y in configs]
        headers += [
            f"({x})/({y})" + (f" [target >= {t:g}x]" if t else "") for x, y, t in ratio_cols
        ]
        rows = []
        for w in flows:
            row = [w + (" (round trips/s)" if kind(w) == "echo" else " (msgs/s)")]
            row += [fmt_num(rate[(c, w)]) for c in configs]
            for x, y, t in ratio_cols:
                t = t if t is not None or y != "a" else DIRECT_TARGETS.get(w)
                r = rate[(x, w)] / rate[(y, w)] if rate[(y, w)] else float("nan")
                mark = "" if t is None or r != r else (" ok" if r >= t else " MISS")
                row.append(f"{r:.2f}x{mark}" + (f" (>= {t:g})" if t and y == "a" else ""))
            rows.append(row)
        out.append(table(headers, rows))
        pcs = [c for c in configs if c != "a"]
        if pcs:
            rows = []
            for w in flows:
                row = [w, *(fmt_num(med(c, w, "proxy_cpu_us")) for c in pcs)]
                if "d" in configs:
                    row.append(fmt_num(med("d", w, "tap_cpu_us")))
                rows.append(row)
            hdr = ["proxy CPU us/message", *(f"({c}) {CONFIGS[c]}" for c in pcs)]
            if "d" in configs:
                hdr.append("(d) tap client process")
            out.append(table(hdr, rows))
    for w in workloads:
        if kind(w) == "rtt":
            base50, base99 = med("a", w, "p50_us"), med("a", w, "p99_us")
            rows = []
            for c in configs:
                p50, p99 = med(c, w, "p50_us"), med(c, w, "p99_us")
                row = [f"({c}) {CONFIGS[c]}", fmt_num(p50), fmt_num(p99)]
                if c != "a" and "a" in configs:
                    a50, a99 = p50 - base50, p99 - base99
                    row += [
                        f"{a50:+,.0f}" + (" ok" if a50 <= 60 else " MISS"),
                        f"{a99:+,.0f}" + (" ok" if a99 <= 300 else " MISS"),
                    ]
                else:
                    row += ["", ""]
                row.append(fmt_num(med(c, w, "proxy_cpu_us")) if c != "a" else "")
                rows.append(row)
            hdr = [
                f"{w}: round trip, one in flight",
                "p50 us",
                "p99 us",
                "added p50 [<= 60]",
                "added p99 [<= 300]",
                "proxy CPU us/msg",
            ]
            out.append(table(hdr, rows))
        elif kind(w) == "many":
            base99 = med("a", w, "p99_us")
            rows = []
            for c in configs:
                p99 = med(c, w, "p99_us")
                cpu = med(c, w, "proxy_cpu_pct")
                row = [
                    f"({c}) {CONFIGS[c]}",
                    fmt_num(med(c, w, "rate")),
                    fmt_num(med(c, w, "p50_us")),
                    fmt_num(p99),
                ]
                if c != "a":
                    r = p99 / base99 if base99 else float("nan")
                    row += [
                        f"{r:.2f}x" + (" ok" if r <= 2 else " MISS"),
                        f"{cpu:.1f}" + (" ok" if cpu <= 15 else " MISS"),
                        fmt_num(med(c, w, "proxy_cpu_us")),
                        fmt_num(med(c, w, "rss_per_conn_kib")),
                    ]
                else:
                    row += ["", "", "", ""]
                rows.append(row)
            hdr = [
                f"{w}: sparse round trips",
                "round trips/s",
                "p50 us",
                "p99 us",
                "p99 / direct [<= 2x]",
                "proxy CPU % of a core [<= 15]",
                "proxy CPU us/msg",
                "RSS KiB/conn",
            ]
            out.append(table(hdr, rows))
        elif kind(w) == "idle":
            rows = []
            for c in configs:
                if c == "a":
                    continue
                rss0 = med(c, w, "rss0_kib") / 1024
                per = med(c, w, "rss_per_conn_kib")
                at10k = rss0 + 10_000 * per / 1024
                rows.append(
                    [
                        f"({c}) {CONFIGS[c]}",
                        f"{fmt_num(med(c, w, 'alive'))} of {fmt_num(med(c, w, 'conns'))}",
                        fmt_num(rss0),
                        fmt_num(med(c, w, "rss1_kib") / 1024),
                        fmt_num(per),
                        f"{at10k:,.0f}" + (" ok" if at10k <= 400 else " MISS"),
                        fmt_num(med(c, w, "rate")),
                    ]
                )
            hdr = [
                f"{w}: idle connections",
                "still open",
                "RSS before, MB",
                "RSS with them open, MB",
                "KiB/conn",
                "RSS for 10,000, MB [<= 400]",
                "opened/s",
            ]
            out.append(table(hdr, rows))
    return "\n\n".join(out)


def raise_fd_limit(want: int) -> int:
    """Raise this process's file-descriptor limit (children inherit it) toward ``want``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))  # root only
        return want
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs (1.5 s per workload)")
    ap.add_argument("--seconds", type=float, default=None, help="time limit per run")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--configs", default="abcd", help="subset of abcdefgh")
    ap.add_argument(
        "--workloads",
        default=",".join(w for w in WORKLOADS if WORKLOADS[w][0] not in MANY),
        help="comma-separated, or a preset: " + ", ".join(PRESETS),
    )
    ap.add_argument("--tls", action="store_true", help="everything over wss")
    ap.add_argument("--conns", type=int, default=0, help="many-2000: this many instead")
    ap.add_argument("--idle-conns", type=int, default=0, help="idle-10000: this many instead")
    args = ap.parse_args(argv)
    seconds = args.seconds or (1.5 if args.quick else 5.0)
    configs = "".join(c for c in args.configs if c in CONFIGS)
    names: list[str] = []
    for w in args.workloads.split(","):
        names += PRESETS.get(w, [w])
    workloads = [w for w in names if w in WORKLOADS]
    if args.tls:
        workloads = [w for w in workloads if WORKLOADS[w][0] != "up"]
        configs = configs.replace("g", "")
    conns = {"many": args.conns, "idle": args.idle_conns}
    need = 0
    for w in workloads:
        if WORKLOADS[w][0] in MANY:
            n = conns.get(WORKLOADS[w][0]) or int(WORKLOADS[w][2]["conns"])
            need = max(need, 3 * n + 1024)  # the proxy holds two sockets per connection
    if need:
        got = raise_fd_limit(need)
        idle = conns.get("idle") or int(WORKLOADS["idle-10000"][2]["conns"])
        if any(WORKLOADS[w][0] == "idle" for w in workloads) and 2 * idle + 200 > got:
            # the proxy holds two sockets per connection; RSS is extrapolated to 10,000
            conns["idle"] = (got - 200) // 2
            print(
                f"# file descriptor limit {got} (hard limit; raising it needs "
                f"CAP_SYS_RESOURCE): idle-10000 opens {conns['idle']:,} connections",
                flush=True,
            )
    print(f"# throughput: {machine()}")
    print(f"# {seconds:g} s per run, {args.reps} repetitions, configs {configs}", flush=True)
    results: list[dict[str, Any]] = []
    with tempdir() as tmp:
        if args.tls:
            _common.TLS_FILES = _common.make_cert(tmp)
            print("# over TLS (wss), terminated by each proxy", flush=True)
        server = start_server()
        try:
            confdir = os.path.join(tmp, "conf")
            for rep in range(args.reps):
                order = configs[rep % len(configs) :] + configs[: rep % len(configs)]
                print(f"repetition {rep + 1}/{args.reps}", flush=True)
                for cfg in order:
                    for r in run_config(cfg, server, confdir, tmp, workloads, seconds, conns):
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
    print(f"# load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
