"""``devconsole break | held | forward | drop``: intercept live messages over the tap.

See docs/intercept.md. Every command talks to a running proxy's tap, like ``kill`` and
``inject``; errors (no proxy, an unknown or no longer held id, a bad filter) are a
``CliError``: one line on stderr, exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import time
from typing import Any

from devconsole.commands import CliError, add_tap_args
from devconsole.model import (
    BreakpointCommand,
    Command,
    CommandResult,
    DropCommand,
    EnableBreakpointCommand,
    ForwardCommand,
    Item,
    Message,
    Opcode,
    RemoveBreakpointCommand,
)
from devconsole.session import Session
from devconsole.text import arrow, opcode_name

__all__ = ["held_json", "register"]


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return v


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an id: {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError("ids start at 1")
    return v


def register(sub: Any) -> None:
    """Add ``break``, ``held``, ``forward`` and ``drop`` to the CLI's subparsers."""
    p = sub.add_parser("break", help="breakpoints: hold matching messages (docs/intercept.md)")
    bsub = p.add_subparsers(dest="break_command", metavar="ACTION", required=True)

    b = bsub.add_parser("add", help="hold messages that match FILTER; prints the id")
    add_tap_args(b)
    b.add_argument("filter", metavar="FILTER", help="filter expression (docs/filters.md)")
    b.add_argument(
        "--timeout",
        type=_positive_float,
        default=120.0,
        metavar="SECONDS",
        help="how long a message stays held (default 120)",
    )
    b.add_argument(
        "--on-timeout",
        choices=["forward", "drop"],
        default="forward",
        help="what happens then (default forward)",
    )
    b.add_argument("--conn", metavar="CONN", default="", help="only on this connection")
    b.add_argument(
        "--control",
        action="store_true",
        help="hold matching control frames too, and queue control frames behind held ones",
    )
    b.set_defaults(handler=_sync(_break_add))

    b = bsub.add_parser("list", help="list the breakpoints")
    add_tap_args(b)
    b.add_argument("--json", action="store_true", help="one JSON object per line")
    b.set_defaults(handler=_sync(_break_list))

    b = bsub.add_parser("rm", help="remove a breakpoint (held messages stay held)")
    add_tap_args(b)
    g = b.add_mutually_exclusive_group(required=True)
    g.add_argument("id", nargs="?", type=_positive_int, metavar="ID")
    g.add_argument("--all", action="store_true", help="remove every breakpoint")
    b.set_defaults(handler=_sync(_break_rm))

    for name, on in (("enable", True), ("disable", False)):
        b = bsub.add_parser(name, help=f"{name} a breakpoint")
        add_tap_args(b)
        b.add_argument("id", type=_positive_int, metavar="ID")
        b.set_defaults(handler=_sync(_break_enable), enabled=on)

    p = sub.add_parser("held", help="list the messages held by breakpoints")
    add_tap_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=_sync(_held))

    p = sub.add_parser("forward", help="forward a held message, as it is or edited")
    add_tap_args(p)
    p.add_argument("id", nargs="?", type=_positive_int, metavar="HELD_ID")
    p.add_argument("--all", action="store_true", help="every held message (of --conn)")
    p.add_argument("--conn", metavar="CONN", default="", help="with --all: one connection")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--text", help="send this text instead")
    g.add_argument("--json", metavar="JSON", help="send this JSON (validated) instead")
    g.add_argument("--hex", help="send these bytes instead (the message keeps its type)")
    g.add_argument("--file", metavar="PATH", help="send the bytes of this file instead")
    p.set_defaults(handler=_sync(_forward))

    p = sub.add_parser("drop", help="drop a held message")
    add_tap_args(p)
    p.add_argument("id", nargs="?", type=_positive_int, metavar="HELD_ID")
    p.add_argument("--all", action="store_true", help="every held message (of --conn)")
    p.add_argument("--conn", metavar="CONN", default="", help="with --all: one connection")
    p.set_defaults(handler=_sync(_drop))


def _sync(fn: Any) -> Any:
    """An async command as ``handler(args) -> exit code``."""

    def run(args: argparse.Namespace) -> int:
        return int(asyncio.run(fn(args)))

    return run


# ------------------------------------------------------------------ over the tap


async def _command(args: argparse.Namespace, cmd: Command) -> CommandResult:
    """Send ``cmd`` over the tap (or Redis stream); a refusal is a CliError."""
    from devconsole import sources

    res = await sources.send_command(args.tap, args.token, cmd)
    if not res.ok:
        raise CliError(res.error)
    return res


async def _state(args: argparse.Namespace) -> Session:
    """The proxy's breakpoints and held messages, as of now (its Snapshot)."""
    from devconsole.tap import collect

    return await collect(args.tap, args.token, until=lambda s: s.version > 0, timeout=5)


# ------------------------------------------------------------------ break


async def _break_add(args: argparse.Namespace) -> int:
    res = await _command(
        args,
        BreakpointCommand(args.filter, args.conn, args.timeout, args.on_timeout, args.control),
    )
    print(res.info)
    return 0


async def _break_list(args: argparse.Namespace) -> int:
    session = await _state(args)
    for bp in session.breakpoints:
        obj = {
            "id": bp.id,
            "filter": bp.filter,
            "conn": bp.conn or None,
            "timeout": bp.timeout,
            "on_timeout": bp.on_timeout,
            "control": bp.control,
            "enabled": bp.enabled,
        }
        if args.json:
            print(json.dumps(obj, ensure_ascii=False))
        else:
            from devconsole.decoders import safe_text

            flags = [] if bp.enabled else ["disabled"]
            if bp.conn:
                flags.append(f"conn {bp.conn}")
            if bp.control:
                flags.append("control frames too")
            flags.append(f"{bp.timeout:g} s then {bp.on_timeout}")
            print(f"{bp.id:>3}  {safe_text(bp.filter)}  ({', '.join(flags)})")
    return 0


async def _break_rm(args: argparse.Namespace) -> int:
    await _command(args, RemoveBreakpointCommand(0 if args.all else args.id))
    return 0


async def _break_enable(args: argparse.Namespace) -> int:
    await _command(args, EnableBreakpointCommand(args.id, args.enabled))
    return 0


# ------------------------------------------------------------------ held


def held_json(it: Item, now: float) -> dict[str, Any]:
    """One line of ``devconsole held --json``."""
    obj: dict[str, Any] = {
        "id": it.held,
        "conn": it.conn,
        "from": it.side,
        "type": opcode_name(it.opcode),
        "size": it.size,
    }
    if isinstance(it, Message) and it.opcode == Opcode.TEXT and it.utf8_ok:
        obj["text"] = it.payload.decode("utf-8", "replace")
    else:
        obj["b64"] = base64.b64encode(it.payload).decode()
    if isinstance(it, Message) and it.truncated:
        obj["truncated"] = True
    obj["held_for"] = round(max(0.0, now - it.ts), 3)
    obj["breakpoint"] = it.breakpoint
    obj["seq"] = it.seq
    return obj


async def _held(args: argparse.Namespace) -> int:
    session = await _state(args)
    now = time.time()
    items = sorted(session.held.values(), key=lambda it: it.held)
    if args.json:
        for it in items:
            print(json.dumps(held_json(it, now), ensure_ascii=False))
        return 0
    from devconsole.decoders import preview

    for it in items:
        print(
            f"{it.held:>5}  #{it.conn:<4} {arrow(it.side)} {opcode_name(it.opcode):<6} "
            f"{it.size:>7}B {now - it.ts:6.1f}s  bp {it.breakpoint}  {preview(it, 80)}"
        )
    return 0


# ------------------------------------------------------------------ forward / drop


def _edited_body(args: argparse.Namespace) -> tuple[bytes | None, int]:
    if args.text is not None:
        return args.text.encode(), Opcode.TEXT
    if args.json is not None:
        try:
            json.loads(args.json)
        except ValueError as e:
            raise CliError(f"--json: not valid JSON: {e}") from None
        return args.json.encode(), Opcode.TEXT
    if args.hex is not None:
        try:
            return binascii.unhexlify("".join(args.hex.split())), 0
        except (binascii.Error, ValueError):
            raise CliError(f"--hex: not hexadecimal: {args.hex!r}") from None
    if args.file is not None:
        try:
            with open(args.file, "rb") as fh:
                return fh.read(), 0
        except OSError as e:
            raise CliError(f"{args.file}: {e.strerror}") from None
    return None, 0


def _target(args: argparse.Namespace) -> int:
    if args.all and args.id is not None:
        raise CliError("give a HELD_ID or --all, not both")
    if not args.all and args.id is None:
        raise CliError("give a HELD_ID (devconsole held) or --all")
    if args.conn and not args.all:
        raise CliError("--conn goes with --all")
    return 0 if args.all else int(args.id)


async def _forward(args: argparse.Namespace) -> int:
    held = _target(args)
    body, opcode = _edited_body(args)
    if body is not None and not held:
        raise CliError("an edited body goes to one held message, not to --all")
    res = await _command(args, ForwardCommand(held, args.conn, body, opcode))
    if not held:
        print(f"{res.info} held message(s) forwarded")
    return 0


async def _drop(args: argparse.Namespace) -> int:
    held = _target(args)
    res = await _command(args, DropCommand(held, args.conn))
    if not held:
        print(f"{res.info} held message(s) dropped")
    return 0
