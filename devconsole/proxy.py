"""Run mitmproxy with the Capture addon: a minimal Master with only the addons we need.

Not DumpMaster: every hook is dispatched to every loaded addon (fewer addons, faster
relaying), and DumpMaster's error check calls ``sys.exit`` on any startup error. mitmproxy
logs through ``logging``; we route it (to stderr, or to a file under a TUI) ourselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import exceptions, options
from mitmproxy.addons import (
    block,
    core,
    next_layer,
    proxyauth,
    proxyserver,
    tlsconfig,
    upstream_auth,
)
from mitmproxy.master import Master
from mitmproxy.proxy import mode_specs

from devconsole.capture import Capture
from devconsole.scale.addon import ScaleOut
from devconsole.text import fmt_addr

logger = logging.getLogger("devconsole.proxy")


class ProxyError(Exception):
    """A startup error for the user: one clear line, no traceback."""


@dataclass
class ProxyConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    mode: str = "regular"
    confdir: str | None = None
    tap: str = ""
    buffer_messages: int = 100_000
    buffer_bytes: str = "256m"
    max_payload: str = "1m"
    hold_bytes: str = "16m"
    rules: str = ""  # a rules file (docs/rules.md)
    sets: Sequence[str] = field(default_factory=list)  # NAME=VALUE, like mitmproxy's --set
    record: str = ""  # a recording directory: every event written to disk (store/segments)
    record_max: int | None = None  # bytes the recording may use (oldest segments removed)
    decoders: Sequence[str] = field(default_factory=list)  # PATH_GLOB=NAME (docs/protocols.md)


def parse_listen(spec: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT``, ``PORT`` or ``[v6]:PORT``."""
    spec = spec.strip()
    if not spec:
        raise ProxyError("empty --listen address")
    host = "127.0.0.1"
    port_s = spec
    if spec.startswith("["):
        h, sep, rest = spec[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ProxyError(f"bad --listen address {spec!r}: expected [HOST]:PORT")
        host, port_s = h, rest[1:]
    elif ":" in spec:
        h, _, port_s = spec.rpartition(":")
        if ":" in h:
            raise ProxyError(f"bad --listen address {spec!r}: write IPv6 hosts as [HOST]:PORT")
        host = h or host
    try:
        port = int(port_s)
    except ValueError:
        raise ProxyError(f"bad --listen address {spec!r}: port must be a number") from None
    if not 0 <= port <= 65535:
        raise ProxyError(f"bad --listen address {spec!r}: port out of range")
    return host, port


_WS_SCHEMES = {"ws": "http", "wss": "https"}
_HTTP_SCHEMES = ("http", "https")


def parse_mode(mode: str) -> str:
    """Validate a mitmproxy mode spec (regular, reverse:URL, upstream:URL, socks5, ...) for
    a WebSocket proxy, up front and in one line; returns it normalised
    (``reverse:ws://H:P`` -> ``reverse:http://H:P``).

    mitmproxy alone takes ``reverse:notaurl`` for ``https://notaurl:443`` (listening on
    UDP too) and raw-TCP or DNS modes that carry no HTTP upgrade to see: refused here."""
    original = mode
    kind, sep, data = mode.partition(":")
    name = kind.partition("@")[0]
    if name in ("reverse", "upstream"):
        expected = f"expected {name}:http://HOST[:PORT] or {name}:https://HOST[:PORT]"
        scheme, sep2, rest = data.partition("://")
        if not sep or not sep2 or not rest.strip("/"):
            raise ProxyError(f"bad --mode {original!r}: {expected}")
        if name == "reverse" and scheme.lower() in _WS_SCHEMES:
            mode = f"{kind}:{_WS_SCHEMES[scheme.lower()]}://{rest}"
        try:
            spec = mode_specs.ProxyMode.parse(mode)
        except ValueError as e:
            raise ProxyError(f"bad --mode {original!r}: {expected} ({e})") from None
        if getattr(spec, "scheme", "") not in _HTTP_SCHEMES:
            raise ProxyError(
                f"bad --mode {original!r}: devconsole sees the WebSocket upgrade in HTTP; "
                f"{expected}"
            )
        return mode
    try:
        spec = mode_specs.ProxyMode.parse(mode)
    except ValueError as e:
        raise ProxyError(f"bad --mode {original!r}: {e}") from None
    if isinstance(spec, mode_specs.DnsMode):
        raise ProxyError(
            f"bad --mode {original!r}: a DNS server carries no WebSocket; use regular, "
            "reverse:http://HOST[:PORT], upstream:URL, socks5, transparent, ..."
        )
    return mode


def exposure_warnings(config: ProxyConfig) -> list[str]:
    """One line for the proxy and one for the tap when they listen beyond loopback, where
    anyone on the network can reach them."""
    from devconsole.tap import TapError, is_loopback_host, parse_tap

    out: list[str] = []
    host = config.listen_host
    if is_loopback_host(host) is False:
        where = f"[{host}]" if ":" in host else (host or "*")
        out.append(
            f"the proxy listens on {where}:{config.listen_port}: it is reachable from the "
            "network, and anyone who reaches it can use it and see its traffic"
        )
    if config.tap and config.tap != "off":
        try:
            addr = parse_tap(config.tap)
        except TapError:
            return out  # reported as an error when the tap starts
        if addr.is_tcp and is_loopback_host(addr.host or "") is False:
            out.append(
                f"the tap listens on {addr}: it is reachable from the network "
                "(viewers need its token)"
            )
    return out


class _HoldErrors(logging.Filter):
    """On the other handlers during startup: error records wait (in ``_ErrorLog``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


class _ErrorLog(logging.Handler):
    """Collects the error records emitted during startup, which the other handlers do
    not print meanwhile (``hold``): a failed start is reported in one line
    (ProxyError); after a successful one they are printed after all (``done``)."""

    _LOGGERS = ("mitmproxy", "devconsole")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self._hold = _HoldErrors()
        self._held: list[logging.Handler] = []

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def hold(self) -> None:
        for name in self._LOGGERS:
            lg = logging.getLogger(name)
            for h in lg.handlers:
                h.addFilter(self._hold)
                self._held.append(h)
            lg.addHandler(self)

    def done(self, replay: bool) -> None:
        for name in self._LOGGERS:
            logging.getLogger(name).removeHandler(self)
        for h in self._held:
            h.removeFilter(self._hold)
            if replay:
                for r in self.records:
                    h.handle(r)
        self._held = []


class DevconsoleProxy:
    """A running mitmproxy Master with the Capture addon."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.capture = Capture()
        self.scale = ScaleOut(self.capture)  # --publish / --backplane (Redis), off by default
        self.master: Master | None = None
        self._task: asyncio.Task[None] | None = None
        self.recorder: Any = None  # devconsole.store.segments.Recorder with --record
        self._recorder_task: asyncio.Task[None] | None = None

    def _start_recording(self) -> None:
        from devconsole.store.segments import Recorder, SegmentWriter

        cfg = self.config
        try:
            writer = SegmentWriter(cfg.record, max_bytes=cfg.record_max)
        except OSError as e:
            raise ProxyError(f"cannot record to {cfg.record}: {e.strerror or e}") from None
        cap = self.capture
        self.recorder = Recorder(writer, lambda: cap.session.snapshot(cap.proxy_desc()))
        # A Session observer is a list append on the forwarding path; the writing happens
        # in the recorder's thread.
        cap.session.observers.append(self.recorder.on_event)
        cap.tap.recording = os.path.abspath(writer.path)  # a viewer elsewhere reads it
        self._recorder_task = asyncio.ensure_future(self.recorder.run())

    async def _stop_recording(self) -> None:
        if self.recorder is None:
            return
        with contextlib.suppress(ValueError):
            self.capture.session.observers.remove(self.recorder.on_event)
        if self._recorder_task is not None:
            self._recorder_task.cancel()
            with contextlib.suppress(BaseException):
                await self._recorder_task
        await self.recorder.stop()

    def _make_master(self) -> Master:
        cfg = self.config
        opts = options.Options()
        master = Master(opts, with_termlog=False)
        master.addons.add(
            core.Core(),
            proxyserver.Proxyserver(),
            next_layer.NextLayer(),
            tlsconfig.TlsConfig(),
            block.Block(),
            proxyauth.ProxyAuth(),
            upstream_auth.UpstreamAuth(),
            self.capture,
            self.scale,
        )
        updates: dict[str, Any] = {
            "listen_host": cfg.listen_host,
            "listen_port": cfg.listen_port,
            "mode": [parse_mode(cfg.mode)],
            "devconsole_tap": cfg.tap,
            "devconsole_buffer_messages": cfg.buffer_messages,
            "devconsole_buffer_bytes": cfg.buffer_bytes,
            "devconsole_max_payload": cfg.max_payload,
            "devconsole_hold_bytes": cfg.hold_bytes,
        }
        if cfg.rules:
            updates["devconsole_rules"] = cfg.rules
        if cfg.decoders:
            updates["devconsole_decoders"] = list(cfg.decoders)
        if cfg.confdir:
            updates["confdir"] = cfg.confdir
        try:
            opts.update(**updates)
        except exceptions.OptionsError as e:
            raise ProxyError(str(e).strip()) from None
        for spec in cfg.sets:
            try:
                opts.set(spec)
            except (exceptions.OptionsError, KeyError, ValueError) as e:
                raise ProxyError(f"--set {spec}: {str(e).strip()}") from None
        return master

    async def start(self) -> list[tuple[str, int]]:
        """Start listening; returns the bound addresses. Raises ProxyError."""
        errors = _ErrorLog()
        errors.hold()
        ok = False
        try:
            if self.config.record and self.recorder is None:
                self._start_recording()
            self.master = self._make_master()
            self._task = asyncio.ensure_future(self.master.run())
            started = asyncio.ensure_future(self.capture.started.wait())
            await asyncio.wait({self._task, started}, return_when=asyncio.FIRST_COMPLETED)
            if self._task.done():
                started.cancel()
                exc = self._task.exception()
                raise ProxyError(
                    str(exc) if exc else (errors.messages[-1] if errors.messages else "exited")
                )
            ps = self.master.addons.get("proxyserver")
            failures = [s for s in ps.servers if s.last_exception]
            if failures or not ps.listen_addrs():
                await self.stop()
                raise ProxyError(self._listen_error(failures, errors.messages))
            if self.capture.tap_error:
                await self.stop()
                raise ProxyError(self.capture.tap_error)
            ok = True
            return [(a[0], a[1]) for a in ps.listen_addrs()]
        finally:
            errors.done(replay=ok)

    def _listen_error(self, failed: list[Any], messages: list[str]) -> str:
        host, port = self.config.listen_host, self.config.listen_port
        text = str(failed[0].last_exception) if failed else (messages[-1] if messages else "")
        with contextlib.suppress(Exception):  # a mode may name its own address (@PORT)
            host = failed[0].mode.listen_host(host)
            port = failed[0].mode.listen_port(port)
        return _explain_listen_error(text, host, port)

    @property
    def listen_addrs(self) -> list[tuple[str, int]]:
        assert self.master is not None
        return [(a[0], a[1]) for a in self.master.addons.get("proxyserver").listen_addrs()]

    @property
    def tap_address(self) -> str:
        return str(self.capture.tap.address) if self.capture.tap.address else ""

    async def wait(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def stop(self) -> None:
        try:
            await self._stop_master()
        finally:
            await self._stop_recording()

    async def _stop_master(self) -> None:
        if self.master is not None and self._task is not None and not self._task.done():
            # Close live connections as a server going away does (1001 to both peers,
            # an end event each, bounded in time) before mitmproxy cancels their tasks.
            try:
                await self.capture.shutdown()
            except Exception:
                logger.exception("closing the connections at shutdown failed")
            self.master.shutdown()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception:
                pass


def _explain_listen_error(text: str, host: str, port: int | None) -> str:
    """One line for a listen failure. mitmproxy's message spans lines and suggests
    ``--mode regular@PORT`` with a port that may be busy too (the tap's)."""
    where = f"[{host}]" if ":" in host else (host or "*")
    where = f"{where}:{port}"
    low = text.lower()
    if "address already in use" in low or "errno 98" in low:
        why = "address already in use"
    elif "permission denied" in low or "errno 13" in low:
        why = "permission denied"
    else:
        first = text.strip().splitlines()[0] if text.strip() else "the proxy server did not start"
        return f"cannot listen on {where}: {first}"
    return f"cannot listen on {where}: {why} (choose another with --listen HOST:PORT)"


def setup_logging(level: int = logging.WARNING, stream: Any = None) -> None:
    """Route mitmproxy's and devconsole's logging to ``stream`` (default stderr)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("mitmproxy", "devconsole"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(level)
        lg.propagate = False


def tune_gc() -> None:
    """Tune CPython's garbage collector for a proxy process.

    The proxy keeps long-lived objects that churn: the backlog for late viewers (up to
    100,000 items) and every connection's state. With the default thresholds a full
    collection, which traverses all of them, ran every few seconds under load and paused
    the proxy for ~0.4 s with 2,000 connections (docs/performance.md, issue 18): the p99
    of every round trip. Collect the oldest generation 100x less often, and freeze what
    startup made. Process-wide: ``run_proxy`` calls it, not ``DevconsoleProxy`` (tests
    share one process)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 1000)


async def run_proxy(
    config: ProxyConfig, on_ready: Callable[[DevconsoleProxy], None] | None = None
) -> None:
    """Run until SIGINT/SIGTERM. Raises ProxyError on startup errors."""
    proxy = DevconsoleProxy(config)
    try:
        await proxy.start()
    except BaseException:
        await proxy._stop_recording()
        raise
    tune_gc()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(proxy.stop()))
    # Ready only once a SIGTERM stops it cleanly (a parent may send one at once).
    if on_ready is not None:
        on_ready(proxy)
    await proxy.wait()
    await proxy._stop_recording()


__all__ = [
    "DevconsoleProxy",
    "ProxyConfig",
    "ProxyError",
    "exposure_warnings",
    "fmt_addr",
    "parse_listen",
    "parse_mode",
]
