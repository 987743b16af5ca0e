"""A Session applies Events: it owns the connections, the ring buffer and filtered views.

Core module: no I/O. The capture addon keeps one (the backlog for late tap clients), and
every tap client (TUI, ``devconsole tail``/``conns``) keeps its own, fed from the tap.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable

from devconsole.model import (
    CLIENT,
    Breakpoint,
    BreakpointsEvent,
    Connection,
    ConnState,
    ControlFrame,
    EndEvent,
    Event,
    GapEvent,
    HandshakeEvent,
    InstanceEvent,
    Item,
    Message,
    Opcode,
    Outcome,
    OutcomeEvent,
    ProtocolErrorEvent,
    RefusedEvent,
    ShapeEvent,
    Snapshot,
    StateEvent,
)
from devconsole.ringbuffer import RingBuffer

Predicate = Callable[[Item], bool]
Observer = Callable[[Event], None]


class Session:
    """Applies Events; serves connections, the buffered stream and filtered views."""

    def __init__(
        self,
        max_items: int = 100_000,
        max_bytes: int = 256 << 20,
        max_connections: int = 10_000,
    ) -> None:
        self.buffer = RingBuffer(max_items, max_bytes)
        self.connections: dict[str, Connection] = {}
        self.max_connections = max_connections
        self.last_seq = 0  # highest seq seen
        self.counted_seq = 0  # items with seq <= this are already in the counters
        self.total_messages = 0
        self.total_bytes = 0
        self.missed = 0  # events this session never received (gaps)
        self.proxy = ""  # the proxy's listen address, from the Snapshot
        self.upstream_evicted = 0  # evictions in the proxy's buffer before we attached
        self.evicted_connections = 0
        self.duplicates = 0  # items ignored because their seq was already seen
        self.observers: list[Observer] = []
        self.version = 0  # bumped on every applied event (cheap change detection for UIs)
        self.instances: dict[str, InstanceEvent] = {}  # a Redis source: latest per instance
        # intercept (docs/intercept.md): the proxy's breakpoints, and the messages held
        # now by held id, oldest first (kept here even when the buffer evicts them)
        self.breakpoints: list[Breakpoint] = []
        self.held: dict[int, Item] = {}
        # The faults' state changes, for late viewers (``backlog``): when a half-open began
        # is not in a Snapshot.
        self.states: deque[StateEvent] = deque(maxlen=max_connections)

    # ----------------------------------------------------------------- applying events

    def apply_all(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.apply(ev)

    def apply(self, ev: Event) -> None:
        self.version += 1
        if isinstance(ev, Message):
            self._apply_message(ev)
        elif isinstance(ev, ControlFrame):
            self._apply_control(ev)
        elif isinstance(ev, HandshakeEvent):
            hs = ev.handshake
            known = self.connections.get(hs.conn)
            if known is None:
                # status None: the upgrade request is out, the server has not answered yet
                state = ConnState.CONNECTING if hs.status is None else ConnState.OPEN
                self._add_connection(Connection(hs.conn, hs, state=state))
            else:
                # The answer to an upgrade we saw, or a replay after a re-sync Snapshot
                # that already has this connection: keep its counters and state.
                known.handshake = hs
                if known.state == ConnState.CONNECTING and hs.status is not None:
                    known.state = ConnState.OPEN
        elif isinstance(ev, RefusedEvent):
            hs = ev.handshake
            known = self.connections.get(hs.conn)
            if known is not None and known.state == ConnState.CONNECTING:
                known.handshake = hs
                known.state = ConnState.REFUSED
                known.ts_end = hs.ts_response
            elif known is None:
                conn = Connection(hs.conn, hs, state=ConnState.REFUSED, ts_end=hs.ts_response)
                self._add_connection(conn)
        elif isinstance(ev, EndEvent):
            self._apply_end(ev)
        elif isinstance(ev, StateEvent):
            self.states.append(ev)
            c = self.connections.get(ev.conn)
            if c is not None:
                if c.ts_end is None:  # an old one replayed in a backlog changes nothing
                    c.half_open = ev.state == ConnState.HALF_OPEN
                if c.ts_end is None or ev.state == ConnState.KILLED:
                    c.state = ev.state
                if ev.state == ConnState.KILLED:
                    c.closed_by = "proxy"
        elif isinstance(ev, ProtocolErrorEvent):
            c = self.connections.get(ev.conn)
            if c is not None:
                err = f"{ev.side} stream at byte {ev.offset}: {ev.error}"
                if err not in c.errors:  # replayed after a re-sync Snapshot
                    c.errors.append(err)
        elif isinstance(ev, GapEvent):
            self.missed += ev.missed
        elif isinstance(ev, Snapshot):
            self._apply_snapshot(ev)
        elif isinstance(ev, OutcomeEvent):
            self._apply_outcome(ev)
        elif isinstance(ev, BreakpointsEvent):
            self.breakpoints = list(ev.breakpoints)
        elif isinstance(ev, ShapeEvent):
            c = self.connections.get(ev.conn)
            if c is not None:
                c.shape = dict(ev.shape)
        elif isinstance(ev, InstanceEvent):
            self.instances[ev.name] = ev
        for obs in self.observers:
            obs(ev)

    def _add_item(self, item: Item) -> bool:
        """Buffer ``item``; False (and nothing changes) for a seq already seen, which a
        re-sync after a gap can resend."""
        last = self.buffer.last_seq
        if last is not None and item.seq <= last:
            self.duplicates += 1
            return False
        if item.seq > self.last_seq:
            self.last_seq = item.seq
        self.buffer.append(item)
        return True

    def _apply_item(self, it: Item) -> Connection | None:
        """Buffer ``it`` and update what every item updates; returns its connection when
        ``it`` is new to the counters (not a resent seq, not already in a Snapshot)."""
        if not self._add_item(it):
            return None
        if it.held and not it.outcome:
            self.held[it.held] = it
        c = self.connections.get(it.conn)
        if c is None:
            return None
        if it.side == CLIENT:
            c.last_out = it.ts
        else:
            c.last_in = it.ts
        if it.seq <= self.counted_seq:
            return None
        if it.injected:
            c.injected += 1
        if it.dropped:
            c.dropped += 1
        return c

    def _apply_message(self, m: Message) -> None:
        c = self._apply_item(m)
        if c is None:
            return
        self.total_messages += 1
        self.total_bytes += m.size
        if m.side == CLIENT:
            c.msgs_out += 1
            c.bytes_out += m.size
        else:
            c.msgs_in += 1
            c.bytes_in += m.size
        if m.size > c.largest_message:
            c.largest_message = m.size

    def _apply_control(self, f: ControlFrame) -> None:
        c = self._apply_item(f)
        if c is None or f.opcode != Opcode.CLOSE:
            return
        # A kill's StateEvent names the proxy before its close frames arrive. A close frame
        # devconsole did not forward (half-open) is still what that peer did. An invalid
        # close frame (or a second one) does not say how the connection closed: the peer
        # that answers it does (usually with 1002 or 1007).
        first = c.closed_by is None or (f.injected and c.closed_by == "proxy")
        if c.close_code is None and first and not f.error:
            c.close_code = f.code
            c.close_reason = f.reason
            c.closed_by = "proxy" if f.injected else f.side
        if f.dropped:
            return
        if c.state in (ConnState.OPEN, ConnState.HALF_OPEN):
            c.state = ConnState.CLOSING

    def _apply_end(self, ev: EndEvent) -> None:
        c = self.connections.get(ev.conn)
        if c is None:
            return
        c.ts_end = ev.ts
        c.clean = ev.clean
        c.half_open = False
        if ev.closed_by is not None:
            c.closed_by = ev.closed_by
        if c.state != ConnState.KILLED:
            c.state = ConnState.CLOSED
        if ev.error and ev.error not in c.errors:
            c.errors.append(ev.error)

    def _apply_outcome(self, ev: OutcomeEvent) -> None:
        it = self.held.pop(ev.held, None)
        if it is None:
            found = self.buffer.get(ev.seq)
            if found is None or found.held != ev.held:
                return
            it = found
        if it.outcome:
            return  # replayed after a re-sync
        # The buffered item is updated in place: it shows what became of it, and a viewer
        # that attaches later receives it with its outcome.
        it.outcome = ev.outcome
        if isinstance(it, Message) and ev.body is not None:
            it.edited = ev.body
            it.edited_opcode = ev.opcode
            it.edited_size = ev.size
        if ev.outcome in (Outcome.DROPPED, Outcome.TIMEOUT_DROPPED):
            c = self.connections.get(ev.conn)
            if c is not None:
                c.dropped += 1

    def _apply_snapshot(self, snap: Snapshot) -> None:
        self.proxy = snap.proxy
        self.breakpoints = list(snap.breakpoints)
        self.held = {it.held: it for it in snap.held}
        self.upstream_evicted = snap.evicted_messages
        self.counted_seq = max(self.counted_seq, snap.seq)
        self.last_seq = max(self.last_seq, snap.seq)
        for cs in snap.connections:
            conn = Connection.from_snapshot(cs)
            old = self.connections.get(conn.id)
            if old is not None:  # a re-sync after a gap: replace, do not add twice
                self.total_messages -= old.msgs_in + old.msgs_out
                self.total_bytes -= old.bytes_in + old.bytes_out
                # not in ConnSnapshot: keep what this session saw itself
                conn.last_in = old.last_in
                conn.last_out = old.last_out
            self.total_messages += cs.msgs_in + cs.msgs_out
            self.total_bytes += cs.bytes_in + cs.bytes_out
            self._add_connection(conn)

    def _add_connection(self, conn: Connection) -> None:
        self.connections[conn.id] = conn
        if len(self.connections) > self.max_connections:
            # Forget the oldest ended connection(s); live ones are always kept.
            for cid, c in list(self.connections.items()):
                if len(self.connections) <= self.max_connections:
                    break
                if c.ts_end is not None or c.state == ConnState.REFUSED:
                    del self.connections[cid]
                    self.evicted_connections += 1

    # ----------------------------------------------------------------- queries

    def snapshot(self, proxy: str = "") -> Snapshot:
        return Snapshot(
            seq=self.last_seq,
            connections=[c.snapshot() for c in self.connections.values()],
            proxy=proxy,
            evicted_messages=self.buffer.evicted_items,
            breakpoints=list(self.breakpoints),
            held=list(self.held.values()),
        )

    def held_count(self, conn: str | None = None) -> int:
        """Messages held now (on ``conn``, or everywhere)."""
        if conn is None:
            return len(self.held)
        return sum(1 for it in self.held.values() if it.conn == conn)

    def backlog(self) -> list[Event]:
        """What a late viewer gets after the Snapshot: the buffered items, with the
        faults' state changes (half-open, release, kill) in their place in time, so an
        analysis replaying them (heartbeat after a half-open) sees them in order."""
        states = [ev for ev in self.states if ev.conn in self.connections]
        if not states:
            return list(self.buffer)
        out: list[Event] = []
        i = 0
        for it in self.buffer:
            while i < len(states) and states[i].ts <= it.ts:
                out.append(states[i])
                i += 1
            out.append(it)
        out.extend(states[i:])
        return out

    def get(self, seq: int) -> Item | None:
        return self.buffer.get(seq)

    @property
    def evicted(self) -> int:
        return self.buffer.evicted_items + self.upstream_evicted

    def items(self, conn: str | None = None) -> Iterable[Item]:
        return self.buffer if conn is None else self.buffer.conn_items(conn)


class FilteredView:
    """The seqs of buffered items that match a predicate (and optionally one connection).

    ``catch_up()`` matches only the items that arrived since the last call, so a live view
    costs O(new items). ``rescan()`` rebuilds from the whole buffer; it touches only local
    state until the final swap, so a UI can run it in a worker thread and swap atomically.
    Evicted seqs are trimmed lazily from the front.
    """

    def __init__(
        self, session: Session, predicate: Predicate | None = None, conn: str | None = None
    ) -> None:
        self.session = session
        self.predicate = predicate
        self.conn = conn
        self.seqs: deque[int] = deque()
        self.scanned_to = 0
        self._lock = threading.Lock()

    def _match(self, items: Iterable[Item]) -> list[int]:
        pred = self.predicate
        if pred is None:
            return [it.seq for it in items]
        return [it.seq for it in items if pred(it)]

    def catch_up(self) -> int:
        """Match new items; returns how many were added."""
        with self._lock:
            new = self.session.buffer.since(self.scanned_to, self.conn)
            if not new:
                self._trim()
                return 0
            added = self._match(new)
            self.seqs.extend(added)
            self.scanned_to = new[-1].seq
            self._trim()
            return len(added)

    def snapshot_items(self, conn: str | None = None) -> tuple[list[Item], int]:
        """The buffered items to rescan, and the seq they reach. Call it on the thread that
        applies events (copying a deque while another thread appends to it is unsafe); the
        copy of 1,000,000 references takes a few milliseconds."""
        buf = self.session.buffer
        return list(buf if conn is None else buf.conn_items(conn)), self.session.last_seq

    def rescan(
        self,
        predicate: Predicate | None,
        conn: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        chunk: int = 50_000,
        source: tuple[list[Item], int] | None = None,
        scan: Callable[[list[Item]], list[Item]] | None = None,
    ) -> bool:
        """Rebuild for a new predicate/connection. Returns False if cancelled.

        ``source`` is a ``snapshot_items()`` result taken on the event thread; with it the
        matching can run in a worker thread."""
        items, upto = source if source is not None else self.snapshot_items(conn)
        if conn is not None and source is not None:
            # a whole-buffer snapshot_items() passed for a one-connection view
            items = [it for it in items if it.conn == conn]
        total = len(items)
        matched: list[int] = []
        pred = predicate
        for start in range(0, total, chunk):
            if cancelled is not None and cancelled():
                return False
            part = items[start : start + chunk]
            if scan is not None:  # a whole-chunk matcher (Filter.scan): no call per item
                matched.extend(it.seq for it in scan(part))
            elif pred is None:
                matched.extend(it.seq for it in part)
            else:
                matched.extend(it.seq for it in part if pred(it))
            if progress is not None:
                progress(min(start + chunk, total), total)
        with self._lock:
            self.predicate = predicate
            self.conn = conn
            self.seqs = deque(matched)
            self.scanned_to = upto
        # Items that arrived during the scan are matched by the next catch_up().
        return True

    def _trim(self) -> None:
        first = self.session.buffer.first_seq
        seqs = self.seqs
        if first is None:
            seqs.clear()
            return
        while seqs and seqs[0] < first:
            seqs.popleft()

    def clear(self) -> None:
        """Hide everything seen so far (the buffer keeps it)."""
        with self._lock:
            self.seqs.clear()
            self.scanned_to = max(self.scanned_to, self.session.last_seq)

    def __len__(self) -> int:
        return len(self.seqs)

    def item_at(self, index: int) -> Item | None:
        try:
            seq = self.seqs[index]
        except IndexError:
            return None
        return self.session.get(seq)
