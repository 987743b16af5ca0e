"""Rules: what the proxy does to matching messages and upgrades, written in a TOML file.

Core module: no I/O (the caller reads the file), imports neither mitmproxy nor asyncio.
``load(text, path)`` parses and validates a rules file into a ``RuleSet`` or raises
``RulesError`` with the line and column of the problem. The relay asks ``decide()`` what
to do with each message (a ``Decision``); the capture driver asks ``HandshakeRule``s what
to do with an upgrade. The file format is documented in docs/rules.md::

    [[rule]]                      # a message rule: match, then actions
    name = "slow chat"
    match = "from:client json:type=chat"     # the filter language (docs/filters.md)
    path = "/chat*"               # glob on the connection's path (url = glob on its URL)
    delay = "300ms"               # or ["100ms", "500ms"]: a range (jitter)

    [[handshake]]                 # an upgrade rule
    path = "/feed"
    refuse = { status = 503, body = "restarting" }

    [[shape]]                     # network conditions of every connection of an endpoint
    path = "/ticker"
    to = "client"
    rate = "64kbit"

Matching uses ``devconsole.filters.parse``; ``load(..., parse_filter=...)`` takes another
parser, so a caller can pass one that decodes protocols (``d:``/``proto:`` terms).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import random
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from devconsole.filters import Filter, FilterError, parse
from devconsole.model import (
    CLIENT,
    SERVER,
    ControlFrame,
    Event,
    HandshakeEvent,
    Item,
    Message,
    Opcode,
    RefusedEvent,
    Shape,
    Side,
    valid_close_code,
)
from devconsole.shaping import ShapeError, format_duration, parse_duration, parse_shape

__all__ = [
    "Decision",
    "HandshakeRule",
    "MessageRule",
    "RuleSet",
    "RulesError",
    "decide",
    "dry_run",
    "load",
]

ParseFilter = Callable[[str], Filter]

MAX_RULES = 1000
MAX_RESPONSE = 1 << 20
MAX_DUPLICATES = 100


class TomlFileError(ValueError):
    """A TOML file devconsole reads (rules, a chaos scenario) that cannot be used:
    ``line``/``column`` are 1-based (0: unknown); shown as ``PATH:LINE:COL: message``."""

    kind = "file"  # what the message names when there is no path

    def __init__(self, message: str, line: int = 0, column: int = 0, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.path = path

    def __str__(self) -> str:
        where = self.path or self.kind
        if self.line:
            where += f":{self.line}:{self.column or 1}"
        return f"{where}: {self.message}"


class RulesError(TomlFileError):
    """A rules file that cannot be used."""

    kind = "rules"


# --------------------------------------------------------------------------- the model


@dataclass(slots=True)
class Rewrite:
    regex: re.Pattern[str]
    replace: str


@dataclass(slots=True)
class Respond:
    opcode: int
    body: bytes | None = None  # fixed
    text: str | None = None  # a text template: ${json.a.b}
    doc: Any = None  # a JSON template (``json = {...}``)
    is_json: bool = False


@dataclass(slots=True)
class CloseAction:
    code: int
    reason: str = ""
    to: str = "both"


@dataclass(slots=True)
class HoldAction:
    timeout: float = 120.0
    on_timeout: str = "forward"


def hold_words(hold: HoldAction) -> str:
    """The action of a rule's hold as a message's ``action`` says it: ``hold 30s then
    drop``. Viewers read the timeout back (``hold_of_action``) for the countdown a
    breakpoint's hold has from its Breakpoint."""
    return f"hold {format_duration(hold.timeout)} then {hold.on_timeout}"


_HOLD_WORDS = re.compile(r"hold (\S+) then (forward|drop)")


def hold_of_action(action: str) -> HoldAction | None:
    """The hold in a message's ``action`` (``hold_words``, maybe among other actions
    joined by "; "), or None (no hold, or an older proxy's bare "hold")."""
    for part in action.split("; "):
        m = _HOLD_WORDS.fullmatch(part)
        if m is not None:
            try:
                return HoldAction(parse_duration(m.group(1)), m.group(2))
            except ShapeError:
                return None
    return None


@dataclass(slots=True)
class MessageRule:
    index: int
    name: str
    expr: str
    filter: Filter
    side: Side | None = None  # the only direction the filter can match, if it says
    path: str = ""
    url: str = ""
    control: bool = False
    nth: int = 0
    times: int = 0
    probability: float = 1.0
    rewrite: list[Rewrite] = field(default_factory=list)
    set: list[tuple[tuple[str, ...], Any]] = field(default_factory=list)
    delete: list[tuple[str, ...]] = field(default_factory=list)
    drop: bool = False
    delay: tuple[float, float] | None = None
    reorder: bool = False
    duplicate: int = 0
    respond: list[Respond] = field(default_factory=list)
    forward: bool = False  # with respond: forward the message too
    close: CloseAction | None = None
    hold: HoldAction | None = None
    shape: list[tuple[str, Shape]] = field(default_factory=list)

    @property
    def changes_body(self) -> bool:
        return bool(self.rewrite or self.set or self.delete)


@dataclass(slots=True)
class HeaderEdit:
    add: list[tuple[str, str]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    replace: list[tuple[str, str]] = field(default_factory=list)

    def apply(self, headers: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
        """The edited headers and what changed (for the record)."""
        done: list[str] = []
        out = list(headers)
        for name in self.remove:
            low = name.lower()
            gone = [v for k, v in out if k.lower() == low]
            if gone:
                out = [(k, v) for k, v in out if k.lower() != low]
                done.append(f"removed {name}: {', '.join(gone)}")
        for name, value in self.replace:
            low = name.lower()
            old = [v for k, v in out if k.lower() == low]
            if old:
                i = next(i for i, (k, _) in enumerate(out) if k.lower() == low)
                out = [(k, v) for k, v in out if k.lower() != low]
                out.insert(i, (name, value))
                done.append(f"replaced {name}: {', '.join(old)} -> {value}")
            else:
                out.append((name, value))
                done.append(f"set {name}: {value}")
        for name, value in self.add:
            out.append((name, value))
            done.append(f"added {name}: {value}")
        return out, done


@dataclass(slots=True)
class Refusal:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class HandshakeRule:
    index: int
    name: str
    path: str = ""
    url: str = ""
    times: int = 0
    request_headers: HeaderEdit | None = None
    response_headers: HeaderEdit | None = None
    refuse: Refusal | None = None
    strip_extensions: list[str] = field(default_factory=list)
    strip_subprotocols: list[str] = field(default_factory=list)
    used: int = 0  # upgrades it acted on (for ``times``)

    def applies(self, url: str, path: str) -> bool:
        if self.times and self.used >= self.times:
            return False
        return _endpoint_match(self.path, self.url, url, path)

    def edit_request(
        self, headers: list[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], list[str]]:
        """The request headers with this rule's edits and strips."""
        done: list[str] = []
        if self.strip_extensions:
            headers, d = _strip_offer(headers, "sec-websocket-extensions", self.strip_extensions)
            done += d
        if self.strip_subprotocols:
            headers, d = _strip_offer(headers, "sec-websocket-protocol", self.strip_subprotocols)
            done += d
        if self.request_headers is not None:
            headers, d = self.request_headers.apply(headers)
            done += d
        return headers, done


def _strip_offer(
    headers: list[tuple[str, str]], name: str, strip: list[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    out: list[tuple[str, str]] = []
    removed: list[str] = []
    wanted = {s.lower() for s in strip}
    for k, v in headers:
        if k.lower() != name:
            out.append((k, v))
            continue
        keep = []
        for part in v.split(","):
            p = part.strip()
            if not p:
                continue
            token = p.split(";")[0].strip().lower()
            if "*" in wanted or token in wanted:
                removed.append(p)
            else:
                keep.append(p)
        if keep:
            out.append((k, ", ".join(keep)))
    what = "extension" if name == "sec-websocket-extensions" else "subprotocol"
    return out, [f"removed {what} {r} from the offer" for r in removed]


@dataclass(slots=True)
class EndpointShape:
    index: int
    name: str
    path: str = ""
    url: str = ""
    to: str = "both"
    shape: Shape = field(default_factory=Shape)


@dataclass
class RuleSet:
    messages: list[MessageRule] = field(default_factory=list)
    handshakes: list[HandshakeRule] = field(default_factory=list)
    shapes: list[EndpointShape] = field(default_factory=list)
    path: str = ""

    @property
    def names(self) -> list[str]:
        return (
            [r.name for r in self.messages]
            + [h.name for h in self.handshakes]
            + [s.name for s in self.shapes]
        )

    def __bool__(self) -> bool:
        return bool(self.messages or self.handshakes or self.shapes)

    def for_connection(self, url: str, path: str) -> list[MessageRule]:
        return [r for r in self.messages if _endpoint_match(r.path, r.url, url, path)]

    def handshake_rules(self, url: str, path: str) -> list[HandshakeRule]:
        return [h for h in self.handshakes if h.applies(url, path)]

    def shapes_for(self, url: str, path: str) -> dict[str, tuple[Shape, str]]:
        """The endpoint conditions of a connection, by the peer they go to (the last
        matching table wins), with the name of the table."""
        out: dict[str, tuple[Shape, str]] = {}
        for s in self.shapes:
            if _endpoint_match(s.path, s.url, url, path):
                for to in (CLIENT, SERVER) if s.to == "both" else (s.to,):
                    out[to] = (s.shape, s.name)
        return out


def _endpoint_match(pglob: str, uglob: str, url: str, path: str) -> bool:
    if pglob and not fnmatch.fnmatchcase(path or "/", pglob):
        return False
    return not (uglob and not fnmatch.fnmatchcase(url, uglob))


# --------------------------------------------------------------------------- deciding


@dataclass(slots=True)
class Decision:
    """What the rules that matched a message want done with it (the relay does it)."""

    rules: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    body: bytes | None = None  # the message sent instead (rewrite, set, delete)
    opcode: int = 0
    drop: bool = False  # not forwarded (drop, respond instead, close)
    delay: float = 0.0
    reorder: bool = False  # later messages may overtake it while it is delayed
    copies: int = 0
    respond: list[tuple[int, bytes]] = field(default_factory=list)  # back to the sender
    close: CloseAction | None = None
    hold: HoldAction | None = None
    shape: list[tuple[str, Shape]] = field(default_factory=list)

    @property
    def rule(self) -> str:
        return ", ".join(dict.fromkeys(self.rules))

    @property
    def action(self) -> str:
        return "; ".join(self.actions)


def decide(
    rules: Iterable[MessageRule],
    item: Item,
    counts: dict[int, int],
    rng: random.Random,
    max_payload: int | None = None,
) -> Decision | None:
    """Run ``rules`` in order over ``item`` (a later rule sees what an earlier one
    rewrote); ``counts`` (per connection, by rule index) serves ``nth`` and ``times``.
    None: no rule matched. A truncated payload (over ``max_payload``) is not rewritten."""
    d: Decision | None = None
    view: Item = item
    is_msg = isinstance(item, Message)
    for r in rules:
        if r.control == is_msg:
            continue
        if r.side is not None and r.side != item.side:
            continue
        if not r.filter(view):
            continue
        n = counts.get(r.index, 0) + 1
        counts[r.index] = n
        if r.nth and n != r.nth:
            continue
        if r.times and n > r.times:
            continue
        if r.probability < 1.0 and rng.random() >= r.probability:
            continue
        if d is None:
            d = Decision()
        d.rules.append(r.name)
        if is_msg and r.changes_body:
            assert isinstance(view, Message)
            body = _edit(r, view, max_payload)
            if body is not None and body != view.payload:
                d.body = body
                d.opcode = view.opcode
                d.actions.append(f"rewrite ({len(view.payload)} -> {len(body)} bytes)")
                view = dataclasses.replace(view, payload=body, size=len(body))
        for resp in r.respond:
            body = _respond_body(resp, view)
            d.respond.append((resp.opcode, body))
            d.actions.append("respond" if r.forward else "respond instead")
        if r.respond and not r.forward:
            d.drop = True
        if r.drop:
            d.drop = True
            d.actions.append("drop")
        if r.close is not None:
            d.close = r.close
            d.drop = True
            d.actions.append(f"close {r.close.code}")
        if r.hold is not None and d.hold is None:
            d.hold = r.hold
            d.actions.append(hold_words(r.hold))
        if r.delay is not None:
            lo, hi = r.delay
            t = lo if lo == hi else rng.uniform(lo, hi)
            d.delay += t
            d.reorder = d.reorder or r.reorder
            d.actions.append(f"delay {format_duration(round(t, 4))}")
        if r.duplicate:
            d.copies += r.duplicate
            d.actions.append(f"duplicate x{r.duplicate}")
        if r.shape:
            d.shape.extend(r.shape)
            d.actions.append("shape")
        if d.drop:
            break  # nothing after a drop, a close or an answer instead
    return d


def _edit(r: MessageRule, m: Message, max_payload: int | None) -> bytes | None:
    if m.opcode != Opcode.TEXT or not m.utf8_ok:
        return None
    if len(m.payload) < m.size or (max_payload is not None and m.size > max_payload):
        return None  # not all of it is here: leave it alone
    text = m.payload.decode()
    for rw in r.rewrite:
        text = rw.regex.sub(rw.replace, text)
    if r.set or r.delete:
        try:
            doc = json.loads(text)
        except ValueError:
            doc = _NOT_JSON
        if doc is not _NOT_JSON:
            for path, value in r.set:
                doc = _json_set(doc, path, value)
            for path in r.delete:
                _json_delete(doc, path)
            text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return text.encode()


_NOT_JSON = object()


def _json_set(doc: Any, path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    if isinstance(doc, dict):
        doc[path[0]] = _json_set(doc.get(path[0]), path[1:], value)
        return doc
    if isinstance(doc, list) and path[0].isdigit() and int(path[0]) < len(doc):
        i = int(path[0])
        doc[i] = _json_set(doc[i], path[1:], value)
        return doc
    if doc is None:
        return {path[0]: _json_set(None, path[1:], value)}
    return doc  # a scalar in the way: leave it


def _json_delete(doc: Any, path: tuple[str, ...]) -> None:
    for i, key in enumerate(path):
        last = i == len(path) - 1
        if isinstance(doc, dict):
            if key not in doc:
                return
            if last:
                del doc[key]
                return
            doc = doc[key]
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            if last:
                del doc[int(key)]
                return
            doc = doc[int(key)]
        else:
            return


_TEMPLATE = re.compile(r"\$\{json\.([^}]+)\}")
_MISSING = object()


def _lookup(doc: Any, path: str) -> Any:
    for key in path.split("."):
        if isinstance(doc, dict):
            doc = doc.get(key, _MISSING)
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            return _MISSING
        if doc is _MISSING:
            return _MISSING
    return doc


def _respond_body(resp: Respond, m: Item) -> bytes:
    if resp.body is not None:
        return resp.body
    try:
        src = json.loads(m.payload) if m.payload[:1] in (b"{", b"[") else None
    except ValueError:
        src = None
    if resp.is_json:
        return json.dumps(_fill(resp.doc, src), ensure_ascii=False, separators=(",", ":")).encode()
    assert resp.text is not None

    def sub(mt: re.Match[str]) -> str:
        v = _lookup(src, mt.group(1))
        if v is _MISSING:
            return "null"
        return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)

    return _TEMPLATE.sub(sub, resp.text).encode()


def _fill(doc: Any, src: Any) -> Any:
    """A JSON template: a string that is exactly ``${json.path}`` becomes that value."""
    if isinstance(doc, dict):
        return {k: _fill(v, src) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_fill(v, src) for v in doc]
    if isinstance(doc, str):
        m = _TEMPLATE.fullmatch(doc)
        if m is not None:
            v = _lookup(src, m.group(1))
            return None if v is _MISSING else v

        def sub(mt: re.Match[str]) -> str:
            v = _lookup(src, mt.group(1))
            if v is _MISSING:
                return ""
            return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)

        return _TEMPLATE.sub(sub, doc)
    return doc


# --------------------------------------------------------------------------- dry run


@dataclass(slots=True)
class DryRunMatch:
    item: Item
    decision: Decision


def dry_run(rules: RuleSet, events: Iterable[Event], seed: int = 0) -> list[DryRunMatch]:
    """What ``rules`` would have done to the messages of a capture: every message (and
    control frame) a message rule matches, in order, with its decision. Handshake rules
    are matched against each upgrade (``handshake_matches``)."""
    rng = random.Random(seed)
    per_conn: dict[str, list[MessageRule]] = {}
    counts: dict[str, dict[int, int]] = {}
    out: list[DryRunMatch] = []
    for ev in events:
        if isinstance(ev, HandshakeEvent | RefusedEvent):
            hs = ev.handshake
            per_conn[hs.conn] = rules.for_connection(hs.url, hs.path)
        elif isinstance(ev, Message | ControlFrame):
            if ev.injected:
                continue
            rs = per_conn.get(ev.conn)
            if rs is None:  # the handshake is not in the capture: every rule applies
                rs = per_conn[ev.conn] = [r for r in rules.messages if not r.path and not r.url]
            d = decide(rs, ev, counts.setdefault(ev.conn, {}), rng)
            if d is not None:
                out.append(DryRunMatch(ev, d))
    return out


# --------------------------------------------------------------------------- loading


_TABLE = re.compile(r"^\s*\[\[\s*([A-Za-z_]+)\s*\]\]")
_HEADER = re.compile(r"^\s*\[")
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


class _Locator:
    """Line and column of a table's keys in the source text (tomllib keeps none)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.tables: dict[tuple[str, int], tuple[int, int]] = {}  # (kind, i) -> line range
        counts: dict[str, int] = {}
        current: tuple[str, int] | None = None
        for n, line in enumerate(self.lines):
            m = _TABLE.match(line)
            if (m is not None or _HEADER.match(line)) and current is not None:
                start, _ = self.tables[current]
                self.tables[current] = (start, n)
                current = None
            if m is not None:
                kind = m.group(1)
                i = counts.get(kind, 0)
                counts[kind] = i + 1
                current = (kind, i)
                self.tables[current] = (n, len(self.lines))

    def table(self, kind: str, i: int) -> tuple[int, int]:
        start, _ = self.tables.get((kind, i), (0, 0))
        return start + 1, 1

    def key(self, kind: str, i: int, *keys: str) -> tuple[int, int]:
        """The value of ``keys[0]`` (then ``keys[1]`` inside it...) in table ``i``."""
        start, end = self.tables.get((kind, i), (0, len(self.lines)))
        pos = (start + 1, 1)
        n = start
        col = 0
        for depth, key in enumerate(keys):
            pat = re.compile(
                (r"^\s*" if depth == 0 else r"[{,\s]")
                + r"(?:" + re.escape(key) + r'|"' + re.escape(key) + r'"'
                + r"|'" + re.escape(key) + r"')\s*=\s*"
            )  # fmt: skip
            found = False
            for j in range(n, end):
                m = pat.search(self.lines[j], col if j == n else 0)
                if m is not None:
                    n, col = j, m.end()
                    pos = (j + 1, col + 1)
                    found = True
                    break
            if not found:
                break
        return pos


class _Loader:
    def __init__(self, text: str, path: str, parse_filter: ParseFilter) -> None:
        self.text = text
        self.path = path
        self.loc = _Locator(text)
        self.parse_filter = parse_filter

    def error(self, msg: str, kind: str, i: int, *keys: str) -> RulesError:
        line, col = self.loc.key(kind, i, *keys) if keys else self.loc.table(kind, i)
        return RulesError(msg, line, col, self.path)

    def load(self) -> RuleSet:
        try:
            doc = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as e:
            msg = str(e)
            m = _TOML_POS.search(msg)
            line, col = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
            raise RulesError(_TOML_POS.sub("", msg).strip(), line, col, self.path) from None
        rs = RuleSet(path=self.path)
        for key in doc:
            if key not in ("rule", "handshake", "shape"):
                line = self._top_key_line(key)
                raise RulesError(
                    f"unknown table or key {key!r}: a rules file has [[rule]], [[handshake]] "
                    "and [[shape]] tables",
                    line,
                    1,
                    self.path,
                )
        for kind in ("rule", "handshake", "shape"):
            tables = doc.get(kind, [])
            if not isinstance(tables, list):
                raise RulesError(f"{kind} must be an array of tables: [[{kind}]]", 0, 0, self.path)
            if len(tables) > MAX_RULES:
                raise RulesError(f"more than {MAX_RULES} [[{kind}]] tables", 0, 0, self.path)
            for i, t in enumerate(tables):
                if kind == "rule":
                    rs.messages.append(self.message_rule(i, t))
                elif kind == "handshake":
                    rs.handshakes.append(self.handshake_rule(i, t))
                else:
                    rs.shapes.append(self.endpoint_shape(i, t))
        return rs

    def _top_key_line(self, key: str) -> int:
        pat = re.compile(r"^\s*\[*\s*" + re.escape(key) + r"\b")
        for n, line in enumerate(self.loc.lines):
            if pat.match(line):
                return n + 1
        return 0

    # -- helpers

    def _str(self, t: dict[str, Any], key: str, kind: str, i: int, default: str = "") -> str:
        v = t.get(key, default)
        if not isinstance(v, str):
            raise self.error(f"{key} must be a string", kind, i, key)
        return v

    def _int(self, t: dict[str, Any], key: str, kind: str, i: int, lo: int, hi: int) -> int:
        v = t.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or (key in t and not lo <= v <= hi):
            raise self.error(f"{key} must be a whole number from {lo} to {hi}", kind, i, key)
        return v

    def _dur(self, value: Any, kind: str, i: int, *keys: str) -> float:
        try:
            return parse_duration(value, ".".join(keys))
        except ShapeError as e:
            raise self.error(str(e), kind, i, *keys) from None

    def _endpoint(self, t: dict[str, Any], kind: str, i: int) -> tuple[str, str]:
        p = self._str(t, "path", kind, i)
        u = self._str(t, "url", kind, i)
        if p and not p.startswith(("/", "*", "?", "[")):
            raise self.error(f"path {p!r} must start with / (a glob: /chat*)", kind, i, "path")
        return p, u

    def _unknown(self, t: dict[str, Any], known: set[str], kind: str, i: int) -> None:
        for k in t:
            if k not in known:
                raise self.error(f"unknown key {k!r} in [[{kind}]] (docs/rules.md)", kind, i, k)

    # -- [[rule]]

    _RULE_KEYS = {
        "name", "match", "path", "url", "control", "nth", "times", "probability", "enabled",
        "rewrite", "set", "delete", "drop", "delay", "reorder", "duplicate", "respond",
        "forward", "close", "hold", "shape",
    }  # fmt: skip

    def message_rule(self, i: int, t: dict[str, Any]) -> MessageRule:
        k = "rule"
        self._unknown(t, self._RULE_KEYS, k, i)
        name = self._str(t, "name", k, i, f"rule {i + 1}")
        expr = self._str(t, "match", k, i)
        try:
            flt = self.parse_filter(expr)
        except FilterError as e:
            line, col = self.loc.key(k, i, "match")
            col += _value_offset(self.loc.lines[line - 1], col) + e.column - 1
            raise RulesError(f"match: {e.message}", line, col, self.path) from None
        path, url = self._endpoint(t, k, i)
        r = MessageRule(i, name, expr, flt, _side_of(flt), path, url)
        control = t.get("control", False)
        if not isinstance(control, bool):
            raise self.error("control must be true or false", k, i, "control")
        r.control = control
        r.nth = self._int(t, "nth", k, i, 1, 1 << 31)
        r.times = self._int(t, "times", k, i, 1, 1 << 31)
        prob = t.get("probability", 1.0)
        if isinstance(prob, bool) or not isinstance(prob, int | float) or not 0 < prob <= 1:
            raise self.error("probability must be a number in (0, 1]", k, i, "probability")
        r.probability = float(prob)
        self._message_actions(r, t, i)
        enabled = t.get("enabled", True)
        if not isinstance(enabled, bool):
            raise self.error("enabled must be true or false", k, i, "enabled")
        if not enabled:
            r.filter = _NEVER
        actions = ("rewrite", "set", "delete", "drop", "delay", "duplicate", "respond", "close",
                   "hold", "shape")  # fmt: skip
        if not any(a in t for a in actions):
            raise self.error(f"rule {name!r} has no action (one of: {', '.join(actions)})", k, i)
        if r.control:
            for a in ("rewrite", "set", "delete", "duplicate", "respond"):
                if a in t:
                    raise self.error(
                        f"{a} acts on data messages, not on control frames (control = true)",
                        k,
                        i,
                        a,
                    )
        return r

    def _message_actions(self, r: MessageRule, t: dict[str, Any], i: int) -> None:
        k = "rule"
        if "rewrite" in t:
            v = t["rewrite"]
            items = v if isinstance(v, list) else [v]
            for item in items:
                if not isinstance(item, dict) or "regex" not in item:
                    raise self.error(
                        'rewrite must be { regex = "...", replace = "..." } (or a list of them)',
                        k,
                        i,
                        "rewrite",
                    )
                extra = set(item) - {"regex", "replace", "flags"}
                if extra:
                    raise self.error(f"rewrite: unknown key {sorted(extra)[0]!r}", k, i, "rewrite")
                pattern, repl, flags = item["regex"], item.get("replace", ""), item.get("flags", "")
                if not all(isinstance(x, str) for x in (pattern, repl, flags)):
                    raise self.error(
                        "rewrite: regex, replace and flags are strings", k, i, "rewrite"
                    )
                f = 0
                for c in flags:
                    if c not in "ims":
                        raise self.error(
                            f"rewrite: unknown flag {c!r} (i, m, s)", k, i, "rewrite", "flags"
                        )
                    f |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}[c]
                try:
                    rx = re.compile(pattern, f)
                    rx.sub(repl, "")  # a bad group reference fails here, not on traffic
                except re.error as e:
                    raise self.error(f"rewrite: bad regex: {e}", k, i, "rewrite", "regex") from None
                r.rewrite.append(Rewrite(rx, repl))
        if "set" in t:
            v = t["set"]
            if not isinstance(v, dict) or not v:
                raise self.error('set must be a table of JSON paths: { "a.b" = 1 }', k, i, "set")
            for path, value in v.items():
                r.set.append((self._json_path(path, k, i, "set"), _plain(value)))
        if "delete" in t:
            v = t["delete"]
            items = v if isinstance(v, list) else [v]
            if not items or not all(isinstance(x, str) for x in items):
                raise self.error(
                    'delete must be a JSON path or a list of them: ["a.b"]', k, i, "delete"
                )
            r.delete = [self._json_path(p, k, i, "delete") for p in items]
        if "drop" in t:
            if not isinstance(t["drop"], bool):
                raise self.error("drop must be true or false", k, i, "drop")
            r.drop = t["drop"]
        if "delay" in t:
            v = t["delay"]
            if isinstance(v, list):
                if len(v) != 2:
                    raise self.error('delay range must be ["MIN", "MAX"]', k, i, "delay")
                lo, hi = (self._dur(x, k, i, "delay") for x in v)
                if hi < lo:
                    raise self.error("delay range: the maximum is below the minimum", k, i, "delay")
                r.delay = (lo, hi)
            else:
                d = self._dur(v, k, i, "delay")
                r.delay = (d, d)
        if "reorder" in t:
            if not isinstance(t["reorder"], bool):
                raise self.error("reorder must be true or false", k, i, "reorder")
            r.reorder = t["reorder"]
        if "duplicate" in t:
            v = t["duplicate"]
            n = 1 if v is True else 0 if v is False else v
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_DUPLICATES:
                raise self.error(
                    f"duplicate must be true or a number of copies (1-{MAX_DUPLICATES})",
                    k,
                    i,
                    "duplicate",
                )
            r.duplicate = n
        if "respond" in t:
            v = t["respond"]
            items = v if isinstance(v, list) else [v]
            for item in items:
                r.respond.append(self._respond(item, i))
        if "forward" in t:
            if not isinstance(t["forward"], bool):
                raise self.error("forward must be true or false", k, i, "forward")
            if "respond" not in t:
                raise self.error("forward goes with respond", k, i, "forward")
            r.forward = t["forward"]
        if "close" in t:
            v = t["close"]
            if isinstance(v, int) and not isinstance(v, bool):
                v = {"code": v}
            if not isinstance(v, dict) or "code" not in v:
                raise self.error(
                    'close must be a code or { code = 4000, reason = "..." }', k, i, "close"
                )
            extra = set(v) - {"code", "reason", "to"}
            if extra:
                raise self.error(f"close: unknown key {sorted(extra)[0]!r}", k, i, "close")
            code, reason, to = v["code"], v.get("reason", ""), v.get("to", "both")
            if isinstance(code, bool) or not isinstance(code, int) or not valid_close_code(code):
                raise self.error(
                    f"close: {code!r} is not a close code a peer may send "
                    "(1000-1003, 1007-1014, 3000-4999)",
                    k,
                    i,
                    "close",
                )
            if not isinstance(reason, str) or len(reason.encode()) > 123:
                raise self.error(
                    "close: reason must be a string of at most 123 bytes", k, i, "close"
                )
            if to not in ("client", "server", "both"):
                raise self.error("close: to must be client, server or both", k, i, "close")
            r.close = CloseAction(code, reason, to)
        if "hold" in t:
            v = t["hold"]
            if v is True:
                r.hold = HoldAction()
            elif isinstance(v, dict):
                extra = set(v) - {"timeout", "on_timeout"}
                if extra:
                    raise self.error(f"hold: unknown key {sorted(extra)[0]!r}", k, i, "hold")
                timeout = self._dur(v.get("timeout", 120), k, i, "hold", "timeout")
                on = v.get("on_timeout", "forward")
                if on not in ("forward", "drop") or not timeout > 0:
                    raise self.error(
                        "hold: timeout must be positive, on_timeout forward or drop", k, i, "hold"
                    )
                r.hold = HoldAction(timeout, on)
            elif v is not False:
                raise self.error('hold must be true or { timeout = "30s" }', k, i, "hold")
        if "shape" in t:
            r.shape = self._shapes(t["shape"], k, i, "shape")

    def _respond(self, item: Any, i: int) -> Respond:
        k = "rule"
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict):
            raise self.error(
                "respond must be a text, or { text | json | hex = ... }", k, i, "respond"
            )
        extra = set(item) - {"text", "json", "hex"}
        forms = [f for f in ("text", "json", "hex") if f in item]
        if extra or len(forms) != 1:
            raise self.error("respond needs exactly one of text, json, hex", k, i, "respond")
        form = forms[0]
        v = item[form]
        if form == "text":
            if not isinstance(v, str):
                raise self.error("respond: text must be a string", k, i, "respond")
            resp = Respond(Opcode.TEXT, None if _TEMPLATE.search(v) else v.encode(), text=v)
            size = len(v.encode())
        elif form == "json":
            doc = _plain(v)
            resp = Respond(Opcode.TEXT, doc=doc, is_json=True)
            size = len(json.dumps(doc))
        else:
            if not isinstance(v, str):
                raise self.error("respond: hex must be a string", k, i, "respond")
            try:
                data = bytes.fromhex("".join(v.split()))
            except ValueError:
                raise self.error(f"respond: not hexadecimal: {v!r}", k, i, "respond") from None
            resp = Respond(Opcode.BINARY, data)
            size = len(data)
        if size > MAX_RESPONSE:
            raise self.error(f"respond: more than {MAX_RESPONSE} bytes", k, i, "respond")
        return resp

    def _json_path(self, path: Any, kind: str, i: int, key: str) -> tuple[str, ...]:
        if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
            raise self.error(f"{key}: {path!r} is not a JSON path like a.b.0", kind, i, key)
        return tuple(path.split("."))

    def _shapes(self, v: Any, kind: str, i: int, key: str) -> list[tuple[str, Shape]]:
        if not isinstance(v, dict):
            raise self.error(
                f'{key} must be a table: {{ to = "client", latency = "100ms" }}', kind, i, key
            )
        conds = dict(v)
        to = conds.pop("to", "both")
        if to not in ("client", "server", "both"):
            raise self.error(f"{key}: to must be client, server or both", kind, i, key)
        try:
            shape = parse_shape(conds, key)
        except ShapeError as e:
            raise self.error(str(e), kind, i, key) from None
        return [(t, shape) for t in ((CLIENT, SERVER) if to == "both" else (to,))]

    # -- [[handshake]]

    _HS_KEYS = {
        "name", "path", "url", "times", "request_headers", "response_headers", "refuse",
        "strip_extension", "strip_subprotocol",
    }  # fmt: skip

    def handshake_rule(self, i: int, t: dict[str, Any]) -> HandshakeRule:
        k = "handshake"
        self._unknown(t, self._HS_KEYS, k, i)
        name = self._str(t, "name", k, i, f"handshake {i + 1}")
        path, url = self._endpoint(t, k, i)
        h = HandshakeRule(i, name, path, url)
        h.times = self._int(t, "times", k, i, 1, 1 << 31)
        for key in ("request_headers", "response_headers"):
            if key in t:
                setattr(h, key, self._header_edit(t[key], k, i, key))
        if "refuse" in t:
            v = t["refuse"]
            if isinstance(v, int) and not isinstance(v, bool):
                v = {"status": v}
            if not isinstance(v, dict) or "status" not in v:
                raise self.error(
                    'refuse must be a status or { status = 503, body = "..." }', k, i, "refuse"
                )
            extra = set(v) - {"status", "body", "headers"}
            if extra:
                raise self.error(f"refuse: unknown key {sorted(extra)[0]!r}", k, i, "refuse")
            st, body, hdrs = v["status"], v.get("body", ""), v.get("headers", {})
            if isinstance(st, bool) or not isinstance(st, int) or not 200 <= st <= 599 or st == 101:
                raise self.error(
                    "refuse: status must be an HTTP status 200-599 (not 101)", k, i, "refuse"
                )
            if not isinstance(body, str):
                raise self.error("refuse: body must be a string", k, i, "refuse")
            if not isinstance(hdrs, dict) or not all(isinstance(x, str) for x in hdrs.values()):
                raise self.error("refuse: headers must be a table of strings", k, i, "refuse")
            h.refuse = Refusal(st, body.encode(), [(a, b) for a, b in hdrs.items()])
        for key, attr in (
            ("strip_extension", "strip_extensions"),
            ("strip_subprotocol", "strip_subprotocols"),
        ):
            if key in t:
                v = t[key]
                items = v if isinstance(v, list) else [v]
                if not items or not all(isinstance(x, str) and x for x in items):
                    raise self.error(f"{key} must be a name or a list of names", k, i, key)
                setattr(h, attr, list(items))
        if not (h.request_headers or h.response_headers or h.refuse or h.strip_extensions
                or h.strip_subprotocols):  # fmt: skip
            raise self.error(
                f"handshake rule {name!r} has no action (request_headers, response_headers, "
                "refuse, strip_extension, strip_subprotocol)",
                k,
                i,
            )
        return h

    def _header_edit(self, v: Any, kind: str, i: int, key: str) -> HeaderEdit:
        if not isinstance(v, dict):
            raise self.error(f"{key} must be a table with add, remove, replace", kind, i, key)
        extra = set(v) - {"add", "remove", "replace"}
        if extra:
            raise self.error(
                f"{key}: unknown key {sorted(extra)[0]!r} (add, remove, replace)", kind, i, key
            )
        e = HeaderEdit()
        for op in ("add", "replace"):
            if op in v:
                tbl = v[op]
                if not isinstance(tbl, dict) or not all(isinstance(x, str) for x in tbl.values()):
                    raise self.error(
                        f'{key}.{op} must be a table of header = "value"', kind, i, key, op
                    )
                pairs = [(a, b) for a, b in tbl.items()]
                for a, b in pairs:
                    if not _HEADER_NAME.fullmatch(a) or "\n" in b or "\r" in b:
                        raise self.error(f"{key}.{op}: bad header {a!r}", kind, i, key, op)
                setattr(e, op, pairs)
        if "remove" in v:
            items = v["remove"] if isinstance(v["remove"], list) else [v["remove"]]
            if not all(isinstance(x, str) and _HEADER_NAME.fullmatch(x) for x in items):
                raise self.error(f"{key}.remove must be header names", kind, i, key, "remove")
            e.remove = list(items)
        return e

    # -- [[shape]]

    def endpoint_shape(self, i: int, t: dict[str, Any]) -> EndpointShape:
        k = "shape"
        conds = dict(t)
        name = self._str(conds, "name", k, i, f"shape {i + 1}")
        path, url = self._endpoint(conds, k, i)
        for x in ("name", "path", "url"):
            conds.pop(x, None)
        to = conds.pop("to", "both")
        if to not in ("client", "server", "both"):
            raise self.error("to must be client, server or both", k, i, "to")
        try:
            shape = parse_shape(conds, "shape")
        except ShapeError as e:
            bad = next((c for c in conds if f"shape.{c}" in str(e) or f"{c!r}" in str(e)), "")
            raise (self.error(str(e), k, i, bad) if bad else self.error(str(e), k, i)) from None
        if shape.empty:
            raise self.error("a [[shape]] needs a condition (latency, rate, ...)", k, i)
        return EndpointShape(i, name, path, url, to, shape)


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class _Never(Filter):
    def _compile(self) -> Callable[[Item], bool]:
        return lambda m: False

    def __str__(self) -> str:
        return "<disabled>"


_NEVER = _Never()


def _value_offset(line: str, col: int) -> int:
    """Columns between a key's ``=`` and the text inside its quoted value."""
    rest = line[col - 1 :]
    if rest.startswith(('"""', "'''")):
        return 3
    if rest.startswith(('"', "'")):
        return 1
    return 0


def _side_of(f: Filter) -> Side | None:
    """The direction a filter is limited to, when it says so at its top level."""
    from devconsole.filters import And, From

    if isinstance(f, From):
        return CLIENT if f.side == CLIENT else SERVER
    if isinstance(f, And):
        for c in f.children:
            if isinstance(c, From):
                return CLIENT if c.side == CLIENT else SERVER
    return None


def _plain(v: Any) -> Any:
    """TOML values as JSON values (dates become ISO strings)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    return str(v.isoformat()) if hasattr(v, "isoformat") else str(v)


def load(text: str, path: str = "", parse_filter: ParseFilter = parse) -> RuleSet:
    """Parse and validate a rules file; raises RulesError (with line and column)."""
    return _Loader(text, path, parse_filter).load()
