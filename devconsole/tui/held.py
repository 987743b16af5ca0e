"""Held messages as every pane shows them: counts, the oldest-first list, what became of
a held message, and which rows changed in place.

The proxy holds messages that match a breakpoint (docs/intercept.md) or a rule with
``hold`` (docs/rules.md: breakpoint id 0, the rule's name in ``rule``); the Session keeps
them in ``Session.held`` (by held id) and updates a buffered item in place when its
``OutcomeEvent`` arrives. ``HeldTracker`` (one per Session, ``HeldTracker.of``) records
the seqs of those outcomes, so a view whose render cache is keyed by seq re-renders only
those rows, and computes the per-connection counts once per Session version, only when a
pane asks and only when something is held: nothing is done per message.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections import Counter
from collections.abc import Callable
from typing import ClassVar

from devconsole.decoders import safe_text
from devconsole.model import (
    Breakpoint,
    Item,
    Message,
    Outcome,
    OutcomeEvent,
    Snapshot,
    conn_instance,
)
from devconsole.rules import hold_of_action
from devconsole.session import Session
from devconsole.text import fmt_elapsed

# Above this many held messages (a flood against a broad breakpoint holds tens of
# thousands) the counts and the list are recomputed at most every RECOMPUTE_EVERY seconds,
# not on every Session version: a redraw tick stays cheap.
MANY_HELD = 2_000
RECOMPUTE_EVERY = 0.5

# What became of a held message, in words (the detail pane, the intercept view).
OUTCOME_WORDS: dict[str, str] = {
    Outcome.FORWARDED: "forwarded",
    Outcome.EDITED: "forwarded edited",
    Outcome.DROPPED: "dropped",
    Outcome.TIMEOUT_FORWARDED: "timed out, forwarded",
    Outcome.TIMEOUT_DROPPED: "timed out, dropped",
    Outcome.LOST: "lost with its instance",
}


class HeldTracker:
    """Held messages of one Session for the screen: ``count(conn)``, ``ordered()`` and
    ``take_changed()`` (seqs whose item changed in place since the last call)."""

    _trackers: ClassVar[weakref.WeakKeyDictionary[Session, HeldTracker]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, session: Session, clock: Callable[[], float] = time.monotonic) -> None:
        self.session = session
        self.clock = clock
        self._at = 0.0
        self._changed: list[int] = []
        self._version = -1
        self._counts: Counter[str] = Counter()
        self._ordered: list[Item] = []
        session.observers.append(self._observe)

    @classmethod
    def of(cls, session: Session) -> HeldTracker:
        """The tracker of ``session`` (made, and observing it, on first use)."""
        tracker = cls._trackers.get(session)
        if tracker is None:
            tracker = cls._trackers[session] = cls(session)
        return tracker

    def _observe(self, ev: object) -> None:
        if ev.__class__ is OutcomeEvent:
            assert isinstance(ev, OutcomeEvent)
            self._changed.append(ev.seq)
        elif ev.__class__ is Snapshot:
            # held again (a merged view's instance heard from after it went quiet): the
            # row that said "lost" says "held" again
            assert isinstance(ev, Snapshot)
            self._changed.extend(it.seq for it in ev.held)

    def take_changed(self) -> list[int]:
        """Seqs whose buffered item got its outcome since the last call."""
        changed = self._changed
        if changed:
            self._changed = []
        return changed

    def _update(self) -> None:
        s = self.session
        if s.version == self._version:
            return
        held = s.held
        now = self.clock()
        if len(held) > MANY_HELD and self._version >= 0 and now - self._at < RECOMPUTE_EVERY:
            return
        self._version = s.version
        self._at = now
        if not held:
            self._counts = Counter()
            self._ordered = []
            return
        self._ordered = sorted(held.values(), key=lambda it: it.held)
        self._counts = Counter(it.conn for it in self._ordered)

    def count(self, conn: str | None = None) -> int:
        """Messages held now, on ``conn`` or everywhere."""
        if conn is None:
            return len(self.session.held)
        if not self.session.held:
            return 0
        self._update()
        return self._counts.get(conn, 0)

    def connections(self) -> int:
        """How many connections hold something."""
        self._update()
        return len(self._counts)

    def ordered(self) -> list[Item]:
        """The held messages, oldest first (by held id)."""
        if not self.session.held:
            return []
        self._update()
        return self._ordered

    def breakpoint(self, bp_id: int, conn: str = "") -> Breakpoint | None:
        """Breakpoint ``bp_id`` of the instance of ``conn`` (a merged view over Redis)."""
        instance = conn_instance(conn)
        for bp in self.session.breakpoints:
            if bp.id == bp_id and bp.instance == instance:
                return bp
        return None


def hold_spec(tracker: HeldTracker, item: Item) -> Breakpoint | None:
    """What holds ``item`` and until when: its breakpoint, or for a rule's hold
    (breakpoint 0) the timeout its action names (``rules.hold_words``), as a Breakpoint
    that exists nowhere else. None: the breakpoint is gone, or an older proxy's rule."""
    if item.breakpoint or not item.rule:
        return tracker.breakpoint(item.breakpoint, item.conn)
    hold = hold_of_action(item.action)
    if hold is None:
        return None
    return Breakpoint(0, "", item.conn, hold.timeout, hold.on_timeout)


def held_for(item: Item, now: float) -> float:
    """Seconds ``item`` has been held (its ``ts`` is the proxy's wall clock)."""
    return max(0.0, now - item.ts)


def deadline_text(item: Item, bp: Breakpoint | None, now: float) -> str:
    """``forwards in 1m48s`` / ``drops in 5s`` (its breakpoint's timeout), or "" when the
    breakpoint is gone (the proxy still applies the timeout it had)."""
    if bp is None:
        return ""
    left = bp.timeout - held_for(item, now)
    verb = "drops" if bp.on_timeout == "drop" else "forwards"
    return f"{verb} in {fmt_elapsed(max(0.0, left))}"


def held_by(item: Item) -> str:
    """What held ``item``: ``breakpoint 1``, or ``rule NAME`` for a rule's ``hold``
    (docs/rules.md: it has no breakpoint of its own, id 0)."""
    if item.breakpoint or not item.rule:
        return f"breakpoint {item.breakpoint}"
    return safe_text(f"rule {item.rule}")


def outcome_words(item: Item) -> str:
    """``held by breakpoint 1``, ``breakpoint 1: forwarded edited``..., or ""."""
    if not item.held:
        return ""
    if not item.outcome:
        return f"held by {held_by(item)}"
    return f"{held_by(item)}: {OUTCOME_WORDS.get(item.outcome, item.outcome)}"


def as_sent(item: Item) -> Item:
    """The message as the receiver got it: an edited message with its edited body (a
    copy; the original keeps its payload), anything else as it is."""
    if isinstance(item, Message) and item.edited is not None:
        return dataclasses.replace(
            item,
            payload=item.edited,
            opcode=item.edited_opcode or item.opcode,
            size=item.edited_size or len(item.edited),
            utf8_ok=True,
            frames=1,
            frame_sizes=(),
        )
    return item
