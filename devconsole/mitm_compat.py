"""The few places where devconsole reaches past mitmproxy's public API.

Kept in one small module, checked against every supported mitmproxy version by
``tests/test_mitm_compat.py``:

- aborting or closing a live TCP flow: ``flow.kill()`` is not honoured by mitmproxy's TCP
  relay (mitmproxy issues #4711, #4773), so we reach the connection's transports through
  the proxyserver addon (``proxyserver.connections[client_conn.id].transports``).
"""

from __future__ import annotations

import logging
import socket
import struct
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
    ps.inject_tcp(flow, to_client, data)
