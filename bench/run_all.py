"""Run the benchmark suite (what ``make bench`` runs). Quick mode by default (a few
minutes); ``--full`` for the longer runs that docs/performance.md reports.

    .venv/bin/python bench/run_all.py [--full] [--only capture_cost,throughput,memory]
                                      [--profile]

Each script's output is also saved under bench/results/ (git-ignored), with its raw JSON.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["capture_cost", "throughput", "memory", "timings", "shaping"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--full", action="store_true", help="long runs instead of --quick")
    ap.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated subset")
    ap.add_argument(
        "--profile", action="store_true", help="also profile the proxy with py-spy (needs it)"
    )
    args = ap.parse_args(argv)
    scripts = [s for s in args.only.split(",") if s in SCRIPTS]
    if args.profile:
        scripts.append("profile_proxy")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    failed = []
    t_all = time.monotonic()
    for name in scripts:
        cmd = [sys.executable, str(HERE / f"{name}.py")]
        if name == "memory" and args.full:
            cmd.append("--full")
        elif name != "profile_proxy" and not args.full:
            cmd.append("--quick")
        print(f"\n===== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.monotonic()
        out_path = results / f"{name}.txt"
        with open(out_path, "w") as log:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                log.write(line)
            rc = proc.wait()
        print(f"===== {name}: exit {rc} in {time.monotonic() - t0:.0f} s (output: {out_path})")
        if rc != 0:
            failed.append(name)
    print(
        f"\nbenchmarks done in {time.monotonic() - t_all:.0f} s"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
