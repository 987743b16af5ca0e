"""A tap client that records, per captured connection, what the conformance check needs:
the upgrade request (path, query, Sec-WebSocket-Key), protocol errors (the frame parser
gave up on a direction), close frames with an error, text messages that are not UTF-8,
message counts, and how many events the proxy skipped for this client. Prints ``ready``
once attached; on SIGTERM (or when the tap closes) writes the JSON to OUT.

    python bench/autobahn/collect.py TAP OUT.json
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common

from _common import follow_tap

from devconsole.model import (
    ControlFrame,
    EndEvent,
    Event,
    GapEvent,
    HandshakeEvent,
    Message,
    Opcode,
    ProtocolErrorEvent,
    RefusedEvent,
)


async def main() -> int:
    tap, out = sys.argv[1], sys.argv[2]
    conns: dict[str, dict[str, Any]] = {}
    missed = 0

    def conn(cid: str) -> dict[str, Any]:
        c = conns.get(cid)
        if c is None:
            c = conns[cid] = {
                "id": cid,
                "path": "",
                "query": [],
                "key": None,
                "status": None,
                "protocol_errors": [],
                "control_errors": [],
                "invalid_utf8": {"client": 0, "server": 0},
                "messages": {"client": 0, "server": 0},
                "ended": False,
            }
        return c

    def on_events(evs: list[Event]) -> None:
        nonlocal missed
        for ev in evs:
            if isinstance(ev, Message):
                c = conn(ev.conn)
                c["messages"][ev.side] += 1
                if ev.opcode == Opcode.TEXT and not ev.utf8_ok:
                    c["invalid_utf8"][ev.side] += 1
            elif isinstance(ev, ControlFrame):
                if ev.error:
                    conn(ev.conn)["control_errors"].append([ev.side, ev.opcode, ev.error])
            elif isinstance(ev, (HandshakeEvent, RefusedEvent)):
                hs = ev.handshake
                c = conn(hs.conn)
                c["path"] = hs.path
                c["query"] = [list(p) for p in hs.query]
                c["key"] = hs.request_header("sec-websocket-key")
                c["status"] = hs.status
            elif isinstance(ev, ProtocolErrorEvent):
                conn(ev.conn)["protocol_errors"].append([ev.side, ev.offset, ev.error])
            elif isinstance(ev, EndEvent):
                conn(ev.conn)["ended"] = True
            elif isinstance(ev, GapEvent):
                missed += ev.missed

    await follow_tap(tap, on_events)
    with open(out, "w") as fh:
        json.dump({"missed": missed, "connections": list(conns.values())}, fh)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
