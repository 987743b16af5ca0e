"""HAR import: the WebSocket connections of a HAR file as devconsole Events.

Reads what Chrome (and Edge) DevTools, Firefox, mitmproxy (``hardump`` / ``savehar``),
HTTP Toolkit and devconsole itself write, detected from the content:

- every entry that is a WebSocket upgrade (``_resourceType: "websocket"``, a
  ``_webSocketMessages`` list, an ``Upgrade: websocket`` request or a ws:// URL) becomes a
  connection: its request and response are the handshake (a non-101 answer is a refused
  upgrade, with its body); other entries are counted and skipped;
- ``_webSocketMessages`` (Chrome's shape, also written by mitmproxy, HTTP Toolkit and
  devconsole: ``{"type": "send"|"receive"|"error", "time": <unix s>, "opcode", "data"}``,
  binary data base64) become Messages; Chrome's ``error`` entries become the
  connection's errors; HTTP Toolkit's ``_webSocketClose`` gives the close code, reason
  and time; devconsole's own ``_devconsole`` fields restore what it exported (ids,
  addresses, state, close, control frames, per-message flags).

What a format does not carry is not invented: the handshake's ``source`` names the
format and ``unknown`` lists what it lacks (control frames, fragmentation, compression,
wire sizes, the close code or who closed, when it ended...). Connection state comes in a
``Snapshot`` (so an unknown ``clean`` or ``closed_by`` stays None), followed by the
messages in time order with fresh sequence numbers.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devconsole.model import (
    CLIENT,
    SERVER,
    ConnSnapshot,
    ConnState,
    ControlFrame,
    Event,
    Handshake,
    Item,
    Message,
    Opcode,
    Side,
    Snapshot,
)

# what each format does not carry (shown as unknown, never guessed)
_BASE_UNKNOWN = ["control frames", "fragmentation", "compression", "wire size", "client address"]
UNKNOWN: dict[str, list[str]] = {
    "chrome": [*_BASE_UNKNOWN, "close code", "who closed"],
    "firefox": ["messages", *_BASE_UNKNOWN, "close code", "who closed", "end time"],
    "mitmproxy": [*_BASE_UNKNOWN, "close code", "who closed", "end time"],
    "httptoolkit": [*_BASE_UNKNOWN, "who closed"],
    "har": [*_BASE_UNKNOWN, "close code", "who closed", "end time"],
    "devconsole": ["wire size"],
}
FORMAT_NAMES = {
    "chrome": "Chrome HAR",
    "firefox": "Firefox HAR",
    "mitmproxy": "mitmproxy HAR",
    "httptoolkit": "HTTP Toolkit HAR",
    "har": "HAR",
    "devconsole": "devconsole HAR",
}


class HarError(Exception):
    """Not a HAR file (a one-line message)."""


@dataclass
class HarImport:
    events: list[Event]
    flavor: str  # "chrome", "firefox", "mitmproxy", "httptoolkit", "devconsole", "har"
    connections: int = 0
    messages: int = 0
    skipped: int = 0  # entries that are not WebSocket upgrades
    notes: list[str] = field(default_factory=list)  # what the user should know

    @property
    def format_name(self) -> str:
        return FORMAT_NAMES.get(self.flavor, "HAR")


# ------------------------------------------------------------------ small readers


def _str(v: Any, default: str = "") -> str:
    return v if isinstance(v, str) else default


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _pairs(v: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(v, list):
        for p in v:
            if isinstance(p, dict) and isinstance(p.get("name"), str):
                val = p.get("value")
                out.append((p["name"], val if isinstance(val, str) else str(val or "")))
    elif isinstance(v, dict):  # some writers use a plain object
        for k, val in v.items():
            out.append((str(k), val if isinstance(val, str) else str(val)))
    return out


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    lname = name.lower()
    for k, v in headers:
        if k.lower() == lname:
            return v
    return None


def parse_time(s: Any) -> float | None:
    """An ISO 8601 ``startedDateTime`` as a unix time (None if it is not one)."""
    if not isinstance(s, str) or not s:
        return None
    text = s.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    return dt.timestamp()


def _msg_time(v: Any, fallback: float) -> float:
    t = _num(v)
    if t is None:
        return fallback
    if t > 1e11:  # milliseconds, not seconds
        t /= 1000.0
    return t


# ------------------------------------------------------------------ detection


def is_websocket_entry(entry: dict[str, Any]) -> bool:
    if entry.get("_resourceType") == "websocket" or isinstance(
        entry.get("_webSocketMessages"), list
    ):
        return True
    req = entry.get("request")
    if not isinstance(req, dict):
        return False
    url = _str(req.get("url")).lower()
    if url.startswith(("ws://", "wss://")):
        return True
    upgrade = _header(_pairs(req.get("headers")), "upgrade")
    return upgrade is not None and upgrade.strip().lower() == "websocket"


def flavor_of(doc: dict[str, Any]) -> str:
    """Which tool wrote the HAR ``doc`` (``log`` already checked to be an object)."""
    log = doc["log"]
    creator = log.get("creator") if isinstance(log.get("creator"), dict) else {}
    browser = log.get("browser") if isinstance(log.get("browser"), dict) else {}
    name = _str(creator.get("name")).lower()
    bname = _str(browser.get("name")).lower()
    entries = [e for e in log.get("entries") or [] if isinstance(e, dict)]
    if name == "devconsole" or any("_devconsole" in e for e in entries):
        return "devconsole"
    if "http toolkit" in name or any("_webSocketClose" in e for e in entries):
        return "httptoolkit"
    if "mitmproxy" in name:
        return "mitmproxy"
    if "firefox" in name or "firefox" in bname:
        return "firefox"
    if name in ("webinspector", "chrome", "chromium", "edge") or any(
        "_initiator" in e or "_priority" in e for e in entries
    ):
        return "chrome"
    return "har"


# ------------------------------------------------------------------ entries


@dataclass
class _Conn:
    hs: Handshake
    refused: bool
    items: list[Item] = field(default_factory=list)
    state: str = ConnState.CLOSED
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str | None = None
    clean: bool | None = None
    ts_end: float | None = None
    errors: list[str] = field(default_factory=list)
    half_open: bool = False


def _ws_url(url: str) -> str:
    low = url.lower()
    if low.startswith("http://"):
        return "ws://" + url[7:]
    if low.startswith("https://"):
        return "wss://" + url[8:]
    return url


def _handshake(entry: dict[str, Any], conn: str, flavor: str, dc: dict[str, Any]) -> Handshake:
    req = entry.get("request") if isinstance(entry.get("request"), dict) else {}
    resp = entry.get("response") if isinstance(entry.get("response"), dict) else {}
    assert isinstance(req, dict) and isinstance(resp, dict)
    ts = parse_time(entry.get("startedDateTime")) or 0.0
    url = _ws_url(_str(req.get("url")))
    parts = urlsplit(url)
    scheme = parts.scheme or "ws"
    query = _pairs(req.get("queryString")) if "queryString" in req else []
    if not query and parts.query:
        query = parse_qsl(parts.query, keep_blank_values=True)
    req_headers = _pairs(req.get("headers"))
    resp_headers = _pairs(resp.get("headers"))
    status_v = _num(resp.get("status"))
    status = int(status_v) if status_v is not None and status_v > 0 else None
    timings = entry.get("timings") if isinstance(entry.get("timings"), dict) else {}
    assert isinstance(timings, dict)
    ms = 0.0
    for k in ("blocked", "dns", "connect", "send", "wait"):
        v = _num(timings.get(k))
        if v is not None and v > 0:
            ms += v
    ts_response = ts + ms / 1000.0 if status is not None else None
    port = parts.port or (443 if scheme == "wss" else 80)
    host = parts.hostname or ""
    ip = _str(entry.get("serverIPAddress")) or host
    server = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    body = b""
    body_size = 0
    content = resp.get("content") if isinstance(resp.get("content"), dict) else {}
    assert isinstance(content, dict)
    if status is not None and status != 101:
        text = content.get("text")
        if isinstance(text, str):
            if content.get("encoding") == "base64":
                try:
                    body = base64.b64decode(text, validate=False)
                except (binascii.Error, ValueError):
                    body = text.encode()
            else:
                body = text.encode()
        size = _num(content.get("size"))
        body_size = max(len(body), int(size) if size is not None and size > 0 else 0)
    error = _str(resp.get("_error")) or None
    if status is None and error is None:
        error = "no response in the HAR"
    subprotocol = _header(resp_headers, "sec-websocket-protocol") if status == 101 else None
    ext = _header(resp_headers, "sec-websocket-extensions") if status == 101 else None
    extensions = [p.strip() for p in (ext or "").split(",") if p.strip()]
    if flavor == "devconsole":
        if isinstance(dc.get("subprotocol"), str):
            subprotocol = dc["subprotocol"]
        if isinstance(dc.get("extensions"), list):
            extensions = [x for x in dc["extensions"] if isinstance(x, str)]
    unknown = list(UNKNOWN.get(flavor, UNKNOWN["har"]))
    source = f"har:{flavor}"
    if flavor == "devconsole":
        if not isinstance(dc.get("control"), list):
            unknown.append("control frames")  # exported before devconsole listed them
        # an export of something imported: what the first format lacked is still unknown
        for u in dc.get("unknown") or []:
            if isinstance(u, str) and u not in unknown:
                unknown.append(u)
        if _str(dc.get("source")):
            source = _str(dc.get("source"))
    return Handshake(
        conn=conn,
        ts=ts,
        client=_str(dc.get("client")),
        server=_str(dc.get("server")) or server,
        scheme=scheme,
        url=url,
        method=_str(req.get("method"), "GET"),
        path=parts.path or "/",
        query=query,
        http_version=_str(req.get("httpVersion"), "HTTP/1.1"),
        request_headers=req_headers,
        cookies=_pairs(req.get("cookies")),
        status=status,
        reason=_str(resp.get("statusText")),
        response_headers=resp_headers if status is not None else [],
        subprotocol=subprotocol,
        extensions=extensions,
        ts_response=ts_response,
        body=body,
        body_size=body_size,
        error=error,
        source=source,
        unknown=unknown,
    )


def _payload(opcode: int, data: Any, b64: bool) -> bytes | None:
    if not isinstance(data, str):
        return None
    if b64:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return None
    return data.encode("utf-8", "surrogatepass")


def _items(entry: dict[str, Any], c: _Conn, flavor: str, notes: set[str]) -> None:
    hs = c.hs
    raw = entry.get("_webSocketMessages")
    if not isinstance(raw, list):
        return
    for m in raw:
        if not isinstance(m, dict):
            continue
        kind = m.get("type")
        ts = _msg_time(m.get("time"), hs.ts)
        if kind == "error":
            text = _str(m.get("data")) or "error"
            c.errors.append(f"the browser reported: {text}")
            continue
        if kind not in ("send", "receive"):
            continue
        side: Side = CLIENT if kind == "send" else SERVER
        op = m.get("opcode")
        if isinstance(op, bool) or not isinstance(op, int):
            op = 1
        extra = m.get("_devconsole") if isinstance(m.get("_devconsole"), dict) else {}
        assert isinstance(extra, dict)
        if op in (Opcode.TEXT, Opcode.CONTINUATION):
            payload = _payload(op, m.get("data"), False)
            if payload is None:
                notes.add("a message without data was skipped")
                continue
            c.items.append(_message(hs.conn, ts, side, Opcode.TEXT, payload, extra))
        elif op == Opcode.BINARY:
            payload = _payload(op, m.get("data"), True)
            if payload is None:
                notes.add("a binary message that is not base64 was skipped")
                continue
            c.items.append(_message(hs.conn, ts, side, Opcode.BINARY, payload, extra))
        elif op in (Opcode.CLOSE, Opcode.PING, Opcode.PONG):
            # not Chrome's shape, but some tools list control frames there too
            data = m.get("data")
            payload = _payload(op, data, bool(extra.get("b64"))) or b""
            code = _num(m.get("code"))
            c.items.append(
                ControlFrame(
                    0,
                    hs.conn,
                    ts,
                    side,
                    op,
                    payload,
                    0,
                    code=int(code) if code is not None else None,
                    reason=_str(m.get("reason")),
                )
            )
        else:
            notes.add(f"messages with opcode {op} were skipped")


def _message(
    conn: str, ts: float, side: Side, op: int, payload: bytes, extra: dict[str, Any]
) -> Message:
    size = _num(extra.get("size"))
    frames = _num(extra.get("frames"))
    utf8_ok = True
    if op == Opcode.TEXT:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            utf8_ok = False
    return Message(
        seq=0,
        conn=conn,
        ts=ts,
        side=side,
        opcode=op,
        payload=payload,
        size=max(len(payload), int(size)) if size is not None else len(payload),
        wire_size=0,  # unknown: HAR keeps no frame headers
        frames=max(1, int(frames)) if frames is not None else 1,
        compressed=extra.get("compressed") is True,
        utf8_ok=utf8_ok,
        injected=extra.get("injected") is True,
        dropped=extra.get("dropped") is True,
    )


def _devconsole_control(dc: dict[str, Any], c: _Conn) -> None:
    for f in dc.get("control") or []:
        if not isinstance(f, dict):
            continue
        op = f.get("opcode")
        if op not in (Opcode.CLOSE, Opcode.PING, Opcode.PONG):
            continue
        side: Side = CLIENT if f.get("type") == "send" else SERVER
        try:
            payload = base64.b64decode(_str(f.get("data")), validate=True)
        except (binascii.Error, ValueError):
            payload = b""
        code = _num(f.get("code"))
        c.items.append(
            ControlFrame(
                0,
                c.hs.conn,
                _msg_time(f.get("time"), c.hs.ts),
                side,
                int(op),
                payload,
                0,
                code=int(code) if code is not None else None,
                reason=_str(f.get("reason")),
                injected=f.get("injected") is True,
                dropped=f.get("dropped") is True,
                error=_str(f.get("error")) or None,
            )
        )


def _apply_end(entry: dict[str, Any], c: _Conn, flavor: str, dc: dict[str, Any]) -> None:
    hs = c.hs
    last = max((it.ts for it in c.items), default=None)
    total = _num(entry.get("time"))
    if c.refused:
        c.state = ConnState.REFUSED
        c.ts_end = hs.ts_response if hs.ts_response is not None else hs.ts
        return
    if flavor == "devconsole":
        c.state = _str(dc.get("state"), ConnState.CLOSED) or ConnState.CLOSED
        code = _num(dc.get("close_code"))
        c.close_code = int(code) if code is not None else None
        c.close_reason = _str(dc.get("close_reason"))
        by = dc.get("closed_by")
        c.closed_by = by if by in ("client", "server", "proxy") else None
        clean = dc.get("clean")
        c.clean = clean if isinstance(clean, bool) else None
        c.ts_end = parse_time(dc.get("ended"))
        c.errors.extend(e for e in dc.get("errors") or [] if isinstance(e, str))
        return
    c.state = ConnState.CLOSED  # a saved HAR is history; how it ended may be unknown
    if flavor == "httptoolkit":
        close = entry.get("_webSocketClose")
        if isinstance(close, dict):
            code = _num(close.get("code"))
            c.close_code = int(code) if code is not None else None
            c.close_reason = _str(close.get("reason"))
            t = _num(close.get("timestamp"))
            c.ts_end = _msg_time(t, hs.ts) if t is not None else None
        elif close == "aborted":
            c.clean = False
            c.errors.append("aborted (no close frame)")
        if c.ts_end is None and total is not None and total >= 0:
            c.ts_end = hs.ts + total / 1000.0
        if "close code" not in hs.unknown and c.close_code is None and close is None:
            hs.unknown.append("close code")
    elif flavor == "chrome" and total is not None and total > 0:
        # Chrome's entry time runs from the request to the close of the socket
        end = hs.ts + total / 1000.0
        if last is None or end >= last:
            c.ts_end = end


def _snapshot(c: _Conn) -> ConnSnapshot:
    msgs_in = msgs_out = bytes_in = bytes_out = largest = injected = dropped = 0
    for it in c.items:
        if it.injected:
            injected += 1
        if it.dropped:
            dropped += 1
        if isinstance(it, Message):
            if it.side == CLIENT:
                msgs_out += 1
                bytes_out += it.size
            else:
                msgs_in += 1
                bytes_in += it.size
            largest = max(largest, it.size)
    return ConnSnapshot(
        handshake=c.hs,
        state=c.state,
        msgs_in=msgs_in,
        msgs_out=msgs_out,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        close_code=c.close_code,
        close_reason=c.close_reason,
        closed_by=c.closed_by,
        ts_end=c.ts_end,
        clean=c.clean,
        errors=c.errors,
        half_open=False,
        largest_message=largest,
        injected=injected,
        dropped=dropped,
    )


def har_events(doc: Any, name: str = "HAR") -> HarImport:
    """The Events of a parsed HAR document (see the module docstring). Raises HarError if
    ``doc`` is not a HAR document."""
    if not isinstance(doc, dict) or not isinstance(doc.get("log"), dict):
        raise HarError(f'{name}: not a HAR file (no "log" object)')
    entries_raw = doc["log"].get("entries")
    if not isinstance(entries_raw, list):
        raise HarError(f"{name}: not a HAR file (log.entries is not a list)")
    flavor = flavor_of(doc)
    entries = [e for e in entries_raw if isinstance(e, dict)]
    # in order of start, like the browsers' importers (stable for equal times)
    order = sorted(
        range(len(entries)), key=lambda i: (parse_time(entries[i].get("startedDateTime")) or 0, i)
    )
    conns: list[_Conn] = []
    used: set[str] = set()
    skipped = 0
    notes: set[str] = set()
    for i in order:
        e = entries[i]
        if not is_websocket_entry(e):
            skipped += 1
            continue
        dc = e.get("_devconsole") if isinstance(e.get("_devconsole"), dict) else {}
        assert isinstance(dc, dict)
        cid = _str(dc.get("conn"))
        if not cid or cid in used:
            cid = str(len(conns) + 1)
            while cid in used:
                cid += "'"
        used.add(cid)
        hs = _handshake(e, cid, flavor, dc)
        c = _Conn(hs, refused=hs.status != 101)
        if not c.refused:
            _items(e, c, flavor, notes)
            if flavor == "devconsole":
                _devconsole_control(dc, c)
        _apply_end(e, c, flavor, dc)
        conns.append(c)
    items: list[tuple[float, int, int, Item]] = []
    for ci, c in enumerate(conns):
        for ii, it in enumerate(c.items):
            items.append((it.ts, ci, ii, it))
    items.sort(key=lambda t: (t[0], t[1], t[2]))
    ordered: list[Item] = []
    for n, (_, _, _, it) in enumerate(items, 1):
        it.seq = n
        ordered.append(it)
    snap = Snapshot(len(ordered), [_snapshot(c) for c in conns], "", 0)
    out = HarImport([snap, *ordered], flavor, len(conns), len(ordered), skipped)
    if flavor == "firefox" and not ordered:
        out.notes.append("Firefox does not save WebSocket messages in HAR files: handshakes only")
    if not conns:
        out.notes.append(f"no WebSocket connection in this HAR ({skipped} other entries)")
    out.notes.extend(sorted(notes))
    return out


def read_har(path: str | os.PathLike[str]) -> HarImport:
    """Read the HAR file ``path``. Raises HarError (not JSON, not a HAR) or OSError."""
    p = os.fspath(path)
    with open(p, "rb") as fh:
        data = fh.read()
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise HarError(f"{p}: not a HAR file (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise HarError(
            f"{p}: not a valid HAR file: JSON error at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    except RecursionError:
        raise HarError(f"{p}: not a valid HAR file: nested too deeply") from None
    return har_events(doc, p)
