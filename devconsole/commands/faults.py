"""``devconsole kill`` (close with a code, abort, half-open, release) and ``devconsole
inject`` (a message or ping; a protocol's packet through ``commands.protocols``) on a
live connection, sent as Commands over the tap (or over Redis, to the proxy that owns the
connection)."""

from __future__ import annotations

import argparse
import asyncio
import binascii
from typing import Any

from devconsole.commands import CliError, add_tap_args
from devconsole.model import (
    AbortCommand,
    CloseCommand,
    Command,
    HalfOpenCommand,
    InjectCommand,
    Opcode,
    ReleaseCommand,
)


def _close_code(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a close code: {s!r}") from None
    return v


def register(sub: Any) -> None:
    k = sub.add_parser("kill", help="close, abort or half-open a live connection")
    add_tap_args(k)
    k.add_argument("conn", metavar="CONN", help="connection id (devconsole conns)")
    g = k.add_mutually_exclusive_group(required=True)
    g.add_argument("--code", type=_close_code, help="send close frames with this code")
    g.add_argument("--abort", action="store_true", help="drop both TCP connections")
    g.add_argument("--half-open", action="store_true", help="forward nothing, keep sockets")
    g.add_argument("--release", action="store_true", help="end half-open")
    k.add_argument("--reason", default=None, help="close reason (with --code)")
    k.add_argument("--to", choices=["client", "server", "both"], default="both")
    k.add_argument("--rst", action="store_true", help="with --abort: send a TCP reset")

    def kill_checked(args: argparse.Namespace) -> int:
        if args.rst and not args.abort:
            k.error("--rst goes with --abort")
        if args.reason is not None and args.code is None:
            k.error("--reason goes with --code")
        return kill(args)

    k.set_defaults(handler=kill_checked)

    p = sub.add_parser("inject", help="send a message or ping on a live connection")
    add_tap_args(p)
    p.add_argument("conn", metavar="CONN")
    p.add_argument("--to", choices=["client", "server"], required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--text")
    g.add_argument("--hex")
    g.add_argument("--ping", action="store_true")
    from devconsole.commands.protocols import add_inject_args

    add_inject_args(p, g)  # --sio-event, --proto (docs/protocols.md)
    p.set_defaults(handler=inject)


async def send_command(args: argparse.Namespace, cmd: Command) -> int:
    """Send ``cmd`` over the tap (or Redis stream) named by ``args``; a refusal is a
    CliError."""
    from devconsole import sources

    res = await sources.send_command(args.tap, args.token, cmd)
    if not res.ok:
        raise CliError(res.error)
    return 0


def kill(args: argparse.Namespace) -> int:
    cmd: Command
    if args.code is not None:
        cmd = CloseCommand(args.conn, args.code, args.reason or "", args.to)
    elif args.abort:
        cmd = AbortCommand(args.conn, args.rst)
    elif args.half_open:
        cmd = HalfOpenCommand(args.conn)
    else:
        cmd = ReleaseCommand(args.conn)
    return asyncio.run(send_command(args, cmd))


def inject(args: argparse.Namespace) -> int:
    from devconsole.commands import protocols

    if protocols.wants_protocol_inject(args):
        return protocols.inject(args)
    if args.text is not None:
        cmd = InjectCommand(args.conn, args.to, Opcode.TEXT, args.text.encode())
    elif args.hex is not None:
        try:
            data = binascii.unhexlify("".join(args.hex.split()))
        except (binascii.Error, ValueError):
            raise CliError(f"--hex: not hexadecimal: {args.hex!r}") from None
        cmd = InjectCommand(args.conn, args.to, Opcode.BINARY, data)
    else:
        cmd = InjectCommand(args.conn, args.to, Opcode.PING, b"devconsole")
    return asyncio.run(send_command(args, cmd))
