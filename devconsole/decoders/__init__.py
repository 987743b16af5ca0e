"""Decoders: the views of a payload, the registry that picks one, and terminal-safe text.

Core module: no I/O, imports neither mitmproxy, textual nor rich. Modelled on mitmproxy's
contentviews: every view (``json``, ``msgpack``, ``cbor``, ``text``, ``hex``, ``close``;
see ``devconsole.decoders.views``) scores how well it fits an item, and renders it as a
``Rendered`` (plain text, an optional ``Node`` tree, an error, a note)::

    view = best_view(item)              # the highest score
    views = views_for(item)             # every view that can show it, best first
    r = render(item)                    # best_view(item).render(item.payload, item)
    r = render(item, "hex")             # a view chosen by name
    row = preview(item, 80)             # one terminal-safe line for the stream
    safe_text(r.text, keep_newlines=True)

Application protocols (Socket.IO, SignalR, GraphQL over WebSocket, STOMP, MQTT,
JSON-RPC, Phoenix, Action Cable, WAMP, protobuf; ``devconsole.decoders.protocols``) are
decoded per connection by a ``ProtocolTracker`` (``devconsole.decoders.tracker``). Pass
its result as ``decoded`` and the same functions show it::

    d = tracker.decoded(item)           # Decoded | None
    row = preview(item, 80, d)          # sio "chat" {"text":"hi"} ack 12
    views = views_for(item, d)          # the protocol's view first, then the raw ones
    r = render(item, "socket.io", d)    # its tree of packets and fields

Nothing here raises on any payload. ``safe_text`` makes any string safe to write to a
terminal: control characters, ESC sequences and bidi overrides become visible escapes.
"""

from __future__ import annotations

import re

from devconsole.decoders.base import Decoded
from devconsole.decoders.views import (
    CborView,
    CloseView,
    DecodedView,
    HexView,
    JsonView,
    MsgpackView,
    Node,
    Rendered,
    TextView,
    View,
    close_fields,
    compact,
    decode_prefix,
    is_container,
    looks_like_text,
    parse_cbor,
    parse_msgpack,
)
from devconsole.model import Item, Opcode, close_code_meaning

__all__ = [
    "VIEWS",
    "Decoded",
    "Node",
    "Rendered",
    "View",
    "best_view",
    "get_view",
    "preview",
    "register",
    "render",
    "safe_text",
    "views_for",
]

# Registration order breaks ties between equal scores.
VIEWS: list[View] = [CloseView(), JsonView(), MsgpackView(), CborView(), TextView(), HexView()]
_HEX = VIEWS[-1]


def register(view: View) -> None:
    """Add a view, replacing any view of the same name."""
    for i, v in enumerate(VIEWS):
        if v.name == view.name:
            VIEWS[i] = view
            return
    VIEWS.append(view)


def get_view(name: str) -> View | None:
    for v in VIEWS:
        if v.name == name:
            return v
    return None


def views_for(item: Item, decoded: Decoded | None = None) -> list[View]:
    """The views that can show ``item`` (score > 0), best first. With ``decoded`` (its
    connection's protocol reading), that protocol's view comes first (after the raw
    views when it failed to decode)."""
    views = list(VIEWS)
    if decoded is not None:
        views.insert(0, DecodedView(decoded))
    scored = [(v.score(item.payload, item), i, v) for i, v in enumerate(views)]
    return [v for s, _, v in sorted(scored, key=lambda t: (-t[0], t[1])) if s > 0]


def best_view(item: Item, decoded: Decoded | None = None) -> View:
    views = views_for(item, decoded)
    return views[0] if views else _HEX


def render(item: Item, view: str | None = None, decoded: Decoded | None = None) -> Rendered:
    """``item`` in the named view (the best one if None or unknown); the protocol's own
    view is named after the protocol (``decoded.protocol``)."""
    v: View | None = None
    if decoded is not None and view == decoded.protocol:
        v = DecodedView(decoded)
    elif view is not None:
        v = get_view(view)
    if v is None:
        v = best_view(item, decoded)
    return v.render(item.payload, item)


# --------------------------------------------------------------------------- safe text

# C0 controls, DEL, C1 controls, bidi embeddings/overrides/isolates and marks (they
# reorder what follows on the line: "Trojan Source"), line/paragraph separators, and
# lone surrogates (they cannot be encoded for the terminal at all).
_UNSAFE_CHARS = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff"
)
_UNSAFE = re.compile(f"[\t\n{_UNSAFE_CHARS}]")
_UNSAFE_KEEP_NEWLINES = re.compile(f"[{_UNSAFE_CHARS}]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    short = _SHORT.get(c)
    if short is not None:
        return short
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def safe_text(s: str, keep_newlines: bool = False) -> str:
    """``s`` with every character that could move the cursor, restyle the terminal or
    reorder the line replaced by a visible escape (``\\x1b``, ``\\x9b``, ``\\u202e``,
    ``\\r``). ``keep_newlines`` keeps ``\\n`` and ``\\t``. Brackets are left alone: show
    the result as Text, not markup."""
    return (_UNSAFE_KEEP_NEWLINES if keep_newlines else _UNSAFE).sub(_escape, s)


# --------------------------------------------------------------------------- preview

_PREVIEW_PARSE_LIMIT = 64 << 10  # larger binary payloads are previewed as hex


def _clip(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


def _text_line(payload: bytes, width: int) -> str:
    # at most 4 bytes a character: enough bytes for the width, never the whole payload
    text, _ = decode_prefix(payload, width * 4 + 4, truncated=True)
    text = text.replace("\r\n", "⏎").replace("\n", "⏎")
    return safe_text(text)


def _hex_line(payload: bytes, width: int) -> str:
    if len(payload) * 3 - 1 <= width:
        return payload.hex(" ")
    return payload[: width // 3].hex(" ") + "…"  # whole bytes only


def close_summary(item: Item) -> str:
    """``1000 Normal Closure: reason`` for a close frame."""
    code, reason, error = close_fields(item.payload, item)
    head = close_code_meaning(code) if code is None else f"{code} {close_code_meaning(code)}"
    s = f"{head}: {reason}" if reason else head
    return f"{s} ({error})" if error else s


def decoded_line(decoded: Decoded, item: Item, width: int) -> str:
    """The stream line of a protocol message: its summary; for a message that failed to
    decode, the reason then the raw preview (never hidden)."""
    if decoded.error is not None:
        head = f"[{decoded.protocol}: {decoded.error}] "
        if decoded.packets:
            head = f"{decoded.summary} [{decoded.protocol}: {decoded.error}] "
        room = max(width - len(head), 0)
        return _clip(safe_text(head) + preview(item, room), width)
    return _clip(safe_text(decoded.summary), width)


def preview(item: Item, width: int = 80, decoded: Decoded | None = None) -> str:
    """One terminal-safe line of at most ``width`` characters: the protocol's summary
    when ``decoded`` is given (``sio "chat" {"text":"hi"} ack 12``); otherwise the text
    of a text message (newlines as ⏎, controls escaped), a decoded summary of
    msgpack/CBOR, hex for other binary payloads, ``1000 Normal Closure: reason`` for a
    close frame."""
    if width <= 0:
        return ""
    if decoded is not None:
        try:
            return decoded_line(decoded, item, width)
        except Exception:
            pass
    try:
        if item.opcode == Opcode.CLOSE:
            return _clip(safe_text(close_summary(item)), width)
        payload = item.payload
        if item.opcode == Opcode.TEXT or looks_like_text(payload, True):
            return _clip(_text_line(payload, width), width)
        if len(payload) <= _PREVIEW_PARSE_LIMIT:
            for name, parse in (("msgpack", parse_msgpack), ("cbor", parse_cbor)):
                value, err = parse(payload)
                if err is None and is_container(value):
                    line = f"{name} {compact(value, width)}"
                    return _clip(safe_text(line), width)
        return _clip(_hex_line(payload, width), width)
    except Exception:  # never let one odd item break the stream view
        return ""
