"""Events and connections as lines of text: what ``devconsole tail`` and ``devconsole
conns`` print, beside the JSON shapes of ``devconsole.store.export``.

``event_json`` / ``conn_json`` are the JSON objects (docs/cli.md); ``event_line`` is the
human line of an event, ``conns_table`` the table of connections, and ``TailPrinter``
prints a stream of events (backlog snapshot expanded, filtered, limited) as either.
Untrusted text (URLs, payload previews, errors) goes through ``safe_text``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from devconsole.decoders import Decoded, preview, safe_text
from devconsole.decoders.tracker import ProtocolTracker
from devconsole.model import (
    Connection,
    ControlFrame,
    EndEvent,
    Event,
    GapEvent,
    HandshakeEvent,
    InstanceEvent,
    Message,
    OutcomeEvent,
    ProtocolErrorEvent,
    Publication,
    RefusedEvent,
    RuleEvent,
    ShapeEvent,
    StateEvent,
    close_code_meaning,
    conn_instance,
)
from devconsole.store.export import SnapshotExpander, event_dict, shape_json
from devconsole.text import arrow, fmt_time, opcode_name

# ------------------------------------------------------------------ JSON


def event_json(ev: Event, decoded: Decoded | None = None) -> dict[str, Any] | None:
    """The ``tail --json`` object of an event (docs/cli.md), or None for internal events.
    Live viewing shows everything; exports (``devconsole export``) redact by default.
    From a Redis source, every event also names its ``instance`` (docs/scale.md); a
    message with its application protocol's reading (``decoded``) has ``protocol`` and
    ``decoded`` (docs/protocols.md)."""
    if isinstance(ev, InstanceEvent):
        return {
            "event": "instance",
            "instance": ev.name,
            "ts": ev.ts,
            "state": ev.state,
            "detail": ev.detail,
        }
    obj = event_dict(ev, redact=False, decoded=decoded)
    if obj is None:
        return None
    if isinstance(ev, Publication):
        obj["event"] = "publication"
        obj["channel"] = ev.channel
    conn = obj.get("conn")
    instance = conn_instance(conn) if isinstance(conn, str) else ""
    if isinstance(ev, GapEvent):
        instance = ev.instance
    if instance:
        obj["instance"] = instance
    return obj


def conn_json(c: Connection) -> dict[str, Any]:
    """The ``conns --json`` object of a connection (docs/cli.md); from a Redis source,
    with its ``instance``."""
    out = {
        "id": c.id,
        "client": c.client,
        "url": c.url,
        "state": c.state,
        "status": c.handshake.status,
        "msgs_in": c.msgs_in,
        "msgs_out": c.msgs_out,
        "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out,
        "close_code": c.close_code,
        "close_reason": c.close_reason,
        "closed_by": c.closed_by,
        "ts_start": c.ts_start,
        "ts_end": c.ts_end,
        "errors": c.errors,
        "shape": shape_json(c.shape),
    }
    if conn_instance(c.id):  # a Redis source: ids are INSTANCE/ID
        out["instance"] = conn_instance(c.id)
    return out


# ------------------------------------------------------------------ human lines


def event_line(ev: Event, decoded: Decoded | None = None) -> str | None:
    """One line of ``devconsole tail``; None for events it does not show (Snapshot). A
    message's preview is its application protocol's summary when ``decoded`` is given."""
    if isinstance(ev, Publication):
        return (
            f"{fmt_time(ev.ts)} #{ev.conn:<4} {ev.seq:>7} ⇐ publish {ev.size:>6}B "
            f"{safe_text(ev.channel)}  {preview(ev, 100)}"
        )
    if isinstance(ev, InstanceEvent):
        detail = f": {ev.detail}" if ev.detail else ""
        return safe_text(f"-- instance {ev.name} {ev.state}{detail} --")
    if isinstance(ev, Message | ControlFrame):
        kind = opcode_name(ev.opcode)
        flags = ""
        if ev.injected:
            flags += " [injected]"
        if ev.dropped:
            flags += " [dropped]"
        if ev.held:
            outcome = f" {safe_text(ev.outcome)}" if ev.outcome else ""
            flags += f" [held #{ev.held}{outcome}]"
        if ev.rule:
            flags += safe_text(f" [{ev.rule}: {ev.action}]")
        elif ev.action:
            flags += safe_text(f" [{ev.action}]")
        return (
            f"{fmt_time(ev.ts)} #{ev.conn:<4} {ev.seq:>7} {arrow(ev.side)} {kind:<6} {ev.size:>7}B"
            f"{flags}  {preview(ev, 100, decoded)}"
        )
    if isinstance(ev, HandshakeEvent | RefusedEvent):
        hs = ev.handshake
        what = "open   " if isinstance(ev, HandshakeEvent) else "REFUSED"
        if hs.status is None and isinstance(ev, HandshakeEvent):
            what = "upgrade"
        status = hs.status if hs.status is not None else (hs.error or "-")
        extra = ""
        if hs.subprotocol:
            extra += f" subprotocol={hs.subprotocol}"
        if hs.extensions:
            extra += f" extensions={', '.join(hs.extensions)}"
        return safe_text(
            f"{fmt_time(hs.ts)} #{hs.conn:<4} {what} {status} {hs.client} {hs.url}{extra}"
        )
    if isinstance(ev, EndEvent):
        how = "clean" if ev.clean else "unclean"
        by = f" by {ev.closed_by}" if ev.closed_by else ""
        err = f" ({ev.error})" if ev.error else ""
        return safe_text(f"{fmt_time(ev.ts)} #{ev.conn:<4} end     {how}{by}{err}")
    if isinstance(ev, ProtocolErrorEvent):
        return safe_text(
            f"{fmt_time(ev.ts)} #{ev.conn:<4} error   {ev.side} stream at byte {ev.offset}: "
            f"{ev.error} (forwarding continues)"
        )
    if isinstance(ev, StateEvent):
        return safe_text(f"{fmt_time(ev.ts)} #{ev.conn:<4} {ev.state:<7} {ev.detail}")
    if isinstance(ev, GapEvent):
        return safe_text(f"-- {ev.missed} events missed: {ev.reason} --")
    if isinstance(ev, OutcomeEvent):
        body = f" ({ev.size}B sent instead)" if ev.body is not None else ""
        return safe_text(
            f"{fmt_time(ev.ts)} #{ev.conn:<4} {ev.seq:>7}   held #{ev.held} {ev.outcome}{body}"
        )
    if isinstance(ev, RuleEvent):
        who = f"#{ev.conn:<4}" if ev.conn else "     "
        what = f"{ev.rule}: " if ev.rule else ""
        return safe_text(f"{fmt_time(ev.ts)} {who} rule    {what}{ev.action} {ev.detail}".rstrip())
    if isinstance(ev, ShapeEvent):
        from devconsole.shaping import describe

        parts = [f"to {to}: {describe(s)}" for to, s in sorted(ev.shape.items())] or ["none"]
        return safe_text(
            f"{fmt_time(ev.ts)} #{ev.conn:<4} shape   {'; '.join(parts)} ({ev.source})"
        )
    return None


def conns_table(conns: Sequence[Connection]) -> str:
    """The ``devconsole conns`` table: a header row, one row per connection."""
    rows = [("ID", "STATE", "CLIENT", "URL", "IN", "OUT", "BYTES IN", "BYTES OUT", "CLOSE")]
    for c in conns:
        close = ""
        if c.refused:
            close = str(c.handshake.status or c.handshake.error or "")
        elif c.close_code is not None:
            close = f"{c.close_code} {close_code_meaning(c.close_code)}"
        rows.append(
            (
                c.id,
                c.state,
                c.client,
                safe_text(c.url),
                str(c.msgs_in),
                str(c.msgs_out),
                str(c.bytes_in),
                str(c.bytes_out),
                close,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


# ------------------------------------------------------------------ tail


class TailPrinter:
    """Prints the events of a tap (``on_events``) as ``devconsole tail`` does: the
    backlog's Snapshot expanded (or skipped), messages filtered by ``predicate``, and
    ``done`` set after ``limit`` messages. Every event goes through ``tracker`` (a
    ProtocolTracker; default: one with no rules), which decodes the messages of
    connections with a known application protocol."""

    def __init__(
        self,
        out: TextIO,
        as_json: bool,
        predicate: Callable[[Message | ControlFrame], bool] | None,
        limit: int | None,
        backlog: bool,
        tracker: ProtocolTracker | None = None,
    ) -> None:
        self.tracker = tracker if tracker is not None else ProtocolTracker()
        self.out = out
        self.as_json = as_json
        self.predicate = predicate
        self.limit = limit
        self.printed = 0
        self.expander = SnapshotExpander(backlog)
        self.done = asyncio.Event()

    def _print(self, ev: Event) -> None:
        if self.done.is_set():
            return
        if self.as_json and isinstance(ev, HandshakeEvent) and ev.handshake.status is None:
            return  # the JSON schema has one handshake per connection: the answered one
        decoded = self.tracker.decoded(ev) if type(ev) is Message else None
        if isinstance(ev, Message | ControlFrame) and self.predicate is not None:
            try:
                if not self.predicate(ev):
                    return
            except Exception:
                return
        if self.as_json:
            obj = event_json(ev, decoded)
            if obj is None:
                return
            line = json.dumps(obj, ensure_ascii=False)
        else:
            maybe = event_line(ev, decoded)
            if maybe is None:
                return
            line = maybe
        self.out.write(line + "\n")
        if isinstance(ev, Message | ControlFrame):
            self.printed += 1
            if self.limit is not None and self.printed >= self.limit:
                self.done.set()

    def on_events(self, events: list[Event]) -> None:
        for ev in events:
            for shown in self.expander.feed(ev):
                self.tracker.on_event(shown)
                self._print(shown)
        with contextlib.suppress(Exception):
            self.out.flush()
