"""The filter language of the stream view and ``devconsole tail --filter``.

Core module: no I/O, imports neither mitmproxy nor textual. Modelled on mitmproxy's
``flowfilter``: ``parse()`` turns an expression into a tree of small ``Filter`` classes,
one per operator; each compiles itself once into a plain predicate closure, so matching a
buffer of a million messages costs a fraction of a microsecond per message.

Terms (matched against a ``Message`` or a ``ControlFrame``)::

    word            payload text contains "word", case-insensitive
    "two words"     a phrase; \\" and \\\\ are escapes ('single quotes' work too)
    /regex/         Python regex searched in the payload text; flags after the
                    closing slash: i (ignore case), s (dot matches newline), m (multiline)
    from:client     sent by the client (from:server: by the server)
    type:text       opcode: text, binary, ping, pong, close; data (text or binary),
                    control (ping, pong or close); several with commas: type:ping,pong
    conn:ID         connection id, or a prefix of it
    instance:NAME   from the proxy instance NAME (a Redis source: ids are NAME/ID; a
                    restarted instance's later runs, NAME~2, count too)
    size>1k         payload size (the true size of a truncated message) compared with
                    >, <, >=, <=, = (or size:N); suffixes b, k/kb/kib, m/mb/mib, g/gb/gib
                    are powers of 1024: 1k = 1024, 1.5m = 1572864
    json:a.b=v      the payload is JSON and the value at the dotted path a.b equals v;
                    numeric path parts index arrays (json:items.0.id=7); v is compared
                    with the text of the JSON scalar: json:type=ping, json:n=3, json:ok=true,
                    json:x=null; numbers compare numerically (json:n=3 matches 3.0)
    json:a.b        the path exists (its value may be null)
    proto:NAME      decoded by the application protocol NAME (socket.io, signalr,
                    graphql-ws, stomp, mqtt, jsonrpc, phoenix, actioncable, wamp, ...)
    d:a.b=v, d:a.b  like json:, over the protocol's decoded fields (d:event=chat,
                    d:method=eth_subscribe, d:topic=sensors/1); a message holding several
                    packets matches when one of them does

Operators, from the tightest binding::

    -term, not term     negation
    a b, a and b        both (juxtaposition is AND)
    a or b              either
    ( ... )             grouping

Keywords (``and``, ``or``, ``not``) and keys are case-insensitive. Quote a word to search
for it literally: ``"or"``, ``"-1"``, ``"f(x)"``, ``"/api/v1"``, ``"localhost:8080"``. A
value after a key may be quoted too: ``json:msg="hello world"``. An empty expression
matches everything.

ASCII words are matched on the payload bytes with ASCII case folding (the fast path);
words with other characters on the payload decoded as UTF-8 (invalid bytes replaced).
Regexes always see the decoded text. A payload truncated for display is searched as
stored; ``size`` uses the true size.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from devconsole.model import Item, Opcode

if TYPE_CHECKING:
    from devconsole.decoders.base import Decoded

# What proto: and d: read: the decoded form of an item (a ProtocolTracker's ``decoded``).
DecodeFn = Callable[[Item], "Decoded | None"]

Predicate = Callable[[Item], bool]

__all__ = [
    "HELP",
    "KEYS",
    "MATCH_ALL",
    "And",
    "Conn",
    "DecodedPath",
    "Filter",
    "FilterError",
    "From",
    "Instance",
    "JsonPath",
    "MatchAll",
    "Not",
    "Or",
    "Predicate",
    "Proto",
    "Regex",
    "Size",
    "Type",
    "Word",
    "parse",
]

HELP = (
    'word  "a phrase"  /regex/i  from:client|server  type:text|binary|ping|pong|close  '
    "conn:ID  instance:NAME  size>1k  json:a.b=value  json:a.b  proto:NAME  d:a.b=value  "
    "-term  a b (and)  a or b  ( )"
)

KEYS = ("from", "type", "conn", "instance", "size", "json", "proto", "d")
_KEYWORDS = ("and", "or", "not")
# Parenthesis depth; keeps the recursive parser, compiler and __str__ far from the
# interpreter's recursion limit whatever the input.
MAX_DEPTH = 50


class FilterError(ValueError):
    """An invalid filter expression. ``column`` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message, column)
        self.message = message
        self.column = column

    def __str__(self) -> str:
        return f"{self.message} (column {self.column})"

    def pointer(self, expr: str) -> str:
        """``expr`` and a caret under the column, for a CLI error message."""
        return f"{expr}\n{' ' * (self.column - 1)}^"


# --------------------------------------------------------------------------- filters


class Filter:
    """A compiled filter. Call it on an item, or ``scan()`` many at once.

    ``predicate`` is the bare compiled closure: the fastest way to match, for hot loops
    over model items. Calling the Filter itself never raises, whatever the object.
    """

    # Relative cost of matching, used to run cheap terms of an AND/OR first.
    cost: ClassVar[int] = 1
    predicate: Predicate

    def __init__(self) -> None:
        self.predicate = self._compile()

    def _compile(self) -> Predicate:
        raise NotImplementedError

    def __call__(self, item: Item) -> bool:
        try:
            return bool(self.predicate(item))
        except Exception:
            return False

    def scan(self, items: Iterable[Item]) -> list[Item]:
        """The items that match, in order. Never raises."""
        if iter(items) is items:  # an iterator can be walked only once
            items = list(items)
        try:
            return self._scan(items)
        except Exception:  # an item that is not a model item: match one by one
            return [m for m in items if self(m)]

    def _scan(self, items: Iterable[Item]) -> list[Item]:
        pred = self.predicate
        return [m for m in items if pred(m)]

    def _weight(self) -> int:
        return self.cost

    def __str__(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash((type(self).__name__, str(self)))


class MatchAll(Filter):
    """The empty expression."""

    def _compile(self) -> Predicate:
        return lambda m: True

    def _scan(self, items: Iterable[Item]) -> list[Item]:
        return list(items)

    def __str__(self) -> str:
        return ""


MATCH_ALL = MatchAll()


class Word(Filter):
    """Case-insensitive substring of the payload text (a bare word or a quoted phrase)."""

    cost = 2

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__()

    @property
    def needle(self) -> bytes | None:
        """The lowercase bytes to find, for an ASCII word (None: match on decoded text)."""
        return self.text.lower().encode() if self.text.isascii() else None

    def _compile(self) -> Predicate:
        nb = self.needle
        if nb is not None:
            # bytes.lower() + find(): `in` on bytes first tries the needle as an int and
            # pays for a raised-and-cleared TypeError: measured 30% slower.
            return lambda m: m.payload.lower().find(nb) >= 0
        needle = self.text.lower()
        return lambda m: needle in m.payload.decode("utf-8", "replace").lower()

    def _scan(self, items: Iterable[Item]) -> list[Item]:
        nb = self.needle
        if nb is None:
            return super()._scan(items)
        # the predicate inlined: saves a call per item
        return [m for m in items if m.payload.lower().find(nb) >= 0]

    def __str__(self) -> str:
        return _word_repr(self.text)


class Regex(Filter):
    """``/pattern/flags``: re.search over the payload decoded as UTF-8."""

    cost = 3
    FLAGS: ClassVar[dict[str, re.RegexFlag]] = {
        "i": re.IGNORECASE,
        "s": re.DOTALL,
        "m": re.MULTILINE,
    }

    def __init__(self, pattern: str, flags: str = "") -> None:
        self.pattern = pattern
        self.flags = "".join(sorted(set(flags)))
        f = 0
        for c in self.flags:
            f |= self.FLAGS[c]
        self.regex = re.compile(pattern, f)
        super().__init__()

    def _compile(self) -> Predicate:
        search = self.regex.search
        return lambda m: search(m.payload.decode("utf-8", "replace")) is not None

    def __str__(self) -> str:
        return f"/{self.pattern}/{self.flags}"


class From(Filter):
    """``from:client`` / ``from:server``: who sent the item."""

    def __init__(self, side: str) -> None:
        self.side = side
        super().__init__()

    def _compile(self) -> Predicate:
        side = self.side
        return lambda m: m.side == side

    def __str__(self) -> str:
        return f"from:{self.side}"


class Type(Filter):
    """``type:text,binary,...``: the opcode."""

    NAMES: ClassVar[dict[str, tuple[int, ...]]] = {
        "text": (Opcode.TEXT,),
        "binary": (Opcode.BINARY,),
        "ping": (Opcode.PING,),
        "pong": (Opcode.PONG,),
        "close": (Opcode.CLOSE,),
        "data": (Opcode.TEXT, Opcode.BINARY),
        "control": (Opcode.PING, Opcode.PONG, Opcode.CLOSE),
    }

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(dict.fromkeys(names))  # unique, in order
        super().__init__()

    @property
    def opcodes(self) -> frozenset[int]:
        return frozenset(int(op) for n in self.names for op in self.NAMES[n])

    def _compile(self) -> Predicate:
        ops = self.opcodes
        if len(ops) == 1:
            (op,) = ops
            return lambda m: m.opcode == op
        return lambda m: m.opcode in ops

    def __str__(self) -> str:
        return "type:" + ",".join(self.names)


class Conn(Filter):
    """``conn:ID``: the connection id, or a prefix of it."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        super().__init__()

    def _compile(self) -> Predicate:
        prefix = self.prefix
        return lambda m: m.conn.startswith(prefix)

    def __str__(self) -> str:
        return "conn:" + _value_repr(self.prefix)


class Instance(Filter):
    """``instance:NAME``: a connection of that proxy instance (``NAME/ID``, or a later
    run of it, ``NAME~2/ID``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__()

    def _compile(self) -> Predicate:
        exact = self.name + "/"
        runs = self.name + "~"

        def pred(m: Item) -> bool:
            c = m.conn
            return c.startswith(exact) or (c.startswith(runs) and "/" in c)

        return pred

    def __str__(self) -> str:
        return "instance:" + _value_repr(self.name)


class Size(Filter):
    """``size>1k`` etc.: the payload size (true size for a truncated message)."""

    OPS: ClassVar[tuple[str, ...]] = (">=", "<=", "==", "=", ">", "<")
    UNITS: ClassVar[dict[str, int]] = {
        "": 1,
        "b": 1,
        "k": 1 << 10,
        "kb": 1 << 10,
        "kib": 1 << 10,
        "m": 1 << 20,
        "mb": 1 << 20,
        "mib": 1 << 20,
        "g": 1 << 30,
        "gb": 1 << 30,
        "gib": 1 << 30,
    }

    def __init__(self, op: str, value: int, spelled: str | None = None) -> None:
        self.op = "=" if op == "==" else op
        self.value = value
        self.spelled = spelled if spelled is not None else str(value)
        super().__init__()

    def _compile(self) -> Predicate:
        n = self.value
        op = self.op
        if op == ">":
            return lambda m: m.size > n
        if op == "<":
            return lambda m: m.size < n
        if op == ">=":
            return lambda m: m.size >= n
        if op == "<=":
            return lambda m: m.size <= n
        return lambda m: m.size == n

    def __str__(self) -> str:
        return f"size{self.op}{self.spelled}"


_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_INDEX = re.compile(r"-?\d{1,18}")  # longer digit runs are object keys only
_MISSING = object()


class JsonPath(Filter):
    """``json:a.b.c`` (exists) and ``json:a.b.c=value`` (equals)."""

    cost = 4

    def __init__(self, path: str, value: str | None = None) -> None:
        self.path = path
        self.parts = tuple(path.split("."))
        self.value = value
        super().__init__()

    def _compile(self) -> Predicate:
        parts = self.parts
        value = self.value
        number: float | None = None
        if value is not None and _JSON_NUMBER.fullmatch(value):
            number = float(value)
        # Cheap rejection before json.loads, valid when the payload has no backslash (an
        # escape could spell a key or value otherwise): every key appears quoted, and the
        # last key is followed by the value, as a JSON string or a literal or a number.
        needles = [_json_str(p) for p in parts if not _INDEX.fullmatch(p)]
        last = parts[-1]
        pair: re.Pattern[bytes] | None = None
        if value is not None and not _INDEX.fullmatch(last):
            lead = re.escape(_json_str(last)) + rb"\s*:\s*"
            if number is not None:  # a number, or the value as a string
                pair = re.compile(lead + rb'(-?\d[\d.eE+-]*|"' + re.escape(value.encode()) + rb'")')
            else:
                if value:
                    needles.append(value.encode())  # a find() is cheaper than the regex
                alts = [re.escape(_json_str(value))]
                if value in ("true", "false", "null"):
                    alts.append(value.encode())
                pair = re.compile(lead + rb"(?:" + rb"|".join(alts) + rb")")
        steps = [(p, int(p) if _INDEX.fullmatch(p) else None) for p in parts]

        def walk(doc: object) -> object:
            for key, index in steps:
                if isinstance(doc, dict):
                    doc = doc.get(key, _MISSING)
                elif isinstance(doc, list) and index is not None:
                    try:
                        doc = doc[index]
                    except IndexError:
                        return _MISSING
                else:
                    return _MISSING
                if doc is _MISSING:
                    return _MISSING
            return doc

        def pred(m: Item) -> bool:
            p = m.payload
            head = p[:1]
            if head != b"{" and head != b"[" and p.lstrip()[:1] not in (b"{", b"["):
                return False
            if p.find(b"\\") < 0:
                for n in needles:
                    if p.find(n) < 0:
                        return False
                if pair is not None:
                    if number is None:
                        if pair.search(p) is None:
                            return False
                    elif not any(_number_or_string(t, number) for t in pair.findall(p)):
                        return False
            try:
                doc = json.loads(p)
            except Exception:  # ValueError, RecursionError
                return False
            found = walk(doc)
            if found is _MISSING:
                return False
            if value is None:
                return True
            return _scalar_equals(found, value, number)

        return pred

    def __str__(self) -> str:
        rest = self.path if self.value is None else f"{self.path}={self.value}"
        return "json:" + _value_repr(rest)


def _json_str(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode()


def _number_or_string(token: bytes, number: float) -> bool:
    if token[:1] == b'"':
        return True  # the regex matched the value itself as a string
    try:
        return float(token) == number
    except ValueError:
        return False


def _scalar_equals(found: object, value: str, number: float | None) -> bool:
    if isinstance(found, str):
        return found == value
    if found is True:
        return value == "true"
    if found is False:
        return value == "false"
    if found is None:
        return value == "null"
    if isinstance(found, int | float):
        return number is not None and found == number
    return False  # objects and arrays never equal a value


def _standalone_decode(item: Item) -> Decoded | None:
    """Without a tracker: the protocol that recognises the message's content, alone."""
    from devconsole.decoders.base import decode_message
    from devconsole.decoders.protocols import get_protocol, sniff

    name, _ = sniff(item.payload, item.opcode, item.side)
    dec = get_protocol(name) if name is not None else None
    if dec is None:
        return None
    return decode_message(dec, item.payload, item.opcode, item.side, dec.new_state(), item.seq)


class _Decoding(Filter):
    """A term over the decoded form of an item; ``decode`` is set by ``parse()``."""

    cost = 5

    def __init__(self, decode: DecodeFn | None) -> None:
        self.decode: DecodeFn = decode if decode is not None else _standalone_decode
        super().__init__()


class Proto(_Decoding):
    """``proto:NAME``: decoded by that protocol (``proto:protobuf`` matches every
    ``protobuf:pkg.Message``)."""

    def __init__(self, name: str, decode: DecodeFn | None = None) -> None:
        self.name = name.lower()
        super().__init__(decode)

    def _compile(self) -> Predicate:
        name = self.name
        decode = self.decode

        def pred(m: Item) -> bool:
            d = decode(m)
            if d is None:
                return False
            p = d.protocol.lower()
            return p == name or p.partition(":")[0] == name

        return pred

    def __str__(self) -> str:
        return "proto:" + _value_repr(self.name)


class DecodedPath(_Decoding):
    """``d:a.b=value`` / ``d:a.b``: ``json:`` semantics over the decoded fields."""

    def __init__(self, path: str, value: str | None = None, decode: DecodeFn | None = None) -> None:
        self.path = path
        self.value = value
        self.parts = tuple(path.split("."))
        super().__init__(decode)

    def _compile(self) -> Predicate:
        value = self.value
        number = float(value) if value is not None and _JSON_NUMBER.fullmatch(value) else None
        steps = [(p, int(p) if _INDEX.fullmatch(p) else None) for p in self.parts]
        decode = self.decode

        def match(doc: object) -> bool:
            found = _walk(doc, steps)
            if found is _MISSING:
                return False
            return value is None or _scalar_equals(found, value, number)

        def pred(m: Item) -> bool:
            d = decode(m)
            if d is None:
                return False
            return any(match(p.fields) for p in d.packets)

        return pred

    def __str__(self) -> str:
        rest = self.path if self.value is None else f"{self.path}={self.value}"
        return "d:" + _value_repr(rest)


def _walk(doc: object, steps: list[tuple[str, int | None]]) -> object:
    for key, index in steps:
        if isinstance(doc, dict):
            doc = doc.get(key, _MISSING)
        elif isinstance(doc, list | tuple) and index is not None:
            try:
                doc = doc[index]
            except IndexError:
                return _MISSING
        else:
            return _MISSING
        if doc is _MISSING:
            return _MISSING
    return doc


class Not(Filter):
    def __init__(self, child: Filter) -> None:
        self.child = child
        super().__init__()

    def _compile(self) -> Predicate:
        p = self.child.predicate
        return lambda m: not p(m)

    def _weight(self) -> int:
        return self.child._weight()

    def __str__(self) -> str:
        inner = str(self.child)
        if isinstance(self.child, And | Or):
            inner = f"({inner})"
        return f"-{inner}"


def _ascii_needle(f: Filter) -> bytes | None:
    return f.needle if isinstance(f, Word) else None


def _words_predicate(
    present: list[bytes], absent: list[bytes], any_present: bool = False
) -> Predicate:
    """ASCII words of one AND (or OR) sharing a single ``bytes.lower()`` of the payload.

    Explicit loops: all()/any() over a generator cost a generator object per item."""
    if any_present:

        def any_word(m: Item) -> bool:
            p = m.payload.lower()
            for n in present:  # noqa: SIM110
                if p.find(n) >= 0:
                    return True
            return False

        return any_word

    def all_words(m: Item) -> bool:
        p = m.payload.lower()
        for n in present:
            if p.find(n) < 0:
                return False
        for n in absent:  # noqa: SIM110
            if p.find(n) >= 0:
                return False
        return True

    return all_words


class And(Filter):
    def __init__(self, children: list[Filter]) -> None:
        flat: list[Filter] = []
        for c in children:
            flat.extend(c.children if isinstance(c, And) else [c])
        self.children: list[Filter] = flat
        super().__init__()

    def _weight(self) -> int:
        return max(c._weight() for c in self.children)

    def _compile(self) -> Predicate:
        present: list[bytes] = []
        absent: list[bytes] = []
        preds: list[tuple[int, Predicate]] = []
        for c in self.children:
            if (n := _ascii_needle(c)) is not None:
                present.append(n)
            elif isinstance(c, Not) and (n := _ascii_needle(c.child)) is not None:
                absent.append(n)
            else:
                preds.append((c._weight(), c.predicate))
        if len(present) + len(absent) > 1:
            preds.append((Word.cost, _words_predicate(present, absent)))
        elif present:
            preds.append((Word.cost, Word(present[0].decode()).predicate))
        elif absent:
            preds.append((Word.cost, Not(Word(absent[0].decode())).predicate))
        preds.sort(key=lambda wp: wp[0])  # stable: cheap terms first
        ordered = [p for _, p in preds]
        if len(ordered) == 1:
            return ordered[0]
        if len(ordered) == 2:
            a, b = ordered
            return lambda m: a(m) and b(m)

        def all_of(m: Item) -> bool:
            for p in ordered:  # noqa: SIM110
                if not p(m):
                    return False
            return True

        return all_of

    def __str__(self) -> str:
        return " ".join(f"({c})" if isinstance(c, Or) else str(c) for c in self.children)


class Or(Filter):
    def __init__(self, children: list[Filter]) -> None:
        flat: list[Filter] = []
        for c in children:
            flat.extend(c.children if isinstance(c, Or) else [c])
        self.children: list[Filter] = flat
        super().__init__()

    def _weight(self) -> int:
        return max(c._weight() for c in self.children)

    def _compile(self) -> Predicate:
        present = [n for c in self.children if (n := _ascii_needle(c)) is not None]
        preds = [(c._weight(), c.predicate) for c in self.children if _ascii_needle(c) is None]
        if len(present) > 1:
            preds.append((Word.cost, _words_predicate(present, [], any_present=True)))
        elif present:
            preds.append((Word.cost, Word(present[0].decode()).predicate))
        preds.sort(key=lambda wp: wp[0])
        ordered = [p for _, p in preds]
        if len(ordered) == 1:
            return ordered[0]
        if len(ordered) == 2:
            a, b = ordered
            return lambda m: a(m) or b(m)

        def any_of(m: Item) -> bool:
            for p in ordered:  # noqa: SIM110
                if p(m):
                    return True
            return False

        return any_of

    def __str__(self) -> str:
        return " or ".join(str(c) for c in self.children)


# --------------------------------------------------------------------------- display

_KEYLIKE = re.compile(r"[A-Za-z]\w*:")
_SIZELIKE = re.compile(r"size[<>=]", re.IGNORECASE)
_SPECIAL = frozenset("()\"'")


def _needs_quotes(text: str) -> bool:
    # the lexer's own notion of whitespace (str.isspace), not the regex module's
    return any(c.isspace() or c in _SPECIAL for c in text)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _word_repr(text: str) -> str:
    """``text`` as a term that parses back to the same Word."""
    if (
        not text
        or _needs_quotes(text)
        or text[0] in "-/"
        or text.lower() in _KEYWORDS
        or _KEYLIKE.match(text)
        or _SIZELIKE.match(text)
    ):
        return _quote(text)
    return text


def _value_repr(text: str) -> str:
    """A key's value, quoted when the lexer would otherwise split or unquote it."""
    return _quote(text) if not text or _needs_quotes(text) else text


# --------------------------------------------------------------------------- lexer

_LPAREN, _RPAREN, _NOT, _AND, _OR, _TERM = "(", ")", "not", "and", "or", "term"


class _Token:
    __slots__ = ("col", "kind", "term", "text")

    def __init__(self, kind: str, col: int, text: str, term: Filter | None = None) -> None:
        self.kind = kind
        self.col = col  # 1-based
        self.text = text  # as typed, for error messages
        self.term = term


def _read_quoted(expr: str, i: int) -> tuple[str, int]:
    """The text of the quoted string opening at ``expr[i]`` and the index after it."""
    q = expr[i]
    out: list[str] = []
    j = i + 1
    n = len(expr)
    while j < n:
        c = expr[j]
        if c == "\\" and j + 1 < n and expr[j + 1] in (q, "\\"):
            out.append(expr[j + 1])
            j += 2
        elif c == q:
            return "".join(out), j + 1
        else:
            out.append(c)
            j += 1
    raise FilterError("unterminated quote", i + 1)


def _at_boundary(expr: str, j: int) -> bool:
    return j >= len(expr) or expr[j].isspace() or expr[j] in "()"


def _tokenize(expr: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    n = len(expr)
    while i < n:
        c = expr[i]
        col = i + 1
        if c.isspace():
            i += 1
        elif c == "(":
            tokens.append(_Token(_LPAREN, col, c))
            i += 1
        elif c == ")":
            tokens.append(_Token(_RPAREN, col, c))
            i += 1
        elif c == "-":
            if _at_boundary(expr, i + 1) and not (i + 1 < n and expr[i + 1] == "("):
                raise FilterError("'-' must be followed directly by a term", col)
            tokens.append(_Token(_NOT, col, c))
            i += 1
        elif c in "\"'":
            text, i = _read_quoted(expr, i)
            if not _at_boundary(expr, i):
                raise FilterError("expected a space after the closing quote", i + 1)
            tokens.append(_Token(_TERM, col, expr[col - 1 : i], Word(text)))
        elif c == "/":
            term, j = _read_regex(expr, i)
            tokens.append(_Token(_TERM, col, expr[i:j], term))
            i = j
        else:
            i = _read_word(expr, i, tokens)
    return tokens


def _read_regex(expr: str, i: int) -> tuple[Filter, int]:
    col = i + 1
    n = len(expr)
    j = i + 1
    while j < n and expr[j] != "/":
        j += 2 if expr[j] == "\\" else 1
    if j >= n:
        raise FilterError("unterminated regex (quote a word that starts with '/')", col)
    pattern = expr[i + 1 : j]
    if not pattern:
        raise FilterError('empty regex (quote "//" to search for it)', col)
    k = j + 1
    while k < n and not _at_boundary(expr, k):
        if expr[k] not in Regex.FLAGS:
            raise FilterError(
                f"unknown regex flag {expr[k]!r} (flags: i, s, m; quote a path to search for it)",
                k + 1,
            )
        k += 1
    try:
        return Regex(pattern, expr[j + 1 : k]), k
    except re.error as e:
        pos = e.pos if e.pos is not None else 0
        raise FilterError(f"bad regex: {e.msg}", col + 1 + pos) from None
    except Exception as e:  # OverflowError, RecursionError on pathological patterns
        raise FilterError(f"bad regex: {e}", col) from None


def _read_word(expr: str, i: int, tokens: list[_Token]) -> int:
    col = i + 1
    n = len(expr)
    out: list[str] = []
    key: str | None = None  # a known key, once its ':' has been read
    j = i
    while j < n and not _at_boundary(expr, j):
        c = expr[j]
        if key is not None and c in "\"'":
            text, j = _read_quoted(expr, j)
            out.append(text)
            continue
        out.append(c)
        j += 1
        if key is None and c == ":":
            prefix = "".join(out[:-1]).lower()
            if prefix in KEYS:
                key = prefix
    word = "".join(out)
    lower = word.lower()
    if key is not None:
        value = word[len(key) + 1 :]
        term = _key_term(key, value, col + len(key) + 1)
        tokens.append(_Token(_TERM, col, expr[i:j], term))
    elif lower in _KEYWORDS:
        tokens.append(_Token(lower, col, word))
    elif _SIZELIKE.match(word):
        tokens.append(_Token(_TERM, col, word, _size_term(word[4:], col + 4)))
    elif (m := _KEYLIKE.match(word)) and not word[m.end() :].startswith("//"):
        raise FilterError(
            f"unknown key {m.group()!r} (keys: {', '.join(KEYS)}); "
            f"quote the word to search for it: {_quote(word)}",
            col,
        )
    else:
        tokens.append(_Token(_TERM, col, word, Word(word)))
    return j


def _key_term(key: str, value: str, vcol: int) -> Filter:
    if key == "size":
        return _size_term(value, vcol)
    if value == "":
        raise FilterError(f"missing value after '{key}:'", vcol)
    if key == "from":
        side = value.lower()
        if side not in ("client", "server"):
            raise FilterError(f"from: expects client or server, not {value!r}", vcol)
        return From(side)
    if key == "type":
        names = [v.strip().lower() for v in value.split(",")]
        for name in names:
            if name not in Type.NAMES:
                raise FilterError(f"unknown type {name!r} (types: {', '.join(Type.NAMES)})", vcol)
        return Type(names)
    if key == "conn":
        return Conn(value)
    if key == "instance":
        return Instance(value)
    if key == "proto":
        from devconsole.decoders.protocols import NONE, factory_prefixes, protocol_names

        names = [*protocol_names(), *factory_prefixes(), NONE]
        low = value.lower()
        if low not in names and low.partition(":")[0] not in {n.partition(":")[0] for n in names}:
            raise FilterError(f"unknown protocol {value!r} (protocols: {', '.join(names)})", vcol)
        return Proto(low, _parse_state.decode)
    # json, d
    path, eq, val = value.partition("=")
    if not path:
        raise FilterError(f"{key}: expects a path, e.g. {key}:a.b=value", vcol)
    if any(p == "" for p in path.split(".")):
        raise FilterError(f"empty part in {key} path {path!r}", vcol)
    if key == "d":
        return DecodedPath(path, val if eq else None, _parse_state.decode)
    return JsonPath(path, val if eq else None)


_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([a-z]*)", re.IGNORECASE)


def _size_term(rest: str, vcol: int) -> Size:
    """``rest``: what follows ``size`` or ``size:``, e.g. ``>1k``, ``1k``."""
    op = next((o for o in Size.OPS if rest.startswith(o)), "=")
    if rest.startswith(op):
        rest = rest[len(op) :]
    m = _SIZE.fullmatch(rest)
    if m is None or m.group(2).lower() not in Size.UNITS:
        raise FilterError(
            f"bad size {rest!r}: expected a number with an optional unit, e.g. size>1k, "
            "size<=2.5mb",
            vcol,
        )
    if len(m.group(1)) > 24:
        raise FilterError(f"size {rest!r} is too large", vcol)
    value = int(Decimal(m.group(1)) * Size.UNITS[m.group(2).lower()])
    return Size(op, value, rest.lower())


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, tokens: list[_Token], end_col: int) -> None:
        self.tokens = tokens
        self.pos = 0
        self.end_col = end_col

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self) -> Filter:
        node = self.or_expr(0)
        tok = self.peek()
        if tok is not None:  # only a ')' stops or_expr early
            raise FilterError("unmatched ')'", tok.col)
        return node

    def or_expr(self, depth: int) -> Filter:
        parts = [self.and_expr(depth, None)]
        while (tok := self.peek()) is not None and tok.kind == _OR:
            self.pos += 1
            parts.append(self.and_expr(depth, tok))
        return parts[0] if len(parts) == 1 else Or(parts)

    def and_expr(self, depth: int, after: _Token | None) -> Filter:
        parts = [self.unary(depth, after)]
        while (tok := self.peek()) is not None and tok.kind not in (_OR, _RPAREN):
            if tok.kind == _AND:
                self.pos += 1
                parts.append(self.unary(depth, tok))
            else:
                parts.append(self.unary(depth, None))
        return parts[0] if len(parts) == 1 else And(parts)

    def unary(self, depth: int, after: _Token | None) -> Filter:
        negate = False
        while (tok := self.peek()) is not None and tok.kind == _NOT:
            self.pos += 1
            negate = not negate
            after = tok
        node = self.primary(depth, after)
        if not negate:
            return node
        return node.child if isinstance(node, Not) else Not(node)

    def primary(self, depth: int, after: _Token | None) -> Filter:
        tok = self.peek()
        if tok is None or tok.kind in (_OR, _AND, _RPAREN):
            if after is not None:
                raise FilterError(f"expected a term after {after.text!r}", after.col)
            if tok is None:
                raise FilterError("expected a term", self.end_col)
            if tok.kind == _RPAREN:
                raise FilterError("unmatched ')'", tok.col)
            raise FilterError(f"{tok.text!r} needs a term on both sides", tok.col)
        self.pos += 1
        if tok.kind == _TERM:
            assert tok.term is not None
            return tok.term
        # tok is '('
        if depth >= MAX_DEPTH:
            raise FilterError("parentheses nested too deeply", tok.col)
        nxt = self.peek()
        if nxt is None:
            raise FilterError("unclosed '('", tok.col)
        if nxt.kind == _RPAREN:
            raise FilterError("empty parentheses", tok.col)
        node = self.or_expr(depth + 1)
        close = self.peek()
        if close is None or close.kind != _RPAREN:
            raise FilterError("unclosed '('", tok.col)
        self.pos += 1
        return node


class _ParseState(threading.local):
    decode: DecodeFn | None = None


_parse_state = _ParseState()


def parse(expr: str, decode: DecodeFn | None = None) -> Filter:
    """Parse a filter expression. Raises FilterError (with a 1-based column) if invalid;
    an empty or blank expression gives MATCH_ALL.

    ``decode`` gives ``proto:`` and ``d:`` the decoded form of an item: pass a
    ``ProtocolTracker``'s ``decoded`` (it knows each connection's protocol from its
    handshake). Without it, a message is decoded by the protocol its content alone
    reveals."""
    _parse_state.decode = decode
    try:
        tokens = _tokenize(expr)
        if not tokens:
            return MATCH_ALL
        return _Parser(tokens, len(expr) + 1).parse()
    finally:
        _parse_state.decode = None
