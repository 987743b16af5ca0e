"""TUI under a flood: keypress-to-screen latency, ingest rate and CPU, per offered rate.

Runs the real app (``devconsole.tui.app.make_app``, default buffer limits, 20 Hz redraw)
headless in this process with ``App.run_test(size=(160, 45))``, fed by a Source that
behaves like the live ``TapClient``: every 10 ms (the tap's FLUSH_INTERVAL) it hands the
app the events that became due, as msgpack EVENTS frames decoded with
``wire.Decoder`` + ``wire.decode_events`` (the client's real decoding cost, paid here,
on the app's event loop, as in ``devconsole attach``). A client that falls behind reads
at most 256 KiB (the TapClient's read size) per loop iteration, then yields. The frames
are built before each step (the proxy's work is not measured).

Traffic: 4 connections, small JSON text messages (60-180 B, ~78%), msgpack binary
(~15%), pings/pongs (~5%), a few 1-2 KiB JSON messages (~2%), both directions. With
``--traffic protocols`` the same mix speaks application protocols the TUI decodes: a
Socket.IO connection (``/socket.io/?EIO=4``: ``42["chat",{...}]`` events, some with an
ack id, and their ``43`` acks), a JSON-RPC one (requests with ids and their results), a
msgpack feed and a Socket.IO connection of plain events; every text message is then a
protocol message (decoded as it arrives, paired, its heartbeats counted).

Latency, what is measured: a separate thread plays the terminal's input thread. It
timestamps a key press (``perf_counter``) and hands a ``Key`` event to the app with
``driver.process_message()``, exactly the path of Textual's input thread. The app's
``_display`` (called by the compositor with each screen update; a no-op when headless)
is wrapped: it renders the update to terminal escape sequences
(``CompositorUpdate.render_segments``, the work a real terminal driver does before its
write) and timestamps the first update whose bytes show the key's effect in the status
bar. Latency = that timestamp - the press timestamp: queueing behind event batches,
key dispatch, the action, layout, the compositor's render of the dirty regions and the
terminal encoding. Not included: the write() to a tty and the terminal emulator.

Keys cycle: ``space`` (-> "PAUSED"), ``space`` (-> "LIVE"), ``up`` (-> "SCROLLED"),
``end`` (-> "LIVE"). space and end update the status bar in their handler; ``up`` moves
the cursor at once but the status bar shows "SCROLLED" at the next 20 Hz redraw tick,
so its latency includes up to one tick (50 ms): reported separately, and included in
the overall percentiles (conservative). The app is left LIVE 100-250 ms between
probes and PAUSED/SCROLLED only 30-60 ms, so it mostly does the work of a live screen.

Per step: p50/p95/max latency, achieved ingest rate (events applied per second, vs
offered), backlog at the end (events due but not yet delivered), CPU% (process_time /
wall: every thread of this process, so the decode, the app and the compositor), redraw
ticks/s and screen updates/s, ``queue p95`` (press -> the key's action starts: the time
the key waited behind other work on the event loop), ``others%`` (CPU used by other
processes during the step, from /proc/stat: the noise of a shared machine) and ``gc max``
(the longest garbage-collector pause in the step, from ``gc.callbacks``). With
``--repeat N`` the latency percentiles are over all the probes of the N runs, the other
columns are medians, and each run's p95 is listed. The highest rate whose p95 < 100 ms
AND that keeps up (>= 95% of the offered rate) is reported.

    .venv/bin/python bench/tui.py [--quick] [--rates 1000,5000] [--seconds 5] [--repeat 3]
        [--json F] [--profile PREFIX] [--gc-threshold 700,10,1000]

``--profile`` runs pyinstrument over each measured window (it slows the app: use it to
find the hot frames, not for the numbers); ``--gc-threshold`` is a what-if that changes
only this process's collector settings.

Loopback only (no network, no sockets); every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402
from textual import events  # noqa: E402
from textual._compositor import CompositorUpdate  # noqa: E402

from devconsole import wire  # noqa: E402
from devconsole.model import (  # noqa: E402
    CLIENT,
    SERVER,
    ControlFrame,
    Event,
    Handshake,
    HandshakeEvent,
    Message,
    Opcode,
)
from devconsole.tui.app import make_app  # noqa: E402

SIZE = (160, 45)
INTERVAL = 0.01  # tap FLUSH_INTERVAL
BATCH_EVENTS = 2_000  # tap BATCH_EVENTS
READ_BYTES = 1 << 18  # TapClient read size
TARGET_MS = 100.0
KEEPUP = 0.95  # achieved/offered needed to count as keeping up
PROBE_TIMEOUT = 10.0  # a probe still unanswered after this stops the step's probing

FULL_RATES = [1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 50_000, 70_000, 100_000]
QUICK_RATES = [1_000, 10_000, 50_000]
KEYS = [
    ("space", " ", "PAUSED"),
    ("space", " ", "LIVE"),
    ("up", None, "SCROLLED"),
    ("end", None, "LIVE"),
]

# ---------------------------------------------------------------- traffic

CONNS = [
    ("c1", "/chat", "chat.example.com"),
    ("c2", "/feed", "stream.example.com"),
    ("c3", "/rpc", "api.example.com"),
    ("c4", "/telemetry", "t.example.com"),
]
WORDS = ["alpha", "beta", "gamma", "delta", "lobby", "room", "user", "value", "order", "quote"]


PROTO_CONNS = [
    ("c1", "/socket.io/", "chat.example.com"),
    ("c2", "/feed", "stream.example.com"),
    ("c3", "/rpc", "api.example.com"),
    ("c4", "/socket.io/", "t.example.com"),
]
TRAFFIC = {"json": CONNS, "protocols": PROTO_CONNS}


def handshake(conn: str, path: str, host: str, ts: float, port: int) -> Handshake:
    query = [("EIO", "4"), ("transport", "websocket")] if path == "/socket.io/" else []
    return Handshake(
        conn=conn,
        ts=ts,
        client=f"127.0.0.1:{port}",
        server=f"{host}:443",
        scheme="wss",
        url=f"wss://{host}{path}",
        method="GET",
        path=path,
        query=query,
        http_version="HTTP/1.1",
        request_headers=[
            ("Host", host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "x" * 24),
            ("Origin", "https://app.example.com"),
            ("Cookie", "session=abc"),
        ],
        cookies=[("session", "abc")],
        status=101,
        reason="Switching Protocols",
        response_headers=[("Upgrade", "websocket"), ("Connection", "Upgrade")],
        ts_response=ts + 0.01,
    )


def protocol_text(rng: random.Random, conn: str, side: str, seq: int) -> bytes:
    """A Socket.IO event or ack (c1, c4) or a JSON-RPC request or result (c3)."""
    if conn == "c3":
        if side == CLIENT:
            obj: dict[str, Any] = {
                "jsonrpc": "2.0",
                "method": rng.choice(["eth_call", "eth_subscribe", "get_quote", "place_order"]),
                "params": [rng.choice(WORDS), seq],
                "id": seq // 2,
            }
        else:
            obj = {"jsonrpc": "2.0", "result": {"ok": True, "v": rng.random()}, "id": seq // 2}
        return json.dumps(obj, separators=(",", ":")).encode()
    ack = seq // 2 % 1000
    if side == SERVER and rng.random() < 0.3:
        return b"43%d" % ack + json.dumps([{"ok": True}]).encode()
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 14)))
    args = ["chat", {"text": words, "room": rng.choice(WORDS)}]
    head = b"42%d" % ack if side == CLIENT and rng.random() < 0.3 else b"42"
    return head + json.dumps(args, separators=(",", ":")).encode()


def make_event(rng: random.Random, seq: int, ts: float, traffic: str = "json") -> Event:
    conn, _, _ = CONNS[rng.randrange(4)]
    side = CLIENT if rng.random() < 0.35 else SERVER
    r = rng.random()
    if r < 0.05:
        op = Opcode.PING if side == SERVER else Opcode.PONG
        payload = b"hb%d" % (seq % 1000)
        return ControlFrame(seq, conn, ts, side, op, payload, len(payload) + 6)
    if r < 0.20:
        data = msgpack.packb(
            {
                "sym": rng.choice(["BTC", "ETH", "SOL"]),
                "px": rng.random() * 1e4,
                "qty": [rng.randrange(100) for _ in range(rng.randrange(1, 6))],
                "seq": seq,
            }
        )
        op = Opcode.BINARY
    elif traffic == "protocols":
        data = protocol_text(rng, conn, side, seq)
        op = Opcode.TEXT
    else:
        obj: dict[str, Any] = {
            "type": rng.choice(["msg", "tick", "update", "ack", "presence"]),
            "id": seq,
            "room": rng.choice(WORDS),
        }
        if r < 0.22:
            obj["items"] = [{"k": rng.choice(WORDS), "v": rng.random()} for _ in range(40)]
        else:
            obj["text"] = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 18)))
        data = json.dumps(obj, separators=(",", ":")).encode()
        op = Opcode.TEXT
    return Message(seq, conn, ts, side, op, data, len(data), len(data) + 6)


@dataclass
class Plan:
    """The frames of one step, ready to be delivered: one per 10 ms tick."""

    hello: bytes
    frames: list[bytes]
    per_frame: list[int]


def build_plan(rate: int, seconds: float, seed: int = 1, traffic: str = "json") -> Plan:
    rng = random.Random(seed)
    t0 = time.time()
    conns = TRAFFIC[traffic]
    hello = wire.pack_events(
        [HandshakeEvent(handshake(c, p, h, t0, 50000 + i)) for i, (c, p, h) in enumerate(conns)]
    )
    n_ticks = round(seconds / INTERVAL)
    frames: list[bytes] = []
    per_frame: list[int] = []
    seq = 0
    acc = 0.0
    for k in range(n_ticks):
        acc += rate * INTERVAL
        n = int(acc)
        acc -= n
        evs = []
        for _ in range(n):
            seq += 1
            evs.append(make_event(rng, seq, t0 + k * INTERVAL, traffic))
        # a tick's events, split in EVENTS frames of <= 2000 like the tap
        body = b"".join(
            wire.pack_events(evs[i : i + BATCH_EVENTS]) for i in range(0, len(evs), BATCH_EVENTS)
        )
        frames.append(body)
        per_frame.append(n)
    return Plan(hello, frames, per_frame)


class FloodSource:
    """Delivers ``plan`` on the tap's 10 ms schedule, decoding like TapClient."""

    description = "bench flood (in-process)"

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.cum = [0]
        for n in plan.per_frame:
            self.cum.append(self.cum[-1] + n)
        self.delivered = 0  # events handed to the app
        self.due_at_stop = 0
        self.max_backlog = 0
        self.t0 = 0.0
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        self._closed = False

    def due_events(self, now: float) -> int:
        k = min(len(self.plan.frames), int((now - self.t0) / INTERVAL) + 1)
        return self.cum[k]

    async def run(self, on_events: Any) -> None:
        dec = wire.Decoder()

        def deliver(data: bytes) -> None:
            dec.feed(data)
            for kind, body in dec.frames():
                if kind == wire.EVENTS:
                    evs = wire.decode_events(body)
                    on_events(evs)

        deliver(self.plan.hello)
        frames = self.plan.frames
        per = self.plan.per_frame
        self.t0 = time.perf_counter()
        self.started.set()
        k = 0
        done_evs = 0
        while not self._closed and k < len(frames):
            now = time.perf_counter()
            due = min(len(frames), int((now - self.t0) / INTERVAL) + 1)
            # one read of at most 256 KiB per loop iteration, like TapClient
            chunk: list[bytes] = []
            size = 0
            while k < due and (not chunk or size + len(frames[k]) <= READ_BYTES):
                chunk.append(frames[k])
                size += len(frames[k])
                done_evs += per[k]
                k += 1
            if chunk:
                deliver(b"".join(chunk))
                self.delivered = done_evs
            self.max_backlog = max(self.max_backlog, self.cum[due] - done_evs)
            if k < due:
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(max(0.0, self.t0 + k * INTERVAL - time.perf_counter()))
        self.finished.set()
        while not self._closed:
            await asyncio.sleep(0.05)

    async def command(self, cmd: Any) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        self._closed = True


# ---------------------------------------------------------------- probing


@dataclass
class Probe:
    key: str
    marker: str
    latency_ms: float | None  # None: no screen update within PROBE_TIMEOUT
    queue_ms: float | None = None  # press -> the key's action starts (loop busy elsewhere)
    action_ms: float | None = None  # the action itself


class Prober:
    """The input thread: presses keys and waits for the screen to show their effect."""

    def __init__(self, app: Any, seed: int = 2) -> None:
        self.app = app
        self.rng = random.Random(seed)
        self.probes: list[Probe] = []
        self.expect: str | None = None
        self.t_press = 0.0
        self.t_seen = 0.0
        self.seen = threading.Event()
        self.stop = threading.Event()
        self.frames = 0
        self.frame_cost = 0.0  # seconds spent encoding screen updates
        self.t_action: tuple[float, float] | None = None
        self.thread = threading.Thread(target=self._run, name="bench-input", daemon=True)

    # called on the event loop by the wrapped app._display
    def on_screen(self, text: str) -> None:
        self.frames += 1
        m = self.expect
        if m is not None and m in text and not self.seen.is_set():
            self.t_seen = time.perf_counter()
            self.expect = None
            self.seen.set()

    def _run(self) -> None:
        driver = self.app._driver
        i = 0
        while not self.stop.is_set():
            key, char, marker = KEYS[i % len(KEYS)]
            i += 1
            self.seen.clear()
            self.t_action = None
            self.expect = marker
            self.t_press = time.perf_counter()
            driver.process_message(events.Key(key, char))
            ok = self.seen.wait(PROBE_TIMEOUT)
            if not ok:
                self.probes.append(Probe(key, marker, None))
                return  # stuck: stop probing this step
            ta = self.t_action
            self.probes.append(
                Probe(
                    key,
                    marker,
                    (self.t_seen - self.t_press) * 1000,
                    None if ta is None else (ta[0] - self.t_press) * 1000,
                    None if ta is None else (ta[1] - ta[0]) * 1000,
                )
            )
            gap = self.rng.uniform(0.1, 0.25) if marker == "LIVE" else self.rng.uniform(0.03, 0.06)
            if self.stop.wait(gap):
                break


def install_action_hooks(app: Any, prober: Prober) -> None:
    """Timestamp the actions of the probe keys (instance attributes: Textual looks
    actions up with getattr, so the app's code is untouched)."""
    main = app.main
    targets = [
        (main, "action_toggle_pause"),
        (main, "action_follow"),
        (main.stream, "action_cursor_up"),
    ]
    for obj, name in targets:
        orig = getattr(obj, name)

        def wrapped(*a: Any, _orig: Any = orig, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return _orig(*a, **kw)
            finally:
                if prober.t_action is None:
                    prober.t_action = (t, time.perf_counter())

        setattr(obj, name, wrapped)


def install_display_hook(app: Any, prober: Prober) -> None:
    console = app.console

    def display(screen: Any, renderable: Any) -> None:
        if renderable is None or app._batch_count:
            return
        if isinstance(renderable, CompositorUpdate):
            t = time.perf_counter()
            text = renderable.render_segments(console)  # what a terminal driver writes
            prober.frame_cost += time.perf_counter() - t
            prober.on_screen(text)

    app._display = display


# ---------------------------------------------------------------- noise and GC


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


class GcTimer:
    """Durations of the garbage collector's passes (they stop the event loop)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses.append((info.get("generation", -1), time.perf_counter() - self._t))

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        gc.callbacks.remove(self)


# ---------------------------------------------------------------- one step


@dataclass
class StepResult:
    rate: int
    seconds: float
    probes: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    stuck: bool
    per_key_p95: dict[str, float]
    queue_p50_ms: float
    queue_p95_ms: float
    action_p95_ms: float
    achieved: float
    keepup: float
    backlog_end: int
    max_backlog: int
    cpu_pct: float
    ticks_per_s: float
    tick_p95_ms: float
    tick_max_ms: float
    frames_per_s: float
    encode_ms_per_frame: float
    buffered: int
    evicted: int
    apply_errors: int
    redraw_errors: int
    latencies: list[float] = field(default_factory=list)
    p95_runs: list[float] = field(default_factory=list)
    load1: float = float("nan")  # 1-minute load average at the end of the step
    others_cpu_pct: float = float("nan")  # CPU used by other processes during the window
    gc_gen2: int = 0  # full collections in the window
    gc_max_ms: float = 0.0  # longest collector pause in the window


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    idx = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[idx]


async def run_step(
    rate: int, seconds: float, warmup: float, profile: str | None = None, traffic: str = "json"
) -> StepResult:
    plan = build_plan(rate, warmup + seconds + 1.0, traffic=traffic)
    source = FloodSource(plan)
    app = make_app(source)  # the CLI's defaults: 100,000 items / 256 MiB, 20 Hz
    tick_times: list[float] = []
    orig_tick = app.tick

    def tick() -> None:
        t = time.perf_counter()
        orig_tick()
        tick_times.append(time.perf_counter() - t)

    app.tick = tick  # type: ignore[method-assign]
    prober = Prober(app)
    install_display_hook(app, prober)
    gc.collect()
    async with app.run_test(size=SIZE) as pilot:
        await asyncio.wait_for(source.started.wait(), 10)
        install_action_hooks(app, prober)
        await asyncio.sleep(warmup)
        s = app.session
        applied0 = source.delivered
        cpu0 = time.process_time()
        w0 = time.perf_counter()
        ticks0 = len(tick_times)
        frames0 = prober.frames
        cost0 = prober.frame_cost
        profiler = None
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
        gct = GcTimer()
        gc.callbacks.append(gct)
        busy0, total0 = cpu_jiffies()
        prober.thread.start()
        # the window: bounded by `seconds`, and by a stuck probe
        deadline = w0 + seconds
        while time.perf_counter() < deadline and prober.thread.is_alive():
            await asyncio.sleep(0.05)
        prober.stop.set()
        # let an outstanding probe finish (bounded)
        t_end = time.perf_counter() + PROBE_TIMEOUT + 1
        while prober.thread.is_alive() and time.perf_counter() < t_end:
            await asyncio.sleep(0.02)
        w1 = time.perf_counter()
        cpu1 = time.process_time()
        busy1, total1 = cpu_jiffies()
        gc.callbacks.remove(gct)
        if profiler is not None and profile:
            profiler.stop()
            Path(profile).write_text(
                profiler.output_text(unicode=False, color=False, show_all=False)
            )
        applied1 = source.delivered
        wall = w1 - w0
        ticks = tick_times[ticks0:]
        frames = prober.frames - frames0
        cost = prober.frame_cost - cost0
        backlog_end = source.due_events(w1) - applied1
        result_buffered = len(s.buffer)
        result_evicted = s.buffer.evicted_items
        apply_errors, redraw_errors = app.apply_errors, app.redraw_errors
        await source.close()
        app.exit()
        await pilot.pause()
    lat = [p.latency_ms for p in prober.probes if p.latency_ms is not None]
    stuck = any(p.latency_ms is None for p in prober.probes)
    per_key: dict[str, float] = {}
    for key, _, marker in KEYS:
        name = f"{key}->{marker}"
        xs = [
            p.latency_ms
            for p in prober.probes
            if p.key == key and p.marker == marker and p.latency_ms is not None
        ]
        if xs:
            per_key[name] = round(pct(xs, 0.95), 1)
    achieved = (applied1 - applied0) / wall
    ncpu = os.cpu_count() or 1
    machine = 100 * ncpu * (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
    others = max(0.0, machine - 100 * (cpu1 - cpu0) / wall)
    qs = [p.queue_ms for p in prober.probes if p.queue_ms is not None]
    acts = [p.action_ms for p in prober.probes if p.action_ms is not None]
    return StepResult(
        rate=rate,
        seconds=round(wall, 2),
        probes=len(prober.probes),
        p50_ms=round(pct(lat, 0.50), 1),
        p95_ms=round(pct(lat, 0.95), 1) if not stuck else float("inf"),
        max_ms=round(max(lat), 1) if lat and not stuck else float("inf"),
        stuck=stuck,
        per_key_p95=per_key,
        queue_p50_ms=round(pct(qs, 0.50), 1),
        queue_p95_ms=round(pct(qs, 0.95), 1),
        action_p95_ms=round(pct(acts, 0.95), 1),
        achieved=round(achieved),
        keepup=round(achieved / rate, 3),
        backlog_end=backlog_end,
        max_backlog=source.max_backlog,
        cpu_pct=round(100 * (cpu1 - cpu0) / wall, 1),
        ticks_per_s=round(len(ticks) / wall, 1),
        tick_p95_ms=round(1000 * pct(ticks, 0.95), 1),
        tick_max_ms=round(1000 * max(ticks), 1) if ticks else float("nan"),
        frames_per_s=round(frames / wall, 1),
        encode_ms_per_frame=round(1000 * cost / frames, 2) if frames else float("nan"),
        buffered=result_buffered,
        evicted=result_evicted,
        apply_errors=apply_errors,
        redraw_errors=redraw_errors,
        latencies=[round(x, 2) for x in lat],
        load1=round(os.getloadavg()[0], 2),
        others_cpu_pct=round(others, 0),
        gc_gen2=sum(1 for g, _ in gct.pauses if g == 2),
        gc_max_ms=round(1000 * max((d for _, d in gct.pauses), default=0.0), 1),
    )


# ---------------------------------------------------------------- main


def pool(reps: list[StepResult]) -> StepResult:
    """Repeats of one rate: latency percentiles over all the probes pooled, the other
    numbers as medians; ``p95_runs`` keeps each run's p95 (the noise)."""
    med = statistics.median
    lat = [x for r in reps for x in r.latencies]
    stuck = any(r.stuck for r in reps)
    out = StepResult(**{k: v for k, v in asdict(reps[0]).items()})
    out.probes = len(lat)
    out.p50_ms = round(pct(lat, 0.5), 1)
    out.p95_ms = float("inf") if stuck else round(pct(lat, 0.95), 1)
    out.max_ms = float("inf") if stuck else round(max(lat), 1)
    out.stuck = stuck
    out.latencies = lat
    for name in (
        "seconds",
        "achieved",
        "keepup",
        "backlog_end",
        "max_backlog",
        "cpu_pct",
        "ticks_per_s",
        "tick_p95_ms",
        "tick_max_ms",
        "frames_per_s",
        "encode_ms_per_frame",
        "queue_p50_ms",
        "queue_p95_ms",
        "action_p95_ms",
        "load1",
        "others_cpu_pct",
        "gc_gen2",
        "gc_max_ms",
    ):
        setattr(out, name, med(getattr(r, name) for r in reps))
    out.per_key_p95 = {
        k: med(r.per_key_p95.get(k, float("nan")) for r in reps) for k in reps[0].per_key_p95
    }
    out.p95_runs = [r.p95_ms for r in reps]
    return out


def fmt_table(rows: list[StepResult]) -> str:
    head = (
        f"{'offered/s':>9} {'achieved/s':>10} {'keep':>5} {'backlog':>8} {'probes':>6} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'CPU%':>5} {'ticks/s':>7} "
        f"{'tick p95':>8} {'frames/s':>8} {'queue p95':>9} {'others%':>7} {'gc max':>6}  "
        "p95 per key (ms)"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        keys = " ".join(
            f"{k.split('->')[0]}>{k.split('->')[1][:3]}:{v:g}" for k, v in r.per_key_p95.items()
        )
        lines.append(
            f"{r.rate:>9,} {r.achieved:>10,} {r.keepup:>5.2f} {r.backlog_end:>8,} {r.probes:>6} "
            f"{r.p50_ms:>7.1f} {r.p95_ms:>7.1f} {r.max_ms:>7.1f} {r.cpu_pct:>5.0f} "
            f"{r.ticks_per_s:>7.1f} {r.tick_p95_ms:>8.1f} {r.frames_per_s:>8.1f} "
            f"{r.queue_p95_ms:>9.1f} {r.others_cpu_pct:>7.0f} {r.gc_max_ms:>6.1f}  {keys}"
            + ("  STUCK" if r.stuck else "")
            + (
                f"  (p95 per run: {', '.join(f'{x:.0f}' for x in r.p95_runs)})"
                if len(r.p95_runs) > 1
                else ""
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 rates, 3 s each")
    ap.add_argument("--rates", help="comma-separated offered rates (msgs/s)")
    ap.add_argument("--seconds", type=float, help="measured seconds per step (default 5)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before probing")
    ap.add_argument("--repeat", type=int, default=1, help="runs per rate (medians reported)")
    ap.add_argument("--json", help="write the results (with raw latencies) here")
    ap.add_argument(
        "--traffic",
        choices=sorted(TRAFFIC),
        default="json",
        help="json: plain JSON/msgpack (default); protocols: Socket.IO and JSON-RPC",
    )
    ap.add_argument(
        "--gc-threshold",
        help="what-if: gc.set_threshold(A,B,C) before the runs instead of the CLI's "
        "tune_gc(), e.g. 700,10,10 for Python's defaults",
    )
    ap.add_argument(
        "--profile",
        help="profile the measured window with pyinstrument (pip install pyinstrument); "
        "writes PREFIX-<rate>.txt",
    )
    args = ap.parse_args(argv)
    rates = (
        [int(x) for x in args.rates.split(",")]
        if args.rates
        else (QUICK_RATES if args.quick else FULL_RATES)
    )
    seconds = args.seconds or (3.0 if args.quick else 5.0)
    seconds = min(seconds, 30.0)
    if args.gc_threshold:
        a, b, c = (int(x) for x in args.gc_threshold.split(","))
        gc.set_threshold(a, b, c)
    else:
        from devconsole.tui.app import tune_gc

        tune_gc()  # what `devconsole` / `devconsole attach` do before running the app
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    print(
        f"devconsole TUI flood bench: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load avg {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; size {SIZE[0]}x{SIZE[1]}, "
        f"{seconds:g} s per step after {args.warmup:g} s warm-up, x{args.repeat}, "
        f"traffic {args.traffic}, "
        f"gc thresholds {gc.get_threshold()}"
    )
    results: list[StepResult] = []
    runs: list[list[StepResult]] = []
    for rate in rates:
        reps = []
        for _ in range(max(1, args.repeat)):
            prof = f"{args.profile}-{rate}.txt" if args.profile else None
            r = asyncio.run(run_step(rate, seconds, args.warmup, prof, args.traffic))
            reps.append(r)
            print(fmt_table([r]).splitlines()[-1], flush=True)
        runs.append(reps)
        results.append(reps[0] if len(reps) == 1 else pool(reps))
    print()
    print(fmt_table(results))
    passing = [r for r in results if r.p95_ms < TARGET_MS and r.keepup >= KEEPUP and not r.stuck]
    best = max((r.rate for r in passing), default=None)
    # the ladder is monotone in load: report the highest rate below the first failure too
    first_fail = next((r.rate for r in results if r not in passing), None)
    print()
    if best is None:
        print(f"FAIL: no rate kept p95 < {TARGET_MS:.0f} ms while keeping up")
    else:
        cpu = next(r.cpu_pct for r in results if r.rate == best)
        print(
            f"highest rate with p95 < {TARGET_MS:.0f} ms and keeping up (>= {KEEPUP:.0%}): "
            f"{best:,} msgs/s (CPU {cpu:.0f}%)"
            + (
                f"; first failing rate {first_fail:,}/s"
                if first_fail
                else "; every rate tried passed"
            )
        )
    if args.json:
        out = {
            "size": SIZE,
            "seconds": seconds,
            "load": load,
            "results": [asdict(r) for r in results],
            "runs": [[asdict(r) for r in reps] for reps in runs],
            "highest_passing_rate": best,
        }
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
