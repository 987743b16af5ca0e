"""The ``devconsole`` sub-commands, one module per group.

Each module exposes ``register(sub)``: it adds its parsers to argparse's subparsers object
and sets ``handler=fn`` on each, where ``fn(args) -> int`` is the exit code (an async
command wraps itself with ``asyncio.run``). ``devconsole.cli`` only builds the parser and
calls ``args.handler(args)``. What the commands share lives here: the error a user can
cause (``CliError``) and the option groups several commands take.

Modules import mitmproxy, Textual and the tap inside their handlers, so ``devconsole
tail`` does not pay for the TUI and ``devconsole --help`` for neither.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


class CliError(Exception):
    """One line for stderr; exit 1."""


def warn_exposure(cfg: Any) -> None:
    """A warning line on stderr for the proxy and for the tap of ``cfg`` (a ``ProxyConfig``)
    when they listen beyond loopback."""
    from devconsole.proxy import exposure_warnings

    for w in exposure_warnings(cfg):
        print(f"devconsole: warning: {w}", file=sys.stderr, flush=True)


def require_terminal(headless: str = "") -> None:
    """The TUI draws on a terminal: with stdout (or stdin) not one, e.g. ``| tee log``, it
    would draw into the pipe, and over the screen."""
    if sys.stdout.isatty() and sys.stdin.isatty():
        return
    which = "stdout" if not sys.stdout.isatty() else "stdin"
    raise CliError(
        f"the TUI needs a terminal and {which} is not a terminal: run `devconsole proxy` "
        f"and `devconsole tail` (or `tail --json`) to print the traffic{headless}"
    )


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return v


def size(s: str) -> int:
    """An argparse type: a size such as 512k, 64m or 2g, in bytes."""
    from devconsole.store.segments import parse_size

    try:
        return parse_size(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_record_args(p: argparse.ArgumentParser, record: bool = True) -> None:
    """``--record DIR`` (proxy, devconsole, demo) and ``--record-max SIZE`` (those and
    ``record``): docs/store.md."""
    if record:
        p.add_argument(
            "--record",
            metavar="DIR",
            default=None,
            help="write every event to this recording (a directory of segments) as it happens",
        )
    p.add_argument(
        "--record-max",
        metavar="SIZE",
        type=size,
        default=None,
        help="disk the recording may use (e.g. 2g): the oldest segments are removed",
    )


def add_tap_args(p: argparse.ArgumentParser) -> None:
    """``--tap`` and ``--token``: the commands that read a running proxy's tap (or the
    Redis stream many proxies publish to: ``devconsole.sources``)."""
    p.add_argument(
        "--tap",
        metavar="ADDR",
        default=None,
        help="tap address: a Unix socket path, tcp://127.0.0.1:PORT, or a Redis stream "
        "redis://HOST:PORT/DB[?stream=NAME] (default: the tap of the one devconsole proxy "
        "of this user that is running, found in $XDG_RUNTIME_DIR/devconsole)",
    )
    p.add_argument("--token", default=None, help="token for a tcp:// tap (default: its file)")


def add_proxy_args(p: argparse.ArgumentParser, tap: bool = True) -> None:
    """The options of a proxy: ``devconsole``, ``devconsole proxy``, ``devconsole demo``."""
    p.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="proxy listen address (default 127.0.0.1:8080)",
    )
    p.add_argument(
        "--mode",
        default="regular",
        help="mitmproxy mode: regular, reverse:URL, upstream:URL, socks5, ...",
    )
    p.add_argument("--confdir", default=None, help="mitmproxy confdir (CA certificates)")
    if tap:
        p.add_argument(
            "--tap",
            metavar="ADDR",
            default=None,
            help="tap address: a Unix socket path or tcp://127.0.0.1:PORT",
        )
    p.add_argument("--buffer-messages", type=positive_int, default=100_000, metavar="N")
    p.add_argument("--buffer-bytes", default="256m", metavar="SIZE")
    p.add_argument("--max-payload", default="1m", metavar="SIZE", help="payload kept per message")
    p.add_argument(
        "--hold-bytes",
        default="16m",
        metavar="SIZE",
        help="bytes held per direction behind a breakpoint before backpressure",
    )
    p.add_argument(
        "--rules",
        metavar="FILE",
        default=None,
        help="rules file (docs/rules.md), reloaded when it changes",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="set any mitmproxy option, e.g. --set ssl_insecure=true",
    )
    add_record_args(p)
    from devconsole.commands.protocols import add_decoder_args

    add_decoder_args(p)
