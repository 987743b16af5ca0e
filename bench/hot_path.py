"""The relay's hot path, timed alone: decode + events + Session + tap publish, no sockets.

For comparing two trees (``PYTHONPATH=TREE .venv/bin/python bench/hot_path.py``, run
alternately from each tree on a busy machine; compare the fastest runs): trees from
before ``devconsole.relay`` existed are timed through ``Capture._relay``, newer ones
through ``Relay.feed``. Masked 100-byte text messages and 16 KiB binary ones, in 64 KiB
chunks, as mitmproxy reads them.

    .venv/bin/python bench/hot_path.py [--runs 12]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from typing import Any

from devconsole.capture import Capture
from devconsole.frames import StreamDecoder, build_frame
from devconsole.model import CLIENT, SERVER, Handshake, HandshakeEvent, Opcode
from devconsole.session import Session
from devconsole.tap import _Client

MASK = b"\x12\x34\x56\x78"


def chunks(size: int, n: int) -> list[bytes]:
    op = Opcode.TEXT if size < 1000 else Opcode.BINARY
    wire = b"".join(build_frame(op, b"x" * size, mask=MASK) for _ in range(n))
    return [wire[i : i + 65536] for i in range(0, len(wire), 65536)]


def feeder(cap: Capture, hs: Handshake) -> Callable[[bytes], Any]:
    try:
        from devconsole.relay import Relay
    except ImportError:  # a tree from before the relay module
        from devconsole import capture as old

        d = old._Direction(CLIENT, StreamDecoder(True, None))  # type: ignore[attr-defined]
        s = old._Stream("1", None, hs, d, old._Direction(SERVER, StreamDecoder(False)))  # type: ignore[attr-defined]
        return lambda c: cap._relay(s, d, c, 1.0)  # type: ignore[attr-defined]
    r = Relay("1", None, emit=cap._emit, seq=itertools.count(1), intercept=cap.intercept)
    return lambda c: r.feed(CLIENT, c, 1.0)


def run(parts: list[bytes], n: int) -> float:
    session = Session()
    hs = Handshake("1", 1.0, "c", "s", "ws", "ws://x/", "GET", "/", [], "HTTP/1.1", [], [])
    hs.status = 101
    session.apply(HandshakeEvent(hs))
    cap = Capture()
    cap.session = session
    cap.tap.session = session
    client = _Client(None)  # type: ignore[arg-type]
    cap.tap.clients.add(client)
    feed = feeder(cap, hs)
    t0 = time.perf_counter()
    for c in parts:
        feed(c)
        if len(client.queue) >= 2000:
            client.queue = []
    return (time.perf_counter() - t0) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=12)
    args = ap.parse_args(argv)
    out = []
    for size, n in ((100, 20_000), (16_384, 2_000)):
        parts = chunks(size, n)
        ts = sorted(run(parts, n) for _ in range(args.runs))
        out.append(f"{size} B: fastest {ts[0]:.2f}, median {ts[len(ts) // 2]:.2f} us/message")
    print("; ".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
