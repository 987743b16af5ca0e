"""The fast relay: devconsole's own driver of an upgraded connection's two sockets.

mitmproxy accepts the connection, does the HTTP upgrade (and everything before it); once
the 101 is relayed, ``Capture.tcp_start`` hands the connection here. Its two sockets are
taken out of mitmproxy's layer stack (``mitm_compat.detach``) and relayed by two
``asyncio.Protocol`` objects feeding the same sans-I/O core as before
(``devconsole.relay.Relay``): one ``data_received`` per read, ``Relay.feed``, one
``transport.write`` of what it returns (the very bytes read when nothing changes). Under
mitmproxy every read went through its layers, a hook task dispatched to every addon and a
second pass through the layers (docs/performance.md, issue 18); here it is one callback.

Everything else behaves as under mitmproxy's raw TCP relay:

- the hand-off: bytes mitmproxy had already read still come through ``tcp_message``
  (``from_mitmproxy``) while our sockets are not read; a marker injected through
  mitmproxy's TCP layer (``inject.tcp``) comes back behind the last of them. Then what
  mitmproxy's reader held unread is relayed, the sockets are read, and mitmproxy lets the
  connection go (``HANDOFF_TIMEOUT``, or ``tcp_end``, if the marker never comes back);
- a peer's EOF half-closes the other peer (``write_eof``), as mitmproxy's TCP layer does;
  the connection ends (an ``EndEvent``) once neither peer can send any more;
- backpressure: a peer whose output buffer is full (``pause_writing``) stops the reading
  of the other peer, as do held messages (``Output.pause``);
- ``Output.end`` closes (after what is written) or aborts (optionally with a TCP reset);
- an idle connection is closed after mitmproxy's ``tcp_timeout`` (600 s), as mitmproxy
  did;
- TLS (wss): where mitmproxy terminates TLS on a side, that side's ``SSL.Connection``
  (pyOpenSSL, memory BIOs) comes along: ciphertext read is written into it and the
  plaintext read out of it feeds the relay; what goes to that peer is encrypted with it.
  Like mitmproxy, a ``close_notify`` from a peer is a half-close, and no ``close_notify``
  is sent (mitmproxy closes TCP only).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from devconsole import mitm_compat
from devconsole.model import CLIENT, SERVER, Side
from devconsole.relay import Output, Relay

logger = logging.getLogger("devconsole.fastrelay")

HANDOFF_TIMEOUT = 2.0  # seconds mitmproxy gets to let go of a connection
DROP_AFTER = 2.0  # seconds after the hand-off: mitmproxy's stream objects of it go
WRITE_HIGH = 256 << 10  # bytes buffered toward a peer before its sender stops being read
CLOSE_HOLD_LIMIT = 30.0  # at most this long a peer's EOF waits for delayed bytes to go out

_time = time.time

# reasons to not read a peer
_HANDOFF = 1
_RELAY = 2  # held messages: the relay asked
_WRITE = 4  # the other peer's output buffer is full


class _Peer(asyncio.Protocol):
    """One socket of a relayed connection."""

    __slots__ = ("c", "eof", "hold", "lost", "other", "relay", "shut", "side", "t", "write")

    def __init__(self, c: FastConnection, side: Side) -> None:
        self.c = c
        self.side: Side = side
        self.relay = c.relay
        self.t: Any = None  # our transport
        self.other: _Peer  # set by FastConnection.attach
        self.eof = False  # the peer sent FIN (or its socket is gone)
        self.lost = False  # the socket is closed
        self.shut = False  # we sent it FIN (nothing can be written to it any more)
        self.write: Callable[[bytes], None] = _nowhere  # bytes for this peer
        self.hold: list[bytes] | None = []  # read during the hand-off, relayed after it

    def attach(self, d: Any) -> None:
        self.t = d.transport
        self.write = d.transport.write
        if d.pending:
            self.hold = [d.pending]

    def data_received(self, data: bytes) -> None:
        if self.hold is not None:  # mitmproxy may still be relaying older bytes
            self.hold.append(data)
            return
        relay = self.relay
        now = _time()
        self.c.last = now
        try:
            out = relay.feed(self.side, data, now)
        except Exception:  # the relay never should; forwarding must not depend on it
            self.c.crashed()
            out = data
        if out:
            o = self.other
            if not o.shut:
                o.write(out)
        if relay.out:
            self.c.apply(relay.take())

    def eof_received(self) -> bool:
        self.c.peer_eof(self)
        return True  # keep the socket open for writing (a half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.shut = True
        self.c.peer_lost(self)

    def pause_writing(self) -> None:
        self.c.block(self.other, _WRITE, True)

    def resume_writing(self) -> None:
        self.c.block(self.other, _WRITE, False)


def _nowhere(data: bytes) -> None:
    pass


def _no_end(error: str | None) -> None:
    pass


def _no_arm(first: float | None) -> None:
    pass


class _TlsPeer(_Peer):
    """A socket on which mitmproxy terminated TLS: its SSL.Connection came along."""

    __slots__ = ("_errors", "_pending", "ssl")

    def attach(self, d: Any) -> None:
        from OpenSSL import SSL

        super().attach(d)
        self.ssl = d.tls
        self._errors = (SSL.WantReadError, SSL.ZeroReturnError, SSL.Error)
        self._pending = mitm_compat.tls_pending(d.tls)  # None: ask OpenSSL until it says no
        self.write = self._encrypt

    def data_received(self, data: bytes) -> None:
        if self.hold is not None:
            self.hold.append(data)
            return
        ssl = self.ssl
        want_read, zero_return, error = self._errors
        pending = self._pending
        ssl.bio_write(data)
        parts: list[bytes] = []
        close = False
        while True:
            # a record split across reads stays in the BIO: recv then says WantRead
            if pending is not None and not pending()[0] and not ssl.pending():
                break
            try:
                parts.append(ssl.recv(65536))
            except want_read:
                break
            except zero_return:  # close_notify
                close = True
                break
            except error as e:  # an alert; mitmproxy logs it and goes on
                logger.warning("connection %s: TLS error: %s", self.relay.conn, e)
                break
        self._flush()  # what OpenSSL has to say back (TLS 1.3 key updates, tickets)
        if parts:
            _Peer.data_received(self, parts[0] if len(parts) == 1 else b"".join(parts))
        if close:
            self.c.peer_eof(self)  # a half-close toward the other peer, as mitmproxy does

    def _encrypt(self, data: bytes) -> None:
        try:
            self.ssl.sendall(data)
        except self._errors[2] as e:  # the peer may be gone; mitmproxy ignores it too
            logger.debug("connection %s: TLS send failed: %s", self.relay.conn, e)
        self._flush()

    def _flush(self) -> None:
        ssl = self.ssl
        pending = self._pending
        out: list[bytes] = []
        if pending is not None:
            n = pending()[1]
            if n:
                out.append(ssl.bio_read(n))
        else:
            want_read = self._errors[0]
            while True:
                try:
                    b = ssl.bio_read(65536)
                except want_read:
                    break
                if not b:
                    break
                out.append(b)
        if out and not self.shut:
            self.t.write(out[0] if len(out) == 1 else b"".join(out))


class FastConnection:
    """The two sockets of one upgraded connection, driven by devconsole."""

    def __init__(
        self,
        relay: Relay,
        on_end: Callable[[str | None], None],
        arm: Callable[[float | None], None],
    ) -> None:
        self.relay = relay
        self.on_end = on_end  # (error) once both sockets are done
        self.arm = arm  # the relay's next deadline, to the driver's timer
        self.client: _Peer  # made by attach()
        self.server: _Peer
        self._blocked = {CLIENT: _HANDOFF, SERVER: _HANDOFF}
        self._keep: list[Any] = []  # the DetachedSockets: mitmproxy's StreamWriters in them
        # must stay referenced (their __del__ closes the socket)
        self._detached: list[Any] = []
        self._marker = b"devconsole: end of the hand-off %d" % id(self)
        self.handing_off = True
        self.ended = False
        self.last = _time()  # the last read from either peer
        self._crash_logged = False
        self._handoff_timer: asyncio.TimerHandle | None = None
        self.drop_checked = False  # _drop_mitmproxy ran (tests)
        # rules/shaping: a peer's EOF waits for the bytes still delayed toward the other
        self._pending_to: Callable[[Side], int] = relay.pending_to
        self._fin_wait: dict[_Peer, asyncio.TimerHandle] = {}
        self._fin_late: set[_Peer] = set()  # waited CLOSE_HOLD_LIMIT: go on regardless

    # ------------------------------------------------------------------ setup

    def attach(self, flow: Any, tls: bool = True) -> bool:
        """Take the flow's sockets from mitmproxy; False if they cannot be taken."""
        self.client = (_TlsPeer if flow.client_conn.tls else _Peer)(self, CLIENT)
        self.server = (_TlsPeer if flow.server_conn.tls else _Peer)(self, SERVER)
        self.client.other = self.server
        self.server.other = self.client
        got = mitm_compat.detach(flow, self.client, self.server, tls)
        if got is None:
            return False
        for peer, d in zip((self.client, self.server), got, strict=True):
            peer.attach(d)
            self._keep.append(d)
            self._detached.append(d)
            d.transport.set_write_buffer_limits(high=WRITE_HIGH)
        self._handoff_timer = asyncio.get_running_loop().call_later(
            HANDOFF_TIMEOUT, self._handoff_late
        )
        # a token through mitmproxy's TCP layer: it comes back (through tcp_message) after
        # everything mitmproxy had read from either peer
        try:
            mitm_compat.inject_tcp(flow, False, self._marker)
        except Exception as e:  # not a live flow for mitmproxy any more: wait for the timer
            logger.debug("connection %s: no hand-off marker: %s", self.relay.conn, e)
        return True

    def _handoff_late(self) -> None:
        self._handoff_timer = None
        if self.handing_off:
            logger.debug("connection %s: mitmproxy did not let go in time", self.relay.conn)
            self.handoff_done()

    def handoff_done(self) -> None:
        """mitmproxy has relayed all it had read: relay what was read meanwhile, read the
        sockets ourselves from now on, and let mitmproxy forget the connection."""
        if not self.handing_off:
            return
        self.handing_off = False
        if self._handoff_timer is not None:
            self._handoff_timer.cancel()
            self._handoff_timer = None
        detached, self._detached = self._detached, []
        for d in detached:
            d.stand_in.through = False
        for p in (self.client, self.server):
            held, p.hold = p.hold, None
            for data in held or ():
                if not self.ended:
                    p.data_received(data)
        for p in (self.client, self.server):
            self.block(p, _HANDOFF, False)
        for d in detached:
            mitm_compat.release(d)
        if not self.ended:
            # mitmproxy lets go of the sockets within a few loop turns of the release
            self._handoff_timer = asyncio.get_running_loop().call_later(
                DROP_AFTER, self._drop_mitmproxy
            )

    def _drop_mitmproxy(self) -> None:
        """Free mitmproxy's stream objects of the sockets it let go of (an idle
        connection's memory, docs/performance.md); the others stay until the end
        (mitmproxy 12 keeps its writer of one of them open until then)."""
        self._handoff_timer = None
        self.drop_checked = True
        if self.ended:
            return
        keep = []
        for d in self._keep:
            if mitm_compat.done_with(d):
                mitm_compat.drop(d)
            else:
                keep.append(d)
        self._keep = keep

    # ------------------------------------------------------------------ input

    def from_mitmproxy(self, side: Side, data: bytes, ts: float) -> None:
        """A chunk mitmproxy had read before the hand-off (through ``tcp_message``), or the
        marker that ends the hand-off."""
        if data is self._marker or (side == CLIENT and data == self._marker):
            # (equal, not only the same object: a mitmproxy that copies it, or a marker
            # that comes back after HANDOFF_TIMEOUT, must never reach the server)
            self.handoff_done()
            return
        peer = self.client if side == CLIENT else self.server
        relay = self.relay
        try:
            out = relay.feed(side, data, ts)
        except Exception:  # as in _Peer.data_received: forwarding must not depend on it
            self.crashed()
            out = data
        if out and not peer.other.shut:
            peer.other.write(out)
        if relay.out:
            self.apply(relay.take())

    def crashed(self) -> None:
        if not self._crash_logged:
            self._crash_logged = True
            logger.exception(
                "connection %s: capture failed; forwarding the bytes unchanged", self.relay.conn
            )

    # ------------------------------------------------------------------ output

    def apply(self, out: Output) -> None:
        """Carry out what the relay asked for."""
        if self.ended:
            return
        if out.to_server and not self.server.shut:
            self.server.write(b"".join(out.to_server))
        if out.to_client and not self.client.shut:
            self.client.write(b"".join(out.to_client))
        for side in out.pause:
            self.block(self.client if side == CLIENT else self.server, _RELAY, True)
        for side in out.resume:
            self.block(self.client if side == CLIENT else self.server, _RELAY, False)
        if out.end == "abort":
            self.abort(out.rst)
        elif out.end == "close":
            self.close()
        if out.rearm:
            self.arm(self.relay.next_deadline())
        if self._fin_wait:
            self._retry_eofs()

    def block(self, peer: _Peer, reason: int, on: bool) -> None:
        """Stop (or allow again) reading ``peer`` for ``reason``."""
        b = self._blocked[peer.side]
        nb = b | reason if on else b & ~reason
        self._blocked[peer.side] = nb
        t = peer.t
        if t is None or peer.lost or peer.eof or (nb != 0) == (b != 0):
            return
        try:
            if nb:
                t.pause_reading()
            else:
                t.resume_reading()
        except (OSError, RuntimeError) as e:  # closing
            logger.debug("pause/resume reading failed: %s", e)

    # ------------------------------------------------------------------ the end

    def sockets(self) -> int:
        """How many of the two sockets are still open."""
        return sum(1 for p in (self.client, self.server) if p.t is not None and not p.lost)

    def close(self) -> None:
        """FIN both sockets after what is written to them."""
        for p in (self.client, self.server):
            p.shut = True
            if p.t is not None and not p.lost:
                p.t.close()

    def abort(self, rst: bool = False) -> None:
        """Drop both sockets now (``rst``: with a TCP reset)."""
        for p in (self.client, self.server):
            p.shut = True
            t = p.t
            if t is None or p.lost:
                continue
            if rst:
                sock = t.get_extra_info("socket")
                if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                    try:
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    except OSError as e:
                        logger.debug("SO_LINGER failed: %s", e)
            t.abort()

    def peer_eof(self, peer: _Peer) -> None:
        if peer.eof:
            return
        peer.eof = True
        self._pass_eof(peer)

    def _pass_eof(self, peer: _Peer) -> None:
        """Relay ``peer``'s EOF: half-close the other peer, or close both when the other
        is done too. Like a slow link, after what the relay's time-based stages (rule
        delays, network conditions) still hold toward the other peer (``pending_to``), at
        most ``CLOSE_HOLD_LIMIT`` seconds: ``apply`` tries again after each write."""
        other = peer.other
        if (
            not self.ended
            and not other.lost
            and not other.shut
            and peer not in self._fin_late
            and self._pending_to(other.side)
        ):
            if peer not in self._fin_wait:
                self._fin_wait[peer] = asyncio.get_running_loop().call_later(
                    CLOSE_HOLD_LIMIT, self._fin_timeout, peer
                )
            return
        timer = self._fin_wait.pop(peer, None)
        if timer is not None:
            timer.cancel()
        if other.eof or other.lost:
            if other in self._fin_wait:
                return  # its EOF waits for bytes toward this peer; both close after them
            self.close()
        elif other.t is not None and not other.shut and other.t.can_write_eof():
            # a half-close, as mitmproxy's TCP layer relays it
            other.shut = True
            try:
                other.t.write_eof()
            except (OSError, RuntimeError) as e:
                logger.debug("write_eof failed: %s", e)

    def _fin_timeout(self, peer: _Peer) -> None:
        if self._fin_wait.pop(peer, None) is not None and not self.ended:
            self._fin_late.add(peer)
            self._pass_eof(peer)

    def _retry_eofs(self) -> None:
        for p in list(self._fin_wait):
            self._pass_eof(p)

    def peer_lost(self, peer: _Peer) -> None:
        if not peer.eof:
            self.peer_eof(peer)  # a reset reads as an EOF, as under mitmproxy
        if self._fin_wait:
            self._retry_eofs()  # what waited for this peer cannot be delivered any more
        if self.client.lost and self.server.lost:
            self._finish(None)

    def _finish(self, error: str | None) -> None:
        if self.ended:
            return
        self.ended = True
        if self._handoff_timer is not None:
            self._handoff_timer.cancel()
            self._handoff_timer = None
        for timer in self._fin_wait.values():
            timer.cancel()
        self._fin_wait.clear()
        self._fin_late.clear()
        for d in self._detached:  # ended during the hand-off: mitmproxy may let go now
            mitm_compat.release(d)
        self._detached = []
        for d in self._keep:
            mitm_compat.forget(d)
        self._keep = []
        on_end = self.on_end
        # no reference cycles left behind: the proxy collects its oldest generation rarely
        # (proxy.tune_gc), refcounting frees all of this now
        self.on_end = _no_end
        self.arm = _no_arm  # the driver's closure refers to the stream that refers to us
        for p in (self.client, self.server):
            del p.other, p.c
        on_end(error)


class Pool:
    """The fast connections of one proxy: closes the ones idle for longer than mitmproxy's
    ``tcp_timeout`` (a sweep every tenth of it, while there are any)."""

    tls = True  # take TLS connections too, with mitmproxy's SSL.Connection

    def __init__(self) -> None:
        self.conns: set[FastConnection] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(
        self,
        flow: Any,
        relay: Relay,
        on_end: Callable[[str | None], None],
        arm: Callable[[float | None], None],
    ) -> FastConnection | None:
        """Relay ``flow``'s sockets with a FastConnection, or None (mitmproxy keeps them)."""
        c = FastConnection(relay, on_end, arm)
        if not c.attach(flow, self.tls):
            return None
        self.conns.add(c)
        c.on_end = lambda error: self._ended(c, on_end, error)
        if self._timer is None:
            self._schedule()
        return c

    def _ended(
        self, c: FastConnection, on_end: Callable[[str | None], None], e: str | None
    ) -> None:
        self.conns.discard(c)
        on_end(e)

    def _schedule(self) -> None:
        t = mitm_compat.tcp_timeout()
        self._timer = asyncio.get_running_loop().call_later(max(1.0, t / 10), self._sweep, t)

    def _sweep(self, timeout: float) -> None:
        self._timer = None
        now = _time()
        for c in [c for c in self.conns if now - c.last > timeout]:
            logger.info("connection %s: closing after %.0f s of inactivity", c.relay.conn, timeout)
            c.close()
        if self.conns:
            self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
