"""What the screen knows about the application protocols and the backplane of what it
shows: one ``LiveAnalysis`` per screen, attached to its Session before it is fed.

- a ``ProtocolTracker`` (each connection's protocol: the viewer's ``--decoder`` rules,
  the proxy's choice, the handshake, the content, or the user's override) with the
  ``PairTracker`` and the ``HeartbeatMonitor`` listening to it, as
  ``analysis.readiness.observe`` attaches them for ``devconsole report``;
- a ``FanoutTracer`` (the backplane trace, when a proxy records the app's Redis
  pub/sub).

Decoding costs 10-25 us a message (more with pairing), so the screen does not decode a
flood as it arrives: up to ``budget`` messages a second of decoded connections are fed to
the tracker in order (stateful protocols, pairing and protocol heartbeats need that);
past it, the rest of that second is skipped (counted in ``skipped``, said in the report).
What the stream shows is decoded when a row is drawn (``decoded``), once per row: the
stream caches its rows by seq, the tracker its results.

``decoded`` is for the thread that applies events (the app's loop); a filter rescan in a
worker thread uses ``decoded_off_thread``, which leaves the tracker's cache alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from devconsole.analysis.fanout import FanoutTracer, PublicationTrace, is_backplane
from devconsole.analysis.heartbeat import HeartbeatMonitor
from devconsole.analysis.pairing import PairTracker
from devconsole.analysis.readiness import Analysis
from devconsole.decoders import Decoded, preview, safe_text
from devconsole.decoders.protocols import DecoderRule
from devconsole.decoders.tracker import ProtocolTracker
from devconsole.model import (
    Connection,
    ControlFrame,
    Event,
    HandshakeEvent,
    Item,
    Message,
    Publication,
)
from devconsole.session import Session

DECODE_BUDGET = 5_000  # messages a second decoded as they arrive (about 0.1 s of CPU)
CACHED = 10_000  # decoded results the tracker keeps (the stream caches its rows too)


class LiveAnalysis:
    """Protocols, pairs, heartbeats and the fan-out trace of a screen's Session."""

    def __init__(
        self,
        session: Session,
        rules: Sequence[DecoderRule] = (),
        *,
        clock: Callable[[], float] = time.monotonic,  # the budget's: real time
        budget: int = DECODE_BUDGET,
        heartbeat: HeartbeatMonitor | None = None,
        trace_key: str | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        self.budget = budget
        self.tracker = ProtocolTracker(rules, max_cached=CACHED)
        self.heartbeat = heartbeat if heartbeat is not None else HeartbeatMonitor()
        self.pairs = PairTracker()
        self.fanout = FanoutTracer(trace_key)
        self.tracker.listeners += [self.heartbeat.on_decoded, self.pairs.on_decoded]
        self.skipped = 0  # messages of decoded connections not decoded as they arrived
        self.fed = 0  # ... and those that were
        self._left = budget
        self._window_end = clock() + 1.0
        self._thread = threading.get_ident()
        self.version = 0  # bumped when an override changes how messages read

    @classmethod
    def attach(
        cls,
        session: Session,
        rules: Sequence[DecoderRule] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        budget: int = DECODE_BUDGET,
        trace_key: str | None = None,
    ) -> LiveAnalysis:
        """An analysis observing ``session`` from now on, after reading what it already
        holds (the heartbeat of buffered items; protocols and pairs of those items)."""
        prefilled = bool(session.connections or len(session.buffer))
        heartbeat = HeartbeatMonitor.from_session(session) if prefilled else None
        a = cls(
            session, rules, clock=clock, budget=budget, heartbeat=heartbeat, trace_key=trace_key
        )
        if prefilled:
            for c in session.connections.values():
                ev = HandshakeEvent(c.handshake)
                a.tracker.on_event(ev)
                a.pairs.on_event(ev)
                a.fanout.on_event(ev)
            for item in session.items():
                a.tracker.on_event(item)
                a.fanout.on_event(item)
            for c in session.connections.values():
                if c.ts_end is not None:
                    a.pairs.end(c.id)
        # the order readiness.observe uses: the tracker's listeners before the monitor
        # sees the message, so protocol heartbeats are not also taken for app ones
        session.observers += [a.on_event, a.heartbeat.on_event, a.pairs.on_event, a.fanout.on_event]
        return a

    @property
    def analysis(self) -> Analysis:
        """For ``build_report(..., analysis=)``."""
        return Analysis(self.tracker, self.heartbeat, self.pairs)

    # ---------------------------------------------------------------- feeding

    def on_event(self, ev: Event) -> None:
        """A Session observer: the tracker's, within the budget."""
        tracker = self.tracker
        if type(ev) is not Message:
            tracker.on_event(ev)
            return
        if tracker.protocol_of(ev.conn) is None:
            tracker.on_event(ev)  # sniffing, or a dictionary lookup once it gave up
            return
        if self._left <= 0:
            now = self.clock()
            if now < self._window_end:
                self.skipped += 1
                return
            self._window_end = now + 1.0
            self._left = self.budget
        self._left -= 1
        self.fed += 1
        tracker.on_event(ev)

    # ---------------------------------------------------------------- reading

    def decoded(self, item: Item) -> Decoded | None:
        """``item`` read by its connection's protocol (cached by seq), or None."""
        if type(item) is ControlFrame:
            return None
        if threading.get_ident() != self._thread:
            return self.tracker.decoded(item, store=False)
        return self.tracker.decoded(item)

    def decoded_off_thread(self, item: Item) -> Decoded | None:
        return self.tracker.decoded(item, store=False)

    def preview(self, item: Item, width: int) -> str:
        """The stream's preview: the protocol's summary (``sio "chat" {...}``), or the
        payload's; a backplane publication reads ``publish CHANNEL payload``."""
        if isinstance(item, Publication):
            head = f"publish {item.channel} "
            room = width - len(head)
            if room <= 0:
                return preview(item, width)
            return safe_text(head) + preview(item, room)
        return preview(item, width, self.decoded(item))

    def protocol_of(self, conn: str) -> str | None:
        return self.tracker.protocol_of(conn)

    def set_override(self, conn: str, name: str | None) -> None:
        """The user's choice for ``conn`` (``"none"``: raw; None: automatic again: the
        connection's buffered messages are sniffed again, as when they arrived, without
        counting their pairs and heartbeats twice)."""
        tracker = self.tracker
        tracker.set_override(conn, name)
        self.version += 1
        if name is not None or tracker.protocol_of(conn) is not None:
            return
        listeners, tracker.listeners = tracker.listeners, []
        try:
            for n, item in enumerate(self.session.buffer.conn_items(conn)):
                if n >= tracker.sniff_messages or tracker.protocol_of(conn) is not None:
                    break
                tracker.feed(item)
        finally:
            tracker.listeners = listeners

    # ---------------------------------------------------------------- fan-out

    def trace_of(self, item: Item) -> PublicationTrace | None:
        """The fan-out trace of a publication, or of the publication a frame carried."""
        fan = self.fanout
        if isinstance(item, Publication):
            tr = fan.trace(item.seq)
            if tr is not None:
                return tr
            for t in reversed(fan.publications):  # a copy recorded by another pattern
                if item.seq in t.copies:
                    return t
            return None
        if isinstance(item, Message) and fan.active:
            for t in reversed(fan.publications):
                d = t.deliveries.get(item.conn)
                if d is not None and d.seq == item.seq:
                    return t
        return None


def is_backplane_conn(conn: Connection | None) -> bool:
    return conn is not None and is_backplane(conn.handshake)
