"""The viewer side of scale-out: a ``Source`` reading every proxy's events from Redis.

``devconsole attach redis://...``, ``tail|conns|report|record --tap redis://...`` and the
TUI use it like a tap. It reads the snapshots hash and the stream's recent history first
(a late viewer sees what happened, with right counters), then follows the stream
(``XREAD BLOCK``). ``devconsole.instances.InstanceMerger`` does the merging; this module
only talks to Redis. A lost Redis connection is retried with backoff; meanwhile the
instances are reported gone, and anything the stream lost is reported as a gap.

Commands go to the instance that owns the connection (``INSTANCE/ID``), or the held
message or breakpoint (``INSTANCE/ID`` too: the command's ``instance``), over pub/sub:
``STREAM:commands:INSTANCE``, answered on a reply channel of this viewer's own. Only an
instance started with ``--accept-commands`` listens; otherwise the command fails at once
with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import secrets
import time
from typing import Any

import msgpack

from devconsole import wire
from devconsole.instances import (
    FORMAT,
    Entry,
    EntryError,
    InstanceMerger,
    SnapshotRecord,
    decode_entry,
    decode_snapshot_record,
    valid_instance_name,
)
from devconsole.model import (
    INSTANCE_SEP,
    BreakpointCommand,
    Command,
    CommandResult,
    DropCommand,
    EnableBreakpointCommand,
    Event,
    ForwardCommand,
    RemoveBreakpointCommand,
)
from devconsole.scale.config import (
    DEFAULT_STREAM,
    RedisConfigError,
    keys,
    parse_redis_url,
    redis_error_text,
)
from devconsole.scale.publisher import BACKOFF_FIRST, BACKOFF_MAX
from devconsole.source import EventsCallback, SourceError

logger = logging.getLogger("devconsole.scale.source")

PAGE = 500  # entries per XREVRANGE / XREAD
BLOCK_MS = 200
TICK = 0.05  # seconds between releases of held events
COMMAND_TIMEOUT = 15.0


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisSource:
    """A Source over a Redis stream fed by ``devconsole proxy --publish``."""

    def __init__(
        self,
        url: str,
        *,
        stream: str | None = None,
        history: bool = True,
        backlog_limit: int = 100_000,
        timeout: float = 5.0,
    ) -> None:
        try:
            self.target = parse_redis_url(url)
        except RedisConfigError as e:
            raise SourceError(str(e)) from None
        stream = stream or self.target.stream or DEFAULT_STREAM
        self.keys = keys(stream)
        self.stream = stream
        self.history = history
        self.timeout = timeout
        self.description = f"redis {self.target.display} stream {stream}"
        self.proxy = self.description
        self.merger = InstanceMerger(self.description, backlog_limit=backlog_limit)
        self._client: Any = None
        self._closed = asyncio.Event()
        self._next_id = 1
        self.connected = False

    # ---------------------------------------------------------------- connecting

    async def connect(self) -> None:
        client = self.target.client(socket_timeout=self.timeout + BLOCK_MS / 1000)
        try:
            await asyncio.wait_for(client.ping(), self.timeout)
        except Exception as e:
            with contextlib.suppress(Exception):
                await client.aclose()
            raise SourceError(
                f"cannot reach {self.target.display}: {redis_error_text(e)}"
            ) from None
        self._client = client
        self.connected = True

    async def close(self) -> None:
        self._closed.set()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()

    # ---------------------------------------------------------------- reading

    async def run(self, on_events: EventsCallback) -> None:
        if self._client is None:
            await self.connect()
        client = self._client
        if self.history:
            last_id = await self._load(client, on_events)
        else:
            newest = await client.xrevrange(self.stream, count=1)
            last_id = _str(newest[0][0]) if newest else "0-0"
        ticker = asyncio.ensure_future(self._tick(on_events))
        backoff = BACKOFF_FIRST
        try:
            while not self._closed.is_set():
                try:
                    resp = await client.xread({self.stream: last_id}, count=PAGE, block=BLOCK_MS)
                    if not self.connected:
                        logger.warning("redis %s is back", self.target.display)
                        self.connected = True
                    backoff = BACKOFF_FIRST
                except Exception as e:
                    if self._closed.is_set():
                        break
                    if self.connected:
                        logger.warning(
                            "redis %s unreachable (%s); retrying",
                            self.target.display,
                            redis_error_text(e),
                        )
                    self.connected = False
                    await self._sleep(backoff * random.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                now = time.monotonic()
                for _stream, entries in resp or ():
                    for eid, fields in entries:
                        last_id = _str(eid)
                        try:
                            self.merger.feed(decode_entry(fields, last_id), now)
                        except EntryError as e:
                            self.merger.bad_entry(e)
                if self.merger.resync_wanted:
                    await self._resync(client)
                evs = self.merger.release(time.monotonic())
                if evs:
                    on_events(evs)
        finally:
            ticker.cancel()
            with contextlib.suppress(BaseException):
                await ticker

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)

    async def _tick(self, on_events: EventsCallback) -> None:
        """Release held events and notice quiet instances, even while XREAD blocks."""
        while not self._closed.is_set():
            await asyncio.sleep(TICK)
            evs = self.merger.release(time.monotonic())
            if evs:
                on_events(evs)

    async def _records(self, client: Any, names: set[str] | None = None) -> list[SnapshotRecord]:
        raw = await client.hgetall(self.keys["snapshots"])
        out = []
        for k, v in (raw or {}).items():
            name = _str(k)
            if names is not None and name not in names:
                continue
            try:
                out.append(decode_snapshot_record(name, v))
            except EntryError as e:
                self.merger.bad_entry(e)
        return out

    async def _resync(self, client: Any) -> None:
        names = set(self.merger.resync_wanted)
        try:
            records = await self._records(client, names)
        except Exception:
            return  # tried again after the next entry
        now = time.monotonic()
        for rec in records:
            self.merger.resync(rec, now)
        self.merger.resync_wanted -= names

    async def _load(self, client: Any, on_events: EventsCallback) -> str:
        """The snapshots and the recent history, as one first batch; returns the id to
        follow the stream from."""
        try:
            sec, usec = await client.time()
            redis_now_ms = int(sec) * 1000 + int(usec) // 1000
            records = await self._records(client)
            need = {(r.name, r.run): r.count for r in records}
            entries: list[Entry] = []
            items = 0
            end = "+"
            last_id: str | None = None
            while True:
                page = await client.xrevrange(self.stream, max=end, min="-", count=PAGE)
                if not page:
                    break
                if last_id is None:
                    last_id = _str(page[0][0])
                for eid, fields in page:
                    try:
                        e = decode_entry(fields, _str(eid))
                    except EntryError as err:
                        self.merger.bad_entry(err)
                        continue
                    entries.append(e)
                    if isinstance(e.data, list):
                        items += len(e.data)
                    key = (e.name, e.run)
                    if key in need and e.count <= need[key]:
                        del need[key]
                end = "(" + _str(page[-1][0])
                if items >= self.merger.backlog_limit and not need:
                    break
        except Exception as e:
            raise SourceError(f"cannot read {self.description}: {redis_error_text(e)}") from None
        entries.reverse()
        events = self.merger.load(records, entries, time.monotonic(), redis_now_ms)
        on_events(events)
        return last_id or "0-0"

    # ---------------------------------------------------------------- commands

    async def command(self, cmd: Command) -> CommandResult:
        if self._client is None:
            await self.connect()
        cmd.id = self._next_id
        self._next_id += 1
        # Commands go to the instance their connection (INSTANCE/ID) or their held message
        # or breakpoint (``instance``: INSTANCE/ID as well) is on, without the prefix.
        conn = getattr(cmd, "conn", None)
        instance = getattr(cmd, "instance", "")
        target: tuple[str, str, str] | None = None  # (display, name, run)
        try:
            if isinstance(conn, str) and conn:
                name, run, local = self.merger.route(conn)
                display = conn.rpartition(INSTANCE_SEP)[0]
                if instance and instance != display:
                    return CommandResult(
                        cmd.id, False, f"{instance}/... is not on connection {conn}'s instance"
                    )
                cmd = dataclasses.replace(cmd, conn=local)  # type: ignore[type-var,arg-type]
                target = (display, name, run)
            elif instance:
                name, run = self.merger.route_instance(instance)
                target = (instance, name, run)
        except KeyError as e:
            return CommandResult(cmd.id, False, str(e.args[0]))
        if instance:
            cmd = dataclasses.replace(cmd, instance="")  # type: ignore[type-var,arg-type]
        if target is not None:
            display, name, run = target
            res = await self._send(name, run, cmd)
            if res.ok and isinstance(cmd, BreakpointCommand):
                res.info = f"{display}{INSTANCE_SEP}{res.info}"  # how this view names it
            return res
        ref = _unrouted_ref(cmd)
        if ref:
            return CommandResult(
                cmd.id,
                False,
                f"{ref} {getattr(cmd, 'held', None) or getattr(cmd, 'breakpoint', '')}: name it "
                f"INSTANCE/ID (devconsole {'held' if ref == 'held message' else 'break list'} "
                "--tap redis://...)",
            )
        # A command for no connection in particular goes to every live instance (a
        # viewer that has not read the stream, e.g. `devconsole break add`: to every
        # instance listening for commands).
        runs = [(n, r.run, r.display) for n, r in self.merger.current.items() if r.state == "up"]
        if not runs and not self.merger.runs:
            runs = [(n, "", n) for n in await self._listening()]
            if not runs:
                return CommandResult(
                    cmd.id,
                    False,
                    "no instance listens for commands on this stream (start the proxies "
                    "with --publish and --accept-commands)",
                )
        if not runs:
            return CommandResult(cmd.id, False, "no live instance in the stream")
        results = await asyncio.gather(*(self._send(n, run, cmd) for n, run, _ in runs))
        failed = [r.error for r in results if not r.ok]
        info = ""
        if isinstance(cmd, BreakpointCommand):  # one breakpoint on each instance
            info = " ".join(
                f"{d}{INSTANCE_SEP}{r.info}"
                for (_, _, d), r in zip(runs, results, strict=True)
                if r.ok
            )
        elif isinstance(cmd, ForwardCommand | DropCommand):  # how many, in all
            info = str(sum(int(r.info) for r in results if r.ok and r.info.isdigit()))
        error = "; ".join(failed)
        if failed and info and isinstance(cmd, BreakpointCommand):
            error += f" (added on the others: {info})"
        return CommandResult(cmd.id, not failed, error, info)

    async def _listening(self) -> list[str]:
        """The instances subscribed to their command channel now (PUBSUB CHANNELS)."""
        prefix = self.keys["commands"]
        pattern = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in prefix) + "*"
        try:
            channels = await self._client.pubsub_channels(pattern)
        except Exception as e:
            raise SourceError(f"{self.description}: {redis_error_text(e)}") from None
        names = {_str(c)[len(prefix) :] for c in channels or ()}
        return sorted(n for n in names if valid_instance_name(n) is None)

    async def _send(self, name: str, run: str, cmd: Command) -> CommandResult:
        reply = self.keys["replies"] + secrets.token_hex(12)
        client = self.target.client(socket_timeout=None)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(reply)
            body = msgpack.packb([FORMAT, reply, run, wire.encode_command(cmd)], use_bin_type=True)
            n = await client.publish(self.keys["commands"] + name, body)
            if not n:
                return CommandResult(
                    cmd.id,
                    False,
                    f"instance {name} does not listen for commands: it is not running, or "
                    "it was started without --accept-commands",
                )
            deadline = time.monotonic() + COMMAND_TIMEOUT
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return CommandResult(cmd.id, False, f"instance {name} did not answer")
                msg = await pubsub.get_message(timeout=min(left, 1.0))
                if msg is None or msg.get("type") != "message":
                    continue
                try:
                    obj = msgpack.unpackb(msg["data"], raw=False, max_bin_len=1 << 20)
                    res = wire.decode_result(obj[1])
                except Exception:
                    return CommandResult(cmd.id, False, f"instance {name} sent a bad answer")
                if res.id != cmd.id:
                    continue
                if not res.ok:
                    return CommandResult(cmd.id, False, f"{name}: {res.error}")
                return res
        except SourceError:
            raise
        except Exception as e:
            raise SourceError(f"{self.description}: {redis_error_text(e)}") from None
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
                await client.aclose()


def _unrouted_ref(cmd: Command) -> str:
    """What ``cmd`` names by an id that only one instance knows, when it names no
    instance ("" if it does not)."""
    if isinstance(cmd, ForwardCommand | DropCommand) and cmd.held:
        return "held message"
    if isinstance(cmd, RemoveBreakpointCommand | EnableBreakpointCommand) and cmd.breakpoint:
        return "breakpoint"
    return ""


__all__ = ["Event", "RedisSource"]
