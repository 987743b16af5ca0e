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
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    BIN,
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
    args = ap.parse_args(argv)
    spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if not spy:
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    kind, size, opts = WORKLOADS[args.workload]
    server = start_server()
    try:
        with tempdir() as tmp:
            tap = os.path.join(tmp, "tap.sock")
            conf = os.path.join(tmp, "conf")
            if args.mitmdump:
                proxy = start_mitmdump(server.port, conf, websocket=False)
            else:
                proxy = start_devconsole(server.port, conf, tap)
            sink = None if args.no_tap or args.mitmdump else start_tapsink(tap)
            out = os.path.join(tmp, "profile.txt")
            try:
                time.sleep(0.3)
                rec = subprocess.Popen(
                    [
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
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
