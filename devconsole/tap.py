"""The tap: an asyncio server (in the proxy process) and client around ``devconsole.wire``.

Addresses:

- a filesystem path: a Unix socket, created 0600 inside a 0700 directory. The default is
  ``$XDG_RUNTIME_DIR/devconsole/tap.sock`` (or ``/tmp/devconsole-UID/tap.sock``); the
  proxy that ``devconsole`` (no command) starts listens on ``tap-PID.sock`` there. A viewer
  given no address (``TapClient(None)``) finds the one live tap of this user in that
  directory (``find_taps``), removing the sockets of proxies that are gone.
- ``tcp://127.0.0.1:PORT``: TCP, for a viewer that cannot reach the socket; requires a
  token. The proxy generates one and stores it 0600 in the runtime directory; the client
  takes ``--token`` or reads that file.

The server never lets a viewer slow the proxy: publishing an event is a list append; each
client has its own sender task, and a client whose queue overflows loses that queue, is
sent a ``GapEvent`` with the count it missed and then a fresh ``Snapshot``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import hmac
import ipaddress
import logging
import os
import secrets
import socket
import stat
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devconsole import wire
from devconsole.model import (
    BacklogEnd,
    Command,
    CommandResult,
    ControlFrame,
    Event,
    GapEvent,
    Message,
    Snapshot,
)
from devconsole.session import Session
from devconsole.source import EventsCallback, SourceError

logger = logging.getLogger("devconsole.tap")

BATCH_EVENTS = 2_000  # events per EVENTS frame
FLUSH_INTERVAL = 0.01  # seconds a sender waits to gather a batch
MAX_QUEUE = 200_000  # events queued for one client before it is skipped ahead
MAX_QUEUE_BYTES = 64 << 20  # ... or payload bytes queued for it
BATCH_BYTES = 1 << 20  # payload bytes per EVENTS frame (at least one event)
# Before a client is authenticated (a valid hello, with the token on TCP) it may send
# HELLO_LIMIT bytes, for AUTH_TIMEOUT seconds, and at most MAX_PENDING such clients are
# held (a new one pushes out the oldest): an unauthenticated client cannot make the proxy
# allocate more than a few KiB, or hold a slot for long.
HELLO_LIMIT = 4096
AUTH_TIMEOUT = 5.0
MAX_PENDING = 16
# After authentication: a viewer sends commands, small arrays with at most an injected
# payload.
MAX_COMMAND = 16 << 20
STREAM_LIMIT = 64 << 10  # asyncio's per-connection read buffer pauses at twice this


class TapError(Exception):
    """The tap cannot be started or reached (message is for the user)."""


# ------------------------------------------------------------------ addresses


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base) and os.access(base, os.W_OK):
        d = Path(base) / "devconsole"
    else:
        d = Path("/tmp") / f"devconsole-{os.getuid()}"
    return d


def ensure_private_dir(d: Path) -> Path:
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = d.stat()
    if st.st_uid != os.getuid():
        raise TapError(f"{d} belongs to another user; choose a tap path with --tap")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(d, 0o700)
    return d


def default_tap() -> str:
    return str(runtime_dir() / "tap.sock")


@dataclass(frozen=True, slots=True)
class TapAddress:
    path: str | None = None
    host: str | None = None
    port: int | None = None

    @property
    def is_tcp(self) -> bool:
        return self.path is None

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    def token_file(self) -> Path:
        return runtime_dir() / f"tap-{self.port}.token"


def parse_tap(spec: str | None) -> TapAddress:
    """``None``/"" = the default socket; ``tcp://HOST:PORT``; anything else a socket path."""
    if not spec:
        return TapAddress(path=default_tap())
    if spec.startswith("tcp://"):
        rest = spec[len("tcp://") :]
        host, sep, port_s = rest.rpartition(":")
        host = host.strip("[]")
        # an empty host would make the server listen on every interface
        if not sep or not host:
            raise TapError(f"bad tap address {spec!r}: expected tcp://HOST:PORT")
        if not (port_s.isascii() and port_s.isdigit()):
            raise TapError(f"bad tap address {spec!r}: port must be a number")
        port = int(port_s)
        if not 0 <= port <= 65535:
            raise TapError(f"bad tap address {spec!r}: port out of range")
        return TapAddress(host=host, port=port)
    if "://" in spec:
        raise TapError(f"bad tap address {spec!r}: use a socket path or tcp://HOST:PORT")
    return TapAddress(path=os.path.abspath(os.path.expanduser(spec)))


def is_loopback_host(host: str) -> bool | None:
    """Whether listening on ``host`` stays on this machine: True for loopback addresses
    and names that resolve only to them, False for every-interface ("", "*", 0.0.0.0, ::)
    and other addresses, None when the name does not resolve (listening will fail)."""
    host = host.strip("[]")
    if host in ("", "*"):
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return None
    return all(ipaddress.ip_address(str(i[4][0]).partition("%")[0]).is_loopback for i in infos)


@dataclass(frozen=True, slots=True)
class FoundTap:
    path: str
    proxy: str  # the proxy's listen address(es), as its welcome says


def _tap_sockets(d: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return []
    return [
        d / n for n in names if n == "tap.sock" or (n.startswith("tap-") and n.endswith(".sock"))
    ]


async def _probe(path: str, timeout: float) -> str | None:
    """The proxy description of a live tap socket; None when nothing listens on it (a
    proxy that is gone left it). A socket that accepts but does not answer in time is
    live all the same ("?")."""
    try:
        r, w = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    except (ConnectionRefusedError, FileNotFoundError):
        return None
    except (TimeoutError, OSError):
        return "?"
    try:
        # the Snapshot alone, and nothing else: this is a look, not a viewer
        hello = {"version": wire.PROTOCOL_VERSION, "token": None, "items": False}
        w.write(wire.pack(wire.HELLO, hello))
        frame = await asyncio.wait_for(FrameReader(r).next(), timeout)
    except (TimeoutError, OSError, wire.WireError):
        return "?"
    finally:
        w.close()
    if frame is not None and frame[0] == wire.WELCOME and isinstance(frame[1], dict):
        proxy = frame[1].get("proxy")
        return proxy if isinstance(proxy, str) else ""
    return "?"


async def find_taps(d: Path | None = None, timeout: float = 1.0) -> list[FoundTap]:
    """The live taps of this user's proxies in the runtime directory (``tap.sock``,
    ``tap-PID.sock``), oldest name first. The sockets of proxies that are gone (nothing
    listens; a crash, a kill -9) are removed on the way."""
    d = runtime_dir() if d is None else d
    found: list[FoundTap] = []
    for path in _tap_sockets(d):
        try:
            st = path.lstat()
        except OSError:
            continue
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
            continue
        proxy = await _probe(str(path), timeout)
        if proxy is None:
            with contextlib.suppress(OSError):
                path.unlink()
                logger.info("removed the stale tap socket %s", path)
            continue
        found.append(FoundTap(str(path), proxy))
    return found


async def discover_tap() -> TapAddress:
    """The tap of the one running proxy of this user. None running, or several, is a
    ``SourceError`` that says what to do (and lists them, to pick one with ``--tap``)."""
    d = runtime_dir()
    found = await find_taps(d)
    if len(found) == 1:
        return TapAddress(path=found[0].path)
    if not found:
        raise SourceError(
            f"no devconsole proxy is running (no live tap in {d}): start `devconsole` or "
            "`devconsole proxy`, or give the tap address with --tap"
        )
    listing = "; ".join(
        f"{f.path}" + (f" (proxy {f.proxy})" if f.proxy and f.proxy != "?" else "") for f in found
    )
    raise SourceError(
        f"{len(found)} devconsole proxies are running, choose one with --tap: {listing}"
    )


def read_token(addr: TapAddress) -> str | None:
    try:
        return addr.token_file().read_text().strip() or None
    except OSError:
        return None


# ------------------------------------------------------------------ server


class _Client:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.queue: list[Event] = []
        self.wake = asyncio.Event()
        self.qbytes = 0  # payload bytes in ``queue``
        self.missed = 0
        self.resync = False
        self.ready = False  # backlog sent, live events go out directly
        self.closed = False


CommandHandler = Callable[[Command], Coroutine[Any, Any, CommandResult]]


class TapServer:
    """Serves a Session's backlog and live events; forwards Commands to ``on_command``."""

    def __init__(
        self,
        session: Session,
        on_command: CommandHandler,
        proxy_desc: Callable[[], str] = lambda: "",
        max_queue: int = MAX_QUEUE,
        max_queue_bytes: int = MAX_QUEUE_BYTES,
    ) -> None:
        self.session = session
        self.on_command = on_command
        self.proxy_desc = proxy_desc
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.hello_limit = HELLO_LIMIT
        self.auth_timeout = AUTH_TIMEOUT
        self.max_pending = MAX_PENDING
        self.clients: set[_Client] = set()
        self._unauthenticated: dict[_Client, None] = {}  # oldest first
        self.recording = ""  # the proxy's recording directory (--record), told to viewers
        self.address: TapAddress | None = None
        self.token: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle

    async def start(self, addr: TapAddress) -> TapAddress:
        if addr.path is not None:
            path = Path(addr.path)
            ensure_private_dir(path.parent) if path.parent == runtime_dir() else None
            if path.exists() or path.is_symlink():
                if not stat.S_ISSOCK(path.lstat().st_mode):
                    raise TapError(f"tap path {path} exists and is not a socket")
                if await _socket_alive(str(path)):
                    raise TapError(
                        f"tap socket {path} is in use by another devconsole; "
                        "choose another with --tap PATH"
                    )
                path.unlink()
            old_umask = os.umask(0o177)
            try:
                self._server = await asyncio.start_unix_server(
                    self._handle, path=str(path), limit=STREAM_LIMIT
                )
            except OSError as e:
                raise TapError(f"cannot listen on tap socket {path}: {e.strerror}") from None
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
            self.address = addr
        else:
            assert addr.host is not None and addr.port is not None
            try:
                self._server = await asyncio.start_server(
                    self._handle, addr.host, addr.port, limit=STREAM_LIMIT
                )
            except OSError as e:
                msg = "address in use" if e.errno == errno.EADDRINUSE else e.strerror
                raise TapError(f"cannot listen on tap {addr}: {msg}") from None
            port = self._server.sockets[0].getsockname()[1]
            self.address = TapAddress(host=addr.host, port=port)
            self.token = secrets.token_urlsafe(32)
            tf = self.address.token_file()
            try:
                ensure_private_dir(tf.parent)
                fd = os.open(tf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(self.token + "\n")
                os.chmod(tf, 0o600)
            except (OSError, TapError) as e:
                self._server.close()
                self._server = None
                if isinstance(e, TapError):
                    raise
                raise TapError(f"cannot write the tap token file {tf}: {e.strerror}") from None
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Drop the clients before waiting: since Python 3.12 wait_closed() also waits for
        # every open connection.
        for c in [*self.clients, *self._unauthenticated]:
            self._drop(c)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
        if self.address is not None:
            if self.address.path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.address.path)
            else:
                with contextlib.suppress(OSError):
                    self.address.token_file().unlink()
        self._server = None

    # -- publishing (called on the proxy's loop for every event: keep it cheap)

    def publish(self, ev: Event) -> None:
        t = type(ev)
        cost = len(ev.payload) if t is Message or t is ControlFrame else 0  # type: ignore[union-attr]
        for c in self.clients:
            q = c.queue
            q.append(ev)
            c.qbytes += cost
            if len(q) == 1:
                c.wake.set()
            elif len(q) > self.max_queue or c.qbytes > self.max_queue_bytes:
                # The queue also keeps evicted messages alive: bound it by bytes too.
                c.missed += len(q)
                q.clear()
                c.qbytes = 0
                c.resync = True

    # -- connection handling

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer)
        self._unauthenticated[client] = None
        while len(self._unauthenticated) > self.max_pending:
            oldest = next(iter(self._unauthenticated))
            logger.info("tap: too many unauthenticated clients, dropping the oldest")
            self._drop(oldest, abort=True)
        frames = FrameReader(
            reader, max_object=MAX_COMMAND, max_len=1024, first_frame_limit=self.hello_limit
        )
        try:
            hello = await asyncio.wait_for(frames.next(), self.auth_timeout)
            if hello is None or hello[0] != wire.HELLO or not isinstance(hello[1], dict):
                await self._refuse(writer, "expected a hello")
                return
            body = hello[1]
            if body.get("version") != wire.PROTOCOL_VERSION:
                await self._refuse(
                    writer, f"tap protocol version {body.get('version')!r} is not supported"
                )
                return
            if self.token is not None:
                token = body.get("token")
                if not isinstance(token, str) or not hmac.compare_digest(
                    token.encode(), self.token.encode()
                ):
                    await self._refuse(writer, "bad or missing tap token")
                    return
            welcome: dict[str, Any] = {
                "version": wire.PROTOCOL_VERSION,
                "proxy": self.proxy_desc(),
            }
            if self.recording:  # readers ignore keys they do not know
                welcome["recording"] = self.recording
            writer.write(wire.pack(wire.WELCOME, welcome))
            # Register for live events and take the backlog in the same loop step, so
            # nothing falls between the two.
            backlog: list[Event] = [self.session.snapshot(self.proxy_desc())]
            if body.get("items") is not False:  # a viewer may want the Snapshot alone
                backlog.extend(self.session.backlog())
            if body.get("backlog_end") is True:  # asked for: say where the backlog ends
                backlog.append(BacklogEnd(backlog[0].seq))  # type: ignore[union-attr]
            self._unauthenticated.pop(client, None)
            self.clients.add(client)
            self._spawn(self._sender(client, backlog))
            while True:
                frame = await frames.next()
                if frame is None:
                    break
                kind, cbody = frame
                if kind != wire.COMMAND:
                    continue
                self._spawn(self._run_command(client, cbody))
        except (TimeoutError, wire.WireError) as e:
            logger.info("tap client dropped: %s", e)
        except (ConnectionError, OSError):
            pass
        finally:
            self._drop(client)

    async def _refuse(self, writer: asyncio.StreamWriter, msg: str) -> None:
        logger.warning("tap client refused: %s", msg)
        with contextlib.suppress(Exception):
            writer.write(wire.pack(wire.ERROR, msg))
            await asyncio.wait_for(writer.drain(), 1)
        writer.close()

    async def _run_command(self, client: _Client, body: Any) -> None:
        try:
            cmd = wire.decode_command(body)
        except wire.WireError as e:
            res = CommandResult(
                body[-1] if isinstance(body, list) and body and isinstance(body[-1], int) else 0,
                False,
                str(e),
            )
        else:
            try:
                res = await self.on_command(cmd)
            except Exception as e:  # a bug in a command must not kill the tap
                logger.exception("command failed")
                res = CommandResult(cmd.id, False, f"internal error: {e}")
        if not client.closed:
            with contextlib.suppress(Exception):
                client.writer.write(wire.pack(wire.RESULT, wire.encode_result(res)))

    def _drop(self, client: _Client, abort: bool = False) -> None:
        self._unauthenticated.pop(client, None)
        if client.closed:
            return
        client.closed = True
        self.clients.discard(client)
        client.wake.set()
        with contextlib.suppress(Exception):
            if abort:  # free its buffers now, do not wait to flush anything
                client.writer.transport.abort()
            else:
                client.writer.close()

    async def _write(self, client: _Client, events: list[Event]) -> None:
        """Send ``events`` in frames of at most BATCH_EVENTS events or ~BATCH_BYTES of
        payload (packing huge frames is slow and holds memory twice)."""
        w = client.writer
        start = 0
        nbytes = 0
        for i, ev in enumerate(events):
            t = type(ev)
            if t is Message or t is ControlFrame:
                nbytes += len(ev.payload)  # type: ignore[union-attr]
            if i + 1 - start >= BATCH_EVENTS or nbytes >= BATCH_BYTES:
                w.write(wire.pack_events(events[start : i + 1]))
                await w.drain()
                start = i + 1
                nbytes = 0
        if start < len(events):
            w.write(wire.pack_events(events[start:]))
            await w.drain()

    async def _sender(self, client: _Client, backlog: list[Event]) -> None:
        try:
            await self._write(client, backlog)  # in frames, like live batches
            client.ready = True
            while not client.closed:
                await client.wake.wait()
                client.wake.clear()
                if client.closed:
                    break
                await asyncio.sleep(FLUSH_INTERVAL)  # gather a batch
                if client.resync:
                    client.resync = False
                    missed, client.missed = client.missed, 0
                    pending = client.queue
                    client.queue = []
                    client.qbytes = 0
                    snap = self.session.snapshot(self.proxy_desc())
                    # Events queued after the overflow that the snapshot already counts
                    # are harmless: the session does not count seq <= snapshot.seq twice.
                    await self._write(
                        client,
                        [GapEvent(missed, "tap client too slow: skipped ahead"), snap, *pending],
                    )
                    continue
                batch = client.queue
                if not batch:
                    continue
                client.queue = []
                client.qbytes = 0
                await self._write(client, batch)
        except (ConnectionError, OSError):
            pass
        except Exception:
            logger.exception("tap sender failed")
        finally:
            self._drop(client)


async def _socket_alive(path: str) -> bool:
    try:
        _, w = await asyncio.wait_for(asyncio.open_unix_connection(path), 1)
    except (TimeoutError, OSError):
        return False
    w.close()
    return True


class FrameReader:
    """Reads ``(kind, body)`` tap frames from a StreamReader. ``first_frame_limit``: at
    most that many bytes are read until the first frame is complete (a hello), so a peer
    that has not identified itself cannot make the decoder buffer more."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        max_object: int = wire.MAX_OBJECT,
        max_len: int = wire.MAX_LEN,
        first_frame_limit: int | None = None,
    ) -> None:
        self.reader = reader
        self.decoder = wire.Decoder(max_object, max_len)
        self.pending: collections.deque[tuple[int, Any]] = collections.deque()
        self._error: wire.WireError | None = None
        self._budget = first_frame_limit  # None once the first frame is in

    async def next(self) -> tuple[int, Any] | None:
        """The next frame, or None at EOF. Raises WireError on malformed data (after the
        good frames that came before it)."""
        while not self.pending:
            if self._error is not None:
                raise self._error
            n = 1 << 18
            if self._budget is not None:
                if self._budget <= 0:
                    raise wire.WireError("first tap frame too large")
                n = min(n, self._budget)
            try:
                data = await self.reader.read(n)
            except (ConnectionError, OSError):
                return None
            if self._budget is not None:
                self._budget -= len(data)
            if not data:
                return None
            try:
                self.decoder.feed(data)
                for frame in self.decoder.frames():
                    self.pending.append(frame)
            except wire.WireError as e:
                self._error = e
        self._budget = None
        return self.pending.popleft()


# ------------------------------------------------------------------ client


class TapClient:
    """A Source reading a live tap."""

    def __init__(
        self,
        addr: TapAddress | str | None = None,
        token: str | None = None,
        timeout: float = 5,
        backlog_end: bool = False,
        items: bool = True,
    ) -> None:
        # No address: the one running proxy's tap, found when connecting.
        self.discover = addr is None
        self.addr = addr if isinstance(addr, TapAddress) else parse_tap(addr)
        self.token = token
        self.timeout = timeout
        self.backlog_end = backlog_end  # ask for a BacklogEnd event after the backlog
        self.items = items  # False: a backlog of the Snapshot alone (counters, no items)
        self.description = f"tap {self.addr}"
        self.proxy = ""
        self.recording = ""  # the proxy's recording directory, where items evicted live
        self._frames: FrameReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._results: dict[int, asyncio.Future[CommandResult]] = {}
        self._next_id = 1
        self._closed = False

    async def connect(self) -> None:
        if self.discover:
            self.addr = await discover_tap()
            self.description = f"tap {self.addr}"
            self.discover = False  # a reconnect goes back to the same proxy
        addr = self.addr
        try:
            if addr.path is not None:
                r, w = await asyncio.wait_for(
                    asyncio.open_unix_connection(addr.path, limit=1 << 20), self.timeout
                )
            else:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection(addr.host, addr.port, limit=1 << 20), self.timeout
                )
        except FileNotFoundError:
            raise SourceError(f"no devconsole tap at {addr} (is the proxy running?)") from None
        except ConnectionRefusedError:
            raise SourceError(f"no devconsole tap at {addr} (connection refused)") from None
        except TimeoutError:
            raise SourceError(f"tap {addr} did not answer") from None
        except OSError as e:
            raise SourceError(f"cannot reach tap {addr}: {e.strerror or e}") from None
        token = self.token
        if addr.is_tcp and token is None:
            token = read_token(addr)
        hello: dict[str, Any] = {"version": wire.PROTOCOL_VERSION, "token": token}
        if self.backlog_end:
            hello["backlog_end"] = True  # an older proxy ignores it (and never sends one)
        if not self.items:
            hello["items"] = False  # ... and sends the items all the same
        w.write(wire.pack(wire.HELLO, hello))
        self._frames = FrameReader(r)
        try:
            try:
                frame = await asyncio.wait_for(self._next(), self.timeout)
            except TimeoutError:
                raise SourceError(f"tap {addr} did not answer") from None
            if frame is None:
                raise SourceError(f"tap {addr} closed the connection")
            kind, body = frame
            if kind == wire.ERROR:
                raise SourceError(f"tap {addr} refused: {body}")
            if kind != wire.WELCOME or not isinstance(body, dict):
                raise SourceError(f"tap {addr} answered with something unexpected")
        except BaseException:
            w.close()
            self._frames = None
            raise
        self._writer = w
        proxy = body.get("proxy")
        self.proxy = proxy if isinstance(proxy, str) else ""
        rec = body.get("recording")
        self.recording = rec if isinstance(rec, str) else ""

    async def _next(self) -> tuple[int, Any] | None:
        assert self._frames is not None
        try:
            return await self._frames.next()
        except wire.WireError as e:
            raise SourceError(f"tap {self.addr} sent malformed data: {e}") from None

    async def run(self, on_events: EventsCallback) -> None:
        if self._writer is None:
            await self.connect()
        try:
            while True:
                frame = await self._next()
                if frame is None:
                    break
                kind, body = frame
                try:
                    if kind == wire.EVENTS:
                        on_events(wire.decode_events(body))
                    elif kind == wire.RESULT:
                        res = wire.decode_result(body)
                        fut = self._results.pop(res.id, None)
                        if fut is not None and not fut.done():
                            fut.set_result(res)
                except wire.WireError as e:
                    raise SourceError(f"tap {self.addr} sent malformed data: {e}") from None
        finally:
            # nothing will answer a command any more: fail them now, not after a timeout
            self._closed = True
            for cid, fut in self._results.items():
                if not fut.done():
                    fut.set_result(CommandResult(cid, False, "tap connection closed"))
            self._results.clear()

    async def command(self, cmd: Command) -> CommandResult:
        if self._writer is None or self._closed:
            raise SourceError("not connected to a tap")
        cmd.id = self._next_id
        self._next_id += 1
        fut: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._results[cmd.id] = fut
        try:
            self._writer.write(wire.pack(wire.COMMAND, wire.encode_command(cmd)))
            await self._writer.drain()
            return await asyncio.wait_for(fut, 30)
        except (ConnectionError, OSError) as e:
            raise SourceError(f"tap {self.addr}: {e}") from None
        except TimeoutError:
            raise SourceError(f"tap {self.addr} did not answer command {cmd.id}") from None
        finally:
            self._results.pop(cmd.id, None)

    async def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()


async def collect(
    addr: TapAddress | str | None,
    token: str | None = None,
    until: Callable[[Session], bool] | None = None,
    idle: float = 0.3,
    timeout: float = 10,
    session: Session | None = None,
    items: bool = True,
) -> Session:
    """Attach, apply the backlog to ``session`` (default: a new unbounded one, so the
    whole backlog fits), and return it once the backlog is in (the proxy says so with a
    ``BacklogEnd``), ``until(session)`` holds, or ``timeout`` seconds have passed. A proxy
    too old to send the marker, or a Redis stream: once the stream has been quiet for
    ``idle`` seconds. ``items=False``: the connections and their counters only (the
    Snapshot), not the buffered messages: what ``devconsole conns`` needs, fast even with
    a full buffer."""
    from devconsole.sources import is_redis, open_source

    if is_redis(addr):
        client: Any = open_source(addr, token)
    else:
        client = TapClient(addr, token, backlog_end=True, items=items)
    await client.connect()
    if session is None:
        session = Session(max_items=10_000_000, max_bytes=1 << 40)
    last = time.monotonic()
    done = asyncio.Event()

    def on_events(evs: list[Event]) -> None:
        nonlocal last
        for ev in evs:
            if type(ev) is BacklogEnd:
                done.set()
            else:
                session.apply(ev)
        last = time.monotonic()

    task = asyncio.ensure_future(client.run(on_events))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not task.done():
            if until is None and done.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.02)
            if until is not None and until(session):
                break
            if until is None and session.version > 0 and time.monotonic() - last > idle:
                break
    finally:
        await client.close()
        failed = task.done() and not task.cancelled() and task.exception() is not None
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    if failed:
        exc = task.exception()
        assert exc is not None
        raise exc
    return session


__all__ = [
    "Snapshot",
    "TapAddress",
    "TapClient",
    "TapError",
    "TapServer",
    "collect",
    "default_tap",
    "discover_tap",
    "find_taps",
    "parse_tap",
]
