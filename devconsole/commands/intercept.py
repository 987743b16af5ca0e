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
    conn_instance,
    held_ref,
    parse_ref,
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


def _ref(s: str) -> tuple[str, int]:
    """A held message or breakpoint id: ``ID``, or ``INSTANCE/ID`` in a merged view over
    Redis (as ``held`` and ``break list`` show them)."""
    try:
        return parse_ref(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
    g.add_argument("id", nargs="?", type=_ref, metavar="ID")
    g.add_argument("--all", action="store_true", help="remove every breakpoint")
    b.set_defaults(handler=_sync(_break_rm))

    for name, on in (("enable", True), ("disable", False)):
        b = bsub.add_parser(name, help=f"{name} a breakpoint")
        add_tap_args(b)
        b.add_argument("id", type=_ref, metavar="ID")
        b.set_defaults(handler=_sync(_break_enable), enabled=on)

    p = sub.add_parser("held", help="list the messages held by breakpoints")
    add_tap_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=_sync(_held))

    p = sub.add_parser("forward", help="forward a held message, as it is or edited")
    add_tap_args(p)
    p.add_argument(
        "id",
        nargs="?",
        type=_ref,
        metavar="HELD_ID",
        help="as `held` shows it (INSTANCE/ID via Redis)",
    )
    p.add_argument("--all", action="store_true", help="every held message (of --conn)")
    p.add_argument("--conn", metavar="CONN", default="", help="with --all: one connection")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--text", help="send this text instead")
    g.add_argument("--json", metavar="JSON", help="send this JSON (validated) instead")
    g.add_argument("--hex", help="send these bytes instead (the message keeps its type)")
    g.add_argument("--file", metavar="PATH", help="send the bytes of this file instead")
    g.add_argument(
        "--decoded",
        metavar="JSON",
        help="send this packet instead, in the decoded form of the connection's protocol "
        '(tail --json "decoded"; Socket.IO also ["event", arg...]; {"$b64": ...} for bytes)',
    )
    p.add_argument(
        "--proto", metavar="NAME", help="--decoded: encode with this protocol, not the detected one"
    )
    p.set_defaults(handler=_sync(_forward))

    p = sub.add_parser("drop", help="drop a held message")
    add_tap_args(p)
    p.add_argument(
        "id",
        nargs="?",
        type=_ref,
        metavar="HELD_ID",
        help="as `held` shows it (INSTANCE/ID via Redis)",
    )
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

    instance = getattr(cmd, "instance", "")
    if instance and not sources.is_redis(args.tap):
        raise CliError(f"{instance}/...: only a redis:// source has instances (give the plain ID)")
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
        obj: dict[str, Any] = {
            "id": bp.ref if bp.instance else bp.id,
            "filter": bp.filter,
            "conn": bp.conn or None,
            "timeout": bp.timeout,
            "on_timeout": bp.on_timeout,
            "control": bp.control,
            "enabled": bp.enabled,
        }
        if bp.instance:
            obj["instance"] = bp.instance
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
            print(f"{bp.ref:>3}  {safe_text(bp.filter)}  ({', '.join(flags)})")
    return 0


async def _break_rm(args: argparse.Namespace) -> int:
    inst, bp = ("", 0) if args.all else args.id
    await _command(args, RemoveBreakpointCommand(bp, instance=inst))
    return 0


async def _break_enable(args: argparse.Namespace) -> int:
    inst, bp = args.id
    await _command(args, EnableBreakpointCommand(bp, args.enabled, instance=inst))
    return 0


# ------------------------------------------------------------------ held


def held_json(it: Item, now: float) -> dict[str, Any]:
    """One line of ``devconsole held --json``; in a merged view over Redis ``id`` is
    "INSTANCE/ID" and ``instance`` is set, as for connections."""
    instance = conn_instance(it.conn)
    obj: dict[str, Any] = {
        "id": held_ref(it.conn, it.held) if instance else it.held,
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
    if not it.breakpoint and it.rule:  # held by a rule's hold (docs/rules.md)
        obj["rule"] = it.rule
    obj["seq"] = it.seq
    if instance:
        obj["instance"] = instance
    return obj


async def _held(args: argparse.Namespace) -> int:
    session = await _state(args)
    now = time.time()
    items = sorted(session.held.values(), key=lambda it: (it.held, it.conn))
    if args.json:
        for it in items:
            print(json.dumps(held_json(it, now), ensure_ascii=False))
        return 0
    from devconsole.decoders import preview, safe_text

    for it in items:
        by = f"bp {it.breakpoint}"
        if not it.breakpoint and it.rule:
            by = f"rule {safe_text(it.rule)}"
        print(
            f"{held_ref(it.conn, it.held):>5}  #{it.conn:<4} {arrow(it.side)} "
            f"{opcode_name(it.opcode):<6} "
            f"{it.size:>7}B {now - it.ts:6.1f}s  {by}  {preview(it, 80)}"
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


def _target(args: argparse.Namespace) -> tuple[str, int]:
    if args.all and args.id is not None:
        raise CliError("give a HELD_ID or --all, not both")
    if not args.all and args.id is None:
        raise CliError("give a HELD_ID (devconsole held) or --all")
    if args.conn and not args.all:
        raise CliError("--conn goes with --all")
    return ("", 0) if args.all else args.id  # type: ignore[no-any-return]


async def _forward(args: argparse.Namespace) -> int:
    inst, held = _target(args)
    if args.proto and args.decoded is None:
        raise CliError("--proto goes with --decoded")
    if args.decoded is not None:
        if not held:
            raise CliError("an edited body goes to one held message, not to --all")
        from devconsole.commands.protocols import forward_decoded

        cmd = await forward_decoded(args, held)
        cmd.instance = inst
        await _command(args, cmd)
        return 0
    body, opcode = _edited_body(args)
    if body is not None and not held:
        raise CliError("an edited body goes to one held message, not to --all")
    res = await _command(args, ForwardCommand(held, args.conn, body, opcode, instance=inst))
    if not held:
        print(f"{res.info} held message(s) forwarded")
    return 0


async def _drop(args: argparse.Namespace) -> int:
    inst, held = _target(args)
    res = await _command(args, DropCommand(held, args.conn, instance=inst))
    if not held:
        print(f"{res.info} held message(s) dropped")
    return 0
