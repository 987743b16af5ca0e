"""The proxy side of scale-out: publish events to a Redis Stream, run commands from it.

``RedisPublisher.publish`` is an event sink (``Capture.add_sink``): called on the proxy's
loop for every event, it only appends to a list. A task of its own batches what was
queued into stream entries (``devconsole.instances`` describes the format), one XADD per
entry in one pipeline per flush, ``MAXLEN ~`` so Redis memory stays bounded. Encoding and
the round trip to Redis happen there, never in the relay's hooks.

When Redis is unreachable the proxy keeps relaying: the publisher reconnects with
exponential backoff (0.1 s doubling to 5 s, with jitter), holds up to ``max_pending``
events meanwhile, and past that drops what it holds, counts it, and on reconnect
publishes a ``GapEvent`` with the count and a fresh snapshot, so viewers show the hole
and their counters are right again. Entries that were in flight when the connection
broke are sent again; viewers drop what they already have (by the entry's count).

With ``accept_commands`` it also subscribes to ``STREAM:commands:NAME`` and runs each
command through the same handler as the local tap, answering on the viewer's reply
channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

import msgpack

from devconsole import wire
from devconsole.instances import (
    FORMAT,
    HEARTBEAT_INTERVAL,
    KIND_BYE,
    KIND_EVENTS,
    KIND_HEARTBEAT,
    KIND_SNAPSHOT,
    encode_entry,
    encode_snapshot_record,
)
from devconsole.model import (
    Command,
    CommandResult,
    ControlFrame,
    Event,
    GapEvent,
    Message,
    Snapshot,
)
from devconsole.scale.config import RedisTarget, keys, redis_error_text

logger = logging.getLogger("devconsole.scale.publisher")

FLUSH_INTERVAL = 0.01  # seconds the flusher waits to gather a batch
ENTRY_EVENTS = 1_000  # events per stream entry
ENTRY_BYTES = 128 << 10  # payload bytes per stream entry (at least one event)
FLUSH_ENTRIES = 64  # entries per pipeline round trip
SNAPSHOT_EVERY = 2.0  # seconds between snapshot records (when something changed)
SNAPSHOT_TTL = 24 * 3600  # the snapshots hash outlives idle instances this long
MAX_PENDING = 10_000  # events held while Redis is unreachable
MAX_PENDING_BYTES = 16 << 20
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0

CommandHandler = Callable[[Command], Coroutine[Any, Any, CommandResult]]


def _cost(ev: Event) -> int:
    t = type(ev)
    if t is Message or t is ControlFrame or isinstance(ev, Message):
        return len(ev.payload)  # type: ignore[union-attr]
    return 64


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)


class RedisPublisher:
    """Publishes one proxy's events to a Redis Stream (see the module doc)."""

    def __init__(
        self,
        target: RedisTarget,
        name: str,
        *,
        stream: str,
        maxlen: int,
        snapshot: Callable[[], Snapshot],
        proxy_desc: Callable[[], str] = lambda: "",
        on_command: CommandHandler | None = None,
        max_pending: int = MAX_PENDING,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        heartbeat: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.target = target
        self.name = name
        self.keys = keys(stream)
        self.maxlen = maxlen
        self.snapshot = snapshot
        self.proxy_desc = proxy_desc
        self.on_command = on_command
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.heartbeat = heartbeat
        self.run_id = secrets.token_hex(6)
        # what the proxy queued and the flusher has not taken yet
        self.pending: list[Event] = []
        self.pending_bytes = 0
        self.wake = asyncio.Event()
        # entries built but not yet acknowledged by Redis: sent again after a reconnect
        self.inflight: list[bytes] = []
        self.count = 0  # events assigned to entries so far (the next entry's count)
        self.missed = 0  # events dropped while Redis was unreachable, not yet reported
        self.missed_total = 0
        self.gap_snapshot: Snapshot | None = None  # the state right after the drop
        self.published_events = 0
        self.published_entries = 0
        self.connected = False
        self.last_error = ""
        self.outages = 0
        self._outage_since: float | None = None
        self._last_write = 0.0
        self._last_snapshot = 0.0
        self._snapshot_due = True
        self._stopping = False
        self._client: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---------------------------------------------------------------- the sink

    def publish(self, ev: Event) -> None:
        """Queue ``ev`` (called for every event: O(1), no I/O)."""
        q = self.pending
        q.append(ev)
        t = type(ev)
        self.pending_bytes += len(ev.payload) if t is Message or t is ControlFrame else 64  # type: ignore[union-attr]
        n = len(q)
        if n == 1:
            self.wake.set()
        elif n > self.max_pending or self.pending_bytes > self.max_pending_bytes:
            # Redis is away (or slower than the traffic) and the backlog is full: drop
            # it, remember the state after it so viewers can be re-synced, and report
            # the count with the next write.
            self.missed += len(q)
            self.missed_total += len(q)
            q.clear()
            self.pending_bytes = 0
            self.gap_snapshot = self.snapshot()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._spawn(self._run())
        if self.on_command is not None:
            self._spawn(self._commands())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def stop(self, timeout: float = 1.0) -> None:
        """Flush what is queued and say goodbye (best effort within ``timeout``)."""
        self._stopping = True
        self.wake.set()
        client = self._client
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if client is not None and self.connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush(client, bye=True), timeout)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    # ---------------------------------------------------------------- publishing

    async def _run(self) -> None:
        errors = _redis_errors()
        backoff = BACKOFF_FIRST
        while not self._stopping:
            client = self.target.client()
            self._client = client
            try:
                await client.ping()
                self._connected()
                backoff = BACKOFF_FIRST
                await self._pump(client)
            except asyncio.CancelledError:
                raise
            except errors as e:
                self._disconnected(e)
            except Exception as e:  # a bug here must never reach the relay
                logger.exception("redis publisher failed")
                self._disconnected(e)
            with contextlib.suppress(Exception):
                await client.aclose()
            if self._stopping:
                break
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _connected(self) -> None:
        self.connected = True
        self._snapshot_due = True
        if self._outage_since is not None:
            logger.warning(
                "redis %s is back after %.1f s; publishing to stream %s again",
                self.target.display,
                time.monotonic() - self._outage_since,
                self.keys["stream"],
            )
        else:
            logger.info(
                "publishing to redis %s, stream %s, as %s",
                self.target.display,
                self.keys["stream"],
                self.name,
            )
        self._outage_since = None
        self.wake.set()

    def _disconnected(self, e: BaseException) -> None:
        was = self.connected
        self.connected = False
        self.last_error = redis_error_text(e)
        if was or self._outage_since is None:
            self.outages += 1
            self._outage_since = time.monotonic()
            logger.warning(
                "redis %s unreachable (%s); relaying goes on, publishing is retried",
                self.target.display,
                self.last_error,
            )

    async def _pump(self, client: Any) -> None:
        while not self._stopping:
            if not self.pending and not self.inflight and not self._snapshot_due:
                wait = self.heartbeat - (time.monotonic() - self._last_write)
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), wait)
                self.wake.clear()
                if self.pending:
                    await asyncio.sleep(FLUSH_INTERVAL)  # gather a batch
            await self._flush(client)

    def _entry(self, kind: str, count: int, data: Any) -> bytes:
        return encode_entry(self.run_id, kind, count, time.time(), data)

    def _take(self, bye: bool) -> None:
        """Turn what is queued into entries (``inflight``): no await in here, so the
        snapshot taken at the end is exactly the state after those events."""
        out = self.inflight
        if self._snapshot_due and not out:
            # first write after (re)connecting: who we are, before anything else
            out.append(self._entry(KIND_HEARTBEAT, self.count, self._hello()))
        if self.missed:
            gap = GapEvent(
                self.missed,
                f"{self.missed} events of {self.name} were not published: "
                f"redis {self.target.display} was unreachable",
            )
            out.append(self._entry(KIND_EVENTS, self.count, [wire.encode_event(gap)]))
            self.count += 1
            self.missed = 0
            snap = self.gap_snapshot
            self.gap_snapshot = None
            if snap is not None:
                out.append(self._entry(KIND_SNAPSHOT, self.count, wire.encode_event(snap)))
        events = self.pending
        self.pending = []
        self.pending_bytes = 0
        start = 0
        nbytes = 0
        for i, ev in enumerate(events):
            nbytes += _cost(ev)
            if i + 1 - start >= ENTRY_EVENTS or nbytes >= ENTRY_BYTES:
                self._add_events(out, events[start : i + 1])
                start = i + 1
                nbytes = 0
        if start < len(events):
            self._add_events(out, events[start:])
        if bye:
            out.append(self._entry(KIND_BYE, self.count, None))

    def _add_events(self, out: list[bytes], events: list[Event]) -> None:
        out.append(self._entry(KIND_EVENTS, self.count, [wire.encode_event(e) for e in events]))
        self.count += len(events)

    def _hello(self) -> dict[str, Any]:
        return {"proxy": self.proxy_desc(), "commands": self.on_command is not None}

    async def _flush(self, client: Any, bye: bool = False) -> None:
        self._take(bye)
        now = time.monotonic()
        record: bytes | None = None
        if self._snapshot_due or (
            now - self._last_snapshot >= SNAPSHOT_EVERY and self.published_events
        ):
            snap = self.snapshot()
            record = encode_snapshot_record(self.run_id, self.count, time.time(), snap)
            if self._snapshot_due:
                # after a (re)connect: viewers whose stream lost entries re-sync from it
                self.inflight.append(
                    self._entry(KIND_SNAPSHOT, self.count, wire.encode_event(snap))
                )
        if not self.inflight and record is None:
            if now - self._last_write >= self.heartbeat:
                self.inflight.append(self._entry(KIND_HEARTBEAT, self.count, self._hello()))
            else:
                return
        stream = self.keys["stream"]
        name = self.name
        while self.inflight or record is not None:
            chunk = self.inflight[:FLUSH_ENTRIES]
            pipe = client.pipeline(transaction=False)
            for m in chunk:
                pipe.xadd(stream, {"i": name, "m": m}, maxlen=self.maxlen, approximate=True)
            if record is not None and len(chunk) == len(self.inflight):
                pipe.hset(self.keys["snapshots"], name, record)
                pipe.expire(self.keys["snapshots"], SNAPSHOT_TTL)
            await pipe.execute()
            del self.inflight[: len(chunk)]
            self.published_entries += len(chunk)
            self._last_write = time.monotonic()
            if record is not None and not self.inflight:
                record = None
                self._last_snapshot = self._last_write
                self._snapshot_due = False
        self.published_events = self.count

    # ---------------------------------------------------------------- commands

    async def _commands(self) -> None:
        """Subscribe to this instance's command channel; run each command."""
        assert self.on_command is not None
        errors = _redis_errors()
        channel = self.keys["commands"] + self.name
        backoff = BACKOFF_FIRST
        while not self._stopping:
            client = self.target.client(socket_timeout=None)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                backoff = BACKOFF_FIRST
                async for msg in pubsub.listen():
                    if msg.get("type") == "message":
                        self._spawn(self._run_command(client, msg.get("data")))
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
                raise
            except errors:
                pass
            except Exception:
                logger.exception("redis command listener failed")
            with contextlib.suppress(Exception):
                await pubsub.aclose()
                await client.aclose()
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _run_command(self, client: Any, data: Any) -> None:
        assert self.on_command is not None
        try:
            req = msgpack.unpackb(
                data, raw=False, max_bin_len=16 << 20, max_array_len=1024, max_map_len=64
            )
        except Exception:
            logger.warning("ignored a malformed command from redis")
            return
        if not (
            isinstance(req, list)
            and len(req) >= 4
            and req[0] == FORMAT
            and isinstance(req[1], str)
            and req[1].startswith(self.keys["replies"])
            and isinstance(req[2], str)
        ):
            logger.warning("ignored a command from redis without a valid reply channel")
            return
        reply, run, body = req[1], req[2], req[3]
        cid = body[-1] if isinstance(body, list) and body and isinstance(body[-1], int) else 0
        try:
            cmd = wire.decode_command(body)
        except wire.WireError as e:
            res = CommandResult(cid, False, str(e))
        else:
            if run and run != self.run_id:
                res = CommandResult(
                    cmd.id,
                    False,
                    f"{self.name} restarted since: the connections of its earlier run are gone",
                )
            else:
                try:
                    res = await self.on_command(cmd)
                except Exception as e:  # a bug in a command must not kill the listener
                    logger.exception("command failed")
                    res = CommandResult(cmd.id, False, f"internal error: {e}")
        with contextlib.suppress(*_redis_errors()):
            await client.publish(
                reply, msgpack.packb([FORMAT, wire.encode_result(res)], use_bin_type=True)
            )
