"""What application-protocol decoding costs a viewer: a Session fed N messages, with and
without a ProtocolTracker (+ pairing and heartbeat listeners, as ``devconsole report``
wires them), per kind of traffic.

Kinds (one connection each, both directions):

- ``plain``: JSON chat messages on a connection with no protocol (sniffing gives up
  after 20 messages): what decoding costs everyone else;
- ``socket.io``: ``42["chat",{...}]`` events with acks and their ``43`` acks;
- ``jsonrpc``: requests and responses with ids;
- ``mqtt``: QoS 1 PUBLISH + PUBACK binary packets.

For each: messages/s of ``Session.apply`` alone (the baseline, same run), with the
tracker, and with tracker + pairs + heartbeat (``analysis.readiness.observe``); the
ratios are what matters. Also the cost of decoding one message lazily
(``tracker.decoded`` of an item whose result was evicted).

    .venv/bin/python bench/decoders.py [-n 200000] [--runs 3] [--json]

No network, no files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devconsole.analysis.readiness import observe  # noqa: E402
from devconsole.decoders.mqtt import encode_packet  # noqa: E402
from devconsole.decoders.tracker import ProtocolTracker  # noqa: E402
from devconsole.model import Handshake, HandshakeEvent, Message, Opcode  # noqa: E402
from devconsole.session import Session  # noqa: E402


def _hs(path: str, query: list[tuple[str, str]], sub: str | None = None) -> Handshake:
    return Handshake(
        conn="1", ts=0.0, client="127.0.0.1:1", server="127.0.0.1:2", scheme="ws",
        url=f"ws://x{path}", method="GET", path=path, query=query, http_version="HTTP/1.1",
        request_headers=[], cookies=[], status=101, subprotocol=sub,
    )  # fmt: skip


def traffic(kind: str, n: int) -> tuple[Handshake, list[Message]]:
    out: list[Message] = []
    for i in range(n):
        side = "client" if i % 2 == 0 else "server"
        k = i // 2
        if kind == "plain":
            p = f'{{"type":"chat","user":"alice","text":"hello number {k}","ts":{k}.5}}'.encode()
            op = Opcode.TEXT
        elif kind == "socket.io":
            if side == "client":
                p = f'42{k}["chat",{{"user":"alice","text":"hello number {k}"}}]'.encode()
            else:
                p = f'43{k}[{{"ok":true}}]'.encode()
            op = Opcode.TEXT
        elif kind == "jsonrpc":
            if side == "client":
                p = f'{{"jsonrpc":"2.0","method":"eth_call","params":["0xab",{k}],"id":{k}}}'
            else:
                p = f'{{"jsonrpc":"2.0","result":"0x{k:x}","id":{k}}}'
            p = p.encode()  # type: ignore[assignment]
            op = Opcode.TEXT
        else:
            pid = k % 65535 + 1
            if side == "client":
                p = encode_packet({"packet": "PUBLISH", "topic": "sensors/1", "qos": 1,
                                   "packet_id": pid, "payload": f"reading {k}"})  # fmt: skip
            else:
                p = encode_packet({"packet": "PUBACK", "packet_id": pid})
            op = Opcode.BINARY
        out.append(Message(i + 1, "1", i * 0.001, side, op, p, len(p), len(p) + 6))  # type: ignore[arg-type]
    hs = {
        "plain": _hs("/chat", []),
        "socket.io": _hs("/socket.io/", [("EIO", "4"), ("transport", "websocket")]),
        "jsonrpc": _hs("/rpc", [], "jsonrpc"),
        "mqtt": _hs("/mqtt", [], "mqtt"),
    }[kind]
    return hs, out


def run(kind: str, n: int, mode: str) -> float:
    hs, items = traffic(kind, n)
    session = Session(max_items=n + 10, max_bytes=1 << 34)
    if mode == "tracker":
        session.observers.append(ProtocolTracker().on_event)
    elif mode == "analysis":
        observe(session)
    session.apply(HandshakeEvent(hs))
    t0 = time.perf_counter()
    for m in items:
        session.apply(m)
    return n / (time.perf_counter() - t0)


def lazy(kind: str, n: int) -> float:
    hs, items = traffic(kind, n)
    tracker = ProtocolTracker(max_cached=0)
    tracker.on_event(HandshakeEvent(hs))
    for m in items[:50]:
        tracker.on_event(m)
    t0 = time.perf_counter()
    for m in items:
        tracker.decoded(m)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    for kind in ("plain", "socket.io", "jsonrpc", "mqtt"):
        row: dict[str, float] = {}
        for mode in ("session", "tracker", "analysis"):
            row[mode] = statistics.median(run(kind, args.n, mode) for _ in range(args.runs))
        row["lazy_decode"] = statistics.median(lazy(kind, args.n) for _ in range(args.runs))
        results[kind] = row
    if args.json:
        print(json.dumps({"n": args.n, "results": results}))
        return 0
    print(f"{'traffic':<10} {'session msg/s':>14} {'+tracker':>14} {'ratio':>6} "
          f"{'+pairs+hb':>14} {'ratio':>6} {'lazy decode/s':>14}")  # fmt: skip
    for kind, r in results.items():
        print(
            f"{kind:<10} {r['session']:>14,.0f} {r['tracker']:>14,.0f} "
            f"{r['tracker'] / r['session']:>6.2f} {r['analysis']:>14,.0f} "
            f"{r['analysis'] / r['session']:>6.2f} {r['lazy_decode']:>14,.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
