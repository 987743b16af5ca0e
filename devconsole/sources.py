"""Open the Source a viewer names: a tap (socket path, ``tcp://``) or a Redis stream
(``redis://HOST:PORT/DB[?stream=NAME]``, ``rediss://``), and send commands to it.

I/O module: the CLI and ``tap.collect`` use it, so every viewer takes every source.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from devconsole.model import Command, CommandResult


def is_redis(spec: Any) -> bool:
    return isinstance(spec, str) and spec.startswith(("redis://", "rediss://"))


def open_source(spec: Any, token: str | None = None, *, history: bool = True) -> Any:
    """A TapClient or a RedisSource (both have ``connect``, ``run``, ``command``,
    ``close``, ``description`` and ``proxy``); nothing is connected yet."""
    if is_redis(spec):
        from devconsole.scale.source import RedisSource

        return RedisSource(spec, history=history)
    from devconsole.tap import TapClient

    return TapClient(spec, token)


async def send_command(spec: Any, token: str | None, cmd: Command) -> CommandResult:
    """Connect, send ``cmd`` to the proxy that owns its connection, return its answer."""
    [result] = await send_commands(spec, token, [cmd])
    return result


async def send_commands(
    spec: Any, token: str | None, cmds: Sequence[Command]
) -> list[CommandResult]:
    """Connect, send ``cmds`` in order, return their answers. On a tap they are all
    written at once on one connection, so the proxy runs them back to back (a Socket.IO
    packet and its binary attachments stay together); through Redis, one after another."""
    client = open_source(spec, token, history=False)
    await client.connect()
    if is_redis(spec):
        try:
            return [await client.command(cmd) for cmd in cmds]
        finally:
            await client.close()
    # a tap answers on the connection it streams events on: read it meanwhile
    run = asyncio.ensure_future(client.run(lambda evs: None))
    try:
        return list(await asyncio.gather(*(client.command(cmd) for cmd in cmds)))
    finally:
        await client.close()
        run.cancel()
        with contextlib.suppress(BaseException):
            await run
