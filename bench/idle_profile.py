"""Where an idle upgraded connection's memory goes in the devconsole proxy (issue 18).

An in-process devconsole proxy (reverse mode, in front of bench/_server.py, no viewer),
N raw-socket upgraded connections that send nothing (bench/_client.py ``idle``, in a child
process, so that its allocations are not counted here). tracemalloc snapshots before and
with them open: the top allocations grouped by file:line (and by traceback with
``--traceback``), live objects per connection by type (gc), and RSS per connection.

    .venv/bin/python bench/idle_profile.py [--conns 1000] [--top 30] [--traceback 0]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import gc
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import BENCH, PY, start_server, upstream

from devconsole.proxy import DevconsoleProxy, ProxyConfig, tune_gc


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def short(filename: str) -> str:
    """devconsole/x.py, mitmproxy/x.py, asyncio/x.py: the part after the install prefix."""
    for prefix in ("site-packages/", "python3.11/"):
        if prefix in filename:
            return filename.split(prefix)[-1]
    i = filename.rfind("devconsole/")
    return filename[i:] if i >= 0 else filename


def types() -> collections.Counter[str]:
    gc.collect()
    return collections.Counter(
        type(o).__module__ + "." + type(o).__qualname__ for o in gc.get_objects()
    )


async def main(args: argparse.Namespace) -> None:
    server = start_server()
    confdir = tempfile.mkdtemp(prefix="idleprof")
    proxy = DevconsoleProxy(
        ProxyConfig(listen_port=0, mode=upstream(server.port), confdir=confdir, tap="")
    )
    try:
        (_host, port), *_ = await proxy.start()
        tune_gc()
        if args.traceback:
            tracemalloc.start(args.traceback)
        elif not args.rss_only:
            tracemalloc.start()
        await asyncio.sleep(0.5)
        gc.collect()
        t0 = types()
        s0 = tracemalloc.take_snapshot() if not args.rss_only else None
        r0 = rss_kib()
        client = subprocess.Popen(
            [
                PY,
                str(BENCH / "_client.py"),
                "idle",
                "--port",
                str(port),
                "--conns",
                str(args.conns),
                "--hold",
                "600",
            ],
            stdout=subprocess.DEVNULL,
        )
        cap = proxy.capture
        deadline = time.time() + 120
        while time.time() < deadline:
            pool = cap._pool
            n = len(pool.conns) if pool is not None else 0
            if n >= args.conns and all(not c.handing_off for c in pool.conns):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        n = len(cap._pool.conns)
        gc.collect()
        r1 = rss_kib()
        print(f"connections {n}; RSS {r0:,} -> {r1:,} KiB: {(r1 - r0) / n:.1f} KiB/conn")
        if args.rss_only:
            # what the allocators hold but do not use: glibc's free lists given back
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            r2 = rss_kib()
            print(f"after malloc_trim(0): {r2:,} KiB: {(r2 - r0) / n:.1f} KiB/conn")
            sys._debugmallocstats()  # to stderr: arenas, bytes in used and free blocks
            client.terminate()
            client.wait(10)
            return
        s1 = tracemalloc.take_snapshot()
        t1 = types()
        assert s0 is not None
        filt = [tracemalloc.Filter(False, tracemalloc.__file__)]
        s0, s1 = s0.filter_traces(filt), s1.filter_traces(filt)
        stats = s1.compare_to(s0, "lineno")
        tot = sum(st.size_diff for st in stats)
        print(f"tracemalloc: +{tot / 1024 / n:.1f} KiB/conn traced")
        for st in stats[: args.top]:
            f = st.traceback[0]
            fn = short(f.filename)
            print(f"{st.size_diff / n:9.0f} B/conn {st.count_diff / n:6.1f} blk  {fn}:{f.lineno}")
        by_file: collections.Counter[str] = collections.Counter()
        for st in stats:
            fn = short(st.traceback[0].filename)
            by_file[fn.split("/")[0] if "/" in fn else fn] += st.size_diff
        print("by package:")
        for k, v in by_file.most_common(12):
            print(f"{v / n:9.0f} B/conn  {k}")
        if args.traceback:
            print("by traceback:")
            for st in s1.compare_to(s0, "traceback")[: args.top]:
                print(f"{st.size_diff / n:9.0f} B/conn")
                for line in st.traceback.format()[-2 * args.traceback :]:
                    print("     ", line)
        print("objects per connection (gc-tracked, delta):")
        for k, v in sorted(((k, t1[k] - t0.get(k, 0)) for k in t1), key=lambda kv: -kv[1])[
            : args.top
        ]:
            if v > 0:
                print(f"{v / n:7.2f}  {k}")
        tasks = collections.Counter(
            getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks()
        )
        print("tasks:", ", ".join(f"{k} x{v}" for k, v in tasks.most_common(6)))
        if args.referrers:
            live = asyncio.all_tasks()
            for name in args.referrers.split(","):
                objs = [o for o in gc.get_objects() if type(o).__qualname__ == name]
                objs = [o for o in objs if o not in live][:1]
                for o in objs:
                    print(f"referrers of a {name} ({o!r:.100}):")
                    for r in gc.get_referrers(o):
                        if r is objs:
                            continue
                        d = {k: v for k, v in r.items() if v is o} if isinstance(r, dict) else ""
                        keys = list(d)[:3] if d else ""
                        print(f"   {type(r).__module__}.{type(r).__qualname__} {keys}")
                        for r2 in gc.get_referrers(r)[:4]:
                            if r2 is not objs and type(r2).__name__ != "frame":
                                print(f"      <- {type(r2).__module__}.{type(r2).__qualname__}")
        client.terminate()
        client.wait(10)
    finally:
        await proxy.stop()
        server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--rss-only", action="store_true", help="no tracemalloc: RSS, pymalloc")
    ap.add_argument("--referrers", default="", help="TYPE,...: who refers to one of them")
    ap.add_argument("--traceback", type=int, default=0, help="frames per traceback (0: lineno)")
    asyncio.run(main(ap.parse_args()))
