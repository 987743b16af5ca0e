"""``devconsole report``: the production-readiness report of the traffic a proxy saw, or
of a capture, recording or HAR file."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from devconsole.commands import CliError, add_tap_args
from devconsole.commands.protocols import add_decoder_args, decoder_rules


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="production-readiness report of observed traffic")
    add_tap_args(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("capture", nargs="?", help="a capture, recording or HAR file (default: the tap)")
    p.add_argument(
        "--trace-key",
        metavar="PATH",
        default=None,
        help="backplane trace: match publications to frames by this JSON path "
        "(default: what the recording proxy was given, else the same payload)",
    )
    add_decoder_args(p)
    p.set_defaults(handler=report)


def report(args: argparse.Namespace) -> int:
    from devconsole.analysis.fanout import FanoutTracer
    from devconsole.analysis.readiness import build_report, observe, render_text
    from devconsole.session import Session
    from devconsole.tap import collect

    try:
        tracer = FanoutTracer(args.trace_key)
    except ValueError as e:
        raise CliError(f"--trace-key: {e}") from None
    session = Session(max_items=10_000_000, max_bytes=1 << 40)
    # protocols, heartbeats (also the protocols' own) and request/reply pairs
    analysis = observe(session, decoder_rules(args))
    session.observers.append(tracer.on_event)
    if args.capture:
        from devconsole.commands.store import load_capture

        load_capture(args.capture, session)
    else:
        asyncio.run(collect(args.tap, args.token, session=session))
    result = build_report(session, None, time.time(), fanout=tracer, analysis=analysis)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(render_text(result))
    return 0
