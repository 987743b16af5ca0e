"""``devconsole rules check | dry-run | load | clear``: rules files (docs/rules.md).

``check`` and ``dry-run`` work offline (a file, a capture file); ``load`` and ``clear``
replace a running proxy's rules over the tap. Errors print one line on stderr (a rules
error with its line and column) and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from devconsole.model import Message, Opcode, RulesCommand
from devconsole.text import opcode_name

__all__ = ["register"]


class _Error(Exception):
    """One line for stderr; exit 1."""


def _add_tap_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tap",
        metavar="ADDR",
        default=None,
        help="tap address: a Unix socket path or tcp://127.0.0.1:PORT "
        "(default: $XDG_RUNTIME_DIR/devconsole/tap.sock)",
    )
    p.add_argument("--token", default=None, help="token for a tcp:// tap (default: its file)")


def register(sub: Any) -> None:
    """Add ``rules`` (check, dry-run, load, clear) to the CLI's subparsers."""
    p = sub.add_parser("rules", help="rules files: check, dry-run, load (docs/rules.md)")
    rsub = p.add_subparsers(dest="rules_command", metavar="ACTION", required=True)

    r = rsub.add_parser("check", help="validate a rules file")
    r.add_argument("file", metavar="FILE")
    r.set_defaults(handler=_wrap(_check))

    r = rsub.add_parser(
        "dry-run", help="what the rules would have done to the messages of a capture file"
    )
    r.add_argument("file", metavar="FILE", help="rules file")
    r.add_argument("capture", metavar="CAPTURE", help="capture file (devconsole record)")
    r.add_argument("--json", action="store_true", help="one JSON object per match")
    r.set_defaults(handler=_wrap(_dry_run))

    r = rsub.add_parser("load", help="replace a running proxy's rules with this file's")
    _add_tap_args(r)
    r.add_argument("file", metavar="FILE")
    r.set_defaults(handler=_wrap(_load))

    r = rsub.add_parser("clear", help="remove a running proxy's rules")
    _add_tap_args(r)
    r.set_defaults(handler=_wrap(_clear))


def _wrap(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from devconsole.rules import RulesError
        from devconsole.source import SourceError
        from devconsole.store.capture import CaptureError
        from devconsole.tap import TapError

        try:
            return int(fn(args))
        except (_Error, RulesError, CaptureError, SourceError, TapError) as e:
            print(f"devconsole: {e}", file=sys.stderr)
            return 1

    return run


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as e:
        raise _Error(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise _Error(f"{path}: not UTF-8 text") from None


def _check(args: argparse.Namespace) -> int:
    from devconsole.rules import load

    rs = load(_read(args.file), args.file)
    kinds = [
        (len(rs.messages), "message rule"),
        (len(rs.handshakes), "handshake rule"),
        (len(rs.shapes), "endpoint shape"),
    ]
    what = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for n, k in kinds if n) or "no rules"
    print(f"{args.file}: ok, {what}")
    return 0


def _dry_run(args: argparse.Namespace) -> int:
    from devconsole.decoders import preview, safe_text
    from devconsole.rules import dry_run, load
    from devconsole.store.capture import read_capture
    from devconsole.store.export import SnapshotExpander

    rs = load(_read(args.file), args.file)
    expander = SnapshotExpander(True)

    def events() -> Any:
        with read_capture(args.capture) as reader:
            for ev in reader:
                yield from expander.feed(ev)

    matches = dry_run(rs, events())
    per_rule: dict[str, int] = {}
    for m in matches:
        it = m.item
        d = m.decision
        for name in dict.fromkeys(d.rules):
            per_rule[name] = per_rule.get(name, 0) + 1
        if args.json:
            obj: dict[str, Any] = {
                "conn": it.conn,
                "seq": it.seq,
                "ts": it.ts,
                "from": it.side,
                "type": opcode_name(it.opcode),
                "size": it.size,
                "rules": list(dict.fromkeys(d.rules)),
                "actions": d.actions,
            }
            if isinstance(it, Message) and it.opcode == Opcode.TEXT and it.utf8_ok:
                obj["text"] = it.payload.decode("utf-8", "replace")
            if d.body is not None:
                obj["edited"] = d.body.decode("utf-8", "replace")
            if d.respond:
                obj["responses"] = [b.decode("utf-8", "replace") for _, b in d.respond]
            print(json.dumps(obj, ensure_ascii=False))
        else:
            arrow = "→" if it.side == "client" else "←"
            line = (
                f"#{it.conn:<4} {it.seq:>7} {arrow} {opcode_name(it.opcode):<6} "
                f"{safe_text(d.rule)}: {safe_text(d.action)}  {preview(it, 60)}"
            )
            print(line)
            if d.body is not None:
                print(f"{'':>14} sent instead: {safe_text(d.body.decode('utf-8', 'replace')[:80])}")
            for _, b in d.respond:
                print(f"{'':>14} answered: {safe_text(b.decode('utf-8', 'replace')[:80])}")
    if not args.json:
        names = [r.name for r in rs.messages]
        summary = ", ".join(f"{safe_text(n)}: {per_rule.get(n, 0)}" for n in names)
        print(f"{len(matches)} message(s) matched ({summary or 'no message rules'})")
        if rs.handshakes:
            print(
                f"handshake rules are not replayed ({len(rs.handshakes)}): they act on live "
                "upgrades only"
            )
    return 0


async def _command(args: argparse.Namespace, cmd: RulesCommand) -> str:
    from devconsole.sources import send_command

    res = await send_command(args.tap, args.token, cmd)
    if not res.ok:
        raise _Error(res.error)
    return res.info


def _load(args: argparse.Namespace) -> int:
    text = _read(args.file)
    n = asyncio.run(_command(args, RulesCommand(text, args.file)))
    print(f"{n} rule(s) in effect")
    return 0


def _clear(args: argparse.Namespace) -> int:
    asyncio.run(_command(args, RulesCommand("", "")))
    return 0
