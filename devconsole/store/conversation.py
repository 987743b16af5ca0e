"""A recorded connection as a conversation: what replay sends, what mock answers, and
the structural diff of two runs. Pure logic (no sockets, no files).

- ``conversation(session, conn)``: the handshake, the data messages in order and the
  close frames of one connection of a loaded capture;
- ``diff_answers(recorded, new, ignore)``: server answers aligned in order; JSON payloads
  compared structurally (key order and whitespace do not matter), ``ignore`` paths
  (``ts``, ``data.id``, ``items[*].id``, ``*.timestamp``) left out;
- ``MockScript``: the answers a mock server gives, by order or by JSON structure, with
  the ids of the new request put in place of the recorded ones.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from devconsole.model import CLIENT, SERVER, ControlFrame, Handshake, Message, Opcode
from devconsole.session import Session


class ConversationError(Exception):
    """No such connection, or nothing to replay (a one-line message)."""


@dataclass
class Conversation:
    handshake: Handshake
    messages: list[Message]  # data messages of both sides, in order
    client_close: ControlFrame | None = None
    server_close: ControlFrame | None = None
    unknown: list[str] = field(default_factory=list)  # what the capture's format lacks

    @property
    def conn(self) -> str:
        return self.handshake.conn

    def client_messages(self) -> list[Message]:
        return [m for m in self.messages if m.side == CLIENT]

    def server_messages(self) -> list[Message]:
        return [m for m in self.messages if m.side == SERVER]

    @property
    def start(self) -> float:
        """When the conversation began: the upgrade's answer (or the first message)."""
        hs = self.handshake
        if hs.ts_response is not None:
            return hs.ts_response
        return self.messages[0].ts if self.messages else hs.ts


def conversation(session: Session, conn: str | None = None) -> Conversation:
    """The conversation of connection ``conn`` (a proxy id as devconsole shows it); by
    default the only accepted connection, or the first one with messages."""
    conns = list(session.connections.values())
    if conn is not None:
        c = session.connections.get(conn)
        if c is None:
            known = ", ".join(x.id for x in conns[:20]) or "none"
            raise ConversationError(f"no connection {conn!r} in the capture (ids: {known})")
    else:
        accepted = [x for x in conns if not x.refused]
        if not accepted:
            raise ConversationError("no accepted WebSocket connection in the capture")
        with_msgs = [x for x in accepted if x.msgs_in + x.msgs_out]
        c = (with_msgs or accepted)[0]
    msgs: list[Message] = []
    cc = sc = None
    for it in session.items(c.id):
        if isinstance(it, Message):
            if not it.injected and not it.dropped:
                msgs.append(it)
        elif it.opcode == Opcode.CLOSE and not it.injected:
            if it.side == CLIENT and cc is None:
                cc = it
            elif it.side == SERVER and sc is None:
                sc = it
    return Conversation(c.handshake, msgs, cc, sc, list(c.handshake.unknown))


# ------------------------------------------------------------------ JSON paths


_TOKEN = re.compile(r"\[(\*|\d+)\]|\.?([^.\[\]]+)")


def parse_path(path: str) -> tuple[str | int, ...]:
    """``$.a.b[0].c``, ``a.*.id``, ``items[*].id`` as a tuple of keys (``"*"`` matches
    any key or index). Raises ValueError for an empty path."""
    p = path.strip()
    if p.startswith("$"):
        p = p[1:]
    out: list[str | int] = []
    for m in _TOKEN.finditer(p):
        idx, key = m.group(1), m.group(2)
        if idx is not None:
            out.append("*" if idx == "*" else int(idx))
        elif key is not None:
            out.append(key)
    if not out:
        raise ValueError(f"empty JSON path {path!r}")
    return tuple(out)


def _match(pattern: tuple[str | int, ...], path: tuple[str | int, ...]) -> bool:
    if len(pattern) != len(path):
        return False
    return all(p == "*" or p == q for p, q in zip(pattern, path, strict=True))


def fmt_path(path: tuple[str | int, ...]) -> str:
    out = "$"
    for k in path:
        out += f"[{k}]" if isinstance(k, int) else f".{k}"
    return out


def strip_ignored(value: Any, ignore: Iterable[tuple[str | int, ...]]) -> Any:
    pats = list(ignore)

    def walk(v: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(v, dict):
            return {k: walk(x, (*path, k)) for k, x in v.items() if not _ignored((*path, k), pats)}
        if isinstance(v, list):
            return [walk(x, (*path, i)) for i, x in enumerate(v) if not _ignored((*path, i), pats)]
        return v

    return walk(value, ())


def _ignored(path: tuple[str | int, ...], pats: list[tuple[str | int, ...]]) -> bool:
    return any(_match(p, path) for p in pats)


def json_of(m: Message) -> Any:
    """The payload as JSON, or a sentinel (``_NOT_JSON``) when it is not JSON text."""
    if m.opcode != Opcode.TEXT:
        return _NOT_JSON
    try:
        return json.loads(m.payload)
    except (ValueError, RecursionError):
        return _NOT_JSON


_NOT_JSON: Any = object()


def json_diff(a: Any, b: Any, path: tuple[str | int, ...] = ()) -> list[str]:
    """Where two JSON values differ: ``$.path: old -> new`` lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in a:
            if k not in b:
                out.append(f"{fmt_path((*path, k))}: removed (was {_short(a[k])})")
            else:
                out.extend(json_diff(a[k], b[k], (*path, k)))
        for k in b:
            if k not in a:
                out.append(f"{fmt_path((*path, k))}: added {_short(b[k])}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for i in range(max(len(a), len(b))):
            if i >= len(a):
                out.append(f"{fmt_path((*path, i))}: added {_short(b[i])}")
            elif i >= len(b):
                out.append(f"{fmt_path((*path, i))}: removed (was {_short(a[i])})")
            else:
                out.extend(json_diff(a[i], b[i], (*path, i)))
        return out
    if a == b and type(a) is type(b):
        return []
    return [f"{fmt_path(path)}: {_short(a)} -> {_short(b)}"]


def _short(v: Any, width: int = 60) -> str:
    s = json.dumps(v, ensure_ascii=False, sort_keys=True)
    return s if len(s) <= width else s[: width - 1] + "…"


def preview(m: Message, width: int = 80) -> str:
    if m.opcode == Opcode.TEXT:
        s = m.payload.decode("utf-8", "replace")
    else:
        s = f"<binary {m.size} B> " + m.payload[:24].hex()
    s = "".join(ch if ch.isprintable() else "?" for ch in s)
    return s if len(s) <= width else s[: width - 1] + "…"


def _key(m: Message, ignore: list[tuple[str | int, ...]]) -> str:
    j = json_of(m)
    if j is not _NOT_JSON:
        return "j" + json.dumps(strip_ignored(j, ignore), sort_keys=True, separators=(",", ":"))
    return f"{m.opcode}:" + m.payload.hex()


# ------------------------------------------------------------------ diff


@dataclass
class Change:
    kind: str  # "added", "missing", "changed"
    index: int  # position among the answers (recorded for missing/changed, new for added)
    recorded: Message | None
    new: Message | None
    details: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        if self.kind == "missing":
            assert self.recorded is not None
            return [f"- answer {self.index + 1} missing: {preview(self.recorded)}"]
        if self.kind == "added":
            assert self.new is not None
            return [f"+ answer {self.index + 1} added: {preview(self.new)}"]
        assert self.recorded is not None and self.new is not None
        head = f"~ answer {self.index + 1} changed"
        if self.details:
            return [head + ":"] + [f"    {d}" for d in self.details]
        return [head + ":", f"    was: {preview(self.recorded)}", f"    now: {preview(self.new)}"]


def diff_answers(
    recorded: list[Message], new: list[Message], ignore: Iterable[str] = ()
) -> list[Change]:
    """The server answers of a new run against the recorded ones: aligned in order
    (a longest-common-subsequence match), unmatched runs paired as changed, the rest
    added or missing."""
    pats = [parse_path(p) for p in ignore]
    a = [_key(m, pats) for m in recorded]
    b = [_key(m, pats) for m in new]
    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    out: list[Change] = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            continue
        n = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for k in range(n):
            r, m = recorded[i1 + k], new[j1 + k]
            jr, jm = json_of(r), json_of(m)
            details: list[str] = []
            if jr is not _NOT_JSON and jm is not _NOT_JSON:
                details = json_diff(strip_ignored(jr, pats), strip_ignored(jm, pats))
            elif r.opcode != m.opcode:
                details = [
                    f"type {'text' if r.is_text else 'binary'} -> "
                    f"{'text' if m.is_text else 'binary'}"
                ]
            out.append(Change("changed", i1 + k, r, m, details))
        for k in range(i1 + n, i2):
            out.append(Change("missing", k, recorded[k], None))
        for k in range(j1 + n, j2):
            out.append(Change("added", k, None, new[k]))
    return out


# ------------------------------------------------------------------ mock


@dataclass
class Turn:
    request: Message
    answers: list[tuple[float, Message]]  # (seconds after the request, answer)
    used: bool = False


def _similarity(a: Any, b: Any) -> float:
    """How alike two JSON values are in structure (1.0: same shape and values)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        if not keys:
            return 1.0
        common = set(a) & set(b)
        inner = sum(_similarity(a[k], b[k]) for k in common)
        return (len(common) + inner) / (2 * len(keys))
    if isinstance(a, list) and isinstance(b, list):
        if not a and not b:
            return 1.0
        n = min(len(a), len(b))
        inner = sum(_similarity(a[i], b[i]) for i in range(n))
        return 0.5 + 0.5 * inner / max(len(a), len(b))
    if type(a) is type(b):
        return 1.0 if a == b else 0.5
    return 0.0


def _leaves(v: Any, path: tuple[str | int, ...] = ()) -> dict[tuple[str | int, ...], Any]:
    out: dict[tuple[str | int, ...], Any] = {}
    if isinstance(v, dict):
        for k, x in v.items():
            out.update(_leaves(x, (*path, k)))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out.update(_leaves(x, (*path, i)))
    else:
        out[path] = v
    return out


def substitutions(recorded: Any, new: Any) -> dict[Any, Any]:
    """Values of the recorded request that the new one has changed at the same place
    (ids, tokens, parameters): recorded value -> new value. Booleans and null are left
    alone, and so is any value found at two places with two different new values."""
    old = _leaves(recorded)
    cur = _leaves(new)
    subs: dict[Any, Any] = {}
    clash: set[Any] = set()
    for p, v in old.items():
        if p not in cur or isinstance(v, bool) or v is None:
            continue
        nv = cur[p]
        if nv == v and type(nv) is type(v):
            continue
        if isinstance(nv, bool) or nv is None or isinstance(nv, dict | list):
            continue
        key = (type(v).__name__, v)
        if key in subs and subs[key] != nv:
            clash.add(key)
        subs[key] = nv
    return {k[1]: v for k, v in subs.items() if k not in clash}


def apply_substitutions(value: Any, subs: dict[Any, Any]) -> Any:
    if not subs:
        return value
    if isinstance(value, dict):
        return {k: apply_substitutions(x, subs) for k, x in value.items()}
    if isinstance(value, list):
        return [apply_substitutions(x, subs) for x in value]
    if isinstance(value, bool) or value is None:
        return value
    try:
        if value in subs:
            return subs[value]
    except TypeError:
        return value
    return value


class MockScript:
    """What a mock server says on one connection of a recorded conversation.

    ``pushes``: server messages before the first client message, with their delay from
    the upgrade. ``answer(opcode, payload)``: the answers to a client message (the
    recorded server messages that followed the matching recorded client message, up to
    the next one, with their delays after it), matched by order (``order``) or by the
    most similar JSON structure among the requests not answered yet (``json``)."""

    def __init__(self, conv: Conversation, match: str = "order") -> None:
        if match not in ("order", "json"):
            raise ValueError(f"unknown match mode {match!r} (order, json)")
        self.conv = conv
        self.match = match
        self.pushes: list[tuple[float, Message]] = []
        self.turns: list[Turn] = []
        start = conv.start
        for m in conv.messages:
            if m.side == CLIENT:
                self.turns.append(Turn(m, []))
            elif not self.turns:
                self.pushes.append((max(0.0, m.ts - start), m))
            else:
                t = self.turns[-1]
                t.answers.append((max(0.0, m.ts - t.request.ts), m))
        self._next = 0
        self.unmatched = 0  # client messages with no recorded request left to answer

    @property
    def finished(self) -> bool:
        """Every recorded request was answered (order mode)."""
        return all(t.used for t in self.turns)

    def _pick(self, opcode: int, payload: bytes) -> Turn | None:
        if self.match == "order":
            while self._next < len(self.turns):
                t = self.turns[self._next]
                self._next += 1
                if not t.used:
                    return t
            return None
        new = _json_payload(opcode, payload)
        best: Turn | None = None
        best_score = -1.0
        for t in self.turns:
            if t.used:
                continue
            rec = json_of(t.request)
            if new is _NOT_JSON or rec is _NOT_JSON:
                score = 1.0 if (t.request.payload == payload) else 0.1
            else:
                score = _similarity(rec, new)
            if score > best_score:
                best, best_score = t, score
        return best

    def answer(self, opcode: int, payload: bytes) -> list[tuple[float, int, bytes]]:
        """``(delay after the request, opcode, payload)`` to send for a client message."""
        t = self._pick(opcode, payload)
        if t is None:
            self.unmatched += 1
            return []
        t.used = True
        rec = json_of(t.request)
        new = _json_payload(opcode, payload)
        subs = substitutions(rec, new) if rec is not _NOT_JSON and new is not _NOT_JSON else {}
        out: list[tuple[float, int, bytes]] = []
        for delay, m in t.answers:
            data = m.payload
            if subs:
                j = json_of(m)
                if j is not _NOT_JSON:
                    data = json.dumps(
                        apply_substitutions(j, subs), ensure_ascii=False, separators=(",", ":")
                    ).encode()
            out.append((delay, m.opcode, data))
        return out


def _json_payload(opcode: int, payload: bytes) -> Any:
    if opcode != Opcode.TEXT:
        return _NOT_JSON
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return _NOT_JSON
