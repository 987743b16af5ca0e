"""What a viewer (TUI, CLI) reads Events from: the ``Source`` protocol, and
``MemorySource`` (events in memory).

I/O layer: a Source is asynchronous by nature (``run`` delivers batches until the source
ends), so this module imports asyncio and is not a core module; it imports nothing else
but the model. Implementations: ``devconsole.tap.TapClient`` (a live proxy),
``devconsole.store.capture.FileSource`` (a capture file) and ``MemorySource``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from devconsole.model import Command, CommandResult, Event

EventsCallback = Callable[[list[Event]], None]


class SourceError(Exception):
    """The source cannot be read (tap not running, bad token, corrupt file...)."""


class Source(Protocol):
    description: str  # e.g. "tap /run/user/0/devconsole/tap.sock"

    async def run(self, on_events: EventsCallback) -> None:
        """Deliver batches of events to ``on_events`` until the source ends or is closed.
        Raises SourceError if it cannot be read."""
        ...

    async def command(self, cmd: Command) -> CommandResult:
        """Send a Command to the capture addon and wait for its result."""
        ...

    async def close(self) -> None: ...


class MemorySource:
    """Events already in memory, and more pushed later (``push``) as a live tap delivers
    them: tests, replays, benchmarks. Commands are recorded (``commands``) and answered
    with ``command_error`` (by default: refused, this source is read-only); with
    ``command_error=None`` they succeed, as if a capture addon ran them."""

    def __init__(
        self,
        events: Sequence[Event] = (),
        description: str = "memory",
        command_error: str | None = "this source is read-only",
    ) -> None:
        self.events = list(events)
        self.description = description
        self.command_error = command_error
        self.commands: list[Command] = []
        self.started = asyncio.Event()  # set once ``run`` delivered the initial events
        self._on_events: EventsCallback | None = None
        self._closed = asyncio.Event()

    async def run(self, on_events: EventsCallback) -> None:
        self._on_events = on_events
        if self.events:
            on_events(self.events)
        self.started.set()
        await self._closed.wait()

    def push(self, events: Sequence[Event]) -> None:
        """Deliver ``events`` now, on the caller's thread (the viewer's loop)."""
        if self._on_events is None:
            raise SourceError("the source is not running")
        self._on_events(list(events))

    async def command(self, cmd: Command) -> CommandResult:
        self.commands.append(cmd)
        if self.command_error is not None:
            return CommandResult(cmd.id, False, self.command_error)
        return CommandResult(cmd.id, True)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def close(self) -> None:
        self._closed.set()
