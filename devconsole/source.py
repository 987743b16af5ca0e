"""What a viewer (TUI, CLI) reads Events from: a live tap, or events already in memory.

Core module: no I/O of its own. ``devconsole.tap.TapClient`` is the live implementation.
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
    """Events already in memory (tests, replays). Commands are refused."""

    def __init__(self, events: Sequence[Event], description: str = "memory") -> None:
        self.events = list(events)
        self.description = description
        self.commands: list[Command] = []
        self._closed = asyncio.Event()

    async def run(self, on_events: EventsCallback) -> None:
        if self.events:
            on_events(self.events)
        await self._closed.wait()

    async def command(self, cmd: Command) -> CommandResult:
        self.commands.append(cmd)
        return CommandResult(cmd.id, False, "this source is read-only")

    async def close(self) -> None:
        self._closed.set()
