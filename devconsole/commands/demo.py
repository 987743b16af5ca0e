"""``devconsole demo``: a child proxy, simulated traffic through it, and the TUI."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from typing import Any

from devconsole.commands import add_proxy_args, positive_int, require_terminal, warn_exposure


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="the proxy, the TUI and simulated traffic")
    add_proxy_args(p, tap=False)
    p.add_argument("--rate", type=positive_int, default=None, help="flood N messages/s")
    p.add_argument("--headless", action="store_true", help="no TUI (for scripts)")
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
        return run_tui(TapClient(child.tap))
    finally:
        if stop_demo is not None:
            stop_demo()
        child.stop()
