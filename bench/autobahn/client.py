"""The testee for wstest's fuzzingserver: a ``websockets`` asyncio client running the
standard Autobahn client loop (getCaseCount, runCase for each case, updateReports), with
the same limits as echo_server.py.

    python bench/autobahn/client.py ws://127.0.0.1:PORT AGENT [--case-timeout S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time

os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 24))

import websockets.asyncio.messages
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

websockets.asyncio.messages.MAX_FRAGMENTS = max(  # type: ignore[attr-defined]
    websockets.asyncio.messages.MAX_FRAGMENTS,  # type: ignore[attr-defined]
    1 << 24,
)


async def case_count(server: str) -> int:
    async with connect(f"{server}/getCaseCount", open_timeout=30) as ws:
        return int(await asyncio.wait_for(ws.recv(), 30))


async def run_case(server: str, case: int, agent: str) -> None:
    async with connect(
        f"{server}/runCase?case={case}&agent={agent}",
        user_agent_header=f"websockets/{agent}",
        max_size=64 << 20,
        max_queue=None,
        ping_interval=None,
        open_timeout=30,
    ) as ws:
        async for msg in ws:
            await ws.send(msg)


async def update_reports(server: str, agent: str) -> None:
    async with connect(f"{server}/updateReports?agent={agent}", open_timeout=120) as ws:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.wait_closed(), 600)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("agent")
    ap.add_argument("--case-timeout", type=float, default=120)
    ap.add_argument("--no-report", action="store_true")
    args = ap.parse_args()
    n = await case_count(args.server)
    t0 = time.monotonic()
    errors: dict[int, str] = {}
    stuck = 0
    for case in range(1, n + 1):
        try:
            await asyncio.wait_for(run_case(args.server, case, args.agent), args.case_timeout)
            stuck = 0
        except WebSocketException as e:  # expected: many cases end in a protocol error
            errors[case] = type(e).__name__
            stuck = 0
        except (TimeoutError, OSError) as e:
            errors[case] = f"{type(e).__name__}: {e}"
            stuck += 1
            if stuck >= 3:  # the server stopped answering: do not wait out every case
                print(f"giving up at case {case}: {errors[case]}", file=sys.stderr)
                return 1
    if not args.no_report:
        await update_reports(args.server, args.agent)
    print(json.dumps({"cases": n, "seconds": time.monotonic() - t0, "errors": len(errors)}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
