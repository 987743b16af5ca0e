"""``devconsole chaos SCENARIO --mode reverse:URL [--listen H:P] [--junit FILE] [-- CMD...]``

Starts the proxy, optionally the client command, plays the scenario and prints a graded
report (docs/chaos.md). Exit status: 0 when every expectation passed, 1 when one failed
or the run could not happen (no connection), 2 for a scenario file with an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "chaos",
        help="play a fault scenario against a client and grade how it recovers (docs/chaos.md)",
    )
    p.add_argument("scenario", metavar="SCENARIO", help="scenario file (TOML)")
    p.add_argument(
        "--mode",
        required=True,
        help="reverse:URL of the WebSocket server the client should reach (reverse:http://host:port)",
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where the proxy listens (default: a free port on 127.0.0.1; {url} in CMD)",
    )
    p.add_argument("--junit", metavar="FILE", help="write the results as JUnit XML")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "client",
        nargs="*",
        metavar="-- CMD ARGS",
        help="the client to start; {url} becomes the proxy's ws:// URL (also in $DEVCONSOLE_URL)",
    )
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from devconsole import chaos
    from devconsole.proxy import ProxyError, parse_listen, parse_mode, setup_logging
    from devconsole.scenario import ScenarioError, load

    cmd = list(args.client)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    try:
        with open(args.scenario, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        print(f"devconsole: {args.scenario}: {e.strerror}", file=sys.stderr)
        return 2
    base = os.path.dirname(os.path.abspath(args.scenario))

    def read_file(name: str) -> str:
        path = name if os.path.isabs(name) else os.path.join(base, name)
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        except OSError as e:
            from devconsole.rules import RulesError

            raise RulesError(e.strerror or str(e), path=name) from None

    try:
        sc = load(text, args.scenario, read_file)
        parse_listen(args.listen)
        parse_mode(chaos.reverse_mode(args.mode))
        if not args.mode.startswith("reverse:"):
            raise ProxyError("chaos runs the proxy in reverse mode: --mode reverse:URL")
    except (ScenarioError, ProxyError) as e:
        print(f"devconsole: {e}", file=sys.stderr)
        return 2
    setup_logging(40)
    progress = (lambda s: None) if args.quiet else chaos.main_progress

    async def main() -> chaos.ChaosResult:
        task = asyncio.ensure_future(chaos.run(sc, args.mode, args.listen, cmd, progress=progress))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, task.cancel)
        return await task

    try:
        res = asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("devconsole: chaos interrupted", file=sys.stderr)
        return 130
    sys.stdout.write(chaos.report_text(res))
    sys.stdout.flush()
    if args.junit:
        try:
            with open(args.junit, "w", encoding="utf-8") as fh:
                fh.write(chaos.junit_xml(res))
        except OSError as e:
            print(f"devconsole: {args.junit}: {e.strerror}", file=sys.stderr)
            return 1
    return 0 if res.passed else 1
