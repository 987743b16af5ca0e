"""``devconsole proxy``: the headless proxy with the tap, and its scale-out options
(publishing to Redis, recording the app's backplane: docs/scale.md)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from devconsole.commands import CliError, add_proxy_args, warn_exposure
from devconsole.scale.config import DEFAULT_MAXLEN, DEFAULT_STREAM


def register(sub: Any) -> None:
    p = sub.add_parser("proxy", help="run the headless proxy with the tap")
    add_proxy_args(p)
    p.add_argument("--log", choices=["quiet", "normal", "verbose"], default="normal")
    add_scale_args(p)
    p.set_defaults(handler=proxy)


def add_scale_args(p: argparse.ArgumentParser) -> None:
    """The scale-out options of ``devconsole proxy``: publish to Redis, record the app's
    Redis backplane (docs/scale.md)."""
    g = p.add_argument_group("scale-out over Redis (docs/scale.md)")
    g.add_argument(
        "--publish",
        metavar="URL",
        default=None,
        help="also publish events to this Redis stream: redis://[user:password@]HOST:PORT/DB "
        "or rediss://... (password also from DEVCONSOLE_REDIS_PASSWORD)",
    )
    g.add_argument(
        "--name", default=None, help="this proxy's instance name (default: HOSTNAME:PORT)"
    )
    g.add_argument(
        "--stream",
        default=None,
        metavar="NAME",
        help=f"the deployment's stream (default {DEFAULT_STREAM}; viewers: URL?stream=NAME)",
    )
    g.add_argument(
        "--stream-maxlen",
        type=int,
        default=None,
        metavar="N",
        help=f"stream entries Redis keeps (default {DEFAULT_MAXLEN}, ~128 KiB each at most)",
    )
    g.add_argument(
        "--accept-commands",
        action="store_true",
        help="run kill/inject sent through Redis (off: anyone who can write to that Redis "
        "could act on live connections)",
    )
    g.add_argument(
        "--backplane",
        metavar="URL",
        default=None,
        help="record the app's Redis pub/sub backplane at this URL (with --channels)",
    )
    g.add_argument(
        "--channels",
        metavar="PATTERN[,PATTERN]",
        default=None,
        help="channel patterns of the backplane (PSUBSCRIBE), e.g. 'chat:*,socketio'",
    )
    g.add_argument(
        "--trace-key",
        metavar="PATH",
        default=None,
        help="match publications to frames by this JSON path (e.g. data.id); "
        "default: the same payload",
    )


def scale_sets(args: argparse.Namespace) -> list[str]:
    """The mitmproxy option settings (``NAME=VALUE``) of the scale-out arguments."""
    out: list[str] = []

    def put(name: str, value: object) -> None:
        if value is not None and value is not False:
            out.append(f"{name}={'true' if value is True else value}")

    # in this order: each setting is validated as it is made, with those before it
    put("devconsole_publish", getattr(args, "publish", None))
    put("devconsole_name", getattr(args, "name", None))
    put("devconsole_stream", getattr(args, "stream", None))
    put("devconsole_stream_maxlen", getattr(args, "stream_maxlen", None))
    put("devconsole_accept_commands", getattr(args, "accept_commands", False))
    put("devconsole_channels", getattr(args, "channels", None))
    put("devconsole_trace_key", getattr(args, "trace_key", None))
    put("devconsole_backplane", getattr(args, "backplane", None))
    return out


def proxy_config(args: argparse.Namespace) -> Any:
    """The ``ProxyConfig`` of the proxy options (``add_proxy_args``); validates --listen and
    --mode. ``devconsole`` and ``demo`` have no --tap (their child proxy gets a private one)."""
    from devconsole.commands.protocols import decoder_specs
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
        hold_bytes=args.hold_bytes,
        rules=args.rules or "",
        sets=[*(args.set or []), *scale_sets(args)],
        record=args.record or "",
        record_max=args.record_max,
        decoders=decoder_specs(args),
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
