"""``devconsole chaos``: run a scenario against a live client (docs/chaos.md).

I/O module: runs the proxy in this process (``devconsole.proxy``), starts the client
command in its own process group, plays the scenario's steps on the connections that
match at their times, grades the expectations (``devconsole.scenario.grade``) and reports.
Every process it started is stopped before it returns, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from devconsole.model import (
    AbortCommand,
    CloseCommand,
    Command,
    ConnState,
    EndEvent,
    Event,
    HalfOpenCommand,
    HandshakeEvent,
    InjectCommand,
    RefusedEvent,
    ReleaseCommand,
    ShapeCommand,
)
from devconsole.scenario import Scenario, Step, StepRecord, Verdict, grade

__all__ = ["ChaosResult", "junit_xml", "report_text", "reverse_mode", "run"]

STOP_GRACE = 3.0  # seconds the client gets to exit on SIGTERM before SIGKILL
STEP_WAIT = 5.0  # seconds a step waits for a matching connection when none is live
MAX_TIMELINE = 300


@dataclass
class ChaosResult:
    scenario: Scenario
    verdicts: list[Verdict] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    start: float = 0.0  # T=0 (wall clock)
    end: float = 0.0
    url: str = ""
    command: list[str] = field(default_factory=list)
    client_exit: int | None = None
    client_exited_at: float | None = None
    client_log: str = ""
    error: str = ""  # the run itself failed (no connection, the proxy did not start)
    elapsed: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.error and bool(self.verdicts) and all(v.ok for v in self.verdicts)


def reverse_mode(mode: str) -> str:
    """``reverse:ws://h:p`` -> ``reverse:http://h:p`` (mitmproxy wants http(s))."""
    kind, sep, url = mode.partition(":")
    if kind == "reverse" and sep:
        if url.startswith("ws://"):
            url = "http://" + url[5:]
        elif url.startswith("wss://"):
            url = "https://" + url[6:]
        return f"reverse:{url}"
    return mode


class _Run:
    def __init__(self, sc: Scenario, progress: Callable[[str], None]) -> None:
        self.sc = sc
        self.progress = progress
        self.result = ChaosResult(sc)
        self.capture: Any = None
        self.first_open = asyncio.Event()
        self.first_ts = 0.0
        self.dropped_lines = 0

    def line(self, ts: float, text: str) -> None:
        r = self.result
        if len(r.timeline) >= MAX_TIMELINE:
            self.dropped_lines += 1
            return
        r.timeline.append((ts, text))
        t0 = r.start or ts
        self.progress(f"{ts - t0:8.2f}s  {text}")

    def on_event(self, ev: Event) -> None:
        sc = self.sc
        if isinstance(ev, HandshakeEvent) and ev.handshake.status is not None:
            hs = ev.handshake
            if sc.matches(hs.path):
                if not self.first_open.is_set():
                    self.first_ts = hs.ts_response or time.time()
                    self.first_open.set()
                self.line(hs.ts_response or hs.ts, f"#{hs.conn} open {hs.path}")
        elif isinstance(ev, RefusedEvent):
            hs = ev.handshake
            if sc.matches(hs.path):
                self.line(hs.ts_response or hs.ts, f"#{hs.conn} refused {hs.status or hs.error}")
        elif isinstance(ev, EndEvent):
            c = self.capture.session.connections.get(ev.conn) if self.capture else None
            if c is not None and sc.matches(c.path):
                by = f" by {ev.closed_by}" if ev.closed_by else ""
                code = f" {c.close_code}" if c.close_code is not None else ""
                self.line(ev.ts, f"#{ev.conn} end{code}{by}")

    def targets(self, step: Step) -> list[str]:
        s = self.capture.session
        return [
            c.id
            for c in s.connections.values()
            if c.ts_end is None
            and c.state in (ConnState.OPEN, ConnState.HALF_OPEN)
            and self.sc.matches(c.path, step.path)
        ]

    async def execute(self, cmd: Command) -> str:
        res = await self.capture.execute(cmd)
        return "" if res.ok else res.error

    async def play(self, step: Step) -> StepRecord:
        rec = StepRecord(step, time.time())
        self.result.records.append(rec)
        if step.kind == "rules":
            assert step.rules is not None
            before = self.capture.intercept.rules
            self.capture.set_rules(step.rules)
            self.line(rec.ts, f"step {step.index}: {step.describe()}")
            if step.duration:
                asyncio.get_running_loop().call_later(step.duration, self._undo_rules, rec, before)
            return rec
        conns = self.targets(step)
        deadline = time.monotonic() + STEP_WAIT
        while not conns and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            conns = self.targets(step)
        rec.ts = time.time()
        if not conns:
            rec.error = f"no live connection on {step.path or self.sc.path or 'any path'}"
            self.line(rec.ts, f"step {step.index}: {step.describe()}: skipped, {rec.error}")
            return rec
        errors = []
        for cid in conns:
            err = await self.execute(self.command(step, cid))
            if err:
                errors.append(f"#{cid}: {err}")
            else:
                rec.conns.append(cid)
        rec.error = "; ".join(errors) if not rec.conns else ""
        hit = ", ".join(f"#{c}" for c in rec.conns) or "nothing"
        extra = f" ({'; '.join(errors)})" if errors else ""
        self.line(rec.ts, f"step {step.index}: {step.describe()} -> {hit}{extra}")
        if step.duration and step.kind in ("half_open", "shape") and rec.conns:
            task = asyncio.ensure_future(self._undo(rec))
            self._undos.append(task)
        return rec

    _undos: list[asyncio.Future[None]]

    def command(self, step: Step, cid: str) -> Command:
        if step.kind == "close":
            return CloseCommand(cid, step.code, step.reason, step.to)  # type: ignore[arg-type]
        if step.kind == "abort":
            return AbortCommand(cid, step.rst)
        if step.kind == "half_open":
            return HalfOpenCommand(cid)
        if step.kind == "shape":
            assert step.shape is not None
            return ShapeCommand(cid, step.to, step.shape)  # type: ignore[arg-type]
        return InjectCommand(cid, step.to, step.opcode, step.payload)  # type: ignore[arg-type]

    async def _undo(self, rec: StepRecord) -> None:
        await asyncio.sleep(rec.step.duration)
        rec.undone = time.time()
        s = self.capture.session
        for cid in rec.conns:
            c = s.connections.get(cid)
            if c is None or c.ts_end is not None:
                continue
            if rec.step.kind == "half_open":
                if c.half_open:
                    await self.execute(ReleaseCommand(cid))
                    self.line(rec.undone, f"step {rec.step.index}: released #{cid}")
            else:
                await self.execute(ShapeCommand(cid, rec.step.to, clear=True))  # type: ignore[arg-type]
                self.line(rec.undone, f"step {rec.step.index}: conditions lifted on #{cid}")

    def _undo_rules(self, rec: StepRecord, before: Any) -> None:
        rec.undone = time.time()
        self.capture.set_rules(before)
        self.line(rec.undone, f"step {rec.step.index}: rules back to what they were")


async def run(
    sc: Scenario,
    mode: str,
    listen: str = "127.0.0.1:0",
    command: Sequence[str] = (),
    *,
    progress: Callable[[str], None] | None = None,
) -> ChaosResult:
    """Run ``sc`` through a proxy in ``mode`` (reverse:URL) on ``listen``, with the client
    ``command`` (``{url}`` in it becomes the proxy's ws:// URL). Never raises for what the
    client or the network does; returns the graded result."""
    from devconsole.proxy import DevconsoleProxy, ProxyConfig, ProxyError, parse_listen
    from devconsole.tap import ensure_private_dir, runtime_dir

    say = progress or (lambda s: None)
    r = _Run(sc, say)
    r._undos = []
    res = r.result
    host, port = parse_listen(listen)
    tap_dir = ensure_private_dir(runtime_dir())
    cfg = ProxyConfig(
        listen_host=host,
        listen_port=port,
        mode=reverse_mode(mode),
        tap=str(tap_dir / f"chaos-{os.getpid()}.sock"),
    )
    proxy = DevconsoleProxy(cfg)
    proc: asyncio.subprocess.Process | None = None
    log = tempfile.TemporaryFile()  # noqa: SIM115
    started = time.monotonic()
    try:
        try:
            addrs = await proxy.start()
        except ProxyError as e:
            res.error = f"the proxy did not start: {e}"
            return res
        r.capture = proxy.capture
        proxy.capture.session.observers.append(r.on_event)
        h, p = addrs[0]
        res.url = f"ws://{'[' + h + ']' if ':' in h else h}:{p}"
        say(f"proxy {res.url} -> {cfg.mode}; tap {proxy.tap_address}")
        if command:
            cmd = [a.replace("{url}", res.url) for a in command]
            res.command = cmd
            env = dict(os.environ, DEVCONSOLE_URL=res.url, DEVCONSOLE_PROXY=f"{h}:{p}")
            try:
                proc = await asyncio.create_subprocess_exec(
                    *cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            except OSError as e:
                res.error = f"cannot start {cmd[0]}: {e.strerror or e}"
                return res
            say(f"client: {' '.join(cmd)} (pid {proc.pid})")
        # T=0
        if sc.start == "connection":
            try:
                await _wait_or_exit(r.first_open.wait(), proc, sc.wait)
            except TimeoutError:
                pass
            if not r.first_open.is_set():
                why = (
                    "the client exited"
                    if proc and proc.returncode is not None
                    else (f"none within {sc.wait:g} s")
                )
                res.error = f"no connection on {sc.path or 'any path'}: {why}"
                return res
            res.start = r.first_ts
        else:
            res.start = time.time()
        r.line(res.start, "T=0")
        for step in sc.steps:
            delay = res.start + step.at - time.time()
            if delay > 0:
                await _wait_or_exit(asyncio.sleep(delay), proc, None)
            await r.play(step)
        rest = res.start + sc.length - time.time()
        if rest > 0:
            with contextlib.suppress(TimeoutError):
                await _wait_or_exit(asyncio.sleep(rest), proc, None)
        res.end = time.time()
        proxy.capture.session.observers.remove(r.on_event)  # the timeline ends here
        for t in r._undos:
            t.cancel()
        if proc is not None and proc.returncode is not None:
            res.client_exit = proc.returncode
        res.verdicts = grade(sc, proxy.capture.session, res.records, res.start, res.end)
        return res
    finally:
        for t in r._undos:
            t.cancel()
        if proc is not None:
            code = await _stop(proc)
            if (
                res.client_exit is None
                and proc.returncode is not None
                and res.end
                and (code is not None and code >= 0)
            ):
                res.client_exit = code
        with contextlib.suppress(Exception):
            await proxy.stop()
        log.seek(0)
        tail = log.read()[-8192:].decode("utf-8", "replace")
        res.client_log = "\n".join(tail.splitlines()[-40:])
        log.close()
        res.elapsed = time.monotonic() - started
        if r.dropped_lines:
            res.timeline.append((res.end or time.time(), f"... {r.dropped_lines} more events"))


async def _wait_or_exit(
    aw: Any, proc: asyncio.subprocess.Process | None, timeout: float | None
) -> None:
    """Wait for ``aw``; give up early when the client process exits (after a moment for
    its last events), or after ``timeout`` (TimeoutError)."""
    main = asyncio.ensure_future(aw)
    waits: set[asyncio.Future[Any]] = {main}
    exited: asyncio.Future[Any] | None = None
    if proc is not None and proc.returncode is None:
        exited = asyncio.ensure_future(proc.wait())
        waits.add(exited)
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            raise TimeoutError
        if main not in done:
            await asyncio.sleep(0.5)  # the client is gone: let its last events arrive
    finally:
        for f in waits:
            f.cancel()


async def _stop(proc: asyncio.subprocess.Process) -> int | None:
    """SIGTERM the client's process group, SIGKILL it after STOP_GRACE."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except TimeoutError:
            pass
    # whatever the client left in its group goes too
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
    return proc.returncode


# --------------------------------------------------------------------------- reports


def report_text(res: ChaosResult) -> str:
    from devconsole.decoders import safe_text

    sc = res.scenario
    out = [f"chaos: {safe_text(sc.name)}" + (f" ({safe_text(sc.file)})" if sc.file else "")]
    if res.url:
        out.append(
            f"proxy {res.url}"
            + (f"; client {safe_text(' '.join(res.command))}" if res.command else "")
        )
    if res.timeline:
        out.append("")
        t0 = res.start or res.timeline[0][0]
        for ts, text in res.timeline:
            out.append(f"  {ts - t0:8.2f}s  {safe_text(text)}")
    out.append("")
    if res.error:
        out.append(f"ERROR {safe_text(res.error)}")
    width = max((len(v.expectation.title()) for v in res.verdicts), default=0)
    for v in res.verdicts:
        mark = "PASS" if v.ok else "FAIL"
        out.append(f"{mark}  {safe_text(v.expectation.title()):<{width}}  {safe_text(v.measured)}")
        if v.detail:
            out.append(f"      {'':<{width}}  {safe_text(v.detail)}")
    n = sum(v.ok for v in res.verdicts)
    total = len(sc.expectations)
    if res.error and not res.verdicts:
        out.append(f"0 of {total} expectations graded")
    else:
        out.append(f"{n} of {total} expectation(s) passed")
    if res.client_exit not in (None, 0) or (not res.passed and res.client_log):
        out.append("")
        if res.client_exit is not None:
            out.append(f"the client exited with {res.client_exit}; its last output:")
        else:
            out.append("the client's last output:")
        out.extend("  | " + safe_text(line) for line in res.client_log.splitlines()[-20:])
    return "\n".join(out) + "\n"


def junit_xml(res: ChaosResult) -> str:
    """JUnit XML: one testsuite (the scenario), one testcase per expectation."""
    sc = res.scenario
    suite = ET.Element(
        "testsuite",
        name=sc.name,
        tests=str(len(sc.expectations)),
        failures=str(sum(not v.ok for v in res.verdicts)),
        errors="1" if res.error else "0",
        time=f"{res.elapsed:.3f}",
    )
    cls = "devconsole.chaos." + (os.path.splitext(os.path.basename(sc.file))[0] or "scenario")
    graded = {v.expectation.index: v for v in res.verdicts}
    for e in sc.expectations:
        case = ET.SubElement(suite, "testcase", classname=cls, name=e.title(), time="0")
        v = graded.get(e.index)
        if v is None:
            err = ET.SubElement(case, "error", message=res.error or "not graded")
            err.text = res.error
        elif not v.ok:
            f = ET.SubElement(case, "failure", message=f"measured: {v.measured}")
            f.text = v.detail
        else:
            so = ET.SubElement(case, "system-out")
            so.text = f"measured: {v.measured}\n{v.detail}"
    t0 = res.start or (res.timeline[0][0] if res.timeline else 0.0)
    out = ET.SubElement(suite, "system-out")
    out.text = "\n".join(f"{ts - t0:8.2f}s  {text}" for ts, text in res.timeline)
    if res.client_log:
        err = ET.SubElement(suite, "system-err")
        err.text = res.client_log
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )


def main_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
