"""The few places where devconsole reaches past mitmproxy's public API.

Kept in one small module, checked against every supported mitmproxy version by
``tests/test_mitm_compat.py``:

- aborting or closing a live TCP flow: ``flow.kill()`` is not honoured by mitmproxy's TCP
  relay (mitmproxy issues #4711, #4773), so we reach the connection's transports through
  the proxyserver addon (``proxyserver.connections[client_conn.id].transports``).
- a peer's TCP close (FIN) waits for delayed bytes (docs/shaping.md): mitmproxy passes a
  FIN on at once (its TCP layer half-closes the other connection on ``ConnectionClosed``),
  which would cut off what devconsole still holds back (latency, rate). ``hold_close``
  wraps the flow's ``ConnectionHandler.server_event`` (11.x and 12.x: the read loop in
  ``handle_connection`` awaits it with ``events.ConnectionClosed`` at EOF) so that event
  waits until the bytes toward the other peer went out.
- backpressure while messages are held: mitmproxy has no API to stop reading one peer.
  Its connection handler reads each socket in a loop (``await reader.read(65535)`` in
  ``ConnectionHandler.handle_connection``, 11.x and 12.x); pausing the asyncio transport
  underneath (``transport.pause_reading()``) makes that read wait, the kernel's receive
  buffer fills and TCP flow control stops the peer. The StreamReader resumes a transport
  it paused itself when its buffer drains, which can undo our pause: the caller re-pauses
  whenever data still arrives from a paused peer (at most one buffer, 128 KiB, more).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy import ctx
from mitmproxy import version as mitmproxy_version

logger = logging.getLogger("devconsole.compat")

MITMPROXY_VERSION: tuple[int, ...] = tuple(
    int(p) for p in mitmproxy_version.VERSION.split(".")[:2] if p.isdigit()
)
SUPPORTED = ((11,), (12,))


def supported() -> bool:
    return MITMPROXY_VERSION[:1] in SUPPORTED


def _handler(flow: Any) -> Any | None:
    ps = ctx.master.addons.get("proxyserver")
    if ps is None:
        return None
    conns = getattr(ps, "connections", None)
    if conns is None:
        return None
    return conns.get(flow.client_conn.id)


def writers(flow: Any) -> list[Any]:
    """The asyncio StreamWriters of the flow's client and server connections (may be [])."""
    handler = _handler(flow)
    if handler is None:
        return []
    out = []
    for io in list(getattr(handler, "transports", {}).values()):
        w = getattr(io, "writer", None)
        if w is not None:
            out.append(w)
    return out


def end_connection(flow: Any, *, abort: bool, rst: bool = False) -> int:
    """Close both TCP connections of ``flow``. ``abort``: drop unsent data at once;
    ``rst``: make the kernel send a TCP reset (SO_LINGER 0). Returns how many were closed."""
    n = 0
    for w in writers(flow):
        transport = getattr(w, "transport", None)
        try:
            if rst:
                sock = w.get_extra_info("socket")
                if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if abort and transport is not None:
                transport.abort()
            else:
                w.close()
            n += 1
        except (OSError, RuntimeError) as e:  # already closing
            logger.debug("closing transport failed: %s", e)
    return n


def inject_tcp(flow: Any, to_client: bool, data: bytes) -> None:
    """Send ``data`` through the flow's TCP relay (public command ``inject.tcp``)."""
    ps = ctx.master.addons.get("proxyserver")
    if ps is None:  # a master without a proxy server (tests): nothing to write to
        logger.debug("no proxyserver: %d bytes not injected", len(data))
        return
    ps.inject_tcp(flow, to_client, data)


def _transport(flow: Any, client: bool) -> Any | None:
    """The asyncio transport of the flow's client (or server) socket, if it has one
    (connections of the WireGuard/local modes are mitmproxy_rs streams: no transport)."""
    handler = _handler(flow)
    if handler is None:
        return None
    conn = flow.client_conn if client else flow.server_conn
    for c, io in list(getattr(handler, "transports", {}).items()):
        if c is conn or getattr(c, "id", None) == conn.id:
            w = getattr(io, "writer", None)
            t = getattr(w, "transport", None)
            if t is not None and hasattr(t, "pause_reading") and hasattr(t, "is_reading"):
                return t
    return None


def pause_reading(flow: Any, client: bool) -> bool:
    """Stop reading the client (or server) socket of ``flow``; False if that cannot be
    done (no such connection any more, or not an asyncio transport)."""
    t = _transport(flow, client)
    if t is None:
        return False
    try:
        if t.is_reading():
            t.pause_reading()
    except (OSError, RuntimeError) as e:  # closing
        logger.debug("pause_reading failed: %s", e)
        return False
    return True


def resume_reading(flow: Any, client: bool) -> bool:
    t = _transport(flow, client)
    if t is None:
        return False
    try:
        if not t.is_reading() and not t.is_closing():
            t.resume_reading()
    except (OSError, RuntimeError) as e:
        logger.debug("resume_reading failed: %s", e)
        return False
    return True


def hold_close(flow: Any, wait: Callable[[bool], Awaitable[Any] | None], limit: float) -> bool:
    """Before mitmproxy acts on a peer's TCP close, await ``wait(from_client)`` (None: go
    on at once), at most ``limit`` seconds. False if the flow has no handler to wrap."""
    from mitmproxy.proxy import events

    handler = _handler(flow)
    original = getattr(handler, "server_event", None)
    if handler is None or original is None or getattr(original, "_devconsole", False):
        return handler is not None
    client = flow.client_conn

    async def server_event(event: Any) -> None:
        if isinstance(event, events.ConnectionClosed):
            conn = event.connection
            from_client = conn is client or getattr(conn, "id", None) == client.id
            w = wait(from_client)
            if w is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(w, limit)
                await asyncio.sleep(0)  # the last injected bytes are ahead of the close
        await original(event)

    server_event._devconsole = True  # type: ignore[attr-defined]
    handler.server_event = server_event
    return True


def is_reading(flow: Any, client: bool) -> bool | None:
    """Whether the socket is being read (None: unknown)."""
    t = _transport(flow, client)
    if t is None:
        return None
    return bool(t.is_reading())
