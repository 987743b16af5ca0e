"""A tap client for the benchmarks (a separate process), consuming events like the TUI does:
``TapClient`` -> ``wire`` decode -> ``Session.apply_all`` (the TUI's Session, default
bounds). Prints ``ready`` once attached; on SIGTERM prints one JSON line with what it
received (events, messages, events the proxy skipped because this client was too slow)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from devconsole.model import Event, GapEvent, Message
from devconsole.session import Session
from devconsole.tap import TapClient


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("tap")
    ap.add_argument("--no-session", action="store_true", help="decode only, no Session")
    args = ap.parse_args()
    session = Session()
    stats = {"events": 0, "messages": 0, "missed": 0, "batches": 0}

    def on_events(evs: list[Event]) -> None:
        stats["batches"] += 1
        stats["events"] += len(evs)
        for ev in evs:
            t = type(ev)
            if t is Message:
                stats["messages"] += 1
            elif t is GapEvent:
                stats["missed"] += ev.missed  # type: ignore[union-attr]
        if not args.no_session:
            session.apply_all(evs)

    client = TapClient(args.tap)
    await client.connect()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    run = asyncio.ensure_future(client.run(on_events))
    print("ready", flush=True)
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait({run, waiter}, return_when=asyncio.FIRST_COMPLETED)
    await client.close()
    for t in (run, waiter):
        t.cancel()
        with contextlib.suppress(BaseException):
            await t
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
