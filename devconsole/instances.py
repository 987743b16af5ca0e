"""Many proxy instances in one view: the Redis stream's entry format and the merge.

Core module: no I/O. ``devconsole.scale.publisher`` writes entries, ``devconsole.scale.
source`` reads them and hands them to an ``InstanceMerger``, which turns the entries of
every instance into one stream of Events a ``Session`` applies, as if one proxy had
captured everything:

- connection ids become ``INSTANCE/ID`` (a restarted instance's new run is ``NAME~2``,
  so its ids never collide with those of the run before it);
- seqs are renumbered into one sequence, in time order: each instance's events keep
  their order, and instances are merged by timestamp (a k-way merge that waits for the
  other instances' watermark, or at most ``hold`` seconds);
- breakpoints and held messages keep their proxy's ids, named ``INSTANCE/ID`` by the
  view (``Breakpoint.instance``; a held item's prefixed conn, ``model.held_ref``); a
  Session replaces its breakpoints and held messages with each Snapshot's and
  BreakpointsEvent's, so every one the merger emits has every instance's;
- a late viewer gets one ``Snapshot`` of every instance (each instance's last snapshot
  plus the events published after it, so counters are right), then the recent history;
- an instance that stops sending (no heartbeat) is reported ``gone``; one that said
  goodbye ``stopped``; what either still held gets the outcome "lost" (a gone one's is
  held again when it is heard from again); entries lost between the publisher and this
  viewer are a ``GapEvent`` naming the instance, and the instance's counters are
  re-synced from its next snapshot.

A stream entry has two fields: ``i`` (the instance name) and ``m``, a msgpack array
``[FORMAT, run, kind, count, ts, data]``: ``run`` identifies one process of that
instance, ``count`` is how many events the run published before this entry, ``ts`` the
publisher's clock when it wrote the entry (every event it captured before that is in this
entry or an earlier one: the instance's watermark). Kinds: ``e`` events (``data``: a list
of ``wire``-encoded events), ``h`` heartbeat (``data``: ``{"proxy": str, "commands":
bool}``), ``s`` snapshot (``data``: an encoded ``Snapshot``), ``b`` goodbye.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from devconsole import wire
from devconsole.model import (
    INSTANCE_SEP,
    Breakpoint,
    BreakpointsEvent,
    ConnSnapshot,
    ControlFrame,
    EndEvent,
    Event,
    GapEvent,
    HandshakeEvent,
    InstanceEvent,
    Item,
    Message,
    Outcome,
    OutcomeEvent,
    ProtocolErrorEvent,
    RefusedEvent,
    RuleEvent,
    ShapeEvent,
    Snapshot,
    StateEvent,
)
from devconsole.session import Session
from devconsole.text import fmt_duration

FORMAT = 1
KIND_EVENTS = "e"
KIND_HEARTBEAT = "h"
KIND_SNAPSHOT = "s"
KIND_BYE = "b"
KINDS = frozenset({KIND_EVENTS, KIND_HEARTBEAT, KIND_SNAPSHOT, KIND_BYE})

HEARTBEAT_INTERVAL = 1.0  # an idle publisher writes a heartbeat entry this often
GONE_AFTER = 3.5  # seconds without an entry before a viewer calls an instance gone
HOLD = 0.25  # seconds an event may wait for the other instances' watermark
RUN_MARK = "~"  # NAME~2: the second run of NAME a viewer has seen

MAX_ENTRY_OBJECT = 64 << 20


class EntryError(ValueError):
    """A malformed stream entry (skipped, counted)."""


def valid_instance_name(name: str) -> str | None:
    """Why ``name`` cannot name an instance, or None."""
    if not name:
        return "the instance name is empty"
    if len(name) > 100:
        return "the instance name is longer than 100 characters"
    if INSTANCE_SEP in name or RUN_MARK in name:
        return f"the instance name may not contain {INSTANCE_SEP!r} or {RUN_MARK!r}"
    if any(ord(ch) < 0x21 or ch == "\x7f" for ch in name):
        return "the instance name may not contain spaces or control characters"
    return None


# ------------------------------------------------------------------ entries


@dataclass(slots=True)
class Entry:
    """One decoded stream entry."""

    name: str
    run: str
    kind: str
    count: int
    ts: float
    data: Any
    id: str = ""  # the stream id, "MS-N" (Redis server time in ms)

    @property
    def redis_ms(self) -> int:
        ms, _, _ = self.id.partition("-")
        return int(ms) if ms.isdigit() else 0

    def events(self) -> list[Event]:
        """The events of a KIND_EVENTS entry; raises EntryError."""
        try:
            return wire.decode_events(self.data)
        except wire.WireError as e:
            raise EntryError(f"entry {self.id} of {self.name}: {e}") from None

    def snapshot(self) -> Snapshot:
        """The Snapshot of a KIND_SNAPSHOT entry; raises EntryError."""
        try:
            ev = wire.decode_event(self.data)
        except wire.WireError as e:
            raise EntryError(f"snapshot entry of {self.name}: {e}") from None
        if not isinstance(ev, Snapshot):
            raise EntryError(f"snapshot entry of {self.name}: not a snapshot")
        return ev


def encode_entry(run: str, kind: str, count: int, ts: float, data: Any) -> bytes:
    """The ``m`` field of a stream entry; ``data`` is already msgpack-ready."""
    return msgpack.packb([FORMAT, run, kind, count, ts, data], use_bin_type=True)  # type: ignore[no-any-return]


def encode_events(events: Sequence[Event]) -> list[Any]:
    return [wire.encode_event(e) for e in events]


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"unexpected msgpack extension type {code}")


def _unpack(blob: bytes) -> Any:
    try:
        return msgpack.unpackb(
            blob,
            raw=False,
            strict_map_key=True,
            max_bin_len=MAX_ENTRY_OBJECT,
            max_str_len=MAX_ENTRY_OBJECT,
            max_array_len=wire.MAX_LEN,
            max_map_len=1024,
            ext_hook=_no_ext,
        )
    except (ValueError, msgpack.UnpackException, TypeError, MemoryError) as e:
        raise EntryError(f"malformed entry: {e}") from None


def decode_entry(fields: dict[Any, Any], entry_id: str = "") -> Entry:
    """An ``Entry`` from the fields of a stream entry (keys and values bytes or str)."""

    def get(key: str) -> Any:
        v = fields.get(key)
        if v is None:
            v = fields.get(key.encode())
        return v

    name = get("i")
    blob = get("m")
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if not isinstance(name, str) or not isinstance(blob, bytes | bytearray):
        raise EntryError(f"entry {entry_id}: not a devconsole entry")
    obj = _unpack(bytes(blob))
    if not isinstance(obj, list) or len(obj) < 6 or obj[0] != FORMAT:
        raise EntryError(f"entry {entry_id} of {name}: unknown format")
    _, run, kind, count, ts, data = obj[:6]
    if (
        not isinstance(run, str)
        or kind not in KINDS
        or not isinstance(count, int)
        or isinstance(count, bool)
        or count < 0
        or not isinstance(ts, int | float)
        or isinstance(ts, bool)
        or not math.isfinite(ts)
    ):
        raise EntryError(f"entry {entry_id} of {name}: bad header")
    if valid_instance_name(name) is not None:
        raise EntryError(f"entry {entry_id}: bad instance name {name!r}")
    return Entry(name, run, kind, count, float(ts), data, entry_id)


@dataclass(slots=True)
class SnapshotRecord:
    """What a publisher keeps in the snapshots hash for late viewers: its latest Snapshot,
    and how many events it had published when it took it."""

    name: str
    run: str
    count: int
    ts: float
    snapshot: Snapshot


def encode_snapshot_record(run: str, count: int, ts: float, snap: Snapshot) -> bytes:
    return msgpack.packb([FORMAT, run, count, ts, wire.encode_event(snap)], use_bin_type=True)  # type: ignore[no-any-return]


def decode_snapshot_record(name: str, blob: bytes) -> SnapshotRecord:
    obj = _unpack(blob)
    if not isinstance(obj, list) or len(obj) < 5 or obj[0] != FORMAT:
        raise EntryError(f"snapshot of {name}: unknown format")
    _, run, count, ts, enc = obj[:5]
    if not isinstance(run, str) or not isinstance(count, int) or not isinstance(ts, int | float):
        raise EntryError(f"snapshot of {name}: bad header")
    try:
        snap = wire.decode_event(enc)
    except wire.WireError as e:
        raise EntryError(f"snapshot of {name}: {e}") from None
    if not isinstance(snap, Snapshot):
        raise EntryError(f"snapshot of {name}: not a snapshot")
    return SnapshotRecord(name, run, count, float(ts), snap)


# ------------------------------------------------------------------ merge


def _order_ts(ev: Event) -> float:
    """When ``ev`` happened, for merging instances (-inf: as soon as possible)."""
    if isinstance(ev, HandshakeEvent | RefusedEvent):
        hs = ev.handshake
        return hs.ts_response if hs.ts_response is not None else hs.ts
    ts = getattr(ev, "ts", None)
    return float(ts) if isinstance(ts, int | float) else -math.inf


@dataclass(eq=False)
class _Run:
    """One process of one instance, as this viewer sees it."""

    name: str
    run: str
    display: str
    expected: int = 0  # events of this run received (the next entry's count)
    watermark: float = -math.inf  # the publisher's clock at its latest entry
    last_seen: float = 0.0  # this viewer's clock when its latest entry arrived
    state: str = "up"
    proxy: str = ""
    commands: bool = False
    skip_upto: int = 0  # items with a local seq <= this are already counted: dropped
    queue: deque[tuple[float, float, Event]] = field(default_factory=deque)
    started: bool = False  # has delivered at least one entry
    # intercept (docs/intercept.md): this run's breakpoints (converted: instance set, conn
    # prefixed) and the messages it holds now by its own held id (as released)
    breakpoints: list[Breakpoint] = field(default_factory=list)
    held: dict[int, Item] = field(default_factory=dict)
    lost: dict[int, Item] = field(default_factory=dict)  # held when it went quiet
    evicted: int = 0  # items its own buffer evicted (its latest snapshot)


class InstanceMerger:
    """Merges the entries of every instance into one Event stream (see the module doc).

    ``clock`` is the viewer's monotonic clock, passed to ``feed``/``release`` as ``now``.
    """

    def __init__(
        self,
        description: str = "",
        *,
        hold: float = HOLD,
        gone_after: float = GONE_AFTER,
        backlog_limit: int = 100_000,
    ) -> None:
        self.description = description
        self.hold = hold
        self.gone_after = gone_after
        self.backlog_limit = backlog_limit
        self.seq = 0  # the merged sequence
        self.runs: dict[tuple[str, str], _Run] = {}
        self.by_display: dict[str, _Run] = {}
        self.current: dict[str, _Run] = {}  # instance name -> its latest run
        self.bad_entries = 0
        self.last_error = ""
        self.resync_wanted: set[str] = set()  # instance names whose counters are off
        self._out: list[Event] = []

    # ---------------------------------------------------------------- runs

    def _run(self, name: str, run: str, now: float, ts: float = 0.0) -> tuple[_Run, bool]:
        key = (name, run)
        r = self.runs.get(key)
        if r is not None:
            return r, False
        n = sum(1 for (nm, _) in self.runs if nm == name)
        display = name if n == 0 else f"{name}{RUN_MARK}{n + 1}"
        r = _Run(name, run, display, last_seen=now)
        self.runs[key] = r
        self.by_display[display] = r
        old = self.current.get(name)
        self.current[name] = r
        if old is not None and old.state == "up":
            old.state = "stopped"
            self._out.append(InstanceEvent(old.display, ts, "stopped", f"restarted as {display}"))
            self._out.extend(self._forget_intercept(old))
            self._out.extend(self._lose_held(old, ts))
        elif old is not None:
            old.lost = {}  # a run gone quiet that never comes back: what it held stays lost
        return r, True

    def route_instance(self, display: str) -> tuple[str, str]:
        """``(instance name, run)`` of an instance as a merged view names it ("app-1",
        "app-1~2"); raises KeyError with a message for the user."""
        r = self.by_display.get(display)
        if r is not None:
            return r.name, r.run
        name = display.split(RUN_MARK, 1)[0]
        if valid_instance_name(name) is not None:
            raise KeyError(f"{display!r}: bad instance name")
        return name, ""

    def route(self, conn: str) -> tuple[str, str, str]:
        """``(instance name, run, proxy connection id)`` of a merged connection id;
        raises KeyError with a message for the user."""
        display, sep, local = conn.rpartition(INSTANCE_SEP)
        if not sep:
            raise KeyError(
                f"connection {conn!r}: name it INSTANCE/ID (devconsole conns --tap redis://...)"
            )
        try:
            name, run = self.route_instance(display)
        except KeyError:
            raise KeyError(f"connection {conn!r}: bad instance name") from None
        return name, run, local

    def instances(self) -> list[tuple[str, str, bool]]:
        """``(display name, state, accepts commands)`` of every run seen."""
        return [(r.display, r.state, r.commands) for r in self.runs.values()]

    # ---------------------------------------------------------------- conversion

    def _prefix(self, display: str, conn: str) -> str:
        return f"{display}{INSTANCE_SEP}{conn}"

    def _convert(self, r: _Run, ev: Event) -> Event | None:
        """``ev`` of run ``r`` with its connection id prefixed; None to drop it. Seqs
        are assigned on release."""
        p = r.display
        t = type(ev)
        if isinstance(ev, Message | ControlFrame) or t is Message:
            if ev.seq <= r.skip_upto:  # type: ignore[union-attr]
                return None
            ev.conn = self._prefix(p, ev.conn)  # type: ignore[union-attr]
            item: Item = ev  # type: ignore[assignment]
            if item.held and not item.outcome:
                r.held[item.held] = item
            return ev
        if isinstance(ev, OutcomeEvent):
            # held ids stay the proxy's own (the prefixed conn tells instances apart); the
            # seq becomes the held message's merged one
            it = r.held.pop(ev.held, None)
            ev.conn = self._prefix(p, ev.conn)
            ev.seq = it.seq if it is not None else 0
            return ev
        if isinstance(ev, BreakpointsEvent):
            r.breakpoints = [self._breakpoint(r, b) for b in ev.breakpoints]
            return BreakpointsEvent(self.all_breakpoints())
        if isinstance(ev, HandshakeEvent | RefusedEvent):
            ev.handshake.conn = self._prefix(p, ev.handshake.conn)
            return ev
        if isinstance(ev, EndEvent | StateEvent | ProtocolErrorEvent):
            ev.conn = self._prefix(p, ev.conn)
            return ev
        if isinstance(ev, RuleEvent | ShapeEvent):  # docs/rules.md, docs/shaping.md
            if ev.conn:
                ev.conn = self._prefix(p, ev.conn)
            elif isinstance(ev, RuleEvent):  # that instance's rules file loaded or refused
                ev.detail = f"{p}: {ev.detail}"
            return ev
        if isinstance(ev, GapEvent):
            ev.instance = p
            return ev
        if isinstance(ev, Snapshot):
            return self._snapshot_for(r, ev)
        if isinstance(ev, InstanceEvent):
            return ev  # queued by the merger itself (a goodbye, in its place)
        return None

    def _snapshot_for(self, r: _Run, snap: Snapshot) -> Snapshot:
        conns = []
        for cs in snap.connections:
            cs.handshake.conn = self._prefix(r.display, cs.handshake.conn)
            conns.append(cs)
        r.skip_upto = max(r.skip_upto, snap.seq)
        r.evicted = snap.evicted_messages
        r.breakpoints = [self._breakpoint(r, b) for b in snap.breakpoints]
        self._adopt_held(r, snap.held)
        # seq is set on release: the counters include everything released before it. A
        # Session replaces its breakpoints and held messages with a Snapshot's: this one
        # has every instance's.
        return Snapshot(
            0,
            conns,
            self.description,
            self._evicted(),
            self.all_breakpoints(),
            self.all_held(),
        )

    # ---------------------------------------------------------------- intercept

    def _breakpoint(self, r: _Run, b: Breakpoint) -> Breakpoint:
        conn = self._prefix(r.display, b.conn) if b.conn else ""
        return dataclasses.replace(b, conn=conn, instance=r.display)

    def _adopt_held(self, r: _Run, items: Iterable[Item]) -> None:
        """``items`` are what run ``r`` holds now (its snapshot's): those not released in
        this view yet get a prefixed conn and a merged seq of their own (they are in no
        buffer of this view; they are shown and released by held id)."""
        held: dict[int, Item] = {}
        for it in items:
            known = r.held.get(it.held)
            if known is None:
                it.conn = self._prefix(r.display, it.conn)
                self.seq += 1
                it.seq = self.seq
                known = it
            held[it.held] = known
        r.held = held

    def all_breakpoints(self) -> list[Breakpoint]:
        """Every breakpoint of every instance not stopped, as this view names them."""
        return [b for r in self.runs.values() if r.state != "stopped" for b in r.breakpoints]

    def all_held(self) -> list[Item]:
        return [it for r in self.runs.values() for it in r.held.values()]

    def _forget_intercept(self, r: _Run) -> list[Event]:
        """A run that stopped has no breakpoints any more (a new BreakpointsEvent)."""
        if not r.breakpoints:
            return []
        r.breakpoints = []
        return [BreakpointsEvent(self.all_breakpoints())]

    def _lose_held(self, r: _Run, ts: float, *, may_return: bool = False) -> list[Event]:
        """What run ``r`` holds when it stops or goes quiet: an outcome "lost" for each (a
        proxy that shuts down drops what it holds and says so before its goodbye: these
        are the messages of one that died, or that this viewer cannot hear). With
        ``may_return`` (gone quiet) they are kept aside: ``_restore_held`` shows them as
        held again when the run's entries resume (the stream then brings whatever became
        of them meanwhile)."""
        held = r.held
        r.held = {}
        r.lost = held if may_return else {}
        return [OutcomeEvent(it.conn, ts, it.seq, hid, Outcome.LOST) for hid, it in held.items()]

    def _restore_held(self, r: _Run) -> None:
        """Run ``r`` is heard again: what it held when it went quiet is held again (a
        Snapshot with no connections replaces a Session's held messages and breakpoints,
        and touches no counter)."""
        lost = r.lost
        r.lost = {}
        for hid, it in lost.items():
            if hid not in r.held:
                it.outcome = ""  # the Session's buffered row shows it on hold again
                r.held[hid] = it
        self._out.append(
            Snapshot(
                self.seq,
                [],
                self.description,
                self._evicted(),
                self.all_breakpoints(),
                self.all_held(),
            )
        )

    def _evicted(self) -> int:
        """Items the instances' own buffers evicted (as their latest snapshots said)."""
        return sum(r.evicted for r in self.runs.values())

    # ---------------------------------------------------------------- live entries

    def feed(self, entry: Entry, now: float) -> None:
        """Queue the events of one live entry (in stream order)."""
        r, new = self._run(entry.name, entry.run, now, entry.ts)
        r.last_seen = now
        if entry.ts > r.watermark:
            r.watermark = entry.ts
        if r.state != "up" and entry.kind != KIND_BYE:
            r.state = "up"
            self._out.append(InstanceEvent(r.display, entry.ts, "up", "heartbeat again"))
            if r.lost:
                self._restore_held(r)
        elif new:
            self._out.append(InstanceEvent(r.display, entry.ts, "up", "first seen"))
        kind = entry.kind
        if kind == KIND_HEARTBEAT:
            self._heartbeat(r, entry)
            self._check_count(r, entry, 0)
        elif kind == KIND_BYE:
            r.state = "stopped"
            self._check_count(r, entry, 0)
            r.queue.append((entry.ts, now, InstanceEvent(r.display, entry.ts, "stopped", "")))
        elif kind == KIND_SNAPSHOT:
            try:
                snap = entry.snapshot()
            except EntryError as e:
                self._bad(e)
                return
            self.resync_wanted.discard(r.name)
            r.expected = max(r.expected, entry.count)
            r.queue.append((entry.ts, now, snap))
        elif kind == KIND_EVENTS:
            try:
                events = entry.events()
            except EntryError as e:
                self._bad(e)
                return
            skip = self._check_count(r, entry, len(events))
            for ev in events[skip:]:
                if not isinstance(ev, InstanceEvent):  # only the merger says those
                    r.queue.append((_order_ts(ev), now, ev))
        r.started = True

    def _heartbeat(self, r: _Run, entry: Entry) -> None:
        d = entry.data
        if isinstance(d, dict):
            proxy = d.get("proxy")
            if isinstance(proxy, str):
                r.proxy = proxy
            r.commands = d.get("commands") is True

    def _check_count(self, r: _Run, entry: Entry, n: int, report: bool = True) -> int:
        """Gap and duplicate detection by the entry's count; returns how many of its
        leading events were already received."""
        skip = 0
        if entry.count > r.expected and report and (r.started or r.expected > 0):
            missed = entry.count - r.expected
            r.queue.append(
                (
                    -math.inf,
                    r.last_seen,
                    GapEvent(
                        missed,
                        f"{missed} events of {r.display} never reached this viewer "
                        "(the stream was trimmed past it, or Redis restarted)",
                        r.name,
                    ),
                )
            )
            self.resync_wanted.add(r.name)
        elif entry.count < r.expected:
            skip = min(n, r.expected - entry.count)  # sent again after a reconnect
        r.expected = max(r.expected, entry.count + n)
        return skip

    def _bad(self, e: Exception) -> None:
        self.bad_entries += 1
        self.last_error = str(e)

    def bad_entry(self, e: Exception) -> None:
        """An entry the source could not even decode."""
        self._bad(e)

    def resync(self, rec: SnapshotRecord, now: float) -> None:
        """After a gap: the instance's latest snapshot resets its counters."""
        self.resync_wanted.discard(rec.name)
        r = self.current.get(rec.name)
        if r is None or r.run != rec.run:
            return
        r.queue.append((-math.inf, now, rec.snapshot))

    # ---------------------------------------------------------------- release

    def release(self, now: float, force: bool = False) -> list[Event]:
        """The events that may be shown now, in merged order, with merged seqs; also
        reports instances that went quiet."""
        out = self._out
        self._out = []
        for r in self.runs.values():
            if r.state == "up" and now - r.last_seen > self.gone_after:
                r.state = "gone"
                out.append(
                    InstanceEvent(
                        r.display,
                        r.watermark,
                        "gone",
                        f"no heartbeat for {fmt_duration(now - r.last_seen)}",
                    )
                )
                out.extend(self._lose_held(r, r.watermark, may_return=True))
        active = [r for r in self.runs.values() if r.state == "up"]
        while True:
            best: _Run | None = None
            for r in self.runs.values():
                if r.queue and (best is None or r.queue[0][0] < best.queue[0][0]):
                    best = r
            if best is None:
                break
            heads = math.inf  # events of other instances already here: strict order
            marks = math.inf  # what the other live instances have published up to
            for o in self.runs.values():
                if o is best:
                    continue
                if o.queue:
                    heads = min(heads, o.queue[0][0])
                elif o in active:
                    marks = min(marks, o.watermark)
            q = best.queue
            released = 0
            while q:
                ts, arrived, ev = q[0]
                if ts > heads:
                    break
                if not (force or ts <= marks or now - arrived >= self.hold):
                    break
                q.popleft()
                released += 1
                conv = self._convert(best, ev)
                if conv is not None:
                    self._number(conv)
                    out.append(conv)
                    if isinstance(conv, InstanceEvent) and conv.state == "stopped":
                        out.extend(self._forget_intercept(best))
                        out.extend(self._lose_held(best, conv.ts))
            if not released:
                break
        return out

    def _number(self, ev: Event) -> None:
        if isinstance(ev, Message | ControlFrame):
            self.seq += 1
            ev.seq = self.seq
        elif isinstance(ev, Snapshot):
            ev.seq = self.seq

    # ---------------------------------------------------------------- late attach

    def load(
        self,
        records: Iterable[SnapshotRecord],
        entries: Sequence[Entry],
        now: float,
        redis_now_ms: int,
    ) -> list[Event]:
        """The first batch of a late viewer: one Snapshot of every instance (its last
        snapshot record plus the events in ``entries`` after it), the last
        ``backlog_limit`` items of ``entries`` (oldest first) as the backlog, and the
        instances' states. ``redis_now_ms``: Redis's clock now (``TIME``)."""
        recs = {(rec.name, rec.run): rec for rec in records}
        scratch: dict[tuple[str, str], Session] = {}
        last: dict[tuple[str, str], Entry] = {}
        for e in entries:
            key = (e.name, e.run)
            r, _ = self._run(e.name, e.run, now, e.ts)
            if key not in scratch:
                scratch[key] = self._scratch(recs.get(key))
            last[key] = e
            if e.ts > r.watermark:
                r.watermark = e.ts
            if e.kind == KIND_HEARTBEAT:
                self._heartbeat(r, e)
            if e.kind == KIND_EVENTS:
                try:
                    events = e.events()
                except EntryError as err:
                    self._bad(err)
                    continue
                skip = self._check_count(r, e, len(events), report=False)
                events = events[skip:]
                # the scratch session counts, the queue becomes the backlog
                sess = scratch[key]
                for ev in events:
                    if isinstance(ev, InstanceEvent):
                        continue
                    sess.apply(_copy(ev))
                    r.queue.append((_order_ts(ev), now, ev))
            elif e.kind == KIND_SNAPSHOT:
                r.expected = max(r.expected, e.count)
            else:
                self._check_count(r, e, 0, report=False)
            r.started = True
        # runs known only from their snapshot (idle or trimmed out of the stream)
        for key, rec in recs.items():
            if key not in scratch:
                self._run(rec.name, rec.run, now)
                scratch[key] = self._scratch(rec)
        self._out = [ev for ev in self._out if not isinstance(ev, InstanceEvent)]
        # the head Snapshot has every instance's breakpoints as they are now
        backlog = [ev for ev in self.release(now, force=True) if type(ev) is not BreakpointsEvent]
        items = [ev for ev in backlog if isinstance(ev, Message | ControlFrame)]
        if len(items) > self.backlog_limit:
            cut = items[-self.backlog_limit].seq
            backlog = [
                ev for ev in backlog if not isinstance(ev, Message | ControlFrame) or ev.seq >= cut
            ]
        conns: list[ConnSnapshot] = []
        for key, sess in scratch.items():
            r = self.runs[key]
            for c in sess.connections.values():
                cs = c.snapshot()
                cs.handshake = dataclasses.replace(cs.handshake, conn=self._prefix(r.display, c.id))
                conns.append(cs)
            r.evicted = sess.upstream_evicted
            r.breakpoints = [self._breakpoint(r, b) for b in sess.breakpoints]
            self._adopt_held(r, sess.held.values())
        head: list[Event] = []
        lost: list[Event] = []
        for key, r in self.runs.items():
            le = last.get(key)
            lrec = recs.get(key)
            newest = self.current.get(r.name) is r
            if le is not None and le.kind == KIND_BYE:
                r.state = "stopped"
                detail = "said goodbye"
            elif not newest:
                r.state = "stopped"
                detail = f"restarted as {self.current[r.name].display}"
            else:
                seen_ms = le.redis_ms if le is not None else 0
                age = (redis_now_ms - seen_ms) / 1000 if seen_ms else math.inf
                if age > self.gone_after:
                    r.state = "gone"
                    detail = (
                        "no heartbeat in the stream"
                        if age == math.inf
                        else f"no heartbeat for {fmt_duration(age)}"
                    )
                else:
                    r.state = "up"
                    detail = r.proxy
                r.last_seen = now - (0.0 if age == math.inf else age)
            ts = le.ts if le is not None else (lrec.ts if lrec is not None else 0.0)
            head.append(InstanceEvent(r.display, ts, r.state, detail))
            if r.state != "up":
                # what it held is lost (kept aside while it may come back): the backlog
                # shows those messages, these outcomes after it say what became of them
                lost.extend(self._lose_held(r, ts, may_return=r.state == "gone"))
            r.started = r.started or lrec is not None
            if lrec is not None and le is None:
                r.expected = max(r.expected, lrec.count)
        snap = Snapshot(
            self.seq, conns, self.description, self._evicted(), self.all_breakpoints(),
            self.all_held(),
        )  # fmt: skip
        return [
            snap,
            *head,
            *[ev for ev in backlog if not isinstance(ev, InstanceEvent)],
            *lost,
        ]

    def _scratch(self, rec: SnapshotRecord | None) -> Session:
        sess = Session(max_items=16, max_bytes=1 << 30, max_connections=1 << 30)
        if rec is not None:
            sess.apply(_copy(rec.snapshot))
        return sess


def _copy(ev: Event) -> Event:
    """What the scratch session may keep while the original is renamed: the handshakes
    are copied (items are applied before they are renumbered and are not kept)."""
    if isinstance(ev, HandshakeEvent | RefusedEvent):
        return type(ev)(dataclasses.replace(ev.handshake))
    if isinstance(ev, Snapshot):
        return Snapshot(
            ev.seq,
            [
                dataclasses.replace(c, handshake=dataclasses.replace(c.handshake))
                for c in ev.connections
            ],
            ev.proxy,
            ev.evicted_messages,
            list(ev.breakpoints),
            [dataclasses.replace(it) for it in ev.held],
        )
    return ev
