"""A tap client for the benchmarks (a separate process), consuming events like the TUI does:
``TapClient`` -> ``wire`` decode -> ``Session.apply_all`` (the TUI's Session, default
bounds). Prints ``ready`` once attached; on SIGTERM prints one JSON line with what it
received (events, messages, events the proxy skipped because this client was too slow)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from _common import follow_tap

from devconsole.model import Event, GapEvent, Message
from devconsole.session import Session


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

    await follow_tap(args.tap, on_events)
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
