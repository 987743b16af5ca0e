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
- taking an upgraded connection's two sockets away from mitmproxy (``detach``, for
  ``devconsole.fastrelay``): mitmproxy keeps no public way to hand a connection over.
  Each socket is an asyncio transport under a ``StreamReaderProtocol`` that mitmproxy's
  ``handle_connection`` task reads (``ConnectionHandler.transports[conn]``: a
  ``ConnectionIO`` with ``reader``, ``writer``, ``handler``; 11.x and 12.x). We install our
  own protocol on the transport (``set_protocol``: nothing reaches mitmproxy's reader any
  more), take what its ``StreamReader`` holds unread (``_buffer``), put a stand-in writer
  in the ``ConnectionIO`` (whatever mitmproxy still writes, half-closes or closes there no
  longer touches the socket). mitmproxy relays what it had read through ``tcp_message`` as
  usual; a marker injected with ``inject.tcp`` comes back after all of it; then EOF fed to
  its readers makes it let the connection go (``tcp_end`` / ``client_disconnected``). The
  original StreamWriters must stay referenced: their ``__del__`` closes the transport.
  With TLS on a side, mitmproxy's ``TLSLayer`` for that connection (found by walking the
  layer tree from ``ConnectionHandler.layer`` through ``layer``/``child_layer``, a
  ``_handle_event`` bound to a child layer, and ``HttpLayer.streams``/``connections``)
  hands over its pyOpenSSL ``SSL.Connection`` (memory BIOs; ``TLSLayer.tls``): mitmproxy
  never shuts it down (``send_close`` only closes TCP), and after the EOF it no longer
  reads or writes with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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


# ---------------------------------------------------------------------- detaching


def tcp_timeout() -> float:
    """mitmproxy's inactivity timeout of a TCP connection (``tcp_timeout`` option since 12,
    a constant of 600 s in 11)."""
    try:
        return float(ctx.options.tcp_timeout)
    except (AttributeError, KeyError, ValueError):
        return 600.0


class _Detached:
    """Stands in for the StreamWriter of a socket mitmproxy no longer owns. Until the hand-off
    is complete, bytes mitmproxy still writes go through to the socket in order (a relayed
    chunk's content is emptied by the caller, so normally there are none; with TLS, what
    its TLS layer says while decrypting what it holds); after it, and any half-close or
    close, go nowhere."""

    transport = None  # mitm_compat.end_connection: nothing to abort here

    def __init__(self, real: asyncio.StreamWriter) -> None:
        self._real = real
        self._closing = False
        self.through = True  # write through while the hand-off lasts

    def write(self, data: bytes) -> None:
        t = self._real.transport
        if data and self.through and not self._closing and not t.is_closing():
            try:
                t.write(data)
            except RuntimeError as e:  # after a half-close
                logger.debug("write after the hand-off failed: %s", e)

    def writelines(self, data: Any) -> None:
        for d in data:
            self.write(d)

    def write_eof(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    async def wait_closed(self) -> None:
        pass

    async def drain(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._real.get_extra_info(name, default)


@dataclass(eq=False)
class DetachedSocket:
    transport: Any  # asyncio selector transport
    writer: asyncio.StreamWriter  # keep it referenced: its __del__ would close the socket
    stand_in: _Detached
    tls: Any = None  # the connection's OpenSSL.SSL.Connection when mitmproxy terminates TLS
    pending: bytes = b""  # read from the socket by mitmproxy's reader, not by mitmproxy
    reader: asyncio.StreamReader | None = None
    old_protocol: Any = None  # mitmproxy's StreamReaderProtocol


def _tls_layers(handler: Any) -> list[Any] | None:
    """Every TLSLayer in a connection handler's layer tree (None: cannot tell)."""
    try:
        from mitmproxy.proxy.layers.tls import TLSLayer
    except ImportError:
        return None
    out: list[Any] = []
    seen: set[int] = set()
    todo = [getattr(handler, "layer", None)]
    while todo:
        obj = todo.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if len(seen) > 500:  # not a layer tree we know
            return None
        if isinstance(obj, TLSLayer):
            out.append(obj)
        for attr in ("layer", "child_layer"):
            v = getattr(obj, attr, None)
            if v is not None:
                todo.append(v)
        # a layer that hands its events on (modes.HttpProxy: self._handle_event =
        # child_layer.handle_event) keeps its child only in that bound method
        he = getattr(obj, "__dict__", {}).get("_handle_event")
        owner = getattr(he, "__self__", None)
        if owner is not None and owner is not obj:
            todo.append(owner)
        for attr in ("streams", "connections"):
            d = getattr(obj, attr, None)
            if isinstance(d, dict):
                todo.extend(d.values())
    return out


def _ssl_conn(layers: list[Any], conn: Any) -> Any | None:
    """The established SSL.Connection of ``conn``'s only TLS layer, else None."""
    mine = [la for la in layers if getattr(la, "conn", None) is conn]
    if len(mine) != 1:
        return None
    la = mine[0]
    state = getattr(getattr(la, "tunnel_state", None), "name", "")
    if state != "OPEN" or getattr(la, "is_dtls", True):
        return None
    tls = getattr(la, "tls", None)
    if tls is None or not all(
        hasattr(tls, a) for a in ("bio_write", "bio_read", "recv", "sendall")
    ):
        return None
    return tls


def detach(
    flow: Any,
    client: asyncio.BaseProtocol,
    server: asyncio.BaseProtocol,
    tls: bool = True,
) -> tuple[DetachedSocket, DetachedSocket] | None:
    """Take the client and server sockets of an upgraded TCP flow away from mitmproxy and
    give them to the ``client`` / ``server`` protocols, with reading paused. None (and
    nothing changed) where that cannot be done: an unsupported mitmproxy, sockets that are
    not plain asyncio transports (WireGuard, local mode), a peer that already closed, TLS
    in a layer tree we do not recognise (or ``tls`` false). With TLS on a side (mitmproxy
    terminates it) the socket comes with that connection's ``SSL.Connection``
    (``DetachedSocket.tls``).

    What mitmproxy had read but not relayed yet is still in its layers: it comes through
    ``tcp_message`` as usual. What its StreamReader held, unread, is in
    ``DetachedSocket.pending`` (newer than all of that). The caller must not relay
    ``pending`` nor read the socket before mitmproxy has relayed everything it holds
    (``inject_tcp`` a marker: the TCP layer delivers it after all it queued), then
    ``release`` the socket so that mitmproxy lets the connection go."""
    if not supported():
        return None
    handler = _handler(flow)
    if handler is None:
        return None
    ssl_conns: list[Any] = [None, None]
    if flow.client_conn.tls or flow.server_conn.tls:
        if not tls:
            return None
        layers = _tls_layers(handler)
        if layers is None:
            return None
        for i, conn in enumerate((flow.client_conn, flow.server_conn)):
            mine = [la for la in layers if getattr(la, "conn", None) is conn]
            if conn.tls:
                ssl_conns[i] = _ssl_conn(layers, conn)
                if ssl_conns[i] is None:
                    return None
            elif mine:
                return None
    transports = getattr(handler, "transports", None)
    if not isinstance(transports, dict):
        return None
    found: list[tuple[Any, asyncio.StreamReader, asyncio.StreamWriter, Any]] = []
    for conn in (flow.client_conn, flow.server_conn):
        io = transports.get(conn)
        if io is None:
            return None
        reader = getattr(io, "reader", None)
        writer = getattr(io, "writer", None)
        if not isinstance(reader, asyncio.StreamReader) or not isinstance(
            writer, asyncio.StreamWriter
        ):
            return None
        t = writer.transport
        if not all(
            hasattr(t, a)
            for a in ("set_protocol", "get_protocol", "pause_reading", "resume_reading")
        ):
            return None
        if t.is_closing() or reader.at_eof() or getattr(reader, "_eof", True):
            return None
        if not isinstance(getattr(reader, "_buffer", None), bytearray):
            return None
        if t.get_extra_info("sslcontext") is not None:
            return None
        found.append((io, reader, writer, t))
    out = []
    for (io, reader, writer, t), proto, ssl_conn in zip(
        found, (client, server), ssl_conns, strict=True
    ):
        old = t.get_protocol()
        if t.is_reading():
            t.pause_reading()
        t.set_protocol(proto)
        buf = reader._buffer  # type: ignore[attr-defined]
        pending = bytes(buf)
        buf.clear()
        # its flow control must never resume the transport, which is ours now
        reader._paused = False  # type: ignore[attr-defined]
        io.writer = _Detached(writer)
        # a task of mitmproxy's waiting in drain() for this socket would wait forever: the
        # socket now tells our protocol when it can write again
        if getattr(old, "_paused", False):
            with contextlib.suppress(Exception):
                old.resume_writing()
        out.append(DetachedSocket(t, writer, io.writer, ssl_conn, pending, reader, old))
    return out[0], out[1]


def tls_pending(ssl_conn: Any) -> Any | None:
    """A function returning how many bytes wait in the memory BIOs of a pyOpenSSL
    ``SSL.Connection``: ``(ciphertext written into it and not consumed yet, ciphertext it
    produced for the peer)``, so that a relay calls ``recv``/``bio_read`` only when there
    is something, not once more to be told there is not (an exception each time). From
    pyOpenSSL's internals (``_into_ssl``/``_from_ssl`` and ``BIO_ctrl_pending``, 23.x-26.x);
    None where they are not there."""
    try:
        from OpenSSL import _util

        pending = _util.lib.BIO_ctrl_pending  # type: ignore[union-attr]
        into, out = ssl_conn._into_ssl, ssl_conn._from_ssl
        if into is None or out is None:
            return None
        pending(into)
    except Exception:
        return None
    return lambda: (pending(into), pending(out))


def forget(d: DetachedSocket) -> None:
    """The socket is closed: let mitmproxy's stream objects go too (its protocol's
    ``connection_lost`` breaks their reference cycles; the socket told ours, not it)."""
    old, d.old_protocol = d.old_protocol, None
    if old is not None:
        with contextlib.suppress(Exception):
            old.connection_lost(None)


class _Gone:
    """The transport of a dropped StreamWriter (``drop``): closing, nothing to write to."""

    def is_closing(self) -> bool:
        return True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


_GONE = _Gone()


def done_with(d: DetachedSocket) -> bool:
    """mitmproxy has let go of a released socket: it closed its stand-in writer."""
    return d.stand_in._closing and not d.stand_in.through


def drop(d: DetachedSocket) -> None:
    """Let mitmproxy's stream objects of a socket it is done with (``done_with``) go now,
    not only once the socket closes: its StreamReaderProtocol (with the finished handler
    task), StreamReader and StreamWriter, ~2 KiB per socket. The StreamWriter's
    ``__del__`` closes its transport, which is ours: it is given a stand-in transport
    first. The transport itself stays with our protocol."""
    forget(d)
    d.writer._transport = _GONE  # type: ignore[attr-defined]
    d.reader = None


def release(d: DetachedSocket) -> None:
    """mitmproxy's reader of a detached socket reads EOF: it lets the connection go (the
    stand-in writer then writes nothing any more)."""
    d.stand_in.through = False
    if d.reader is not None and not d.reader.at_eof():
        d.reader.feed_eof()
