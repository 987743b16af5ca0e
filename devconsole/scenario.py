"""Chaos scenarios: a timeline of faults and the expectations graded from what the proxy
observed (docs/chaos.md).

Core module: no I/O (the caller reads the file; ``devconsole.chaos`` runs it), imports
neither mitmproxy nor asyncio. ``load(text, path)`` parses and validates a scenario into a
``Scenario`` or raises ``ScenarioError`` with the line and column. After a run,
``grade(scenario, session, steps, start, end)`` turns the connections and messages the
proxy saw (a ``Session``) and what each step did (``StepRecord``) into one ``Verdict`` per
expectation, with the measured value. Reconnects and backoff are judged by
``devconsole.analysis.backoff``, heartbeats described by ``devconsole.analysis.heartbeat``.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from devconsole.analysis.backoff import analyze_endpoints
from devconsole.analysis.heartbeat import HeartbeatMonitor
from devconsole.model import (
    CLIENT,
    SERVER,
    Connection,
    ConnState,
    ControlFrame,
    Message,
    Opcode,
    Shape,
    valid_close_code,
)
from devconsole.rules import RulesError, RuleSet, TomlFileError
from devconsole.rules import load as load_rules
from devconsole.session import Session
from devconsole.shaping import ShapeError, format_duration, parse_duration, parse_shape

__all__ = [
    "EXPECTATIONS",
    "Expectation",
    "Scenario",
    "ScenarioError",
    "Step",
    "StepRecord",
    "Verdict",
    "grade",
    "load",
]

STEP_KINDS = ("close", "abort", "half_open", "shape", "inject", "rules")
EXPECTATIONS = (
    "reconnect_within",
    "backoff",
    "half_open_detected_within",
    "first_message_within",
    "no_missing",
)
BACKOFF_PATTERNS = ("exponential", "linear", "fixed", "not-storm")
DEFAULT_WAIT = 15.0
DEFAULT_TAIL = 10.0  # seconds observed after the last step (when no duration is given)


class ScenarioError(TomlFileError):
    """A scenario file that cannot be used."""

    kind = "scenario"


@dataclass(slots=True)
class Step:
    index: int  # 1-based, in file order
    at: float
    kind: str
    duration: float = 0.0  # "for": undone after this long (half-open, shape, rules)
    code: int = 1000
    reason: str = ""
    to: str = "both"
    rst: bool = False
    shape: Shape | None = None
    opcode: int = Opcode.TEXT
    payload: bytes = b""
    rules: RuleSet | None = None
    path: str = ""  # the connections it acts on (default: the scenario's)

    def describe(self) -> str:
        if self.kind == "close":
            s = f"close {self.code}" + (f' "{self.reason}"' if self.reason else "")
            if self.to != "both":
                s += f" to {self.to}"
        elif self.kind == "abort":
            s = "abort (RST)" if self.rst else "abort"
        elif self.kind == "half_open":
            s = "half-open"
        elif self.kind == "shape":
            from devconsole.shaping import describe

            assert self.shape is not None
            s = f"shape to {self.to}: {describe(self.shape)}"
        elif self.kind == "inject":
            what: dict[int, str] = {
                Opcode.TEXT: "text",
                Opcode.BINARY: "binary",
                Opcode.PING: "ping",
            }
            s = f"inject {what.get(self.opcode, '?')} to {self.to} ({len(self.payload)} bytes)"
        else:
            assert self.rules is not None
            s = f"rules ({', '.join(self.rules.names) or 'none'})"
        if self.duration:
            s += f" for {format_duration(self.duration)}"
        return s


@dataclass(slots=True)
class Expectation:
    index: int
    kind: str
    value: float = 0.0  # seconds (the *_within kinds)
    pattern: str = ""  # backoff
    cursor: tuple[str, ...] = ()  # no_missing: the JSON path of the cursor
    side: str = ""  # first_message_within / no_missing: whose messages ("" any)
    after: int = 0  # only the faults of this step (0: every fault step)
    name: str = ""

    def title(self) -> str:
        if self.name:
            return self.name
        if self.kind == "backoff":
            return f"backoff {self.pattern}"
        if self.kind == "no_missing":
            return f"no {self.side or 'server'} message missing (cursor {'.'.join(self.cursor)})"
        what = self.kind.removesuffix("_within").replace("_", " ").replace("half open", "half-open")
        s = f"{what} within {format_duration(self.value)}"
        if self.kind == "first_message_within" and self.side:
            s = f"first {self.side} message within {format_duration(self.value)}"
        if self.after:
            s += f" (after step {self.after})"
        return s


@dataclass
class Scenario:
    name: str
    path: str = ""  # glob: the connections steps act on and expectations look at
    start: str = "connection"  # T=0: the first matching connection opens, or "launch"
    wait: float = DEFAULT_WAIT
    duration: float | None = None
    steps: list[Step] = field(default_factory=list)
    expectations: list[Expectation] = field(default_factory=list)
    file: str = ""

    @property
    def length(self) -> float:
        """Seconds after T=0 the run lasts."""
        if self.duration is not None:
            return self.duration
        last = max((s.at + s.duration for s in self.steps), default=0.0)
        windows = [e.value for e in self.expectations if e.value]
        return last + max([DEFAULT_TAIL, *windows]) + 0.5

    def matches(self, path: str, glob: str = "") -> bool:
        g = glob or self.path
        return not g or fnmatch.fnmatchcase(path or "/", g)


@dataclass(slots=True)
class StepRecord:
    """What a step did during a run (the runner fills it)."""

    step: Step
    ts: float  # when it ran (wall clock)
    conns: list[str] = field(default_factory=list)  # the connections it acted on
    error: str = ""  # why it could not run
    undone: float | None = None  # when its "for" ended


@dataclass(slots=True)
class Verdict:
    expectation: Expectation
    ok: bool
    measured: str  # the measured value(s), for people
    detail: str = ""
    values: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------- loading


_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")
_ARRAY = re.compile(r"^\s*\[\[\s*([A-Za-z_.]+)\s*\]\]")


class _Where:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.starts: dict[tuple[str, int], int] = {}
        counts: dict[str, int] = {}
        for n, line in enumerate(self.lines):
            m = _ARRAY.match(line)
            if m is not None:
                kind = m.group(1)
                i = counts.get(kind, 0)
                counts[kind] = i + 1
                self.starts[(kind, i)] = n

    def at(self, kind: str, i: int, key: str = "") -> tuple[int, int]:
        start = self.starts.get((kind, i))
        if start is None:
            return (0, 0)
        if key:
            pat = re.compile(r"^\s*" + re.escape(key) + r"\s*=\s*")
            for n in range(start + 1, len(self.lines)):
                line = self.lines[n].lstrip()
                if line.startswith("[") and not line.startswith(f"[[{kind}."):
                    break
                m = pat.match(self.lines[n])
                if m is not None:
                    return (n + 1, m.end() + 1)
        return (start + 1, 1)


def load(text: str, path: str = "", read_file: Any = None) -> Scenario:
    """Parse and validate a scenario. ``read_file(name) -> str`` reads a rules file a step
    names (relative to the scenario); without it such a step is an error."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS.search(msg)
        line, col = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        raise ScenarioError(_TOML_POS.sub("", msg).strip(), line, col, path) from None
    where = _Where(text)

    def err(msg: str, kind: str = "", i: int = 0, key: str = "") -> ScenarioError:
        line, col = where.at(kind, i, key) if kind else (0, 0)
        return ScenarioError(msg, line, col, path)

    for key in doc:
        if key not in ("scenario", "step", "expect"):
            raise err(
                f"unknown table or key {key!r}: a scenario has [scenario], [[step]], [[expect]]"
            )
    head = doc.get("scenario", {})
    if not isinstance(head, dict):
        raise err("[scenario] must be a table")
    unknown = set(head) - {"name", "path", "start", "wait", "duration"}
    if unknown:
        raise err(f"[scenario]: unknown key {sorted(unknown)[0]!r}")
    name = head.get("name", path or "scenario")
    sc = Scenario(str(name), file=path)
    sc.path = _str(head, "path", err)
    sc.start = _str(head, "start", err, "connection")
    if sc.start not in ("connection", "launch"):
        raise err("[scenario] start must be connection or launch")
    if "wait" in head:
        sc.wait = _dur(head["wait"], err, "[scenario] wait")
    if "duration" in head:
        sc.duration = _dur(head["duration"], err, "[scenario] duration")
    steps = doc.get("step", [])
    if not isinstance(steps, list):
        raise err("step must be an array of tables: [[step]]")
    for i, t in enumerate(steps):
        sc.steps.append(_step(i, t, where, path, read_file))
    exps = doc.get("expect", [])
    if not isinstance(exps, list):
        raise err("expect must be an array of tables: [[expect]]")
    for i, t in enumerate(exps):
        sc.expectations.append(_expectation(i, t, where, path, len(sc.steps)))
    if not sc.expectations:
        raise err("a scenario needs at least one [[expect]]")
    sc.steps.sort(key=lambda s: (s.at, s.index))
    return sc


def _str(t: dict[str, Any], key: str, err: Any, default: str = "") -> str:
    v = t.get(key, default)
    if not isinstance(v, str):
        raise err(f"{key} must be a string")
    return v


def _dur(v: Any, err: Any, what: str) -> float:
    try:
        return parse_duration(v, what)
    except ShapeError as e:
        raise err(str(e)) from None


def _step(i: int, t: Any, where: _Where, path: str, read_file: Any) -> Step:
    def err(msg: str, key: str = "") -> ScenarioError:
        line, col = where.at("step", i, key)
        return ScenarioError(f"step {i + 1}: {msg}", line, col, path)

    if not isinstance(t, dict):
        raise err("must be a table")
    known = {"at", "for", "path", *STEP_KINDS, "rule", "handshake", "shape_endpoint"}
    for k in t:
        if k not in known:
            raise err(f"unknown key {k!r}", k)
    kinds = [k for k in STEP_KINDS if k in t]
    inline = [k for k in ("rule", "handshake") if k in t]
    if inline and "rules" not in kinds:
        kinds.append("rules")
    if len(kinds) != 1:
        raise err(f"needs exactly one of: {', '.join(STEP_KINDS)}")
    kind = kinds[0]
    if "at" not in t:
        raise err('needs at = "T" (seconds after T=0, like "2s")')
    try:
        at = parse_duration(t["at"], "at")
        dur = parse_duration(t["for"], "for") if "for" in t else 0.0
    except ShapeError as e:
        raise err(str(e), "at" if "at" in str(e) else "for") from None
    s = Step(i + 1, at, "half_open" if kind == "half_open" else kind, dur)
    if "path" in t:
        if not isinstance(t["path"], str):
            raise err("path must be a string", "path")
        s.path = t["path"]
    v = t.get(kind)
    if kind == "close":
        if isinstance(v, int) and not isinstance(v, bool):
            v = {"code": v}
        if not isinstance(v, dict) or "code" not in v:
            raise err('close = CODE or { code = 1012, reason = "..." }', "close")
        s.code, s.reason, s.to = v["code"], v.get("reason", ""), v.get("to", "both")
        if isinstance(s.code, bool) or not isinstance(s.code, int) or not valid_close_code(s.code):
            raise err(f"{s.code!r} is not a close code a peer may send", "close")
        if s.to not in ("client", "server", "both") or not isinstance(s.reason, str):
            raise err("close: to is client, server or both; reason a string", "close")
        if dur:
            raise err('"for" goes with half_open, shape and rules', "for")
    elif kind == "abort":
        if v not in (True, "rst"):
            raise err('abort = true (or "rst" for a TCP reset)', "abort")
        s.rst = v == "rst"
        if dur:
            raise err('"for" goes with half_open, shape and rules', "for")
    elif kind == "half_open":
        if v is not True:
            try:
                s.duration = parse_duration(
                    v if isinstance(v, str | int | float) else "", "half_open"
                )
            except ShapeError as e:
                raise err(f"{e} (half_open = true or a duration)", "half_open") from None
    elif kind == "shape":
        if not isinstance(v, dict):
            raise err('shape = { to = "client", latency = "300ms" }', "shape")
        conds = dict(v)
        s.to = conds.pop("to", "both")
        if s.to not in ("client", "server", "both"):
            raise err("shape: to is client, server or both", "shape")
        try:
            s.shape = parse_shape(conds, "shape")
        except ShapeError as e:
            raise err(str(e), "shape") from None
        if s.shape.empty:
            raise err("shape needs a condition", "shape")
    elif kind == "inject":
        if not isinstance(v, dict) or v.get("to") not in ("client", "server"):
            raise err('inject = { to = "client", text = "..." } (or hex, or ping = true)', "inject")
        s.to = v["to"]
        forms = [f for f in ("text", "hex", "ping") if f in v]
        if len(forms) != 1:
            raise err("inject needs one of text, hex, ping", "inject")
        if "text" in v:
            s.opcode, s.payload = Opcode.TEXT, str(v["text"]).encode()
        elif "hex" in v:
            try:
                s.payload = bytes.fromhex("".join(str(v["hex"]).split()))
            except ValueError:
                raise err("inject: hex is not hexadecimal", "inject") from None
            s.opcode = Opcode.BINARY
        else:
            s.opcode, s.payload = Opcode.PING, b"devconsole"
        if dur:
            raise err('"for" goes with half_open, shape and rules', "for")
    else:
        line, _ = where.at("step", i, "rules")
        try:
            if isinstance(v, str):
                if read_file is None:
                    raise err("rules files are read by the runner", "rules")
                text = read_file(v)
                s.rules = load_rules(text, v)
            else:
                parts = {k: t[k] for k in ("rule", "handshake") if k in t}
                if v is not None:
                    raise err(
                        'rules = "FILE", or [[step.rule]] / [[step.handshake]] tables', "rules"
                    )
                s.rules = _inline_rules(parts, f"{path}: step {i + 1}")
        except RulesError as e:
            if isinstance(v, str):
                raise ScenarioError(f"step {i + 1}: {e}", line, 1, path) from None
            raise ScenarioError(f"step {i + 1}: {e.message}", line, 1, path) from None
    return s


def _inline_rules(parts: dict[str, Any], name: str) -> RuleSet:
    """[[step.rule]] / [[step.handshake]] tables: a rules file inside the scenario."""
    import io

    buf = io.StringIO()
    for kind, tables in parts.items():
        if not isinstance(tables, list):
            raise RulesError(f"{kind} must be [[step.{kind}]] tables")
        for t in tables:
            buf.write(f"[[{kind}]]\n")
            for k, v in t.items():
                buf.write(f"{k} = {_toml_value(v)}\n")
    return load_rules(buf.getvalue(), name)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))


def _expectation(i: int, t: Any, where: _Where, path: str, nsteps: int) -> Expectation:
    def err(msg: str, key: str = "") -> ScenarioError:
        line, col = where.at("expect", i, key)
        return ScenarioError(f"expect {i + 1}: {msg}", line, col, path)

    if not isinstance(t, dict):
        raise err("must be a table")
    kinds = [k for k in EXPECTATIONS if k in t]
    if len(kinds) != 1:
        raise err(f"needs exactly one of: {', '.join(EXPECTATIONS)}")
    for k in t:
        if k not in (*EXPECTATIONS, "from", "after", "name"):
            raise err(f"unknown key {k!r}", k)
    kind = kinds[0]
    e = Expectation(i + 1, kind)
    v = t[kind]
    if kind.endswith("_within"):
        try:
            e.value = parse_duration(v, kind)
        except ShapeError as ex:
            raise err(str(ex), kind) from None
    elif kind == "backoff":
        if v not in BACKOFF_PATTERNS:
            raise err(f"backoff is one of {', '.join(BACKOFF_PATTERNS)}", kind)
        e.pattern = v
    else:
        if not isinstance(v, str) or not v or any(not p for p in v.split(".")):
            raise err("no_missing names the cursor: a JSON path like id or meta.seq", kind)
        e.cursor = tuple(v.split("."))
        e.side = SERVER
    if "from" in t:
        if t["from"] not in ("client", "server", "any") or kind not in (
            "first_message_within",
            "no_missing",
        ):
            raise err(
                'from = "client", "server" or "any" (first_message_within, no_missing)', "from"
            )
        e.side = "" if t["from"] == "any" else t["from"]
    if "after" in t:
        a = t["after"]
        if isinstance(a, bool) or not isinstance(a, int) or not 1 <= a <= nsteps:
            raise err(f"after names a step: 1 to {nsteps}", "after")
        e.after = a
    if "name" in t:
        if not isinstance(t["name"], str):
            raise err("name must be a string", "name")
        e.name = t["name"]
    return e


# --------------------------------------------------------------------------- grading


FAULTS = ("close", "abort", "half_open")


def grade(
    sc: Scenario, session: Session, steps: list[StepRecord], start: float, end: float
) -> list[Verdict]:
    """One verdict per expectation, from what the proxy saw between ``start`` (T=0) and
    ``end``."""
    conns = sorted(
        (c for c in session.connections.values() if sc.matches(c.path)),
        key=lambda c: (c.handshake.ts, int(c.id) if c.id.isdigit() else 0),
    )
    g = _Grader(sc, session, conns, steps, start, end)
    out = []
    for e in sc.expectations:
        fn = getattr(g, e.kind)
        out.append(fn(e))
    return out


def _accepted(c: Connection) -> bool:
    return c.state != ConnState.REFUSED and c.handshake.status == 101


def _fmt(x: float) -> str:
    return f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


class _Grader:
    def __init__(
        self,
        sc: Scenario,
        session: Session,
        conns: list[Connection],
        steps: list[StepRecord],
        start: float,
        end: float,
    ) -> None:
        self.sc = sc
        self.session = session
        self.conns = conns
        self.steps = steps
        self.start = start
        self.end = end

    def _faults(self, e: Expectation, kinds: tuple[str, ...] = FAULTS) -> list[StepRecord]:
        return [
            r
            for r in self.steps
            if r.step.kind in kinds
            and not r.error
            and r.conns
            and (not e.after or r.step.index == e.after)
        ]

    def _client_close(self, conn: str, after: float) -> float | None:
        for it in self.session.items(conn):
            if (
                isinstance(it, ControlFrame)
                and it.opcode == Opcode.CLOSE
                and it.side == CLIENT
                and not it.injected
                and it.ts >= after
            ):
                return it.ts
        return None

    def _broken_at(self, r: StepRecord, conn: str) -> float:
        """When the client lost the connection a fault step hit."""
        if r.step.kind != "half_open":
            return r.ts
        c = self.session.connections.get(conn)
        t = [x for x in (self._client_close(conn, r.ts), c.ts_end if c else None) if x is not None]
        return min(t) if t else math.inf

    def _next_open(self, after: float) -> Connection | None:
        for c in self.conns:
            if _accepted(c) and c.handshake.ts > after:
                return c
        return None

    # -- expectations

    def reconnect_within(self, e: Expectation) -> Verdict:
        faults = self._faults(e)
        pairs: list[tuple[str, float, Connection | None]] = []  # (what, broken at, new conn)
        if faults:
            for r in faults:
                for cid in r.conns:
                    t = self._broken_at(r, cid)
                    label = f"step {r.step.index} #{cid}"
                    pairs.append((label, t, self._next_open(r.ts) if t < math.inf else None))
        else:  # no fault of ours: every end of a matching connection during the run
            for c in self.conns:
                if _accepted(c) and c.ts_end is not None and self.start <= c.ts_end < self.end:
                    pairs.append((f"end of #{c.id}", c.ts_end, self._next_open(c.handshake.ts)))
        if not pairs:
            return Verdict(e, False, "nothing to reconnect from", "no fault hit a connection")
        values: list[float] = []
        parts: list[str] = []
        ok = True
        for label, t, new in pairs:
            if t == math.inf:
                ok = False
                parts.append(f"{label}: the client never noticed")
                continue
            if new is None or new.handshake.ts_response is None:
                ok = False
                parts.append(f"{label}: no reconnect")
                continue
            d = max(0.0, new.handshake.ts_response - t)
            values.append(d)
            ok = ok and d <= e.value
            parts.append(f"{label} -> #{new.id} open after {_fmt(d)}")
        measured = ", ".join(_fmt(v) for v in values) if values else "no reconnect"
        return Verdict(e, ok, measured, "; ".join(parts), values)

    def backoff(self, e: Expectation) -> Verdict:
        eps = analyze_endpoints(self.conns)
        if not eps:
            return Verdict(e, False, "no connection", "")
        ep = max(eps, key=lambda x: len(x.reconnect_delays))
        b = ep.backoff
        delays = ep.reconnect_delays
        shown = ", ".join(f"{d:.2f}" for d in delays[-12:])
        measured: str = b.pattern
        if b.factor:
            measured += f" x{b.factor:.2f}"
        detail = f"{len(delays)} reconnect(s) on {ep.path}: {shown} s"
        if e.pattern == "not-storm":
            ok = b.pattern != "storm" and bool(delays)
        else:
            ok = b.pattern == e.pattern
        if not ok and b.pattern in ("single", "none"):
            detail += " (too few reconnects to judge: at least 3 are needed)"
        return Verdict(e, ok, measured, detail, list(delays))

    def half_open_detected_within(self, e: Expectation) -> Verdict:
        faults = self._faults(e, ("half_open",))
        if not faults:
            return Verdict(e, False, "no half-open step hit a connection", "")
        values: list[float] = []
        parts: list[str] = []
        ok = True
        mon = HeartbeatMonitor.from_session(self.session)
        for r in faults:
            for cid in r.conns:
                t = self._broken_at(r, cid)
                new = self._next_open(r.ts)
                if new is not None and new.handshake.ts < t:
                    t = new.handshake.ts  # it reconnected before we saw it close
                hb = _heartbeat(mon, cid, self.end)
                if t == math.inf or (r.undone is not None and t > r.undone):
                    ok = False
                    parts.append(f"#{cid}: not detected{hb}")
                    continue
                d = t - r.ts
                values.append(d)
                ok = ok and d <= e.value
                parts.append(f"#{cid}: detected after {_fmt(d)}{hb}")
        measured = ", ".join(_fmt(v) for v in values) if values else "not detected"
        return Verdict(e, ok, measured, "; ".join(parts), values)

    def first_message_within(self, e: Expectation) -> Verdict:
        faults = self._faults(e)
        news: list[Connection] = []
        if faults:
            for r in faults:
                new = self._next_open(r.ts)
                if new is not None and new not in news:
                    news.append(new)
        else:
            news = [c for c in self.conns if _accepted(c)][1:]
        if not news:
            return Verdict(e, False, "no reconnect", "")
        values: list[float] = []
        parts: list[str] = []
        ok = True
        for c in news:
            opened = c.handshake.ts_response or c.handshake.ts
            first = next(
                (
                    it.ts
                    for it in self.session.items(c.id)
                    if isinstance(it, Message)
                    and not it.injected
                    and (not e.side or it.side == e.side)
                ),
                None,
            )
            if first is None:
                ok = False
                parts.append(f"#{c.id}: no message")
                continue
            d = max(0.0, first - opened)
            values.append(d)
            ok = ok and d <= e.value
            parts.append(f"#{c.id}: {_fmt(d)}")
        measured = ", ".join(_fmt(v) for v in values) if values else "no message"
        return Verdict(e, ok, measured, "; ".join(parts), values)

    def no_missing(self, e: Expectation) -> Verdict:
        side = e.side or SERVER
        sent: dict[str, Any] = {}
        delivered: set[str] = set()
        numbers: list[int] = []
        for c in self.conns:
            for it in self.session.items(c.id):
                if not isinstance(it, Message) or it.side != side or it.injected:
                    continue
                v = _cursor(it, e.cursor)
                if v is None:
                    continue
                key = json.dumps(v, sort_keys=True)
                sent.setdefault(key, v)
                if not it.dropped:
                    delivered.add(key)
                    if isinstance(v, int) and not isinstance(v, bool):
                        numbers.append(v)
        if not sent:
            return Verdict(e, False, "no message with that cursor", f"cursor {'.'.join(e.cursor)}")
        missing = [sent[k] for k in sent if k not in delivered]
        if numbers:
            have = set(numbers)
            lo, hi = min(have), max(have)
            if hi - lo < 1_000_000:
                missing += [n for n in range(lo, hi + 1) if n not in have and n not in missing]
        shown = ", ".join(str(m) for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
        measured = f"{len(missing)} missing" + (f": {shown}" if missing else "")
        detail = f"{len(delivered)} cursor value(s) delivered of {len(sent)} sent"
        return Verdict(e, not missing, measured, detail, [float(len(missing))])


def _cursor(m: Message, path: tuple[str, ...]) -> Any:
    if m.opcode != Opcode.TEXT or m.truncated:
        return None
    try:
        doc = json.loads(m.payload)
    except ValueError:
        return None
    for key in path:
        if isinstance(doc, dict):
            if key not in doc:
                return None
            doc = doc[key]
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            return None
    return None if isinstance(doc, dict | list) else doc


def _heartbeat(mon: HeartbeatMonitor, conn: str, now: float) -> str:
    """`` (client pings every 0.30 s)``: what the client's heartbeat looked like."""
    rep = mon.report(conn, now)
    parts = []
    p = rep.client_pings
    if p.count:
        iv = p.interval_p50 or p.interval_mean
        parts.append("client pings" + (f" every {iv:.2f} s" if iv else ""))
    for app in rep.app_heartbeats:
        if app.side == CLIENT:
            parts.append(f"client app heartbeat every {app.interval_mean:.2f} s")
    if not parts:
        parts.append("no client heartbeat seen")
    return f" ({', '.join(parts)})"
