"""The commands that open the TUI: ``devconsole`` (no command: a child proxy and the TUI
attached to it) and ``devconsole attach`` (the TUI on a running proxy's tap, or on the
Redis stream many proxies publish to)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from devconsole.commands import add_tap_args, require_terminal, warn_exposure
from devconsole.commands.protocols import add_decoder_args, decoder_rules


def register(sub: Any) -> None:
    p = sub.add_parser("attach", help="attach the TUI to a running proxy's tap")
    add_tap_args(p)
    p.add_argument("addr", nargs="?", metavar="ADDR", help="same as --tap (e.g. redis://...)")
    add_decoder_args(p)
    p.set_defaults(handler=attach)


def run_tui(
    source: Any, on_exit: Callable[[], None] | None = None, rules: Sequence[Any] = ()
) -> int:
    """The TUI over ``source`` until the user quits; ``on_exit`` runs after it in any case.
    ``rules``: the viewer's ``--decoder`` rules (``decoder_rules(args)``)."""
    from devconsole.tui.app import make_app, tune_gc

    app = make_app(source, decoder_rules=rules)
    tune_gc()
    try:
        app.run()
    finally:
        if on_exit is not None:
            on_exit()
    return 0


def attach(args: argparse.Namespace) -> int:
    from devconsole.sources import is_redis, open_source

    require_terminal()
    rules = decoder_rules(args)  # checks --decoder, loads --proto-desc
    spec = args.addr or args.tap
    client = open_source(spec, args.token)

    async def check() -> None:
        await client.connect()
        await client.close()

    asyncio.run(check())
    # The TUI runs its own loop: it reconnects with a fresh client (to the tap found, when
    # none was named).
    return run_tui(open_source(spec if is_redis(spec) else client.addr, args.token), rules=rules)


def proxy_and_tui(args: argparse.Namespace) -> int:
    """``devconsole`` with no command: the proxy as a child process, the TUI attached."""
    from devconsole.childproxy import ChildProxy
    from devconsole.commands.proxy import proxy_config
    from devconsole.tap import TapClient

    require_terminal()
    warn_exposure(proxy_config(args))  # validates --listen and --mode too
    # the proxy marks its --decoder choices in the handshakes; the screen decodes with
    # the same rules (and needs --proto-desc loaded in its own process)
    rules = decoder_rules(args)
    child = ChildProxy(args)
    try:
        child.wait_ready()
        return run_tui(TapClient(child.tap), child.stop, rules)
    finally:
        child.stop()
