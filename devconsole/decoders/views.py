"""Views of a payload: json, msgpack, cbor, text, hex and close.

Core module: no I/O, imports neither mitmproxy, textual nor rich. A view turns payload
bytes into plain data, a ``Rendered``: text for a text area and, for structured payloads,
a ``Node`` tree for a collapsible tree widget. Modelled on mitmproxy's contentviews: each
view also ``score()``s how well it fits a payload (0: it cannot show it), so the
registry in ``devconsole.decoders`` can pick the best one.

Every ``score()`` and ``render()`` accepts any bytes and never raises: a payload a view
cannot decode scores 0 or renders with ``error`` set. The work is bounded whatever the
size: each view renders at most ``max_bytes`` of a payload, ``MAX_LINES`` lines of
pretty-printed text and ``MAX_NODES`` tree nodes, and says so in ``note``.

Rendered text is plain and unescaped (JSON strings are JSON-escaped, nothing more): the
TUI shows it as ``Text``, never as markup, after ``decoders.safe_text()``.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from devconsole.decoders.base import Decoded
from devconsole.model import (
    ControlFrame,
    Item,
    Message,
    Opcode,
    close_code_meaning,
    valid_close_code,
)
from devconsole.text import fmt_bytes

try:
    import msgpack
except ImportError:  # pragma: no cover - a dependency, but decoders are optional
    msgpack = None  # type: ignore[assignment, unused-ignore]
try:
    import cbor2
except ImportError:  # pragma: no cover
    cbor2 = None  # type: ignore[assignment, unused-ignore]

__all__ = [
    "MAX_LINES",
    "MAX_NODES",
    "PARSE_LIMIT",
    "CborView",
    "CloseView",
    "DecodedView",
    "HexView",
    "JsonView",
    "MsgpackView",
    "Node",
    "Rendered",
    "TextView",
    "View",
    "close_fields",
    "compact",
    "decode_prefix",
    "hexdump",
    "is_container",
    "looks_like_text",
    "parse_cbor",
    "parse_json",
    "parse_msgpack",
    "pretty",
    "to_tree",
]

KiB = 1 << 10
MiB = 1 << 20

PARSE_LIMIT = 8 * MiB  # structured views do not parse larger payloads
MAX_LINES = 20_000  # pretty-printed lines
MAX_NODES = 5_000  # tree nodes
MAX_DEPTH = 100  # nesting shown; deeper levels are elided
BYTES_SHOWN = 64  # bytes of a binary value shown in hex inside a structure


@dataclass(slots=True)
class Node:
    """A plain tree for a collapsible tree widget.

    ``label``: the key, or ``[i]`` for an array item; ``value_repr``: the scalar as text,
    or a summary such as ``{3 keys}`` / ``[5 items]`` for a container.
    """

    label: str
    value_repr: str | None = None
    children: list[Node] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a view made of a payload.

    ``text``: plain text, always the best rendering available (the raw text when a
    decode failed). ``tree``: for structured views. ``error``: the payload is not valid
    for this view (or not valid at all, e.g. invalid UTF-8 in a text message).
    ``note``: information such as "showing the first 1 MiB".
    """

    view: str
    text: str
    tree: Node | None = None
    error: str | None = None
    note: str | None = None


class View:
    """A way to show a payload. Subclasses implement ``_score`` and ``_render``; the
    public methods never raise."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    max_bytes: ClassVar[int] = PARSE_LIMIT

    def score(self, payload: bytes, item: Item | None = None) -> float:
        """How well this view fits, from 0 (cannot show it) to 1."""
        try:
            return self._score(payload, item)
        except Exception:
            return 0.0

    def render(self, payload: bytes, item: Item | None = None) -> Rendered:
        try:
            r = self._render(payload, item)
        except Exception as e:  # a bug or a decoder library surprise: still show something
            r = Rendered(self.name, "", None, f"{self.name} view failed: {e!r}")
        if isinstance(item, Message) and item.truncated:
            r = _add_note(
                r, f"payload truncated by capture: {len(item.payload)} of {item.size} bytes"
            )
        return r

    def _score(self, payload: bytes, item: Item | None) -> float:
        raise NotImplementedError

    def _render(self, payload: bytes, item: Item | None) -> Rendered:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _add_note(r: Rendered, note: str) -> Rendered:
    return dataclasses.replace(r, note=note if r.note is None else f"{r.note}; {note}")


def _opcode(item: Item | None) -> int | None:
    return None if item is None else item.opcode


def _showing(shown: int, total: int) -> str:
    a, b = fmt_bytes(shown), fmt_bytes(total)
    if a == b:  # "1.0 MiB of 1.0 MiB" says nothing
        a, b = f"{shown:,}", f"{total:,} bytes"
    return f"showing the first {a} of {b}"


# --------------------------------------------------------------------------- parsing

_FAILED = object()
_cache: OrderedDict[tuple[str, bytes], tuple[object, str | None]] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_ITEMS = 32
_CACHE_MAX_PAYLOAD = 256 * KiB  # a parsed 8 MiB document is too big to keep around


def _cached(
    kind: str, payload: bytes, parse: Callable[[bytes], object]
) -> tuple[object, str | None]:
    """``(value, None)`` or ``(_FAILED, error)``. score() then render() of the same
    payload (and the preview of the same row) parse it once."""
    key = (kind, payload)
    small = len(payload) <= _CACHE_MAX_PAYLOAD
    if small:
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return hit
    if len(payload) > PARSE_LIMIT:
        result: tuple[object, str | None] = (
            _FAILED,
            f"too large to decode ({fmt_bytes(len(payload))} > {fmt_bytes(PARSE_LIMIT)})",
        )
    else:
        try:
            result = (parse(payload), None)
        except RecursionError:
            result = (_FAILED, "nested too deeply")
        except Exception as e:
            result = (_FAILED, str(e) or type(e).__name__)
    if small:
        with _cache_lock:
            _cache[key] = result
            while len(_cache) > _CACHE_ITEMS:
                _cache.popitem(last=False)
    return result


_JSON_START = frozenset(b'{["-0123456789tfn')


def _json_loads(payload: bytes) -> object:
    head = payload.lstrip()[:1]
    if not head or head[0] not in _JSON_START:
        raise ValueError("not JSON")
    return json.loads(payload.decode("utf-8"))


def parse_json(payload: bytes) -> tuple[object, str | None]:
    """``(value, None)``, or ``(None, error)`` if the payload is not UTF-8 JSON."""
    value, err = _cached("json", payload, _json_loads)
    return (None, err) if value is _FAILED else (value, None)


def _msgpack_loads(payload: bytes) -> object:
    if msgpack is None:  # pragma: no cover
        raise ValueError("msgpack is not installed")
    return msgpack.unpackb(
        payload,
        raw=False,
        strict_map_key=False,
        use_list=False,  # tuples: arrays may be map keys
        timestamp=0,  # msgpack.Timestamp, whatever its range
        unicode_errors="surrogateescape",  # invalid UTF-8 shown as \udcXX, not refused
    )


def parse_msgpack(payload: bytes) -> tuple[object, str | None]:
    """``(value, None)``, or ``(None, error)`` unless the whole payload is one msgpack
    object."""
    value, err = _cached("msgpack", payload, _msgpack_loads)
    return (None, err) if value is _FAILED else (value, None)


def _cbor_loads(payload: bytes) -> object:
    if cbor2 is None:  # pragma: no cover
        raise ValueError("cbor2 is not installed")
    if not payload:
        raise ValueError("empty payload")
    fp = io.BytesIO(payload)
    value = cbor2.CBORDecoder(fp, str_errors="surrogateescape").decode()
    if fp.tell() != len(payload):  # cbor2 stops after the first item
        raise ValueError(f"extra data after the first CBOR item at byte {fp.tell()}")
    return value


def parse_cbor(payload: bytes) -> tuple[object, str | None]:
    """``(value, None)``, or ``(None, error)`` unless the whole payload is one CBOR
    item."""
    value, err = _cached("cbor", payload, _cbor_loads)
    return (None, err) if value is _FAILED else (value, None)


# --------------------------------------------------------------------------- values

_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_string(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    # Lone surrogates (JSON "\ud800", invalid UTF-8 from msgpack/cbor) cannot be
    # encoded for a terminal: write them as JSON escapes.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", out)


def _bytes_repr(b: bytes | bytearray | memoryview) -> str:
    data = bytes(b[: BYTES_SHOWN + 1])
    n = len(b)
    shown = data[:BYTES_SHOWN].hex()
    more = "…" if n > BYTES_SHOWN else ""
    return f"<{n} byte{'s' if n != 1 else ''} {shown}{more}>" if n else "<0 bytes>"


def _int_repr(v: int) -> str:
    try:
        return str(v)
    except ValueError:  # more digits than sys.get_int_max_str_digits()
        return f"<int of {v.bit_length()} bits {hex(v)[:40]}…>"


def _float_repr(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def _timestamp_text(seconds: int, nanoseconds: int) -> str:
    """UTC ISO 8601 with all nine digits of nanoseconds (datetime keeps six)."""
    try:
        dt = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    except (OverflowError, OSError, ValueError):  # beyond datetime's years 1-9999
        return f"{seconds}s {nanoseconds}ns since 1970-01-01T00:00:00Z"
    frac = f".{nanoseconds:09d}" if nanoseconds else ""
    return dt.replace(tzinfo=None).isoformat() + frac + "Z"


def _clip(s: str, n: int = 200) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _scalar(v: object) -> str | None:
    """The text of a scalar, or None for a container (dict, list, tag)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return _json_string(v)
    if isinstance(v, int):
        return _int_repr(v)
    if isinstance(v, float):
        return _float_repr(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return _bytes_repr(v)
    if msgpack is not None:  # before tuple: ExtType is a namedtuple
        if isinstance(v, msgpack.Timestamp):
            return f"<timestamp {_timestamp_text(v.seconds, v.nanoseconds)}>"
        if isinstance(v, msgpack.ExtType):
            return f"<ext {v.code} {_bytes_repr(v.data)[1:-1]}>"
    if isinstance(v, Mapping | list | tuple | set | frozenset):
        return None
    if cbor2 is not None:
        if isinstance(v, cbor2.CBORTag):
            return None
        if isinstance(v, cbor2.CBORSimpleValue):
            return f"simple({v.value})"
        if v is cbor2.undefined:
            return "undefined"
    if isinstance(v, datetime.datetime | datetime.date | datetime.time):
        return f"<{type(v).__name__} {v.isoformat()}>"
    if isinstance(v, re.Pattern):
        return f"<regex {_clip(str(v.pattern))}>"
    try:
        text = str(v)
    except Exception:
        text = "?"
    return f"<{type(v).__name__} {_clip(text)}>"


def _tag(v: object) -> tuple[int, object] | None:
    if cbor2 is not None and isinstance(v, cbor2.CBORTag):
        return int(v.tag), v.value
    return None


def _entries(v: object) -> list[tuple[object, object]] | None:
    """The (key, value) pairs of a map, or None."""
    if isinstance(v, Mapping):
        return list(v.items())
    return None


def _items(v: object) -> list[object] | None:
    if isinstance(v, list | tuple):
        return list(v)
    if isinstance(v, set | frozenset):
        return list(v)
    return None


def _key_text(k: object) -> str:
    """A map key in pretty text: JSON-quoted for strings, as a scalar otherwise."""
    s = _scalar(k)
    if s is not None:
        return s
    return _clip(compact(k, 200))


def _summary(v: object) -> str:
    entries = _entries(v)
    if entries is not None:
        n = len(entries)
        return f"{{{n} key{'s' if n != 1 else ''}}}"
    items = _items(v)
    if items is not None:
        n = len(items)
        return f"[{n} item{'s' if n != 1 else ''}]"
    return "…"


class _Full(Exception):
    """The output budget is spent."""


def pretty(value: object, max_lines: int = MAX_LINES) -> tuple[str, bool]:
    """``value`` as indented JSON-like text: exactly ``json.dumps(indent=2,
    ensure_ascii=False)`` for JSON values. Other values: bytes as ``<N bytes hex>``,
    non-string map keys unquoted, CBOR tags as ``tag(value)``. Returns the text and
    whether it was cut at ``max_lines``."""
    lines: list[str] = []
    path: set[int] = set()  # ids of the containers being printed: a CBOR cycle

    def add(line: str) -> None:
        if len(lines) >= max_lines:
            raise _Full
        lines.append(line)

    def emit(v: object, indent: str, prefix: str, suffix: str, depth: int) -> None:
        s = _scalar(v)
        if s is not None:
            add(f"{indent}{prefix}{s}{suffix}")
            return
        tag = _tag(v)
        if tag is not None:
            emit(tag[1], indent, f"{prefix}{tag[0]}(", f"){suffix}", depth + 1)
            return
        if id(v) in path:
            add(f"{indent}{prefix}<cycle>{suffix}")
            return
        if depth >= MAX_DEPTH:
            add(f"{indent}{prefix}{_summary(v)}{suffix}")
            return
        entries = _entries(v)
        items = _items(v) if entries is None else None
        if entries is None and items is None:
            add(f"{indent}{prefix}?{suffix}")
            return
        opening, closing = ("{", "}") if entries is not None else ("[", "]")
        if not (entries or items):
            add(f"{indent}{prefix}{opening}{closing}{suffix}")
            return
        add(f"{indent}{prefix}{opening}")
        inner = indent + "  "
        path.add(id(v))
        if entries is not None:
            last = len(entries) - 1
            for i, (k, x) in enumerate(entries):
                emit(x, inner, f"{_key_text(k)}: ", "," if i < last else "", depth + 1)
        else:
            assert items is not None
            last = len(items) - 1
            for i, x in enumerate(items):
                emit(x, inner, "", "," if i < last else "", depth + 1)
        path.discard(id(v))
        add(f"{indent}{closing}{suffix}")

    try:
        emit(value, "", "", "", 0)
    except _Full:
        return "\n".join(lines), True
    return "\n".join(lines), False


def compact(value: object, max_chars: int = 200) -> str:
    """``value`` on one line (``{"a": 1, "b": [1, 2]}``), cut near ``max_chars`` with …"""
    out: list[str] = []
    used = 0
    path: set[int] = set()

    def put(s: str) -> None:
        nonlocal used
        out.append(s)
        used += len(s)
        if used > max_chars:
            raise _Full

    def emit(v: object, depth: int) -> None:
        s = _scalar(v)
        if s is not None:
            put(s)
            return
        tag = _tag(v)
        if tag is not None:
            put(f"{tag[0]}(")
            emit(tag[1], depth + 1)
            put(")")
            return
        if id(v) in path:
            put("<cycle>")
            return
        if depth >= MAX_DEPTH:
            put("…")
            return
        entries = _entries(v)
        path.add(id(v))
        if entries is not None:
            put("{")
            for i, (k, x) in enumerate(entries):
                if i:
                    put(", ")
                put(_scalar(k) or "…")
                put(": ")
                emit(x, depth + 1)
            put("}")
        else:
            items = _items(v) or []
            put("[")
            for i, x in enumerate(items):
                if i:
                    put(", ")
                emit(x, depth + 1)
            put("]")
        path.discard(id(v))

    try:
        emit(value, 0)
    except _Full:
        return "".join(out)[: max(max_chars - 1, 0)] + "…"
    return "".join(out)


def to_tree(value: object, label: str = "root", max_nodes: int = MAX_NODES) -> tuple[Node, bool]:
    """A Node tree of ``value``; returns it and whether ``max_nodes`` cut it short."""
    budget = max_nodes
    cut = False
    path: set[int] = set()

    def build(v: object, lbl: str, depth: int) -> Node:
        nonlocal budget, cut
        budget -= 1
        s = _scalar(v)
        if s is not None:
            return Node(lbl, s)
        tag = _tag(v)
        if tag is not None:
            inner = build(tag[1], lbl, depth + 1)
            return Node(lbl, f"tag {tag[0]}: {inner.value_repr or ''}".rstrip(), inner.children)
        if id(v) in path:
            return Node(lbl, "<cycle>")
        node = Node(lbl, _summary(v))
        if depth >= MAX_DEPTH:
            node.value_repr = f"{node.value_repr} (nested too deeply to show)"
            return node
        entries = _entries(v)
        pairs: list[tuple[str, object]]
        if entries is not None:
            pairs = [(k if isinstance(k, str) else _key_text(k), x) for k, x in entries]
        else:
            pairs = [(f"[{i}]", x) for i, x in enumerate(_items(v) or [])]
        path.add(id(v))
        for i, (k, x) in enumerate(pairs):
            if budget <= 0:
                cut = True
                node.children.append(Node("…", f"{len(pairs) - i} more not shown"))
                break
            node.children.append(build(x, k, depth + 1))
        path.discard(id(v))
        return node

    return build(value, label, 0), cut


def _structured(view: str, value: object) -> Rendered:
    text, cut_text = pretty(value)
    tree, cut_tree = to_tree(value)
    notes = []
    if cut_text:
        notes.append(f"text cut at {MAX_LINES} lines")
    if cut_tree:
        notes.append(f"tree cut at {MAX_NODES} nodes")
    return Rendered(view, text, tree, None, "; ".join(notes) or None)


# --------------------------------------------------------------------------- text

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def decode_prefix(payload: bytes, limit: int, truncated: bool = False) -> tuple[str, int | None]:
    """The first ``limit`` bytes as text (U+FFFD for invalid UTF-8) and the offset of the
    first invalid byte (None if valid). A character cut by ``limit``, or by the end of a
    payload ``truncated`` by capture, is dropped, not invalid."""
    head = payload[:limit]
    try:
        return head.decode("utf-8"), None
    except UnicodeDecodeError as e:
        cut = truncated or len(payload) > limit
        if cut and e.reason == "unexpected end of data" and e.end == len(head):
            return head[: e.start].decode("utf-8"), None
        return head.decode("utf-8", "replace"), e.start


def _truncated(item: Item | None) -> bool:
    return isinstance(item, Message) and item.truncated


def looks_like_text(payload: bytes, truncated: bool = False, sample: int = 4 * KiB) -> bool:
    """Valid UTF-8 without control characters other than tab, newline and carriage
    return, judged on the first ``sample`` bytes."""
    if not payload:
        return False
    text, bad = decode_prefix(payload, sample, truncated)
    return bad is None and _CONTROL.search(text) is None


class TextView(View):
    name = "text"
    description = "UTF-8 text"
    max_bytes = MiB

    def _score(self, payload: bytes, item: Item | None) -> float:
        op = _opcode(item)
        if op == Opcode.TEXT:
            return 0.5
        if op == Opcode.CLOSE:
            return 0.01
        return 0.4 if looks_like_text(payload, _truncated(item)) else 0.01

    def _render(self, payload: bytes, item: Item | None) -> Rendered:
        text, bad = decode_prefix(payload, self.max_bytes, _truncated(item))
        error = None
        if bad is not None:
            error = f"invalid UTF-8 at byte {bad} (shown as U+FFFD)"
        note = None
        if len(payload) > self.max_bytes:
            note = _showing(self.max_bytes, len(payload))
        elif not payload:
            note = "empty payload"
        return Rendered(self.name, text, None, error, note)


# --------------------------------------------------------------------------- hex

_PRINTABLE = bytes(c if 0x20 <= c < 0x7F else ord(".") for c in range(256))


def hexdump(data: bytes, offset: int = 0) -> str:
    """``hexdump -C`` style lines: offset, 16 bytes in two groups of 8, ASCII column."""
    lines = []
    for pos in range(0, len(data), 16):
        chunk = data[pos : pos + 16]
        left = chunk[:8].hex(" ")
        right = chunk[8:].hex(" ")
        ascii_col = chunk.translate(_PRINTABLE).decode("ascii")
        lines.append(f"{offset + pos:08x}  {left:<23}  {right:<23}  |{ascii_col}|")
    return "\n".join(lines)


class HexView(View):
    name = "hex"
    description = "hex dump"
    max_bytes = 64 * KiB

    def _score(self, payload: bytes, item: Item | None) -> float:
        return 0.05 if _opcode(item) == Opcode.TEXT else 0.1

    def _render(self, payload: bytes, item: Item | None) -> Rendered:
        note = None
        if len(payload) > self.max_bytes:
            note = _showing(self.max_bytes, len(payload))
        elif not payload:
            note = "empty payload"
        return Rendered(self.name, hexdump(payload[: self.max_bytes]), None, None, note)


# --------------------------------------------------------------------------- json


class JsonView(View):
    name = "json"
    description = "JSON, pretty-printed"

    def _score(self, payload: bytes, item: Item | None) -> float:
        if _opcode(item) == Opcode.CLOSE:
            return 0.0
        value, err = parse_json(payload)
        if err is not None:
            return 0.0
        return 0.9 if isinstance(value, dict | list) else 0.3

    def _render(self, payload: bytes, item: Item | None) -> Rendered:
        value, err = parse_json(payload)
        if err is not None:
            text, _ = decode_prefix(payload, TextView.max_bytes, _truncated(item))
            return Rendered(self.name, text, None, f"invalid JSON: {err}")
        return _structured(self.name, value)


# --------------------------------------------------------------------------- msgpack, cbor


def is_container(value: object) -> bool:
    """A non-empty map or array, or a tagged value: something worth a structured view."""
    if _scalar(value) is not None:
        return False
    return _tag(value) is not None or bool(_entries(value) or _items(value))


def _binary_structure_score(value: object, item: Item | None, best: float) -> float:
    op = _opcode(item)
    if op == Opcode.CLOSE:
        return 0.0
    container = is_container(value)
    if op == Opcode.TEXT:
        return 0.2 if container else 0.01
    return best if container else 0.05


class MsgpackView(View):
    name = "msgpack"
    description = "MessagePack, shown like JSON"

    def _score(self, payload: bytes, item: Item | None) -> float:
        value, err = parse_msgpack(payload)
        return 0.0 if err is not None else _binary_structure_score(value, item, 0.8)

    def _render(self, payload: bytes, item: Item | None) -> Rendered:
        value, err = parse_msgpack(payload)
        if err is not None:
            return Rendered(self.name, "", None, f"invalid msgpack: {err}")
        return _structured(self.name, value)


class CborView(View):
    name = "cbor"
    description = "CBOR, shown like JSON (tags as tag(value))"

    def _score(self, payload: bytes, item: Item | None) -> float:
        value, err = parse_cbor(payload)
        return 0.0 if err is not None else _binary_structure_score(value, item, 0.75)

    def _render(self, payload: bytes, item: Item | None) -> Rendered:
        value, err = parse_cbor(payload)
        if err is not None:
            return Rendered(self.name, "", None, f"invalid CBOR: {err}")
        return _structured(self.name, value)


# --------------------------------------------------------------------------- close


def close_fields(payload: bytes, item: Item | None) -> tuple[int | None, str, str | None]:
    """Code, reason and error of a close frame: the frame's own fields when it is a
    ControlFrame, else parsed from the payload."""
    if isinstance(item, ControlFrame) and item.opcode == Opcode.CLOSE:
        error = item.error
        if error is None and item.code is not None and not valid_close_code(item.code):
            error = f"close code {item.code} must not be sent (RFC 6455 7.4)"
        return item.code, item.reason, error
    if not payload:
        return None, "", None
    if len(payload) == 1:
        return None, "", "a close payload of 1 byte (a code takes 2)"
    code = int.from_bytes(payload[:2], "big")
    reason, bad = decode_prefix(payload[2:], 125)
    error = None
    if bad is not None:
        error = f"close reason is not valid UTF-8 (byte {bad + 2})"
    elif not valid_close_code(code):
        error = f"close code {code} must not be sent (RFC 6455 7.4)"
    return code, reason, error


class CloseView(View):
    name = "close"
    description = "close frame: code, meaning, reason"

    def _score(self, payload: bytes, item: Item | None) -> float:
        return 1.0 if _opcode(item) == Opcode.CLOSE else 0.0

    def _render(self, payload: bytes, item: Item | None) -> Rendered:
        code, reason, error = close_fields(payload, item)
        meaning = close_code_meaning(code)
        code_text = "none" if code is None else str(code)
        text = f"code:    {code_text}\nmeaning: {meaning}\nreason:  {reason}"
        tree = Node(
            "close",
            None,
            [
                Node("code", code_text),
                Node("meaning", meaning),
                Node("reason", _json_string(reason)),
            ],
        )
        return Rendered(self.name, text, tree, error)


# --------------------------------------------------------------------------- protocols


class DecodedView(View):
    """An application protocol's reading of the item (``devconsole.decoders.base``):
    the tree of its packets' fields, beside the raw views (text, json, hex) that stay
    in the list. Built per item: ``DecodedView(tracker.decoded(item))``."""

    description = "decoded by the connection's protocol"

    def __init__(self, decoded: Decoded) -> None:
        self.decoded = decoded
        self.name = decoded.protocol  # type: ignore[misc]

    def _score(self, payload: bytes, item: Item | None) -> float:
        # A decode that failed outright ranks below the raw views, which show the bytes.
        return 0.01 if self.decoded.error is not None and not self.decoded.packets else 1.0

    def _render(self, payload: bytes, item: Item | None) -> Rendered:
        d = self.decoded
        error = None
        if d.error is not None:
            error = f"{d.protocol}: {d.error} (the raw views show the message as it is)"
        if not d.packets:
            text, _ = decode_prefix(payload, TextView.max_bytes, _truncated(item))
            if not looks_like_text(payload, _truncated(item)):
                text = hexdump(payload[: HexView.max_bytes])
            return Rendered(self.name, text, None, error, d.note)
        root = Node(d.protocol, d.summary)
        parts: list[str] = []
        cut = False
        for p in d.packets:
            sub, c = to_tree(p.fields, p.summary, MAX_NODES // max(len(d.packets), 1))
            sub.value_repr = None
            root.children.append(sub)
            text, c2 = pretty(p.fields, MAX_LINES // max(len(d.packets), 1))
            parts.append(f"# {p.summary}\n{text}")
            cut = cut or c or c2
        if len(d.packets) == 1:
            root = root.children[0]
        notes = [n for n in (d.note, "cut short" if cut else None) if n]
        return Rendered(self.name, "\n\n".join(parts), root, error, "; ".join(notes) or None)
