"""The ScaleOut addon: a proxy publishing to Redis, and recording the app's backplane.

Loaded beside ``Capture`` (``devconsole proxy`` does it; ``addons/devconsole_addon.py``
too). Its options, all off by default:

- ``devconsole_publish`` (``--publish``): a Redis URL; the proxy also writes its events
  to the stream ``devconsole_stream`` as instance ``devconsole_name``;
- ``devconsole_accept_commands`` (``--accept-commands``): run kill/inject/... commands
  that viewers send through Redis. Off by default: anyone who can write to that Redis
  could otherwise act on live connections (docs/scale.md);
- ``devconsole_backplane`` + ``devconsole_channels`` (``--backplane``, ``--channels``):
  PSUBSCRIBE to the app's channels and record each publication;
  ``devconsole_trace_key`` (``--trace-key``) tells viewers how to match them.

Redis being unreachable never stops the proxy: it starts, relays, and keeps retrying.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from mitmproxy import exceptions

from devconsole.analysis.fanout import parse_path
from devconsole.capture import Capture
from devconsole.instances import valid_instance_name
from devconsole.scale.backplane import BackplaneRecorder, split_patterns
from devconsole.scale.config import (
    DEFAULT_MAXLEN,
    DEFAULT_STREAM,
    RedisConfigError,
    check_stream_name,
    parse_redis_url,
)
from devconsole.scale.publisher import MAX_PENDING, RedisPublisher

logger = logging.getLogger("devconsole.scale")


class ScaleOut:
    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.publisher: RedisPublisher | None = None
        self.backplane: BackplaneRecorder | None = None
        self.name = ""
        self.master: Any = None

    def load(self, loader: Any) -> None:
        # our own master's options, not ``ctx``'s (the latest master in this process)
        self.master = loader.master
        loader.add_option(
            "devconsole_publish",
            str,
            "",
            "Also publish events to this Redis (redis://[user:password@]HOST:PORT/DB or "
            "rediss://...; the password may come from DEVCONSOLE_REDIS_PASSWORD).",
        )
        loader.add_option(
            "devconsole_name",
            str,
            "",
            "This proxy's instance name in the Redis stream (default: HOSTNAME:PORT).",
        )
        loader.add_option(
            "devconsole_stream",
            str,
            DEFAULT_STREAM,
            "The Redis stream of this deployment (every proxy of it uses the same one).",
        )
        loader.add_option(
            "devconsole_stream_maxlen",
            int,
            DEFAULT_MAXLEN,
            "Entries the Redis stream keeps (MAXLEN ~); each holds up to ~128 KiB of events.",
        )
        loader.add_option(
            "devconsole_publish_buffer",
            int,
            MAX_PENDING,
            "Events held while Redis is unreachable; beyond that they are counted as a gap.",
        )
        loader.add_option(
            "devconsole_accept_commands",
            bool,
            False,
            "Run commands (kill, inject, ...) sent to this instance through Redis. Anyone "
            "who can write to that Redis can then act on live connections.",
        )
        loader.add_option(
            "devconsole_backplane",
            str,
            "",
            "Record the app's Redis pub/sub backplane at this URL (with devconsole_channels).",
        )
        loader.add_option(
            "devconsole_channels",
            str,
            "",
            "Comma-separated channel patterns (PSUBSCRIBE) of the app's backplane.",
        )
        loader.add_option(
            "devconsole_trace_key",
            str,
            "",
            "Match publications to WebSocket frames by the value at this JSON path "
            "(default: the same payload).",
        )

    def configure(self, updated: set[str]) -> None:
        opts = self.master.options
        try:
            if opts.devconsole_publish:
                parse_redis_url(opts.devconsole_publish)
            if opts.devconsole_backplane:
                parse_redis_url(opts.devconsole_backplane)
            check_stream_name(opts.devconsole_stream)
        except RedisConfigError as e:
            raise exceptions.OptionsError(str(e)) from None
        if opts.devconsole_name:
            why = valid_instance_name(opts.devconsole_name)
            if why:
                raise exceptions.OptionsError(f"--name {opts.devconsole_name!r}: {why}")
        if opts.devconsole_stream_maxlen < 10:
            raise exceptions.OptionsError("devconsole_stream_maxlen must be at least 10")
        if opts.devconsole_publish_buffer < 1:
            raise exceptions.OptionsError("devconsole_publish_buffer must be at least 1")
        if opts.devconsole_accept_commands and not opts.devconsole_publish:
            raise exceptions.OptionsError("--accept-commands needs --publish redis://...")
        if opts.devconsole_backplane and not split_patterns(opts.devconsole_channels):
            raise exceptions.OptionsError("--backplane needs --channels PATTERN[,PATTERN...]")
        if opts.devconsole_trace_key:
            try:
                parse_path(opts.devconsole_trace_key)
            except ValueError as e:
                raise exceptions.OptionsError(f"--trace-key: {e}") from None

    def running(self) -> None:
        opts = self.master.options
        if opts.devconsole_publish:
            self.name = opts.devconsole_name or default_name(self.master)
            cap = self.capture
            self.publisher = RedisPublisher(
                parse_redis_url(opts.devconsole_publish),
                self.name,
                stream=opts.devconsole_stream,
                maxlen=opts.devconsole_stream_maxlen,
                snapshot=lambda: cap.session.snapshot(cap.proxy_desc()),
                proxy_desc=cap.proxy_desc,
                on_command=cap.execute if opts.devconsole_accept_commands else None,
                max_pending=opts.devconsole_publish_buffer,
            )
            cap.add_sink(self.publisher.publish)
            self.publisher.start()
        if opts.devconsole_channels and not opts.devconsole_backplane:
            logger.warning("--channels is ignored without --backplane redis://...")
        if opts.devconsole_backplane:
            self.backplane = BackplaneRecorder(
                parse_redis_url(opts.devconsole_backplane),
                split_patterns(opts.devconsole_channels),
                self.capture,
                opts.devconsole_trace_key,
            )
            self.backplane.start()

    async def done(self) -> None:
        if self.backplane is not None:
            await self.backplane.stop()
        if self.publisher is not None:
            await self.publisher.stop()


def default_name(master: Any) -> str:
    """HOSTNAME:PORT of the first listen address."""
    host = socket.gethostname().split(".")[0] or "devconsole"
    port = 0
    try:
        ps = master.addons.get("proxyserver")
        addrs = ps.listen_addrs() if ps is not None else []
        if addrs:
            port = addrs[0][1]
    except Exception:
        pass
    name = f"{host}:{port}".replace("/", "-").replace("~", "-").replace(" ", "-")
    return name if valid_instance_name(name) is None else f"devconsole:{port}"
