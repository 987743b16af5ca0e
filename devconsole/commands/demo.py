"""``devconsole demo``: a child proxy, simulated traffic through it, and the TUI; with
``--scale N``, N app instances joined by a Redis backplane, each behind its own proxy
publishing to a private redis-server, and one view of all (docs/scale.md)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from devconsole.commands import (
    CliError,
    add_proxy_args,
    positive_int,
    require_terminal,
    warn_exposure,
)
from devconsole.commands.protocols import decoder_rules


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="the proxy, the TUI and simulated traffic")
    add_proxy_args(p, tap=False)
    p.add_argument("--rate", type=positive_int, default=None, help="flood N messages/s")
    p.add_argument("--headless", action="store_true", help="no TUI (for scripts)")
    p.add_argument(
        "--scale",
        type=positive_int,
        default=None,
        metavar="N",
        help="N app instances joined by a Redis backplane, each behind its own proxy "
        "publishing to Redis, one view of all (needs redis-server)",
    )
    p.set_defaults(handler=demo)


def demo(args: argparse.Namespace) -> int:
    from devconsole.childproxy import ChildProxy
    from devconsole.commands.proxy import proxy_config
    from devconsole.commands.tui import run_tui
    from devconsole.demo_thread import start_demo_thread
    from devconsole.tap import TapClient

    if not args.headless:
        require_terminal(", or `devconsole demo --headless`")
    warn_exposure(proxy_config(args))  # validates --listen and --mode too
    if args.scale:
        return scaled_demo(args)
    child = ChildProxy(args)
    stop_demo: Callable[[], None] | None = None
    try:
        child.wait_ready()
        stop_demo = start_demo_thread(child.listen, args.rate)
        if args.headless:
            print(f"demo traffic through {child.listen}; tap at {child.tap}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while child.proc.poll() is None:
                    time.sleep(0.5)
            return 0
        return run_tui(TapClient(child.tap), rules=decoder_rules(args))
    finally:
        if stop_demo is not None:
            stop_demo()
        child.stop()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def scaled_demo(args: argparse.Namespace) -> int:
    """``devconsole demo --scale N``: a private redis-server, N child proxies publishing to
    it (the first also records the backplane), the scaled demo traffic, and the TUI on the
    Redis stream (or, headless, a line saying how to view it)."""
    from devconsole.childproxy import ChildProxy
    from devconsole.commands.tui import run_tui
    from devconsole.proxy import parse_listen
    from devconsole.scale.demo import start_scaled_demo_thread
    from devconsole.scale.redisserver import INSTALL_HINT, RedisServer, find_redis_server
    from devconsole.scale.source import RedisSource
    from devconsole.tap import ensure_private_dir, runtime_dir

    if args.record:
        raise CliError(
            "--record with --scale: each instance would write the same recording; record "
            "them all from Redis with `devconsole record --tap redis://...`"
        )
    if find_redis_server() is None:
        print(f"devconsole: demo --scale needs Redis. {INSTALL_HINT}.", file=sys.stderr)
        return 1
    host, port = parse_listen(args.listen)
    children: list[ChildProxy] = []
    stop_traffic: Callable[[], None] | None = None
    with RedisServer() as rs:
        try:
            for k in range(args.scale):
                a = argparse.Namespace(**vars(args))
                a.listen = f"{host}:{port + k if port else 0}"
                tap = ensure_private_dir(runtime_dir()) / f"tap-{os.getpid()}-{k + 1}.sock"
                extra = ["--tap", str(tap), "--publish", rs.url, "--name", f"app-{k + 1}"]
                extra.append("--accept-commands")
                if k == 0:
                    extra += ["--backplane", rs.url, "--channels", "demo:*", "--trace-key", "id"]
                children.append(ChildProxy(a, extra))
            for child in children:
                child.wait_ready()
            stop_traffic = start_scaled_demo_thread([c.listen for c in children], rs.url)
            names = ", ".join(f"app-{k + 1} {c.listen}" for k, c in enumerate(children))
            if args.headless:
                signal.signal(signal.SIGTERM, _interrupt)  # so the finally below runs
                print(
                    f"demo: {args.scale} instances behind proxies {names}; "
                    f"view them all with: devconsole attach {rs.url}",
                    flush=True,
                )
                with contextlib.suppress(KeyboardInterrupt):
                    while all(c.proc.poll() is None for c in children):
                        time.sleep(0.5)
                return 0
            return run_tui(RedisSource(rs.url), rules=decoder_rules(args))
        finally:
            if stop_traffic is not None:
                stop_traffic()
            for child in children:
                child.stop()
