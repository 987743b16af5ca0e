"""Profile the devconsole proxy's hot path during a flood, with py-spy.

Starts the websockets server, ``devconsole proxy`` and a tap client (as in
bench/throughput.py config (d)), attaches ``py-spy record`` to the proxy process for the
length of one workload, and prints the functions with the most samples (self and
inclusive). Needs py-spy (``.venv/bin/pip install py-spy``) and ptrace permission.

    .venv/bin/python bench/profile_proxy.py [--workload raw-100] [--seconds 8] [--no-tap]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common
from _common import (
    BENCH,
    BIN,
    PY,
    cpu_seconds,
    env,
    fmt_num,
    run_client,
    start_devconsole,
    start_mitmdump,
    start_server,
    start_tapsink,
    stop_tapsink,
    table,
    tempdir,
)
from throughput import WORKLOADS


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    path, _, _line = loc.rpartition(":")
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})"


# Where a sample's time goes: the first frame from the innermost outwards that matches a
# rule decides (rules are tried in this order at each frame).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    (
        "send to the peer (transport.write: send syscall, loopback delivery)",
        ("_SelectorSocketTransport.write (",),
    ),
    ("read from the peer (recv syscall)", ("_read_ready__data_received (", "_read_ready (")),
    ("select (epoll_wait with events ready)", ("EpollSelector.select (",)),
    ("devconsole: relay core (parse, events)", ("devconsole/relay.py", "devconsole/frames.py")),
    (
        "devconsole: session (backlog for late viewers)",
        ("devconsole/session.py", "devconsole/ringbuffer.py"),
    ),
    ("devconsole: tap (publish, encode, write)", ("devconsole/tap.py", "devconsole/wire.py")),
    (
        "devconsole: driver",
        ("devconsole/capture.py", "devconsole/fastrelay.py", "devconsole/mitm_compat.py"),
    ),
    (
        "mitmproxy: hook dispatch to addons",
        ("mitmproxy/addonmanager.py", "mitmproxy/hooks.py", "hook_task (", "handle_hook ("),
    ),
    ("mitmproxy: layers, connection handler", ("mitmproxy/",)),
    ("asyncio: loop, tasks, futures, streams", ("asyncio/",)),
]


def categorize(collapsed: str) -> tuple[dict[str, int], int]:
    out: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        cat = "other"
        for f in reversed(frames):
            hit = next((c for c, keys in CATEGORIES if any(k in f for k in keys)), None)
            if hit is not None:
                cat = hit
                break
        if cat.startswith("send") and any("devconsole/tap.py" in f for f in frames):
            cat = CATEGORIES[5][0]  # writing to a viewer
        out[cat] += count
    return dict(out), total


def top_frames(collapsed: str, n: int = 20) -> tuple[list[list[str]], int]:
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        # drop the thread/process header py-spy puts first
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    rows = []
    for name, c in incl.most_common(n):
        rows.append([name, f"{100 * self_c[name] / total:.1f}%", f"{100 * c / total:.1f}%"])
    rows_self = []
    for name, c in self_c.most_common(n):
        rows_self.append([name, f"{100 * c / total:.1f}%", f"{100 * incl[name] / total:.1f}%"])
    return [*rows, ["---", "", ""], *rows_self], total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workload", default="raw-100", choices=list(WORKLOADS))
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument(
        "--collapsed",
        default="",
        help="also save the collapsed stacks here (for flamegraph.pl, speedscope, inferno)",
    )
    ap.add_argument("--no-tap", action="store_true", help="no tap client attached")
    ap.add_argument(
        "--mitmdump", action="store_true", help="profile plain mitmdump websocket=false instead"
    )
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--conns", type=int, default=0, help="many-2000/idle-10000: N instead")
    ap.add_argument("--set", action="append", default=[], help="devconsole proxy --set X=Y")
    ap.add_argument("--tls", action="store_true", help="wss, TLS terminated by the proxy")
    args = ap.parse_args(argv)
    spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if not spy:
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    kind, size, opts = WORKLOADS[args.workload]
    with tempdir() as certs:
        if args.tls:
            _common.TLS_FILES = _common.make_cert(certs)
        return _profile(args, spy, kind, size, opts)


def _profile(args: argparse.Namespace, spy: str, kind: str, size: int, opts: dict[str, Any]) -> int:
    server = start_server()
    try:
        with tempdir() as tmp:
            tap = os.path.join(tmp, "tap.sock")
            conf = os.path.join(tmp, "conf")
            if args.mitmdump:
                proxy = start_mitmdump(server.port, conf, websocket=False)
            else:
                extra = [a for x in args.set for a in ("--set", x)]
                proxy = start_devconsole(server.port, conf, tap, extra)
            sink = None if args.no_tap or args.mitmdump else start_tapsink(tap)
            out = os.path.join(tmp, "profile.txt")
            try:
                time.sleep(0.3)
                spy_cmd = [
                    spy,
                    "record",
                    "--pid",
                    str(proxy.pid),
                    "--rate",
                    str(args.rate),
                    "--format",
                    "raw",
                    "--output",
                    out,
                    "--duration",
                    str(int(args.seconds + 1)),
                    "--nonblocking",
                ]
                cpu0 = cpu_seconds(proxy.pid)
                if kind in ("many", "idle"):
                    # profile the measuring window only, not the connection set-up
                    opts = {**opts, "pid": proxy.pid}
                    if args.conns:
                        opts["conns"] = args.conns
                    cmd = [PY, str(BENCH / "_client.py"), kind, "--port", str(proxy.port)]
                    if _common.TLS_FILES:
                        cmd.append("--tls")
                    cmd += ["--size", str(size), "--seconds", str(args.seconds)]
                    for k, v in opts.items():
                        cmd += [f"--{k}", str(v)]
                    client = subprocess.Popen(
                        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()
                    )
                    assert client.stderr is not None
                    for line in client.stderr:
                        if line.strip() == "measuring":
                            break
                    rec = subprocess.Popen(
                        spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                    )
                    cout, cerr = client.communicate(timeout=args.seconds * 4 + 300)
                    if client.returncode != 0:
                        print(f"client failed: {cerr[-800:]}", file=sys.stderr)
                        return 1
                    res = json.loads(cout.strip().splitlines()[-1])
                    cpu_s = res.get("proxy_cpu_s", 0.0)
                else:
                    rec = subprocess.Popen(
                        spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                    )
                    time.sleep(0.5)
                    res = run_client(
                        kind,
                        proxy.port,
                        timeout=args.seconds * 4 + 60,
                        size=size,
                        seconds=args.seconds,
                        **opts,
                    )
                    cpu_s = cpu_seconds(proxy.pid) - cpu0
                _, err = rec.communicate(timeout=args.seconds + 30)
                if rec.returncode != 0 or not os.path.exists(out):
                    print(f"py-spy failed: {err.strip()[-500:]}", file=sys.stderr)
                    return 1
                with open(out) as fh:
                    collapsed = fh.read()
                if args.collapsed:
                    with open(args.collapsed, "w") as fh:
                        fh.write(collapsed)
            finally:
                tap_stats = stop_tapsink(sink) if sink else {}
                proxy.stop()
    finally:
        server.stop()
    rows, total = top_frames(collapsed, args.top)
    what = "mitmdump websocket=false" if args.mitmdump else "devconsole proxy"
    print(
        f"# {what}, {args.workload}: {fmt_num(res['rate'])} msgs/s over {res['seconds']:.1f} s; "
        f"{total} samples; tap client: {tap_stats or 'none'}"
    )
    print(table(["function (inclusive first, then by self time)", "self", "inclusive"], rows))
    msgs = res["messages"] * (2 if kind in ("echo", "rtt", "many") else 1)
    if kind == "rtt":
        msgs += 2 * 300  # warm-up
    per = cpu_s / msgs * 1e6 if msgs else float("nan")
    cats, ctotal = categorize(collapsed)
    crow = [
        [name, f"{100 * n / ctotal:.1f}%", f"{per * n / ctotal:.1f}"]
        for name, n in sorted(cats.items(), key=lambda kv: -kv[1])
    ]
    crow.append(["total (proxy CPU time per message)", "100%", f"{per:.1f}"])
    print()
    print(table(["where the time goes", "share of samples", "us per message"], crow))
    return 0


if __name__ == "__main__":
    sys.exit(main())
