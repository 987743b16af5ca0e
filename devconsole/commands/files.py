"""Capture files: ``devconsole record`` (save a tap's events), ``devconsole open`` (view
one in the TUI) and ``devconsole export`` (JSON lines or HAR, secrets redacted)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from devconsole.commands import add_record_args, add_tap_args, require_terminal
from devconsole.commands.protocols import add_decoder_args, decoder_rules


def register(sub: Any) -> None:
    p = sub.add_parser("record", help="save captured events to a recording (segments)")
    add_tap_args(p)
    p.add_argument("file", nargs="?", help="recording directory (default devconsole-DATE.dcap)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS")
    add_record_args(p, record=False)
    p.set_defaults(handler=record)

    p = sub.add_parser("open", help="view a capture file in the TUI")
    p.add_argument("file")
    add_decoder_args(p)
    p.set_defaults(handler=open_capture)

    p = sub.add_parser("export", help="export a capture file as JSON lines or HAR")
    p.add_argument("capture")
    p.add_argument("-o", "--output", default=None, help="output file (default: stdout)")
    p.add_argument("--format", choices=["jsonl", "har"], default="jsonl")
    p.add_argument("--no-redact", action="store_true", help="keep cookies, tokens and passwords")
    add_decoder_args(p)
    p.set_defaults(handler=export)


def record(args: argparse.Namespace) -> int:
    return asyncio.run(_record(args))


async def _record(args: argparse.Namespace) -> int:
    from devconsole.sources import open_source
    from devconsole.store.capture import default_path
    from devconsole.store.capture import record as record_to
    from devconsole.store.segments import SEGMENT_BYTES

    path = args.file or str(default_path())
    client = open_source(args.tap, args.token)
    await client.connect()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(f"recording to {path} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    n = await record_to(
        client,
        path,
        duration=args.duration,
        stop=stop,
        proxy=client.proxy,
        overwrite=False,
        segment_bytes=SEGMENT_BYTES,
        max_bytes=args.record_max,
    )
    print(f"{n} events written to {path}", file=sys.stderr)
    return 0


def export(args: argparse.Namespace) -> int:
    from devconsole.store.export import export_capture

    res = export_capture(
        args.capture,
        args.output,
        fmt=args.format,
        redact=not args.no_redact,
        decoders=decoder_rules(args),
    )
    for note in res.notes:
        print(f"devconsole: note: {note}", file=sys.stderr)
    if res.error:
        print(f"devconsole: warning: {res.error}", file=sys.stderr)
    if args.output not in (None, "-"):
        print(f"{res.written} records written to {args.output}", file=sys.stderr)
    return 0


def open_capture(args: argparse.Namespace) -> int:
    from devconsole.commands.tui import run_tui
    from devconsole.store.capture import FileSource, probe

    require_terminal()
    rules = decoder_rules(args)  # checks --decoder, loads --proto-desc
    probe(args.file)
    return run_tui(FileSource(args.file), rules=rules)
