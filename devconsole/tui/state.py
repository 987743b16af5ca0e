"""What the screens share, and how they ask for work they do not do themselves.

``make_app`` builds one ``ViewState`` (the Session, the heartbeat monitor, the rates,
the clocks, the source's name and state) and hands it to the app and to every screen.
The app updates ``source_state`` and the rates on its redraw timer; screens read them.

A screen never imports the app: to run a Command on the proxy it posts
``CommandRequested``, which bubbles up to the app, and the app shows the result. The app
imports the screens, never the reverse.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from devconsole.analysis.heartbeat import HeartbeatMonitor
from devconsole.decoders.protocols import DecoderRule
from devconsole.model import Command
from devconsole.session import Session
from devconsole.tui.decoding import LiveAnalysis
from devconsole.tui.rates import RateMeter


@dataclass
class ViewState:
    """The state every screen reads. Build it with ``ViewState.create``."""

    session: Session
    heartbeat: HeartbeatMonitor  # has seen every event since the viewer started
    rates: RateMeter
    # protocols (decoding, pairs, protocol heartbeats) and the backplane trace
    live: LiveAnalysis
    clock: Callable[[], float] = time.monotonic  # rates, scan progress, report throttle
    wall_clock: Callable[[], float] = time.time  # the timebase of event timestamps
    tz: _dt.tzinfo | None = None  # None: local time
    source_description: str = ""  # e.g. "tap /run/user/0/devconsole/tap.sock"
    source_state: str = "live"  # "live", "source ended", "proxy exited (1)"...
    rates_changed: bool = field(default=False)  # the last redraw tick moved a rate
    # the recording the proxy writes (or the one opened): items the buffer evicted are
    # read back from it (``devconsole.tui.scrollback``); None until the source says so
    recording: Any = None  # devconsole.store.segments.SegmentIndex

    @classmethod
    def create(
        cls,
        session: Session,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        tz: _dt.tzinfo | None = None,
        source_description: str = "",
        rules: Sequence[DecoderRule] = (),
        trace_key: str | None = None,
    ) -> ViewState:
        """A view of ``session``. Its heartbeat monitor, protocol tracker, pairs and
        fan-out trace observe the session from now on (the report needs the pings of
        connections whose items the buffer may since have evicted), after reading what
        the session already holds. ``rules``: the viewer's ``--decoder`` rules."""
        live = LiveAnalysis.attach(session, rules, trace_key=trace_key)
        return cls(
            session=session,
            heartbeat=live.heartbeat,
            live=live,
            rates=RateMeter(clock),
            clock=clock,
            wall_clock=wall_clock,
            tz=tz,
            source_description=source_description,
        )


class CommandRequested(Message):
    """A screen asks the app to send ``command`` to the proxy; ``label`` names the
    connection in the notification that reports the result (``#3``)."""

    def __init__(self, command: Command, label: str = "") -> None:
        super().__init__()
        self.command = command
        self.label = label


class FramesRequested(Message):
    """A screen asks the app to send several Commands that belong together (the frames
    of one protocol message: a Socket.IO packet and its binary attachments), in order."""

    def __init__(self, commands: Sequence[Command], label: str = "", what: str = "") -> None:
        super().__init__()
        self.commands = list(commands)
        self.label = label
        self.what = what
