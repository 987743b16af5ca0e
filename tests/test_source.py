"""MemorySource: events already in memory, read-only."""

from __future__ import annotations

import asyncio

import pytest

from devconsole.model import (
    CloseCommand,
    Event,
    GapEvent,
    HandshakeEvent,
    InjectCommand,
    Message,
    Opcode,
)
from devconsole.session import Session
from devconsole.source import MemorySource, Source, SourceError
from devconsole.tap import TapClient
from tests.factories import make_handshake


def events() -> list[Event]:
    hs = make_handshake("c1", 1.0, client="127.0.0.1:1", server="127.0.0.1:2", url="ws://h/")
    return [
        HandshakeEvent(hs),
        Message(1, "c1", 2.0, "client", Opcode.TEXT, b"hi", 2, 8),
        Message(2, "c1", 3.0, "server", Opcode.TEXT, b"yo", 2, 4),
    ]


async def test_memory_source_delivers_its_events_then_waits_for_close() -> None:
    evs = events()
    src: Source = MemorySource(evs, description="saved.dcap")
    assert src.description == "saved.dcap"
    batches: list[list[Event]] = []
    session = Session()

    def on_events(batch: list[Event]) -> None:
        batches.append(batch)
        session.apply_all(batch)

    task = asyncio.ensure_future(src.run(on_events))
    await asyncio.wait_for(src.started.wait(), 5)
    assert batches == [evs]
    assert not task.done()  # a source runs until it is closed, like a live tap
    assert session.connections["c1"].msgs_in == 1
    assert session.connections["c1"].msgs_out == 1
    await src.close()
    await asyncio.wait_for(task, 1)
    assert len(batches) == 1


async def test_memory_source_with_no_events_never_calls_back() -> None:
    src = MemorySource([])
    calls: list[list[Event]] = []
    task = asyncio.ensure_future(src.run(calls.append))
    await asyncio.wait_for(src.started.wait(), 5)
    assert not src.closed
    await src.close()
    await asyncio.wait_for(task, 1)
    assert calls == []
    assert src.description == "memory"


async def test_memory_source_copies_the_event_list() -> None:
    evs = events()
    src = MemorySource(evs)
    evs.append(GapEvent(1, "later"))
    assert len(src.events) == 3


async def test_memory_source_refuses_commands_but_records_them() -> None:
    src = MemorySource(events())
    cmd = CloseCommand("c1", 4000, "bye", id=7)
    res = await src.command(cmd)
    assert res.id == 7
    assert not res.ok
    assert "read-only" in res.error
    res = await src.command(InjectCommand("c1", "server", Opcode.TEXT, b"x", id=8))
    assert (res.id, res.ok) == (8, False)
    assert [c.id for c in src.commands] == [7, 8]


async def test_memory_source_delivers_pushed_batches_and_can_accept_commands() -> None:
    first, *rest = events()
    src = MemorySource([first], command_error=None)
    with pytest.raises(SourceError, match="not running"):
        src.push(rest)
    batches: list[list[Event]] = []
    task = asyncio.ensure_future(src.run(batches.append))
    await asyncio.wait_for(src.started.wait(), 5)
    src.push(rest)  # like a live tap: later batches on the viewer's loop
    assert batches == [[first], rest]
    res = await src.command(CloseCommand("c1", 4000, id=3))
    assert (res.id, res.ok, res.error) == (3, True, "")
    await src.close()
    await asyncio.wait_for(task, 1)
    assert src.closed


async def test_a_tap_client_that_is_not_connected_refuses_commands() -> None:
    src: Source = TapClient("/nonexistent/tap.sock")
    assert src.description == "tap /nonexistent/tap.sock"
    with pytest.raises(SourceError, match="not connected"):
        await src.command(CloseCommand("c1", 1000))
