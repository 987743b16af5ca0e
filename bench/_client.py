"""Benchmark WebSocket client (a separate process). Prints one JSON result line.

Workloads (all bounded by a message count AND a time limit):

- ``echo``: a ``websockets`` asyncio client (compression=None) keeps up to ``--window``
  text messages in flight to ``/echo`` and counts round trips.
- ``wsup``: one-way flood client -> server at the speed of a ``websockets`` asyncio sender
  (compression=None; ``await ws.send()`` in a loop), acked like ``up``.
- ``up``: one-way flood client -> server. A raw socket does the HTTP upgrade itself, then
  writes pre-built masked text frames in batches (so the sender costs almost nothing and
  the numbers measure the proxy and the receiver); the ``websockets`` server (``/sink``)
  counts them and acks every ``--ack`` messages; the sender keeps at most ``--window``
  unacked messages in flight, so a slow proxy cannot queue an unbounded backlog.
- ``down``: one-way flood server -> client. The ``websockets`` server (``/source``)
  sends; a raw-socket receiver parses the frame headers, counts messages and acks them.
- ``rtt``: one message in flight: a ``websockets`` client sends a message to ``/echo``,
  waits for it to come back, and sends the next; every round trip is timed (after a
  warm-up); p50/p99.
- ``many``: ``--conns`` ``websockets`` connections to ``/echo``, each sending one message
  every ``--interval`` seconds (random phase), for ``--seconds``; p50/p99 round trip, and
  with ``--pid`` the proxy process's CPU time during that window and its RSS before and
  after the connections were opened.
- ``idle``: ``--conns`` upgraded connections (raw sockets: handshake, then nothing),
  held for ``--hold`` seconds; with ``--pid`` the proxy's RSS before and with them open.

Rate = messages / (time from the first byte sent to the last ack or message received).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import socket
import ssl
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import connect

# --tls: wss, the certificate not verified (the benchmark's own self-signed one, or the
# proxy's CA)
TLS: ssl.SSLContext | None = None
SCHEME = "ws"


def _use_tls() -> None:
    global TLS, SCHEME
    TLS = ssl.create_default_context()
    TLS.check_hostname = False
    TLS.verify_mode = ssl.CERT_NONE
    SCHEME = "wss"


def _handshake(host: str, port: int, path: str) -> tuple[socket.socket, bytes]:
    sock: socket.socket = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if TLS is not None:
        sock = TLS.wrap_socket(sock)
    key = base64.b64encode(os.urandom(16)).decode()
    req = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(req.encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"connection closed during the handshake: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        raise RuntimeError(f"upgrade refused: {status!r}")
    return sock, rest


def _frame(payload: bytes, mask: bool, opcode: int = 1) -> bytes:
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes((0x80 | opcode, mbit | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, mbit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, mbit | 127)) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    m = (key * ((n + 3) // 4))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")
    return head + key + masked


class _Frames:
    """Minimal parser of unmasked server frames (the benchmark's own traffic only)."""

    def __init__(self, data: bytes = b"") -> None:
        self.buf = bytearray(data)
        self.pos = 0

    def feed(self, data: bytes) -> None:
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data

    def next(self) -> tuple[int, bytes] | None:
        b = self.buf
        p = self.pos
        avail = len(b) - p
        if avail < 2:
            return None
        ln = b[p + 1] & 0x7F
        h = 2
        if ln == 126:
            if avail < 4:
                return None
            ln = int.from_bytes(b[p + 2 : p + 4], "big")
            h = 4
        elif ln == 127:
            if avail < 10:
                return None
            ln = int.from_bytes(b[p + 2 : p + 10], "big")
            h = 10
        if avail < h + ln:
            return None
        op = b[p] & 0x0F
        payload = bytes(b[p + h : p + h + ln])
        self.pos = p + h + ln
        return op, payload

    def skip_frames(self) -> int:
        """Consume every complete frame in the buffer (payload not copied); count them."""
        b = self.buf
        p = self.pos
        n = len(b)
        count = 0
        while n - p >= 2:
            ln = b[p + 1] & 0x7F
            h = 2
            if ln == 126:
                if n - p < 4:
                    break
                ln = (b[p + 2] << 8) | b[p + 3]
                h = 4
            elif ln == 127:
                if n - p < 10:
                    break
                ln = int.from_bytes(b[p + 2 : p + 10], "big")
                h = 10
            if n - p < h + ln:
                break
            p += h + ln
            count += 1
        self.pos = p
        return count


def flood_up(
    host: str,
    port: int,
    size: int,
    count: int,
    seconds: float,
    window: int,
    ack: int,
    progress: Callable[[int], None] | None = None,
    every: int = 0,
    rate: float = 0.0,
) -> dict[str, float]:
    """``progress(acked)`` is called each time another ``every`` messages are acked;
    ``rate`` > 0 paces the sender to at most that many messages/s."""
    sock, rest = _handshake(host, port, f"/sink?ack={ack}")
    frames = _Frames(rest)
    payload = (b"x" * size)[:size]
    batch = b"".join(_frame(payload, mask=True) for _ in range(ack))
    deadline_total = seconds * 3 + 30  # the drain of an in-flight window is bounded too
    sent = 0
    acked = 0
    next_report = every if progress is not None and every > 0 else 0

    def read_acks(block: bool) -> None:
        nonlocal acked, next_report
        try:
            # blocking reads keep the socket's timeout (set below); polls do not block
            data = sock.recv(1 << 16) if block else sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            raise RuntimeError(f"connection closed after {acked} acked messages")
        frames.feed(data)
        while (f := frames.next()) is not None:
            op, p = f
            if op == 1 and p.startswith(b"ack:"):
                acked = int(p[4:])
                while next_report and acked >= next_report:
                    assert progress is not None
                    progress(next_report)
                    next_report += every

    sock.settimeout(deadline_total)
    t0 = time.perf_counter()
    end = t0 + seconds
    while sent < count and time.perf_counter() < end:
        while sent - acked >= window:
            read_acks(True)
        if rate > 0:
            ahead = t0 + sent / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        sock.sendall(batch)
        sent += ack
        read_acks(False)
    while acked < sent:
        if time.perf_counter() - t0 > deadline_total:
            raise RuntimeError(f"timed out: {acked} of {sent} acked")
        read_acks(True)
    t1 = time.perf_counter()
    sock.sendall(_frame(b"\x03\xe8", mask=True, opcode=8))
    sock.close()
    return {"messages": sent, "seconds": t1 - t0, "rate": sent / (t1 - t0)}


def flood_down(
    host: str, port: int, size: int, count: int, seconds: float, window: int, ack: int
) -> dict[str, float]:
    # the count is fixed up front (the server sends it); the time limit cuts it short by
    # closing, so keep `count` about what `seconds` allows at the expected speed
    sock, rest = _handshake(host, port, f"/source?n={count}&size={size}&ack={ack}&window={window}")
    sock.settimeout(seconds * 3 + 30)
    frames = _Frames(rest)
    got = 0
    nxt = ack
    t0 = time.perf_counter()
    end = t0 + seconds
    got += frames.skip_frames()
    while got < count:
        while got >= nxt:
            sock.sendall(_frame(f"ack:{nxt}".encode(), mask=True))
            nxt += ack
        if time.perf_counter() > end:
            break
        data = sock.recv(1 << 18)
        if not data:
            raise RuntimeError(f"connection closed after {got} messages")
        frames.feed(data)
        got += frames.skip_frames()
    t1 = time.perf_counter()
    sock.close()
    return {"messages": got, "seconds": t1 - t0, "rate": got / (t1 - t0)}


async def flood_wsup(
    host: str, port: int, size: int, count: int, seconds: float, window: int, ack: int
) -> dict[str, float]:
    payload = ("x" * size)[:size]
    async with connect(
        f"{SCHEME}://{host}:{port}/sink?ack={ack}",
        compression=None,
        max_size=64 << 20,
        ping_interval=None,
        open_timeout=10,
        ssl=TLS,
    ) as ws:
        acked = 0
        progress = asyncio.Event()

        async def reader() -> None:
            nonlocal acked
            async for msg in ws:
                if isinstance(msg, str) and msg.startswith("ack:"):
                    acked = int(msg[4:])
                    progress.set()

        task = asyncio.ensure_future(reader())
        sent = 0
        t0 = time.perf_counter()
        end = t0 + seconds
        limit = t0 + seconds * 3 + 30
        try:
            while sent < count and time.perf_counter() < end:
                while sent - acked >= window:
                    progress.clear()
                    await asyncio.wait_for(progress.wait(), limit - time.perf_counter())
                for _ in range(ack):
                    await ws.send(payload)
                sent += ack
            while acked < sent:
                progress.clear()
                await asyncio.wait_for(progress.wait(), limit - time.perf_counter())
            t1 = time.perf_counter()
        finally:
            task.cancel()
    return {"messages": sent, "seconds": t1 - t0, "rate": sent / (t1 - t0)}


async def echo(
    host: str, port: int, size: int, count: int, seconds: float, window: int
) -> dict[str, float]:
    payload = ("x" * size)[:size]
    async with connect(
        f"{SCHEME}://{host}:{port}/echo",
        compression=None,
        max_size=64 << 20,
        ping_interval=None,
        open_timeout=10,
        ssl=TLS,
    ) as ws:
        sent = received = 0
        t0 = time.perf_counter()
        end = t0 + seconds
        for _ in range(min(window, count)):
            await ws.send(payload)
            sent += 1
        while received < sent:
            await asyncio.wait_for(ws.recv(), seconds * 3 + 30)
            received += 1
            if sent < count and time.perf_counter() < end:
                await ws.send(payload)
                sent += 1
        t1 = time.perf_counter()
    return {"messages": received, "seconds": t1 - t0, "rate": received / (t1 - t0)}


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


async def rtt(
    host: str, port: int, size: int, count: int, seconds: float, warmup: int = 300
) -> dict[str, float]:
    payload = ("x" * size)[:size]
    async with connect(
        f"{SCHEME}://{host}:{port}/echo",
        compression=None,
        max_size=64 << 20,
        ping_interval=None,
        open_timeout=10,
        ssl=TLS,
    ) as ws:
        for _ in range(warmup):
            await ws.send(payload)
            await asyncio.wait_for(ws.recv(), 30)
        samples: list[float] = []
        clock = time.perf_counter
        t0 = clock()
        end = t0 + seconds
        while len(samples) < count:
            a = clock()
            if a > end:
                break
            await ws.send(payload)
            await asyncio.wait_for(ws.recv(), 30)
            samples.append(clock() - a)
        t1 = clock()
    us = [x * 1e6 for x in samples]
    return {
        "messages": len(us),
        "seconds": t1 - t0,
        "rate": len(us) / (t1 - t0),
        "p50_us": _pct(us, 0.5),
        "p99_us": _pct(us, 0.99),
        "mean_us": statistics.fmean(us) if us else float("nan"),
    }


async def _open_all(
    n: int, opener: Callable[[], Awaitable[Any]], concurrency: int, limit: float
) -> list[Any]:
    sem = asyncio.Semaphore(concurrency)
    out: list[Any] = []
    errors: list[str] = []

    async def one() -> None:
        async with sem:
            try:
                out.append(await opener())
            except Exception as e:
                errors.append(repr(e))

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), limit)
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} connections failed: {errors[0]}")
    return out


async def many(
    host: str,
    port: int,
    size: int,
    conns: int,
    interval: float,
    seconds: float,
    pid: int,
) -> dict[str, float]:
    """``conns`` connections, one round trip per ``interval`` each, for ``seconds``."""
    payload = ("x" * size)[:size]
    rss0 = _rss_kib(pid) if pid else 0
    t_open = time.perf_counter()

    async def opener() -> Any:
        return await connect(
            f"{SCHEME}://{host}:{port}/echo",
            compression=None,
            max_size=1 << 20,
            ping_interval=None,
            open_timeout=60,
            close_timeout=5,
            ssl=TLS,
        )

    wss = await _open_all(conns, opener, 16, 120 + conns * 0.05)
    open_s = time.perf_counter() - t_open
    await asyncio.sleep(2.0)
    rss1 = _rss_kib(pid) if pid else 0
    samples: list[float] = []
    loop = asyncio.get_running_loop()
    cpu0 = _cpu_s(pid) if pid else 0.0
    t0 = loop.time()
    end = t0 + seconds
    print("measuring", file=sys.stderr, flush=True)  # bench/profile_proxy.py waits for it

    async def run(ws: Any) -> None:
        nxt = t0 + random.random() * interval
        clock = time.perf_counter
        while nxt < end:
            delay = nxt - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            a = clock()
            await ws.send(payload)
            await asyncio.wait_for(ws.recv(), 30)
            samples.append(clock() - a)
            nxt += interval

    await asyncio.wait_for(asyncio.gather(*(run(ws) for ws in wss)), seconds + 60)
    t1 = loop.time()
    cpu1 = _cpu_s(pid) if pid else 0.0
    for ws in wss:
        with contextlib.suppress(Exception):
            await ws.close()
    us = [x * 1e6 for x in samples]
    out = {
        "messages": len(us),
        "seconds": t1 - t0,
        "rate": len(us) / seconds,
        "p50_us": _pct(us, 0.5),
        "p99_us": _pct(us, 0.99),
        "open_s": open_s,
    }
    if pid:
        out.update(
            proxy_cpu_s=cpu1 - cpu0,
            rss0_kib=rss0,
            rss1_kib=rss1,
            rss_per_conn_kib=(rss1 - rss0) / conns,
        )
    return out


async def idle(host: str, port: int, conns: int, hold: float, pid: int) -> dict[str, float]:
    """``conns`` upgraded connections that send nothing; the proxy's RSS with them open."""
    rss0 = _rss_kib(pid) if pid else 0
    req = (
        f"GET /echo HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()

    async def opener() -> Any:
        r, w = await asyncio.open_connection(host, port, ssl=TLS)
        w.write(req)
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 60)
        if b" 101 " not in head.split(b"\r\n", 1)[0] + b" ":
            raise RuntimeError(f"upgrade refused: {head[:40]!r}")
        return r, w

    t_open = time.perf_counter()
    pairs = await _open_all(conns, opener, 16, 120 + conns * 0.05)
    open_s = time.perf_counter() - t_open
    await asyncio.sleep(hold)
    rss1 = _rss_kib(pid) if pid else 0
    # still alive? (a proxy may have dropped idle connections)
    alive = sum(1 for r, _ in pairs if not r.at_eof())
    for _, w in pairs:
        w.close()
    return {
        "messages": 0,
        "seconds": open_s,
        "rate": conns / open_s,
        "conns": conns,
        "alive": alive,
        "rss0_kib": rss0,
        "rss1_kib": rss1,
        "rss_per_conn_kib": (rss1 - rss0) / conns if pid else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=["echo", "wsup", "up", "down", "rtt", "many", "idle"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--ack", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.0, help="up: pace to N msgs/s")
    ap.add_argument("--conns", type=int, default=100, help="many/idle: connections")
    ap.add_argument("--interval", type=float, default=1.0, help="many: s between messages")
    ap.add_argument("--hold", type=float, default=3.0, help="idle: s to hold them open")
    ap.add_argument("--pid", type=int, default=0, help="many/idle: the proxy process")
    ap.add_argument("--tls", action="store_true", help="wss (certificates not verified)")
    args = ap.parse_args()
    if args.tls:
        if args.workload == "up":
            raise SystemExit("the raw flood sender (up) does not speak TLS")
        _use_tls()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit("loopback only")
    if args.workload == "rtt":
        res = asyncio.run(rtt(args.host, args.port, args.size, args.count, args.seconds))
    elif args.workload == "many":
        res = asyncio.run(
            many(
                args.host,
                args.port,
                args.size,
                args.conns,
                args.interval,
                args.seconds,
                args.pid,
            )
        )
    elif args.workload == "idle":
        res = asyncio.run(idle(args.host, args.port, args.conns, args.hold, args.pid))
    elif args.workload == "echo":
        res = asyncio.run(
            echo(args.host, args.port, args.size, args.count, args.seconds, args.window)
        )
    elif args.workload == "wsup":
        res = asyncio.run(
            flood_wsup(
                args.host, args.port, args.size, args.count, args.seconds, args.window, args.ack
            )
        )
    elif args.workload == "up":
        res = flood_up(
            args.host,
            args.port,
            args.size,
            args.count,
            args.seconds,
            args.window,
            args.ack,
            rate=args.rate,
        )
    else:
        res = flood_down(
            args.host, args.port, args.size, args.count, args.seconds, args.window, args.ack
        )
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
