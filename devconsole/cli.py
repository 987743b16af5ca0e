"""``devconsole`` command line: argument parsing and dispatch.

Each sub-command lives in a ``devconsole.commands`` module whose ``register(sub)`` adds
its parser and sets ``handler``; ``main()`` calls ``args.handler(args)``. Without a
command, ``devconsole`` starts a child proxy and the TUI attached to it.

Errors a user can cause (bad address, port in use, no tap) print one line on stderr and
exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from devconsole import __version__
from devconsole.commands import CliError, add_proxy_args
from devconsole.commands import chaos as chaos_commands
from devconsole.commands import demo as demo_commands
from devconsole.commands import events as event_commands
from devconsole.commands import faults as fault_commands
from devconsole.commands import files as file_commands
from devconsole.commands import handshake as handshake_commands
from devconsole.commands import intercept as intercept_commands
from devconsole.commands import protocols as protocol_commands
from devconsole.commands import proxy as proxy_commands
from devconsole.commands import report as report_commands
from devconsole.commands import rules as rules_commands
from devconsole.commands import shape as shape_commands
from devconsole.commands import store as store_commands
from devconsole.commands import tui as tui_commands

EXIT_USAGE = 2

__all__ = ["CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devconsole",
        # no abbreviations at the top: they would make "inject --proto" ambiguous with
        # the top-level --proto-desc/--proto-type before the subcommand parses it
        allow_abbrev=False,
        description="WebSocket debugging proxy and live traffic inspector. Without a "
        "command: start the proxy and the TUI.",
    )
    parser.add_argument("--version", action="version", version=f"devconsole {__version__}")
    add_proxy_args(parser, tap=False)
    parser.set_defaults(handler=tui_commands.proxy_and_tui)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    proxy_commands.register(sub)
    event_commands.register(sub)
    tui_commands.register(sub)
    fault_commands.register(sub)
    report_commands.register(sub)
    file_commands.register(sub)
    store_commands.register(sub)
    demo_commands.register(sub)
    protocol_commands.register(sub)
    handshake_commands.register(sub)
    intercept_commands.register(sub)
    rules_commands.register(sub)
    shape_commands.register(sub)
    chaos_commands.register(sub)
    return parser


# The errors a user can cause, by module: one line on stderr, exit 1. A module that was
# never imported cannot have raised its error, so classifying an error imports nothing
# (``devconsole tail`` with no proxy running must not pay for importing mitmproxy).
USER_ERRORS = (
    ("devconsole.source", "SourceError"),
    ("devconsole.tap", "TapError"),
    ("devconsole.proxy", "ProxyError"),
    ("devconsole.store.capture", "CaptureError"),
    ("devconsole.childproxy", "ChildProxyError"),
)


def _is_user_error(e: Exception) -> bool:
    if isinstance(e, CliError):
        return True
    for module, name in USER_ERRORS:
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(e, getattr(loaded, name)):
            return True
    return False


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``chaos ... -- CMD ARGS``: what follows ``--`` is the client's command line, kept
    whole (argparse would take its options for the chaos command's own). Any other
    command parses ``--`` the usual way."""
    if "--" in argv and "chaos" in argv[: argv.index("--")]:
        i = argv.index("--")
        args = parser.parse_args(argv[:i])
        if hasattr(args, "client"):
            args.client = argv[i + 1 :]
            return args
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, list(sys.argv[1:] if argv is None else argv))
    try:
        if getattr(args, "handler", None):
            return int(args.handler(args))
        parser.print_help()
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
    except Exception as e:
        if _is_user_error(e):
            print(f"devconsole: {e}", file=sys.stderr)
            return 1
        if isinstance(e, OSError) and e.filename:
            print(f"devconsole: {e.filename}: {e.strerror}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
