"""Exports of captured traffic: JSON lines (the ``tail --json`` schema) and HAR 1.2.

Secrets are redacted by default (``redact=True``): cookie and credential header values,
secret-looking query parameters (in the URL too), JWTs, and JSON fields named like
secrets in message payloads become ``[REDACTED]``, names kept. ``redact=False`` exports
everything as captured. The rules live in ``devconsole.store.redact``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from devconsole import __version__
from devconsole.decoders.base import Decoded, jsonable
from devconsole.decoders.protocols import DecoderRule
from devconsole.decoders.tracker import ProtocolTracker
from devconsole.model import (
    ControlFrame,
    EndEvent,
    Event,
    GapEvent,
    Handshake,
    HandshakeEvent,
    Message,
    Opcode,
    OutcomeEvent,
    ProtocolErrorEvent,
    RefusedEvent,
    RuleEvent,
    ShapeEvent,
    Snapshot,
    StateEvent,
)
from devconsole.session import Session
from devconsole.store import redact as r

ExportFormat = Literal["jsonl", "har"]
FORMATS: tuple[ExportFormat, ...] = ("jsonl", "har")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ------------------------------------------------------------------ redaction of events


def redact_handshake(hs: Handshake) -> Handshake:
    """A copy of ``hs`` with its secrets replaced (URL query, credential headers, cookies,
    token-looking subprotocols, secrets in a refused upgrade's body)."""
    return dataclasses.replace(
        hs,
        url=r.redact_url(hs.url),
        path=r.redact_jwts(hs.path),
        query=r.redact_pairs(hs.query),
        request_headers=r.redact_headers(hs.request_headers),
        cookies=r.redact_pairs(hs.cookies, all_values=True),
        response_headers=r.redact_headers(hs.response_headers),
        subprotocol=None if hs.subprotocol is None else r.redact_tokens(hs.subprotocol),
        body=r.redact_bytes(hs.body),
    )


# ------------------------------------------------------------------ JSON lines


def _hs_dict(event: str, hs: Handshake) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event": event,
        "conn": hs.conn,
        "ts": hs.ts,
        "client": hs.client,
        "url": hs.url,
        "request": {
            "method": hs.method,
            "path": hs.path,
            "query": [list(p) for p in hs.query],
            "http_version": hs.http_version,
            "headers": [list(p) for p in hs.request_headers],
            "cookies": [list(p) for p in hs.cookies],
        },
        "response": {
            "status": hs.status,
            "reason": hs.reason,
            "headers": [list(p) for p in hs.response_headers],
            "ts": hs.ts_response,
        },
        "subprotocol": hs.subprotocol,
        "extensions": hs.extensions,
    }
    if event == "refused":
        out["body"] = hs.body.decode("utf-8", "replace")
        out["body_size"] = hs.body_size
        out["error"] = hs.error
    return out


def decoded_dict(d: Decoded, *, redact: bool = True) -> dict[str, Any]:
    """``{"protocol", "decoded"?, "decode_error"?, "decode_note"?}`` of a message's
    application-protocol reading (docs/protocols.md), secrets redacted unless
    ``redact=False``."""
    out = d.to_json()
    if redact and "decoded" in out:
        out["decoded"] = jsonable(r.redact_value(d.value))
    if "error" in out:
        out["decode_error"] = out.pop("error")
    if "note" in out:
        out["decode_note"] = out.pop("note")
    return out


def event_dict(
    ev: Event, *, redact: bool = True, decoded: Decoded | None = None
) -> dict[str, Any] | None:
    """The ``tail --json`` object of an event (docs/cli.md), secrets redacted unless
    ``redact=False``; None for internal events (Snapshot, the handshake of an upgrade
    that is not answered yet). ``decoded``: the message's application protocol reading
    (a ProtocolTracker's), added as ``protocol`` and ``decoded``."""
    if isinstance(ev, Message):
        out: dict[str, Any] = {
            "event": "message",
            "conn": ev.conn,
            "seq": ev.seq,
            "ts": ev.ts,
            "from": ev.side,
            "type": "text" if ev.opcode == Opcode.TEXT else "binary",
            "size": ev.size,
            "frames": ev.frames,
            "compressed": ev.compressed,
        }
        if ev.opcode == Opcode.TEXT:
            text = ev.payload.decode("utf-8", "replace")
            out["text"] = r.redact_text(text) if redact else text
            if not ev.utf8_ok:
                out["invalid_utf8"] = True
                out["b64"] = _b64(r.redact_bytes(ev.payload) if redact else ev.payload)
        else:
            out["b64"] = _b64(r.redact_bytes(ev.payload) if redact else ev.payload)
        if ev.truncated:  # of the captured payload, not of the redacted one
            out["truncated"] = True
        if ev.injected:
            out["injected"] = True
        if ev.dropped:
            out["dropped"] = True
        _held_fields(out, ev, redact)
        if decoded is not None:
            out.update(decoded_dict(decoded, redact=redact))
        return out
    if isinstance(ev, ControlFrame):
        if ev.opcode == Opcode.CLOSE:
            out = {
                "event": "close",
                "conn": ev.conn,
                "seq": ev.seq,
                "ts": ev.ts,
                "from": ev.side,
                "code": ev.code,
                "reason": r.redact_text(ev.reason) if redact else ev.reason,
            }
            if ev.error:
                out["error"] = ev.error
        else:
            out = {
                "event": "ping" if ev.opcode == Opcode.PING else "pong",
                "conn": ev.conn,
                "seq": ev.seq,
                "ts": ev.ts,
                "from": ev.side,
                "b64": _b64(r.redact_bytes(ev.payload) if redact else ev.payload),
            }
        if ev.injected:
            out["injected"] = True
        if ev.dropped:
            out["dropped"] = True
        _held_fields(out, ev, redact)
        return out
    if isinstance(ev, HandshakeEvent | RefusedEvent):
        if isinstance(ev, HandshakeEvent) and ev.handshake.status is None:
            # an upgrade not answered yet: the schema has one handshake per connection,
            # the answered one (or its refused / error)
            return None
        hs = redact_handshake(ev.handshake) if redact else ev.handshake
        return _hs_dict("handshake" if isinstance(ev, HandshakeEvent) else "refused", hs)
    if isinstance(ev, EndEvent):
        out = {
            "event": "end",
            "conn": ev.conn,
            "ts": ev.ts,
            "clean": ev.clean,
            "closed_by": ev.closed_by,
        }
        if ev.error:
            out["error"] = ev.error
        return out
    if isinstance(ev, ProtocolErrorEvent):
        return {
            "event": "protocol_error",
            "conn": ev.conn,
            "ts": ev.ts,
            "from": ev.side,
            "offset": ev.offset,
            "error": ev.error,
        }
    if isinstance(ev, StateEvent):
        return {
            "event": "state",
            "conn": ev.conn,
            "ts": ev.ts,
            "state": ev.state,
            "detail": ev.detail,
        }
    if isinstance(ev, GapEvent):
        return {"event": "gap", "missed": ev.missed, "reason": ev.reason}
    if isinstance(ev, OutcomeEvent):
        out = {
            "event": "outcome",
            "conn": ev.conn,
            "seq": ev.seq,
            "ts": ev.ts,
            "held_id": ev.held,
            "outcome": ev.outcome,
        }
        if ev.body is not None:
            _body_fields(out, ev.opcode, ev.body, ev.size, redact)
        return out
    if isinstance(ev, RuleEvent):
        out = {"event": "rule", "conn": ev.conn or None, "ts": ev.ts, "rule": ev.rule}
        out["action"] = ev.action
        out["detail"] = r.redact_text(ev.detail) if redact else ev.detail
        return out
    if isinstance(ev, ShapeEvent):
        return {
            "event": "shape",
            "conn": ev.conn,
            "ts": ev.ts,
            "shape": shape_json(ev.shape),
            "source": ev.source,
        }
    return None


def shape_json(shape: dict[str, Any]) -> dict[str, Any]:
    """``{"client": {"latency": 0.1, ...}, "server": {...}}``: the conditions that are on,
    by the peer the bytes go to (seconds, bytes, bytes per second)."""
    return {to: s.to_dict() for to, s in sorted(shape.items())}


def _body_fields(out: dict[str, Any], opcode: int, body: bytes, size: int, redact: bool) -> None:
    """An edited body: ``type``, ``size``, and ``text`` (valid UTF-8 text) or ``b64``."""
    out["type"] = "text" if opcode == Opcode.TEXT else "binary"
    out["size"] = size
    text: str | None = None
    if opcode == Opcode.TEXT:
        try:
            text = body.decode()
        except UnicodeDecodeError:
            text = None
    if text is not None:
        out["text"] = r.redact_text(text) if redact else text
    else:
        out["b64"] = _b64(r.redact_bytes(body) if redact else body)


def _held_fields(out: dict[str, Any], ev: Message | ControlFrame, redact: bool) -> None:
    """A message held by a breakpoint (docs/intercept.md): ``held`` and, once decided (a
    late viewer or an export sees it so), its ``outcome`` and the edited body. A message a
    rule acted on (docs/rules.md): ``rule``, ``action``, and its outcome and edited body."""
    if ev.rule:
        out["rule"] = ev.rule
    if ev.action:
        out["action"] = ev.action
    if not ev.held and ev.outcome:
        out["outcome"] = ev.outcome
        if isinstance(ev, Message) and ev.edited is not None:
            edited_: dict[str, Any] = {}
            _body_fields(edited_, ev.edited_opcode, ev.edited, ev.edited_size, redact)
            out["edited"] = edited_
    if not ev.held:
        return
    out["held"] = True
    out["held_id"] = ev.held
    out["breakpoint"] = ev.breakpoint
    if ev.outcome:
        out["outcome"] = ev.outcome
        if isinstance(ev, Message) and ev.edited is not None:
            edited: dict[str, Any] = {}
            _body_fields(edited, ev.edited_opcode, ev.edited, ev.edited_size, redact)
            out["edited"] = edited


def _closed_by(v: str | None) -> Literal["client", "server", "proxy"] | None:
    if v == "client":
        return "client"
    if v == "server":
        return "server"
    if v == "proxy":
        return "proxy"
    return None


class SnapshotExpander:
    """Turns a tap stream into the events a reader wants, incrementally (``devconsole
    tail`` feeds it batch by batch, exports a whole recording).

    The first Snapshot (what a tap client receives first) becomes handshake / refused
    events for the connections it knows, and end events for the ended ones, emitted after
    the backlog it precedes. Handshakes, ends and items (by seq) already seen, which a
    re-sync after a gap resends, are dropped. With ``backlog=False`` the Snapshot and the
    items it precedes are skipped: only what happens from now on."""

    def __init__(self, backlog: bool = True) -> None:
        self.backlog = backlog
        self._opened: set[str] = set()
        self._ended: set[str] = set()
        self._pending: list[EndEvent] = []
        self._snap_seq: int | None = None
        self._last_item = -1

    def _open(self, hs: Handshake) -> bool:
        """False for a handshake already shown. A pending upgrade (status None) does not
        count: the answer to it must still be shown."""
        if hs.conn in self._opened:
            return False
        if hs.status is not None:
            self._opened.add(hs.conn)
        return True

    def _ends(self) -> Iterator[Event]:
        for end in self._pending:
            if end.conn not in self._ended:
                self._ended.add(end.conn)
                yield end
        self._pending = []

    def feed(self, ev: Event) -> Iterator[Event]:
        if isinstance(ev, Snapshot):
            first = self._snap_seq is None
            self._snap_seq = ev.seq if first else max(self._snap_seq or 0, ev.seq)
            for cs in ev.connections:
                hs = cs.handshake
                if not self.backlog and first:
                    self._open(hs)  # known before we attached: not shown
                    if cs.ts_end is not None:
                        self._ended.add(hs.conn)
                    continue
                if not self._open(hs):
                    continue
                yield RefusedEvent(hs) if cs.state == "refused" else HandshakeEvent(hs)
                if cs.state != "refused" and cs.ts_end is not None:
                    self._pending.append(
                        EndEvent(hs.conn, cs.ts_end, bool(cs.clean), _closed_by(cs.closed_by))
                    )
            return
        item = isinstance(ev, Message | ControlFrame)
        backlog = item and self._snap_seq is not None and ev.seq <= self._snap_seq  # type: ignore[union-attr]
        if self._pending and not backlog:
            yield from self._ends()
        if item:
            if ev.seq <= self._last_item or (backlog and not self.backlog):  # type: ignore[union-attr]
                return
            self._last_item = ev.seq  # type: ignore[union-attr]
        elif isinstance(ev, HandshakeEvent | RefusedEvent):
            if not self._open(ev.handshake):
                return
        elif isinstance(ev, EndEvent):
            if ev.conn in self._ended:
                return
            self._ended.add(ev.conn)
        yield ev

    def finish(self) -> Iterator[Event]:
        """The end events still pending when the stream stops."""
        yield from self._ends()


def expand_snapshots(events: Iterable[Event]) -> Iterator[Event]:
    """A whole recorded stream through a SnapshotExpander."""
    expander = SnapshotExpander()
    for ev in events:
        yield from expander.feed(ev)
    yield from expander.finish()


def export_jsonl(
    events: Iterable[Event],
    out: TextIO,
    *,
    redact: bool = True,
    decoders: Sequence[DecoderRule] = (),
) -> int:
    """Write one ``tail --json`` object per line (Snapshots expanded into the handshake
    and end events they stand for), messages with their decoded form (``decoders``:
    ``--decoder`` rules). Returns the number of lines."""
    n = 0
    write = out.write
    tracker = ProtocolTracker(decoders)
    for ev in expand_snapshots(events):
        tracker.on_event(ev)
        dec = tracker.decoded(ev) if isinstance(ev, Message) else None
        obj = event_dict(ev, redact=redact, decoded=dec)
        if obj is None:
            continue
        write(json.dumps(obj, ensure_ascii=False) + "\n")
        n += 1
    return n


# ------------------------------------------------------------------ HAR


@dataclass(slots=True)
class _HarConn:
    hs: Handshake
    refused: bool
    messages: list[Message] = field(default_factory=list)
    state: str = ""
    control: list[ControlFrame] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str | None = None
    clean: bool | None = None
    ts_end: float | None = None
    errors: list[str] = field(default_factory=list)


def _iso(ts: float) -> str:
    try:
        if not math.isfinite(ts):
            raise ValueError
        dt = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    except (ValueError, OverflowError, OSError):
        dt = datetime.datetime.fromtimestamp(0, tz=datetime.UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _finite(x: float | None) -> float:
    return x if x is not None and math.isfinite(x) else 0.0


def _nv(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in pairs]


def _set_cookies(headers: list[tuple[str, str]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for k, v in headers:
        if k.lower() != "set-cookie":
            continue
        first, _, attrs = v.partition(";")
        name, _, value = first.partition("=")
        c: dict[str, Any] = {"name": name.strip(), "value": value.strip()}
        for a in attrs.split(";"):
            an, _, av = a.partition("=")
            an = an.strip().lower()
            if an == "path":
                c["path"] = av.strip()
            elif an == "domain":
                c["domain"] = av.strip()
            elif an == "expires":
                c["expires"] = av.strip()
            elif an == "httponly":
                c["httpOnly"] = True
            elif an == "secure":
                c["secure"] = True
        out.append(c)
    return out


def _har_messages(
    messages: list[Message], redact: bool, decoded: dict[int, Decoded] | None = None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        payload = r.redact_bytes(m.payload) if redact else m.payload
        data = payload.decode("utf-8", "replace") if m.opcode == Opcode.TEXT else _b64(payload)
        msg: dict[str, Any] = {
            "type": "send" if m.side == "client" else "receive",
            "time": _finite(m.ts),
            "opcode": int(m.opcode),
            "data": data,
        }
        extra = _message_extra(m)
        if extra:
            msg["_devconsole"] = extra
        d = decoded.get(m.seq) if decoded else None
        if d is not None:  # the application protocol's reading, beside the raw data
            msg.update({f"_{k}": v for k, v in decoded_dict(d, redact=redact).items()})
        out.append(msg)
    return out


def _message_extra(m: Message) -> dict[str, Any]:
    """What Chrome's message shape cannot say, only where it is not the default (other
    HAR readers ignore ``_`` fields)."""
    extra: dict[str, Any] = {}
    if m.truncated:
        extra["size"] = m.size
    if m.frames != 1:
        extra["frames"] = m.frames
    if m.compressed:
        extra["compressed"] = True
    if m.injected:
        extra["injected"] = True
    if m.dropped:
        extra["dropped"] = True
    return extra


def _har_control(frames: list[ControlFrame], redact: bool) -> list[dict[str, Any]]:
    """Ping, pong and close frames, which Chrome's ``_webSocketMessages`` do not list."""
    out: list[dict[str, Any]] = []
    for f in frames:
        payload = r.redact_bytes(f.payload) if redact else f.payload
        d: dict[str, Any] = {
            "type": "send" if f.side == "client" else "receive",
            "time": _finite(f.ts),
            "opcode": int(f.opcode),
            "data": _b64(payload),
        }
        if f.opcode == Opcode.CLOSE:
            d["code"] = f.code
            d["reason"] = r.redact_text(f.reason) if redact else f.reason
        if f.injected:
            d["injected"] = True
        if f.dropped:
            d["dropped"] = True
        if f.error:
            d["error"] = f.error
        out.append(d)
    return out


def _decode_all(conns: list[_HarConn], rules: Sequence[DecoderRule]) -> dict[int, Decoded]:
    """Every message of ``conns`` decoded by its connection's protocol, in order."""
    tracker = ProtocolTracker(rules, max_cached=1 << 62)
    items = sorted((m for c in conns for m in c.messages), key=lambda m: m.seq)
    for c in conns:
        tracker.on_event(HandshakeEvent(c.hs))
    out: dict[int, Decoded] = {}
    for m in items:
        tracker.feed(m)
    for m in items:
        d = tracker.decoded(m)
        if d is not None:
            out[m.seq] = d
    return out


def _har_entry(
    c: _HarConn, redact: bool, decoded: dict[int, Decoded] | None = None
) -> dict[str, Any]:
    hs = redact_handshake(c.hs) if redact else c.hs
    wait = 0.0
    if hs.ts_response is not None:
        wait = max(0.0, (_finite(hs.ts_response) - _finite(hs.ts)) * 1000)
    content: dict[str, Any] = {
        "size": hs.body_size,
        "mimeType": hs.response_header("content-type") or "",
    }
    if hs.body:
        try:
            content["text"] = hs.body.decode("utf-8")
        except UnicodeDecodeError:
            content["text"] = _b64(hs.body)
            content["encoding"] = "base64"
        if len(c.hs.body) < hs.body_size:
            content["comment"] = f"first {len(c.hs.body)} of {hs.body_size} bytes"
    response: dict[str, Any] = {
        "status": hs.status if hs.status is not None else 0,
        "statusText": hs.reason,
        "httpVersion": hs.http_version,
        "cookies": _set_cookies(hs.response_headers),
        "headers": _nv(hs.response_headers),
        "content": content,
        "redirectURL": hs.response_header("location") or "",
        "headersSize": -1,
        "bodySize": hs.body_size,
    }
    if hs.error:
        response["_error"] = hs.error
    dc: dict[str, Any] = {
        "conn": hs.conn,
        "client": hs.client,
        "server": hs.server,
        "state": c.state,
        "subprotocol": hs.subprotocol,
        "extensions": hs.extensions,
        "close_code": c.close_code,
        "close_reason": r.redact_text(c.close_reason) if redact else c.close_reason,
        "closed_by": c.closed_by,
        "clean": c.clean,
        "ended": _iso(c.ts_end) if c.ts_end is not None else None,
        "errors": c.errors,
        "redacted": redact,
        "control": _har_control(c.control, redact),
    }
    if hs.source or hs.unknown:  # imported: keep saying what the first format lacked
        dc["source"] = hs.source
        dc["unknown"] = list(hs.unknown)
    return {
        "startedDateTime": _iso(hs.ts),
        "time": wait,
        "request": {
            "method": hs.method,
            "url": hs.url,
            "httpVersion": hs.http_version,
            "cookies": _nv(hs.cookies),
            "headers": _nv(hs.request_headers),
            "queryString": _nv(hs.query),
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": response,
        "cache": {},
        "timings": {
            "blocked": -1,
            "dns": -1,
            "connect": -1,
            "ssl": -1,
            "send": 0,
            "wait": wait,
            "receive": 0,
        },
        "connection": hs.conn,
        "_resourceType": "websocket",
        "_webSocketMessages": _har_messages(c.messages, redact, decoded),
        "_devconsole": dc,
    }


def _conns_from_session(session: Session) -> list[_HarConn]:
    out = []
    for c in session.connections.values():
        hc = _HarConn(
            c.handshake,
            c.refused,
            [m for m in session.items(c.id) if isinstance(m, Message)],
            control=[f for f in session.items(c.id) if isinstance(f, ControlFrame)],
            state=str(c.state),
            close_code=c.close_code,
            close_reason=c.close_reason,
            closed_by=c.closed_by,
            clean=c.clean,
            ts_end=c.ts_end,
            errors=list(c.errors),
        )
        out.append(hc)
    return out


def _conns_from_events(events: Iterable[Event]) -> list[_HarConn]:
    conns: dict[str, _HarConn] = {}
    for ev in expand_snapshots(events):
        if isinstance(ev, Message):
            c = conns.get(ev.conn)
            if c is not None:
                c.messages.append(ev)
        elif isinstance(ev, ControlFrame):
            c = conns.get(ev.conn)
            if c is not None:
                c.control.append(ev)
            if (
                c is not None
                and ev.opcode == Opcode.CLOSE
                and not ev.dropped
                and c.closed_by is None
            ):
                c.close_code = ev.code
                c.close_reason = ev.reason
                c.closed_by = "proxy" if ev.injected else ev.side
                c.state = "closing"
        elif isinstance(ev, HandshakeEvent):
            conns[ev.handshake.conn] = _HarConn(ev.handshake, False, state="open")
        elif isinstance(ev, RefusedEvent):
            hs = ev.handshake
            conns[hs.conn] = _HarConn(hs, True, state="refused", ts_end=hs.ts_response)
        elif isinstance(ev, EndEvent):
            c = conns.get(ev.conn)
            if c is not None:
                c.ts_end = ev.ts
                c.clean = ev.clean
                if ev.closed_by is not None:
                    c.closed_by = ev.closed_by
                if c.state != "killed":
                    c.state = "closed"
                if ev.error and ev.error not in c.errors:
                    c.errors.append(ev.error)
        elif isinstance(ev, ProtocolErrorEvent):
            c = conns.get(ev.conn)
            err = f"{ev.side} stream at byte {ev.offset}: {ev.error}"
            if c is not None and err not in c.errors:
                c.errors.append(err)
        elif isinstance(ev, StateEvent):
            c = conns.get(ev.conn)
            if c is not None and (c.ts_end is None or ev.state == "killed"):
                c.state = ev.state
    return list(conns.values())


def har_log(
    data: Session | Iterable[Event],
    *,
    redact: bool = True,
    decoders: Sequence[DecoderRule] = (),
) -> dict[str, Any]:
    """A HAR 1.2 document: one entry per WebSocket connection (the upgrade request and
    its response, refused upgrades included with their status and body), its messages in
    Chrome's ``_webSocketMessages`` format (``{"type": "send"|"receive", "time", "opcode":
    1|2, "data"}``; binary data base64), and devconsole's own fields in ``_devconsole``.
    From a Session, only the messages still in its ring buffer are included. A message
    of a known application protocol also has ``_protocol`` and ``_decoded``
    (``decoders``: ``--decoder`` rules)."""
    conns = _conns_from_session(data) if isinstance(data, Session) else _conns_from_events(data)
    conns.sort(key=lambda c: _finite(c.hs.ts))
    decoded = _decode_all(conns, decoders)
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "devconsole", "version": __version__},
            "pages": [],
            "entries": [_har_entry(c, redact, decoded) for c in conns],
        }
    }


def export_har(
    data: Session | Iterable[Event],
    out: TextIO,
    *,
    redact: bool = True,
    decoders: Sequence[DecoderRule] = (),
) -> int:
    """Write ``har_log(data)`` as JSON to ``out``; returns the number of entries."""
    doc = har_log(data, redact=redact, decoders=decoders)
    json.dump(doc, out, ensure_ascii=False, indent=1)
    out.write("\n")
    return len(doc["log"]["entries"])


# ------------------------------------------------------------------ files


@dataclass(slots=True)
class ExportResult:
    events: int  # events read from the capture
    written: int  # JSON lines, or HAR entries
    error: str | None  # the capture was damaged: what was read before it was exported
    notes: list[str] = field(default_factory=list)  # what the input format lacks...


def export_capture(
    capture: str | os.PathLike[str],
    out: str | os.PathLike[str] | TextIO | None,
    *,
    fmt: ExportFormat = "jsonl",
    redact: bool = True,
    strict: bool = False,
    decoders: Sequence[DecoderRule] = (),
) -> ExportResult:
    """Export ``capture`` (a capture file, a recording directory or a HAR file) to
    ``out``: a path (written atomically, mode 0600: a temporary file renamed over it, so
    a failed export leaves nothing behind), an open text stream, or None / ``"-"`` for
    stdout. Raises ``CaptureError`` (not a capture; with ``strict``, a damaged one;
    ``out`` is ``capture`` itself) or ``OSError``; a damaged capture is otherwise exported
    up to the damage and reported in ``ExportResult.error``."""
    from devconsole.store.capture import CaptureError
    from devconsole.store.load import load_session, open_events

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (jsonl, har)")
    if isinstance(out, str | os.PathLike) and out != "-" and _same_file(capture, out):
        raise CaptureError(
            f"{os.fspath(out)} is the capture being exported: choose another output file"
        )
    reader = open_events(capture, strict=strict)
    if fmt == "har":
        # a HAR holds every message in memory anyway; the Session keeps what the input
        # does not know (an unknown close stays unknown)
        reader.close()
        session, reader = load_session(capture, strict=strict)
    try:

        def write(fh: TextIO) -> int:
            if fmt == "har":
                return export_har(session, fh, redact=redact, decoders=decoders)
            return export_jsonl(reader, fh, redact=redact, decoders=decoders)

        if out is None or out == "-":
            n = write(sys.stdout)
            sys.stdout.flush()
        elif isinstance(out, str | os.PathLike):
            n = _write_atomic(os.fspath(out), write)
        else:
            n = write(out)
    finally:
        reader.close()
    return ExportResult(reader.events_read, n, reader.error, list(reader.notes))


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` are one file (also through symbolic and hard links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def _write_atomic(path: str, write: Any) -> int:
    from devconsole.store.capture import atomic_replace

    with (
        atomic_replace(path, ".devconsole-export-") as tmp,
        open(tmp, "w", encoding="utf-8", newline="\n") as fh,
    ):
        n: int = write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    return n
