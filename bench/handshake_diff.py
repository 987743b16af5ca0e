"""What the handshake diff costs the readiness report (its auth item names the
connections that lacked what the accepted upgrades of their endpoint sent).

Builds a ``Session`` of N (default 10,000) upgrades on 20 endpoints, every other one
refused with 403 for lacking its session cookie, then times ``build_report`` with the
lacking analysis and without it (the same report with ``lacking_credentials`` replaced by
nothing), interleaved, best of ``--runs`` (default 7) each; and the time to open the
inspector's diff of one connection (``reference_for`` + ``diff_connections``) among N.

    .venv/bin/python bench/handshake_diff.py [-n 10000] [--runs 7]

No network, no files.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devconsole.analysis import readiness
from devconsole.analysis.handshake_diff import diff_connections, reference_for
from devconsole.model import HandshakeEvent, RefusedEvent
from devconsole.samples import T0, handshake
from devconsole.session import Session


def build(n: int) -> Session:
    s = Session(max_connections=n + 1)
    for i in range(n):
        ok = i % 2 == 0
        hs = handshake(
            str(i + 1),
            path=f"/ep{(i // 2) % 20}",
            cookies=(("session", f"user-{i:08x}"),) if ok else (),
            status=101 if ok else 403,
            ts=T0 + i,
        )
        s.apply(HandshakeEvent(hs) if ok else RefusedEvent(hs))
    return s


def best(f: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    s = build(args.n)
    now = T0 + args.n + 100
    original = readiness.lacking_credentials
    with_times: list[float] = []
    without_times: list[float] = []
    for _ in range(args.runs):  # interleaved, so both see the same load
        with_times.append(best(lambda: readiness.build_report(s, None, now), 1))
        readiness.lacking_credentials = lambda conns, refs: []
        try:
            without_times.append(best(lambda: readiness.build_report(s, None, now), 1))
        finally:
            readiness.lacking_credentials = original
    with_lacking, without = min(with_times), min(without_times)
    last = s.connections[str(args.n)]

    def open_diff() -> None:
        ref = reference_for(last, s.connections.values())
        assert ref is not None
        diff_connections(last, ref)

    inspector = best(open_diff, args.runs)
    print(f"{args.n:,} upgrades (half refused lacking a cookie), 20 endpoints")
    print(f"  build_report with the lacking analysis    {with_lacking * 1000:8.1f} ms")
    print(f"  build_report without it                   {without * 1000:8.1f} ms")
    print(f"  ratio                                     {with_lacking / without:8.2f}")
    print(f"  the inspector's reference + diff of one   {inspector * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
