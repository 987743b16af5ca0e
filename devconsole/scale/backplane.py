"""Record the app's own Redis pub/sub backplane: every publication on the channels that
match ``--channels`` becomes a ``Publication`` event of a pseudo-connection (one per
pattern, shown beside the WebSocket connections). ``devconsole.analysis.fanout``
correlates them with the WebSocket frames that carry them to clients.

Pub/sub is fire-and-forget: what is published while devconsole is not subscribed (Redis
away) is not seen. The pseudo-connection says so (state ``connecting`` with the reason)
until the subscription is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any, Protocol

from devconsole.analysis.fanout import BACKPLANE_METHOD, TRACE_KEY_PARAM
from devconsole.model import (
    SERVER,
    ConnState,
    EndEvent,
    Event,
    Handshake,
    HandshakeEvent,
    Opcode,
    Publication,
    StateEvent,
)
from devconsole.scale.config import RedisTarget
from devconsole.scale.publisher import BACKOFF_FIRST, BACKOFF_MAX

logger = logging.getLogger("devconsole.scale.backplane")


class Recorder(Protocol):
    """What the backplane needs from the capture addon."""

    max_payload: int

    def new_conn_id(self) -> str: ...

    def record(self, ev: Event) -> None: ...


def split_patterns(spec: str) -> list[str]:
    return [p.strip() for p in spec.split(",") if p.strip()]


class BackplaneRecorder:
    def __init__(
        self, target: RedisTarget, patterns: list[str], capture: Recorder, trace_key: str = ""
    ) -> None:
        self.target = target
        self.patterns = patterns
        self.capture = capture
        self.trace_key = trace_key
        self.conns: dict[str, Handshake] = {}  # pattern -> its pseudo-connection
        self.publications = 0
        self.subscribed = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        now = time.time()
        for pattern in self.patterns:
            query = [("pattern", pattern)]
            if self.trace_key:
                query.append((TRACE_KEY_PARAM, self.trace_key))
            hs = Handshake(
                conn=self.capture.new_conn_id(),
                ts=now,
                client="devconsole",
                server=f"{self.target.host}:{self.target.port}",
                scheme="rediss" if self.target.tls else "redis",
                url=f"{self.target.display} {BACKPLANE_METHOD} {pattern}",
                method=BACKPLANE_METHOD,
                path=pattern,
                query=query,
                http_version="RESP",
                request_headers=[],
                cookies=[],
            )
            self.conns[pattern] = hs
            self.capture.record(HandshakeEvent(hs))  # "connecting" until subscribed
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        now = time.time()
        for hs in self.conns.values():
            self.capture.record(EndEvent(hs.conn, now, True, None))

    async def _run(self) -> None:
        from redis.exceptions import RedisError

        backoff = BACKOFF_FIRST
        first = True
        while not self._stopping:
            client = self.target.client(socket_timeout=None)
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(*self.patterns)
                async for msg in pubsub.listen():
                    kind = msg.get("type")
                    if kind == "psubscribe":
                        self._subscribed(_text(msg.get("channel")), first)
                        backoff = BACKOFF_FIRST
                    elif kind == "pmessage":
                        self._publication(msg)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
                raise
            except (RedisError, OSError, TimeoutError) as e:
                self._lost(e)
            except Exception as e:
                logger.exception("backplane recorder failed")
                self._lost(e)
            first = False
            with contextlib.suppress(Exception):
                await pubsub.aclose()
                await client.aclose()
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _subscribed(self, pattern: str, first: bool) -> None:
        hs = self.conns.get(pattern)
        if hs is None:
            return
        self.subscribed = True
        if hs.status is None:
            hs.status = 101
            hs.reason = "subscribed"
            hs.ts_response = time.time()
            self.capture.record(HandshakeEvent(hs))
        else:
            self.capture.record(
                StateEvent(hs.conn, time.time(), ConnState.OPEN, "subscribed again")
            )
        if first:
            logger.info("recording backplane %s %s", self.target.display, pattern)

    def _lost(self, e: BaseException) -> None:
        if self.subscribed:
            logger.warning("backplane %s unreachable (%s); retrying", self.target.display, e)
        self.subscribed = False
        now = time.time()
        for hs in self.conns.values():
            if hs.status is not None:
                self.capture.record(
                    StateEvent(
                        hs.conn,
                        now,
                        ConnState.CONNECTING,
                        f"redis unreachable ({type(e).__name__}): publications meanwhile "
                        "are not seen",
                    )
                )

    def _publication(self, msg: dict[str, Any]) -> None:
        hs = self.conns.get(_text(msg.get("pattern")))
        if hs is None:
            return
        data = msg.get("data")
        payload = data if isinstance(data, bytes) else str(data).encode()
        try:
            payload.decode()
            opcode, utf8_ok = Opcode.TEXT, True
        except UnicodeDecodeError:
            opcode, utf8_ok = Opcode.BINARY, True
        self.publications += 1
        self.capture.record(
            Publication(
                seq=0,
                conn=hs.conn,
                ts=time.time(),
                side=SERVER,
                opcode=opcode,
                payload=payload[: self.capture.max_payload],
                size=len(payload),
                wire_size=len(payload),
                utf8_ok=utf8_ok,
                channel=_text(msg.get("channel")),
            )
        )


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return "" if v is None else str(v)
