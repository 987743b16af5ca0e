"""``devconsole proxy``: the headless proxy with the tap."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from devconsole.commands import CliError, add_proxy_args, warn_exposure


def register(sub: Any) -> None:
    p = sub.add_parser("proxy", help="run the headless proxy with the tap")
    add_proxy_args(p)
    p.add_argument("--log", choices=["quiet", "normal", "verbose"], default="normal")
    p.set_defaults(handler=proxy)


def proxy_config(args: argparse.Namespace) -> Any:
    """The ``ProxyConfig`` of the proxy options (``add_proxy_args``); validates --listen and
    --mode. ``devconsole`` and ``demo`` have no --tap (their child proxy gets a private one)."""
    from devconsole.proxy import ProxyConfig, parse_listen, parse_mode

    host, port = parse_listen(args.listen)
    return ProxyConfig(
        listen_host=host,
        listen_port=port,
        mode=parse_mode(args.mode),
        confdir=args.confdir,
        tap=getattr(args, "tap", None) or "",
        buffer_messages=args.buffer_messages,
        buffer_bytes=args.buffer_bytes,
        max_payload=args.max_payload,
        sets=args.set or [],
        record=args.record or "",
        record_max=args.record_max,
    )


def proxy(args: argparse.Namespace) -> int:
    return asyncio.run(_proxy(args))


async def _proxy(args: argparse.Namespace) -> int:
    from devconsole.proxy import ProxyError, fmt_addr, run_proxy, setup_logging

    cfg = proxy_config(args)  # a bad --listen or --mode fails before logging is set up
    warn_exposure(cfg)
    setup_logging(
        {"quiet": 40, "normal": 30, "verbose": 20}.get(args.log, 30),
    )

    def ready(p: Any) -> None:
        addrs = ", ".join(fmt_addr(a) for a in p.listen_addrs)
        print(f"devconsole proxy listening on {addrs}; tap at {p.tap_address}", flush=True)

    try:
        await run_proxy(cfg, ready)
    except ProxyError as e:
        raise CliError(str(e)) from None
    return 0
