"""``devconsole report``: the production-readiness report of the traffic a proxy saw, or
of a capture, recording or HAR file."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from devconsole.commands import add_tap_args


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="production-readiness report of observed traffic")
    add_tap_args(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("capture", nargs="?", help="a capture, recording or HAR file (default: the tap)")
    p.set_defaults(handler=report)


def report(args: argparse.Namespace) -> int:
    from devconsole.analysis.heartbeat import HeartbeatMonitor
    from devconsole.analysis.readiness import build_report, render_text
    from devconsole.session import Session
    from devconsole.tap import collect

    monitor = HeartbeatMonitor()
    session = Session(max_items=10_000_000, max_bytes=1 << 40)
    session.observers.append(monitor.on_event)
    if args.capture:
        from devconsole.commands.store import load_capture

        load_capture(args.capture, session)
    else:
        asyncio.run(collect(args.tap, args.token, session=session))
    result = build_report(session, monitor, time.time())
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(render_text(result))
    return 0
