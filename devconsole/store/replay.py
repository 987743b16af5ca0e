"""Replay a recorded connection against a live server, and resend one message.

``replay(conv, url)`` acts as the client: it opens a WebSocket to ``url`` with the
recorded handshake's headers (minus those the WebSocket library sets itself, and minus
values redacted in the capture unless given again), sends the client's messages with the
chosen timing, collects what the server answers, and returns the run with the diff of
the answers against the recording (``conversation.diff_answers``).

``resend(handshake, opcode, payload)`` opens a new connection like a recorded one, sends
one message and returns what the server answered in the next moments (the TUI's ``R``
on a connection that has ended; on a live one it sends an ``InjectCommand`` instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from devconsole.model import (
    CLIENT,
    SERVER,
    EndEvent,
    Event,
    Handshake,
    HandshakeEvent,
    InjectCommand,
    Message,
    Opcode,
    RefusedEvent,
    Side,
)
from devconsole.store.conversation import Change, Conversation, diff_answers

Timing = Literal["original", "fast", "reply"]
TIMINGS: tuple[Timing, ...] = ("original", "fast", "reply")
REDACTED = "[REDACTED]"

# set by the WebSocket client itself, or meaningless on a new connection
_SKIP = {
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "content-length",
    "transfer-encoding",
    "proxy-connection",
    "keep-alive",
}


class ReplayError(Exception):
    """The replay could not run (cannot connect...): a one-line message."""


def parse_header(spec: str) -> tuple[str, str]:
    """``Name: value`` (or ``Name=value``) from ``--header``."""
    for sep in (":", "="):
        name, found, value = spec.partition(sep)
        if found and name.strip():
            return name.strip(), value.strip()
    raise ValueError(f"bad header {spec!r}: expected NAME:VALUE")


def replay_headers(
    hs: Handshake, extra: Iterable[tuple[str, str]] = ()
) -> tuple[list[tuple[str, str]], list[str]]:
    """The headers to send on a new connection like ``hs``, and the names of those left
    out because the capture redacted them (give them again with ``extra``)."""
    extra = list(extra)
    given = {k.lower() for k, _ in extra}
    out: list[tuple[str, str]] = []
    redacted: list[str] = []
    for k, v in hs.request_headers:
        low = k.lower()
        if low in _SKIP or k.startswith(":") or low in given:
            continue
        if REDACTED in v:
            if k not in redacted:
                redacted.append(k)
            continue
        out.append((k, v))
    out.extend(extra)
    return out, redacted


@dataclass
class ReplayResult:
    url: str
    handshake: Handshake  # of the new run
    messages: list[Message]  # of the new run, both sides
    changes: list[Change]
    recorded_status: int | None
    redacted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    close_code: int | None = None  # the server's close code in the new run
    recorded_close_code: int | None = None

    @property
    def status_changed(self) -> bool:
        return self.handshake.status != self.recorded_status

    @property
    def differs(self) -> bool:
        return bool(self.changes) or self.status_changed or self.close_changed

    @property
    def close_changed(self) -> bool:
        return self.recorded_close_code is not None and self.close_code != self.recorded_close_code

    def events(self) -> list[Event]:
        """The new run as Events (for ``--record``)."""
        hs = self.handshake
        out: list[Event] = [HandshakeEvent(hs) if hs.status == 101 else RefusedEvent(hs)]
        out.extend(self.messages)
        if hs.status == 101:
            end = max([m.ts for m in self.messages] + [hs.ts_response or hs.ts])
            out.append(EndEvent(hs.conn, end, self.close_code is not None, None))
        return out

    def report(self) -> str:
        lines = []
        rs = self.recorded_status
        if self.status_changed:
            lines.append(
                f"~ handshake: status {rs} -> {self.handshake.status or self.handshake.error}"
            )
        for c in self.changes:
            lines.extend(c.lines())
        if self.close_changed:
            lines.append(f"~ close: server code {self.recorded_close_code} -> {self.close_code}")
        n = len(self.changes) + int(self.status_changed) + int(self.close_changed)
        lines.append(f"{n} difference{'s' if n != 1 else ''}" if n else "no differences")
        return "\n".join(lines)


def _new_handshake(
    conv: Conversation, url: str, ws: ClientConnection | None, t0: float
) -> Handshake:
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    req_headers: list[tuple[str, str]] = []
    resp_headers: list[tuple[str, str]] = []
    status: int | None = None
    reason = ""
    sub = None
    if ws is not None:
        req_headers = list(ws.request.headers.raw_items()) if ws.request else []
        if ws.response is not None:
            status = ws.response.status_code
            reason = ws.response.reason_phrase
            resp_headers = list(ws.response.headers.raw_items())
        sub = ws.subprotocol
    return Handshake(
        conn=conv.conn,
        ts=t0,
        client="",
        server=f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'wss' else 80)}",
        scheme=parts.scheme,
        url=url,
        method="GET",
        path=parts.path or "/",
        query=parse_qsl(parts.query, keep_blank_values=True),
        http_version="HTTP/1.1",
        request_headers=req_headers,
        cookies=[],
        status=status,
        reason=reason,
        response_headers=resp_headers,
        subprotocol=sub,
        extensions=[v for k, v in resp_headers if k.lower() == "sec-websocket-extensions"],
        ts_response=time.time() if status is not None else None,
    )


async def replay(
    conv: Conversation,
    url: str,
    *,
    timing: Timing = "fast",
    headers: Sequence[tuple[str, str]] = (),
    ignore: Sequence[str] = (),
    open_timeout: float = 10.0,
    reply_timeout: float = 10.0,
    idle_timeout: float = 2.0,
    proxy: str | None = None,
) -> ReplayResult:
    """Play the client side of ``conv`` against ``url`` (see the module docstring).
    ``reply_timeout``: how long ``reply`` timing waits for the answers a message needs;
    ``idle_timeout``: how long to wait for more answers after the last client message
    (until as many answers as recorded arrived). Raises ReplayError if it cannot connect
    (a refused upgrade is a result, not an error)."""
    if timing not in TIMINGS:
        raise ValueError(f"unknown timing {timing!r}")
    hdrs, redacted = replay_headers(conv.handshake, headers)
    notes: list[str] = []
    if redacted:
        notes.append(
            "left out (redacted in the capture; give them with --header): " + ", ".join(redacted)
        )
    subprotocols = conv.handshake.requested_subprotocols or None
    t0 = time.time()
    recorded_server = conv.server_messages()
    rec_status = conv.handshake.status
    rec_close = conv.server_close.code if conv.server_close is not None else None
    kwargs: dict[str, Any] = {
        "additional_headers": hdrs,
        "subprotocols": subprotocols,
        "user_agent_header": None
        if any(k.lower() == "user-agent" for k, _ in hdrs)
        else "devconsole-replay",
        "open_timeout": open_timeout,
        "max_size": None,
        "ping_interval": None,
    }
    if proxy is not None:
        kwargs["proxy"] = proxy
    else:
        kwargs["proxy"] = None
    try:
        ws = await connect(url, **kwargs)
    except InvalidStatus as e:
        hs = _new_handshake(conv, url, None, t0)
        hs.status = e.response.status_code
        hs.reason = e.response.reason_phrase
        hs.response_headers = list(e.response.headers.raw_items())
        hs.body = bytes(e.response.body or b"")[:4096]
        hs.body_size = len(e.response.body or b"")
        res = ReplayResult(url, hs, [], [], rec_status, redacted, notes)
        res.changes = diff_answers(recorded_server, [], ignore)
        return res
    except (OSError, InvalidHandshake, TimeoutError) as e:
        raise ReplayError(f"cannot connect to {url}: {e}") from None
    hs = _new_handshake(conv, url, ws, t0)
    got: list[Message] = []
    answers = 0
    arrived = asyncio.Event()
    seq = 0

    def add(side: Side, op: int, payload: bytes) -> Message:
        nonlocal seq
        seq += 1
        m = Message(seq, conv.conn, time.time(), side, op, payload, len(payload), 0)
        got.append(m)
        return m

    async def receive() -> None:
        nonlocal answers
        with contextlib.suppress(ConnectionClosed):
            async for data in ws:
                if isinstance(data, str):
                    add(SERVER, Opcode.TEXT, data.encode())
                else:
                    add(SERVER, Opcode.BINARY, bytes(data))
                answers += 1
                arrived.set()

    reader = asyncio.ensure_future(receive())
    start = time.monotonic()
    try:
        before = 0  # recorded server messages before the client message being sent
        idx = 0
        for m in conv.messages:
            if m.side == SERVER:
                before += 1
                continue
            if reader.done():
                notes.append("the server closed the connection before every message was sent")
                break
            if timing == "original":
                due = start + max(0.0, m.ts - conv.start)
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif timing == "reply":
                deadline = time.monotonic() + reply_timeout
                while answers < before and not reader.done():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        notes.append(
                            f"client message {idx + 1}: waited {reply_timeout:g}s for "
                            f"{before - answers} more answer(s)"
                        )
                        break
                    arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(arrived.wait(), left)
            payload: str | bytes = (
                m.payload.decode("utf-8", "replace") if m.opcode == Opcode.TEXT else m.payload
            )
            try:
                await ws.send(payload)
            except ConnectionClosed:
                notes.append("the server closed the connection before every message was sent")
                break
            add(CLIENT, m.opcode, m.payload)
            idx += 1
        # the remaining answers: until as many as recorded, or quiet for idle_timeout
        while not reader.done() and answers < len(recorded_server):
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), idle_timeout)
            except TimeoutError:
                break
        if answers >= len(recorded_server) and not reader.done():
            # a short grace period: answers beyond the recorded ones are differences too
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                while True:
                    await asyncio.wait_for(arrived.wait(), min(idle_timeout, 0.3))
                    arrived.clear()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
    proto = ws.protocol
    close_code = proto.close_rcvd.code if proto.close_rcvd is not None else None
    if proto.close_rcvd_then_sent is False:
        close_code = None  # the echo of our own close: the server did not choose it
    server_msgs = [m for m in got if m.side == SERVER]
    res = ReplayResult(
        url,
        hs,
        got,
        diff_answers(recorded_server, server_msgs, ignore),
        rec_status,
        redacted,
        notes,
        close_code=close_code,
        recorded_close_code=rec_close,
    )
    return res


def resend_command(msg: Message, payload: bytes | None = None) -> InjectCommand:
    """The command that sends ``msg`` again (``payload`` if edited) on its live
    connection, in the direction it went."""
    to: Side = SERVER if msg.side == CLIENT else CLIENT
    data = msg.payload if payload is None else payload
    return InjectCommand(msg.conn, to, msg.opcode, data)


async def resend(
    hs: Handshake,
    opcode: int,
    payload: bytes,
    *,
    url: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    wait: float = 1.0,
    proxy: str | None = None,
    open_timeout: float = 10.0,
) -> list[Message]:
    """Open a new connection like ``hs`` (to ``url``, default its URL; through ``proxy``,
    e.g. the devconsole proxy so the new connection shows up there), send one message
    and return it followed by the server's answers during ``wait`` seconds."""
    one = Message(1, hs.conn, time.time(), CLIENT, opcode, payload, len(payload), 0)
    conv = Conversation(hs, [one])
    res = await replay(
        conv,
        url or hs.url,
        timing="fast",
        headers=headers,
        idle_timeout=wait,
        proxy=proxy,
        open_timeout=open_timeout,
    )
    if res.handshake.status != 101:
        raise ReplayError(f"{url or hs.url} refused the upgrade: {res.handshake.status}")
    return res.messages
