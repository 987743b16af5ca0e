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

from devconsole.capture import Capture, fmt_addr

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
    sets: Sequence[str] = field(default_factory=list)  # NAME=VALUE, like mitmproxy's --set


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


def parse_mode(mode: str) -> str:
    """Validate a mitmproxy mode spec (regular, reverse:URL, upstream:URL, socks5, ...)."""
    try:
        mode_specs.ProxyMode.parse(mode)
    except ValueError as e:
        raise ProxyError(f"bad --mode {mode!r}: {e}") from None
    return mode


class _ErrorLog(logging.Handler):
    """Remembers error records emitted during startup."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class DevconsoleProxy:
    """A running mitmproxy Master with the Capture addon."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.capture = Capture()
        self.master: Master | None = None
        self._task: asyncio.Task[None] | None = None

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
        )
        updates: dict[str, Any] = {
            "listen_host": cfg.listen_host,
            "listen_port": cfg.listen_port,
            "mode": [cfg.mode],
            "devconsole_tap": cfg.tap,
            "devconsole_buffer_messages": cfg.buffer_messages,
            "devconsole_buffer_bytes": cfg.buffer_bytes,
            "devconsole_max_payload": cfg.max_payload,
            "devconsole_hold_bytes": cfg.hold_bytes,
        }
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
        mlog = logging.getLogger("mitmproxy")
        mlog.addHandler(errors)
        try:
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
            failures = [str(s.last_exception) for s in ps.servers if s.last_exception]
            if failures or not ps.listen_addrs():
                await self.stop()
                raise ProxyError(_explain_listen_error(failures or errors.messages))
            if self.capture.tap_error:
                await self.stop()
                raise ProxyError(self.capture.tap_error)
            return [(a[0], a[1]) for a in ps.listen_addrs()]
        finally:
            mlog.removeHandler(errors)

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


def _explain_listen_error(messages: list[str]) -> str:
    text = messages[-1] if messages else "could not start the proxy server"
    low = text.lower()
    if "address already in use" in low or "errno 98" in low:
        return f"cannot listen: address already in use ({text})"
    return f"cannot listen: {text}"


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
    await proxy.start()
    tune_gc()
    if on_ready is not None:
        on_ready(proxy)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(proxy.stop()))
    await proxy.wait()


__all__ = ["DevconsoleProxy", "ProxyConfig", "ProxyError", "fmt_addr", "parse_listen"]
