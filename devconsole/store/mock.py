"""A mock WebSocket server from a capture: frontend work without the backend.

``MockServer(session)`` serves recorded connections: a client that connects to a path
gets the recorded connection to that path (``conn`` forces one); each new client starts
the script afresh (``conversation.MockScript``): the server's unsolicited messages are
pushed with their recorded timing, each client message is answered with what the server
answered in the recording (matched by order, or by JSON structure with ``match="json"``,
ids of the new request substituted), and when the recorded server closed the connection
after the last answer, the mock closes with the same code. A recorded refused upgrade is
served as the same refusal (status and body). Binds loopback by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from devconsole.model import Handshake, Opcode
from devconsole.session import Session
from devconsole.store.conversation import Conversation, ConversationError, MockScript, conversation

logger = logging.getLogger("devconsole.store.mock")


@dataclass
class MockStats:
    connections: int = 0
    received: int = 0
    sent: int = 0
    unmatched: int = 0
    log: list[str] = field(default_factory=list)


class MockServer:
    def __init__(
        self,
        session: Session,
        *,
        conn: str | None = None,
        match: str = "order",
        speed: float = 1.0,
        on_log: Callable[[str], None] | None = None,
    ) -> None:
        if match not in ("order", "json"):
            raise ValueError(f"unknown match mode {match!r} (order, json)")
        self.session = session
        self.match = match
        self.speed = speed if speed > 0 else 1.0
        self.on_log = on_log
        self.stats = MockStats()
        self.fixed: Conversation | None = conversation(session, conn) if conn else None
        if self.fixed is None:
            conversation(session)  # at least one accepted connection, or ConversationError
        self._server: Server | None = None

    def _log(self, msg: str) -> None:
        self.stats.log.append(msg)
        if self.on_log is not None:
            self.on_log(msg)

    def conversation_for(self, path: str) -> Conversation:
        """The recorded connection a client asking for ``path`` gets."""
        if self.fixed is not None:
            return self.fixed
        bare = path.partition("?")[0]
        conns = list(self.session.connections.values())
        for c in conns:
            if c.handshake.path == bare and not c.refused and (c.msgs_in + c.msgs_out):
                return conversation(self.session, c.id)
        for c in conns:
            if c.handshake.path == bare:
                return conversation(self.session, c.id)
        return conversation(self.session)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            conv = self.conversation_for(request.path)
        except ConversationError:
            return None
        hs = conv.handshake
        if hs.status is not None and hs.status != 101:
            return _refusal(hs)
        connection.devconsole_conv = conv  # type: ignore[attr-defined]
        return None

    def _select_subprotocol(self, connection: ServerConnection, offered: Any) -> str | None:
        conv: Conversation | None = getattr(connection, "devconsole_conv", None)
        want = conv.handshake.subprotocol if conv is not None else None
        if want and want in offered:
            return want
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        conv: Conversation = getattr(ws, "devconsole_conv", None) or self.conversation_for(
            ws.request.path if ws.request else "/"
        )
        self.stats.connections += 1
        script = MockScript(conv, self.match)
        self._log(
            f"client {_peer(ws)} connected: serving connection {conv.conn} ({conv.handshake.url}), "
            f"{len(script.turns)} requests, {len(script.pushes)} pushes"
        )
        send_lock = asyncio.Lock()
        tasks: set[asyncio.Task[None]] = set()

        async def send_later(delay: float, op: int, data: bytes) -> None:
            if delay > 0:
                await asyncio.sleep(delay / self.speed)
            async with send_lock:
                await ws.send(data.decode("utf-8", "replace") if op == Opcode.TEXT else data)
            self.stats.sent += 1

        def spawn(coro: Any) -> asyncio.Task[None]:
            t = asyncio.ensure_future(coro)
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            return t

        for delay, m in script.pushes:
            spawn(send_later(delay, m.opcode, m.payload))
        try:
            async for data in ws:
                self.stats.received += 1
                op = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
                payload = data.encode() if isinstance(data, str) else bytes(data)
                answers = script.answer(op, payload)
                if not answers and script.unmatched:
                    self.stats.unmatched += 1
                    self._log(f"client {_peer(ws)}: no recorded answer for {payload[:60]!r}")
                last: asyncio.Task[None] | None = None
                for delay, aop, adata in answers:
                    last = spawn(send_later(delay, aop, adata))
                if script.finished and self.match == "order" and conv.server_close is not None:
                    code = conv.server_close.code or 1000
                    reason = conv.server_close.reason
                    if last is not None:
                        with contextlib.suppress(Exception):
                            await last
                    await asyncio.gather(*list(tasks), return_exceptions=True)
                    await ws.close(code, reason)
                    break
        except ConnectionClosed:
            pass
        finally:
            for t in list(tasks):
                t.cancel()
            self._log(f"client {_peer(ws)} disconnected")

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        self._server = await serve(
            self._handler,
            host,
            port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,  # type: ignore[arg-type]
            max_size=None,
            ping_interval=None,
        )
        sock = self._server.sockets[0].getsockname()
        return sock[0], sock[1]

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 3)
            self._server = None


def _peer(ws: ServerConnection) -> str:
    try:
        host, port = ws.remote_address[:2]
    except Exception:
        return "?"
    return f"{host}:{port}"


def _refusal(hs: Handshake) -> Response:
    status = hs.status or 500
    try:
        reason = hs.reason or HTTPStatus(status).phrase
    except ValueError:
        reason = hs.reason or "Refused"
    headers = Headers()
    for k, v in hs.response_headers:
        if k.lower() in ("content-length", "transfer-encoding", "connection"):
            continue
        headers[k] = v
    headers["Content-Length"] = str(len(hs.body))
    headers["Date"] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    return Response(status, reason, headers, hs.body)
