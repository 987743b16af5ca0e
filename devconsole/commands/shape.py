"""``devconsole shape``: network conditions on a live connection or an endpoint.

    devconsole shape CONN [--to client|server|both] [--latency DUR] [--jitter DUR]
        [--rate RATE] [--slice BYTES [--slice-delay DUR]] [--fragment BYTES] [--stall]
        [--pongs drop|delay:DUR] | --clear
    devconsole shape --path GLOB ...        every connection of an endpoint, now and later

``--to`` is the peer the bytes go to, as for ``kill`` and ``inject`` (default both).
See docs/shaping.md. Errors print one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from devconsole.model import Shape, ShapeCommand

__all__ = ["register", "shape_from_args"]


class _Error(Exception):
    """One line for stderr; exit 1."""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "shape", help="network conditions: latency, rate, slicing, stall, pongs (docs/shaping.md)"
    )
    p.add_argument(
        "--tap",
        metavar="ADDR",
        default=None,
        help="tap address: a Unix socket path or tcp://127.0.0.1:PORT",
    )
    p.add_argument("--token", default=None, help="token for a tcp:// tap (default: its file)")
    p.add_argument("conn", nargs="?", metavar="CONN", help="connection id (devconsole conns)")
    p.add_argument("--path", metavar="GLOB", default="", help="every connection of this path")
    p.add_argument(
        "--to",
        choices=["client", "server", "both"],
        default="both",
        help="the peer the bytes go to (default both)",
    )
    p.add_argument("--latency", metavar="DUR", help="added to every byte, e.g. 200ms")
    p.add_argument("--jitter", metavar="DUR", help="+- around the latency (order is kept)")
    p.add_argument("--rate", metavar="RATE", help="bandwidth: 64kbit, 1mbit, 100kB (per second)")
    p.add_argument("--slice", metavar="BYTES", help="cut TCP writes into pieces of BYTES")
    p.add_argument("--slice-delay", metavar="DUR", help="with --slice: time between pieces")
    p.add_argument(
        "--fragment", metavar="BYTES", help="re-frame data messages into frames of BYTES"
    )
    p.add_argument(
        "--stall", action="store_true", help="stop reading the sending peer (backpressure)"
    )
    p.add_argument("--pongs", metavar="drop|delay:DUR", help="suppress or delay pongs")
    p.add_argument(
        "--clear",
        action="store_true",
        help="remove the conditions set on this connection (or path)",
    )
    p.set_defaults(handler=_run)


def shape_from_args(args: argparse.Namespace) -> Shape:
    """The Shape the options describe (ShapeError for a bad value)."""
    from devconsole.shaping import parse_shape

    conds: dict[str, object] = {}
    for name in ("latency", "jitter", "rate", "slice", "slice_delay", "fragment", "pongs"):
        v = getattr(args, name, None)
        if v is not None:
            conds[name] = v
    if args.stall:
        conds["stall"] = True
    return parse_shape(conds, "shape")


def _run(args: argparse.Namespace) -> int:
    from devconsole.shaping import ShapeError, describe
    from devconsole.source import SourceError
    from devconsole.tap import TapError

    try:
        if bool(args.conn) == bool(args.path):
            raise _Error("give a connection id (devconsole conns) or --path GLOB")
        if args.clear:
            if shape_given(args):
                raise _Error("--clear goes alone")
            shape = Shape()
        else:
            shape = shape_from_args(args)
            if shape.empty:
                raise _Error("give a condition (--latency, --rate, --stall, ...) or --clear")
        cmd = ShapeCommand(args.conn or "", args.to, shape, args.clear, args.path)
        info = asyncio.run(_command(args, cmd))
    except (_Error, ShapeError, SourceError, TapError) as e:
        print(f"devconsole: {e}", file=sys.stderr)
        return 1
    where = f"connection {args.conn}" if args.conn else f"path {args.path} ({info} live)"
    what = "cleared" if args.clear else describe(shape)
    print(f"{where}, to {args.to}: {what}")
    return 0


def shape_given(args: argparse.Namespace) -> bool:
    return args.stall or any(
        getattr(args, n, None) is not None
        for n in ("latency", "jitter", "rate", "slice", "slice_delay", "fragment", "pongs")
    )


async def _command(args: argparse.Namespace, cmd: ShapeCommand) -> str:
    from devconsole.sources import send_command

    res = await send_command(args.tap, args.token, cmd)
    if not res.ok:
        raise _Error(res.error)
    return res.info
