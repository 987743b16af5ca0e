"""``devconsole tail`` (events as they arrive) and ``devconsole conns`` (the connections),
read from a running proxy's tap. The lines they print are ``devconsole.store.lines``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from devconsole.commands import CliError, add_tap_args, positive_int


def register(sub: Any) -> None:
    p = sub.add_parser("tail", help="print captured events as they arrive")
    add_tap_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--filter", metavar="EXPR", help="filter expression (docs/filters.md)")
    p.add_argument("--new", action="store_true", help="skip the backlog; only new events")
    p.add_argument("--limit", type=positive_int, metavar="N", help="exit after N messages")
    from devconsole.commands.protocols import add_decoder_args

    add_decoder_args(p)
    p.set_defaults(handler=tail)

    p = sub.add_parser("conns", help="list connections")
    add_tap_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=conns)


def tail(args: argparse.Namespace) -> int:
    return asyncio.run(_tail(args))


async def _tail(args: argparse.Namespace) -> int:
    from devconsole.commands.protocols import decoder_rules
    from devconsole.decoders.tracker import ProtocolTracker
    from devconsole.sources import open_source
    from devconsole.store.lines import TailPrinter

    tracker = ProtocolTracker(decoder_rules(args))
    predicate = None
    if args.filter:
        from devconsole.filters import FilterError, parse

        try:
            predicate = parse(args.filter, decode=tracker.decoded)
        except FilterError as e:
            raise CliError(f"bad filter: {e}") from None
    client = open_source(args.tap, args.token)
    await client.connect()
    printer = TailPrinter(sys.stdout, args.json, predicate, args.limit, not args.new, tracker)
    run = asyncio.ensure_future(client.run(printer.on_events))
    stop = asyncio.ensure_future(printer.done.wait())
    try:
        await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await client.close()
        run.cancel()
        stop.cancel()
        with contextlib.suppress(BaseException):
            await run
    if run.done() and not run.cancelled() and run.exception():
        raise run.exception()  # type: ignore[misc]
    return 0


def conns(args: argparse.Namespace) -> int:
    from devconsole.store.lines import conn_json, conns_table
    from devconsole.tap import collect

    session = asyncio.run(collect(args.tap, args.token, items=False))
    found = sorted(session.connections.values(), key=lambda c: c.ts_start)
    if args.json:
        print(json.dumps([conn_json(c) for c in found], ensure_ascii=False))
    else:
        print(conns_table(found))
    return 0
