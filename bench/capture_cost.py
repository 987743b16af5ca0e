"""Microbenchmark of devconsole's per-message capture work, in one process, no sockets.

What the proxy does for every read of a WebSocket connection (``Capture.tcp_message``):
``Relay.feed``: ``StreamDecoder.feed`` -> build a ``Message`` event -> (the emit callback)
``Session.apply`` (ring buffer, connection counters) -> ``TapServer.publish`` (append to
each tap client's queue); later, per batch, the tap sender's ``wire.pack_events``. Each
part is timed on its own, and the whole ``Relay.feed`` path (everything but the batch
encode) is timed end to end: on the hot path (nothing held, nothing injected), and with a
breakpoint that matches nothing (every message is cut out of the stream and matched
against the filter before it is forwarded, as bytes unchanged).

Cases (client -> server frames, masked, unless said otherwise), fed in 64 KiB chunks:

  small         100-byte text messages
  small-server  100-byte text messages, server -> client (unmasked)
  large         64 KiB binary messages
  fragmented    1000-byte text messages in 10 frames of 100 bytes
  compressed    ~1 KiB JSON-like text messages, permessage-deflate with context takeover

The Session is the proxy's (default bounds: 100,000 items / 256 MiB) and is pre-filled,
so the numbers include ring-buffer eviction (the steady state of a long-running proxy).
"GC off" repeats the end-to-end path with the cyclic garbage collector disabled, to show
how much of the cost is collections triggered by the allocations (the ring buffer holds
100k tracked objects that every full collection walks).

    .venv/bin/python bench/capture_cost.py [--quick] [--reps N]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import fmt_num, machine, median, save_json, table

from devconsole import wire
from devconsole.capture import Capture
from devconsole.frames import DataMessage, DeflateParams, StreamDecoder, build_frame
from devconsole.model import CLIENT, SERVER, Handshake, HandshakeEvent, Message, Opcode
from devconsole.relay import Intercept, Relay
from devconsole.session import Session
from devconsole.tap import TapServer, _Client

CHUNK = 65536
MASK = b"\x12\x34\x56\x78"


def _json_payload(i: int, size: int) -> bytes:
    item = f'{{"id":{i},"type":"tick","symbol":"ABC","price":{i % 997}.25,"qty":{i % 13}}}'
    s = ("[" + ",".join([item] * (size // len(item) + 1)))[: size - 1] + "]"
    return s.encode()


def build_case(name: str, n: int) -> tuple[bytes, bool, DeflateParams | None, int]:
    """(wire bytes of n messages, from_client, deflate params, payload size)."""
    frames: list[bytes] = []
    deflate = None
    from_client = True
    if name in ("small", "small-server"):
        from_client = name == "small"
        p = _json_payload(1, 100)
        f = build_frame(Opcode.TEXT, p, mask=MASK if from_client else None)
        return f * n, from_client, None, len(p)
    if name == "large":
        p = os.urandom(65536)
        f = build_frame(Opcode.BINARY, p, mask=MASK)
        return f * n, True, None, len(p)
    if name == "fragmented":
        p = _json_payload(1, 1000)
        parts = [p[i : i + 100] for i in range(0, 1000, 100)]
        msg = b"".join(
            build_frame(
                Opcode.TEXT if i == 0 else Opcode.CONTINUATION,
                part,
                fin=i == len(parts) - 1,
                mask=MASK,
            )
            for i, part in enumerate(parts)
        )
        return msg * n, True, None, len(p)
    if name == "compressed":
        deflate = DeflateParams()
        c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        size = 1024
        for i in range(n):
            p = _json_payload(i, size)
            data = c.compress(p) + c.flush(zlib.Z_SYNC_FLUSH)
            assert data.endswith(b"\x00\x00\xff\xff")
            frames.append(build_frame(Opcode.TEXT, data[:-4], rsv=4, mask=MASK))
        return b"".join(frames), True, deflate, size
    raise ValueError(name)


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def timed(fn: Callable[[], Any], reps: int) -> float:
    """Median wall time of ``fn`` over ``reps`` runs (seconds)."""
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return median(out)


def prefilled_session() -> Session:
    s = Session()  # the proxy's defaults
    hs = Handshake("1", 0.0, "c", "s", "ws", "ws://x/", "GET", "/", [], "1.1", [], [])
    s.apply(HandshakeEvent(hs))
    p = b"x" * 100
    for i in range(1, s.buffer.max_items + 1):
        s.apply(Message(i, "1", 0.0, CLIENT, 1, p, 100, 106))
    return s


def measure(name: str, n: int, reps: int) -> dict[str, float]:
    data, from_client, deflate, size = build_case(name, n)
    parts = chunks(data)
    side = CLIENT if from_client else SERVER
    res: dict[str, float] = {"payload": size, "messages": n}

    # 1. the decoder alone
    def decode() -> list[Any]:
        dec = StreamDecoder(from_client, deflate)
        out: list[Any] = []
        for c in parts:
            out.extend(dec.feed(c))
        return out

    items = decode()
    assert len(items) == n and all(isinstance(i, DataMessage) for i in items), name
    res["decode"] = timed(decode, reps) / n * 1e6

    # 2. building the Message events (as Relay.feed does)
    seq = [10_000_000]

    def build() -> list[Message]:
        out = []
        for it in items:
            seq[0] += 1
            out.append(
                Message(
                    seq=seq[0],
                    conn="1",
                    ts=1.0,
                    side=side,
                    opcode=it.opcode,
                    payload=it.payload,
                    size=it.size,
                    wire_size=it.wire_size,
                    frames=it.frames,
                    compressed=it.compressed,
                    rsv=it.rsv,
                    utf8_ok=it.utf8_ok,
                    dropped=False,
                    frame_sizes=it.frame_sizes,
                )
            )
        return out

    res["event"] = timed(build, reps) / n * 1e6

    # 3. Session.apply, steady state (buffer full: every append evicts)
    session = prefilled_session()

    def apply() -> None:
        msgs = build()
        t0 = time.perf_counter()
        ap = session.apply
        for m in msgs:
            ap(m)
        apply.t = time.perf_counter() - t0  # type: ignore[attr-defined]

    ts = []
    for _ in range(reps):
        apply()
        ts.append(apply.t)  # type: ignore[attr-defined]
    res["session"] = median(ts) / n * 1e6

    # 4. TapServer.publish to one attached client (queue drained per batch, as the sender)
    async def _cmd(c: Any) -> Any:
        raise NotImplementedError

    tap = TapServer(Session(), _cmd)
    client = _Client(None)  # type: ignore[arg-type]
    tap.clients.add(client)
    msgs = build()

    def publish() -> None:
        pub = tap.publish
        for m in msgs:
            pub(m)
            if len(client.queue) >= 2000:
                client.queue = []
        client.queue = []

    res["publish"] = timed(publish, reps) / n * 1e6

    # 5. the tap sender's encode, per batch of 2000 events
    def encode() -> None:
        for i in range(0, len(msgs), 2000):
            wire.pack_events(msgs[i : i + 2000])  # type: ignore[arg-type]

    res["encode"] = timed(encode, reps) / n * 1e6
    encoded = wire.pack_events(msgs[:2000])  # type: ignore[arg-type]
    res["encoded_bytes"] = len(encoded) / min(2000, len(msgs))

    # 6. the tap client's decode (in the viewer's process, not the proxy's)
    def viewer_decode() -> None:
        dec = wire.Decoder()
        for i in range(0, len(msgs), 2000):
            dec.feed(wire.pack_events(msgs[i : i + 2000]))  # type: ignore[arg-type]
            for _kind, body in dec.frames():
                wire.decode_events(body)

    res["viewer"] = timed(viewer_decode, reps) / n * 1e6 - res["encode"]

    # 7. the whole Relay.feed path: decoder + events + Session + publish, as the addon
    #    drives it; 8. the same with a breakpoint that matches nothing
    def relay_run(breakpoint: bool) -> float:
        cap = Capture()
        cap.session = session
        cap.tap.session = session
        cap.tap.clients.add(client)
        intercept = Intercept()
        if breakpoint:
            intercept.add("no-such-text-in-any-payload")
        r = Relay(
            "1",
            deflate,
            emit=cap._emit,
            seq=itertools.count(20_000_000 + seq[0]),
            intercept=intercept,
        )
        t0 = time.perf_counter()
        for c in parts:
            r.feed(side, c, 1.0)
            if len(client.queue) >= 2000:
                client.queue = []
        t = time.perf_counter() - t0
        seq[0] += 2 * n + 10
        client.queue = []
        return t

    res["relay"] = median([relay_run(False) for _ in range(reps)]) / n * 1e6
    res["relay_bp"] = median([relay_run(True) for _ in range(reps)]) / n * 1e6
    gc.disable()
    try:
        res["relay_nogc"] = median([relay_run(False) for _ in range(reps)]) / n * 1e6
    finally:
        gc.enable()
    res["total"] = res["relay"] + res["encode"]
    return res


CASES = ["small", "small-server", "large", "fragmented", "compressed"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args(argv)
    reps = args.reps or (3 if args.quick else 7)
    counts = {
        "small": 20_000,
        "small-server": 20_000,
        "large": 300,
        "fragmented": 5_000,
        "compressed": 5_000,
    }
    if not args.quick:
        counts = {k: v * 5 for k, v in counts.items()}
    print(f"# capture_cost: {machine()}")
    print(f"# {reps} repetitions per measurement, medians, us per message", flush=True)
    results = {}
    for case in args.cases.split(","):
        results[case] = measure(case, counts[case], reps)
        print(f"  {case}: done", flush=True)
    cols = [
        ("decode", "StreamDecoder.feed"),
        ("event", "Message()"),
        ("session", "Session.apply"),
        ("publish", "tap publish"),
        ("encode", "wire encode"),
        ("relay", "Relay.feed (1-4)"),
        ("total", "proxy total (relay + encode)"),
        ("relay_nogc", "Relay.feed, GC off"),
        ("relay_bp", "Relay.feed, a breakpoint"),
        ("viewer", "viewer: wire decode"),
    ]
    rows = []
    for case, r in results.items():
        row = [f"{case} ({int(r['payload'])} B)"]
        row += [fmt_num(r[k]) for k, _ in cols]
        row.append(fmt_num(r["encoded_bytes"]))
        rows.append(row)
    print()
    print(table(["us/message", *(h for _, h in cols), "tap bytes/msg"], rows))
    save_json("capture_cost", {"machine": machine(), "reps": reps, "results": results})
    print(json.dumps({k: round(v["total"], 2) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
