"""Where the proxy's event loop spends its time per message: the asyncio loop's own view.

Runs ``devconsole proxy`` in this process (reverse mode in front of the benchmark server,
optionally with a tap client attached) and counts, while a workload runs through it:

- loop iterations (one ``select`` each) and the time spent in ``select``;
- every callback the loop ran (``Handle._run``): how many per message and how long, by
  what it was: a task step (named by the task's coroutine), a protocol callback
  (``_read_ready``: a socket became readable), a timer...

A message that makes the loop run five task steps and two reads costs five times the
loop's per-step overhead before any work is done; this makes that visible. The timing
wrapper adds about 1 us per callback; compare counts, and times only with each other.

    .venv/bin/python bench/loop_profile.py [--workload rtt-100] [--seconds 5] [--no-tap]
        [--conns N] [--set devconsole_fast_relay=false]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import selectors
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    BENCH,
    PY,
    env,
    machine,
    start_server,
    start_tapsink,
    stop_tapsink,
    table,
    tempdir,
)
from throughput import WORKLOADS

STATS: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
ON = False


def _name(cb: Any) -> str:
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return f"task step: {getattr(coro, '__qualname__', type(coro).__name__)}"
    if isinstance(owner, asyncio.Future):
        return f"future callback: {getattr(cb, '__qualname__', repr(cb))}"
    name = getattr(cb, "__qualname__", None) or type(cb).__name__
    mod = getattr(cb, "__module__", "") or ""
    return f"{name} ({mod.rsplit('.', 1)[-1]})" if mod else name


def time_calls(specs: list[str]) -> None:
    """Wrap ``module:Class.method`` (or ``module:function``) to count its calls and CPU time
    (nested wrapped calls are counted in both)."""
    import functools
    import importlib

    cpu = time.thread_time
    for spec in specs:
        mod_name, _, attr = spec.partition(":")
        owner: Any = importlib.import_module(mod_name)
        *path, name = attr.split(".")
        for p in path:
            owner = getattr(owner, p)
        orig = getattr(owner, name)
        key = f"[{attr}]"

        def make(orig: Any, key: str) -> Any:
            @functools.wraps(orig)
            def wrapper(*a: Any, **kw: Any) -> Any:
                if not ON:
                    return orig(*a, **kw)
                c0 = cpu()
                try:
                    return orig(*a, **kw)
                finally:
                    s = STATS[key]
                    s[0] += 1
                    s[2] += cpu() - c0

            return wrapper

        setattr(owner, name, make(orig, key))


def instrument() -> None:
    orig_run = asyncio.events.Handle._run
    clock = time.perf_counter
    cpu = time.thread_time

    def _run(self: asyncio.Handle) -> None:
        if not ON:
            return orig_run(self)
        t0 = clock()
        c0 = cpu()
        try:
            return orig_run(self)
        finally:
            s = STATS[_name(self._callback)]  # type: ignore[attr-defined]
            s[0] += 1
            s[1] += clock() - t0
            s[2] += cpu() - c0

    asyncio.events.Handle._run = _run  # type: ignore[method-assign]
    orig_select = selectors.EpollSelector.select

    def select(self: selectors.EpollSelector, timeout: float | None = None) -> Any:
        if not ON:
            return orig_select(self, timeout)
        t0 = clock()
        c0 = cpu()
        try:
            return orig_select(self, timeout)
        finally:
            s = STATS["<select>"]
            s[0] += 1
            s[1] += clock() - t0
            s[2] += cpu() - c0

    selectors.EpollSelector.select = select  # type: ignore[method-assign]
    started: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if not ON:
            return
        if phase == "start":
            started[0] = clock()
        else:
            s = STATS[f"<gc generation {info['generation']}>"]
            s[0] += 1
            s[1] += clock() - started[0]
            s[2] += clock() - started[0]

    gc.callbacks.append(on_gc)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    global ON
    from devconsole.proxy import DevconsoleProxy, ProxyConfig

    kind, size, opts = WORKLOADS[args.workload]
    server = start_server()
    sink = None
    try:
        with tempdir() as tmp:
            cfg = ProxyConfig(
                listen_port=0,
                mode=f"reverse:http://127.0.0.1:{server.port}",
                confdir=os.path.join(tmp, "conf"),
                tap=os.path.join(tmp, "tap.sock"),
                sets=args.set,
            )
            proxy = DevconsoleProxy(cfg)
            [(_, port)] = (await proxy.start())[:1]
            if not args.default_gc:
                from devconsole.proxy import tune_gc

                tune_gc()  # as run_proxy does
            if not args.no_tap:
                sink = await asyncio.to_thread(start_tapsink, proxy.tap_address)
            cmd = [PY, str(BENCH / "_client.py"), kind, "--port", str(port)]
            cmd += ["--size", str(size), "--seconds", str(args.seconds)]
            opts = dict(opts)
            if kind == "many":
                opts["pid"] = os.getpid()
                if args.conns:
                    opts["conns"] = args.conns
            for k, v in opts.items():
                cmd += [f"--{k}", str(v)]
            client = await asyncio.create_subprocess_exec(
                *cmd,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env(),
            )
            assert client.stdout is not None and client.stderr is not None
            if kind == "many":
                while True:
                    line = await asyncio.wait_for(client.stderr.readline(), 300)
                    if not line or line.strip() == b"measuring":
                        break
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            ON = True
            out, err = await asyncio.wait_for(client.communicate(), args.seconds * 4 + 300)
            ON = False
            t1 = time.perf_counter()
            cpu1 = time.process_time()
            if client.returncode != 0:
                raise SystemExit(f"client failed: {err.decode()[-800:]}")
            res = json.loads(out.decode().strip().splitlines()[-1])
            await proxy.stop()
    finally:
        if sink is not None:
            stop_tapsink(sink)
        server.stop()
    res.update(cpu_s=cpu1 - cpu0, wall_s=t1 - t0)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workload", default="rtt-100", choices=list(WORKLOADS))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--no-tap", action="store_true", help="no tap client attached")
    ap.add_argument("--conns", type=int, default=0, help="many-2000: N connections instead")
    ap.add_argument("--set", action="append", default=[], help="a proxy option, NAME=VALUE")
    ap.add_argument("--top", type=int, default=16)
    ap.add_argument("--default-gc", action="store_true", help="without the proxy's tune_gc()")
    ap.add_argument(
        "--time",
        action="append",
        default=[],
        help="also count calls and CPU of module:Class.method (e.g. "
        "asyncio.selector_events:_SelectorSocketTransport.write)",
    )
    args = ap.parse_args(argv)
    instrument()
    time_calls(args.time)
    res = asyncio.run(run(args))
    kind = WORKLOADS[args.workload][0]
    msgs = res["messages"] * (2 if kind in ("echo", "rtt", "many") else 1)
    if kind == "rtt":
        msgs += 2 * 300  # the client's warm-up round trips
    per = 1e6 / msgs
    sel_n, sel_t, sel_c = STATS.pop("<select>", [0, 0.0, 0.0])
    gcs = {k: STATS.pop(k) for k in list(STATS) if k.startswith("<gc")}
    timed = {k: STATS.pop(k) for k in list(STATS) if k.startswith("[")}
    handles = sum(int(v[0]) for v in STATS.values())
    busy = sum(v[1] for v in STATS.values())
    busy_c = sum(v[2] for v in STATS.values())
    print(f"# {machine()}")
    print(
        f"# devconsole proxy in-process, {args.workload}"
        + (f" ({args.set})" if args.set else "")
        + f", tap client {'no' if args.no_tap else 'yes'}: {msgs:,} messages through the "
        f"proxy in {res['wall_s']:.1f} s; process CPU {res['cpu_s'] * per:.1f} us/msg"
    )
    rows = [
        [
            "loop iterations (select calls)",
            f"{sel_n / msgs:.2f}",
            f"{sel_t * per:.1f}",
            f"{sel_c * per:.1f}",
        ],
        [
            "callbacks run (all)",
            f"{handles / msgs:.2f}",
            f"{busy * per:.1f}",
            f"{busy_c * per:.1f}",
        ],
        *(
            [f"{k[1:-1]} (inside the callbacks)", f"{n / msgs:.4f}", f"{t * per:.1f}", ""]
            for k, (n, t, _) in sorted(gcs.items())
        ),
        ["---", "", "", ""],
        *(
            [f"{k} (inside the callbacks)", f"{n / msgs:.2f}", "", f"{c * per:.1f}"]
            for k, (n, _, c) in sorted(timed.items(), key=lambda kv: -kv[1][2])
        ),
        *([["---", "", "", ""]] if timed else []),
    ]
    for name, (n, t, c) in sorted(STATS.items(), key=lambda kv: -kv[1][2])[: args.top]:
        rows.append([name, f"{n / msgs:.2f}", f"{t * per:.1f}", f"{c * per:.1f}"])
    print(table(["per message through the proxy", "count", "us (wall)", "us (CPU)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
