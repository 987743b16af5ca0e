"""``devconsole replay`` and ``devconsole mock`` (docs/store.md), and ``load_capture``,
which ``report`` uses to read a capture, recording or HAR file. The recording options of
``proxy`` and ``record`` are ``devconsole.commands.add_record_args``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING, Any

from devconsole.commands import CliError

if TYPE_CHECKING:
    from devconsole.session import Session


def _note(msg: str) -> None:
    print(f"devconsole: {msg}", file=sys.stderr)


def load_capture(path: str, session: Session | None = None) -> Session:
    """Every event of a capture, recording or HAR file applied to ``session`` (default:
    unbounded); what the file lacks or lost is printed on stderr."""
    from devconsole.store.load import load_session

    s, reader = load_session(path, session)
    for note in reader.notes:
        _note(f"note: {note}")
    if reader.error:
        _note(f"warning: {reader.error}")
    return s


# ------------------------------------------------------------------ replay


def _replay(args: argparse.Namespace) -> int:
    from devconsole.store.conversation import ConversationError, conversation, parse_path
    from devconsole.store.replay import ReplayError, parse_header, replay

    try:
        headers = [parse_header(h) for h in args.header or []]
        for p in args.ignore or []:
            parse_path(p)
    except ValueError as e:
        raise CliError(str(e)) from None
    session = load_capture(args.capture)
    try:
        conv = conversation(session, args.conn)
    except ConversationError as e:
        raise CliError(str(e)) from None
    hs = conv.handshake
    url = args.to or hs.url
    sent = len(conv.client_messages())
    print(
        f"replaying connection {conv.conn} ({hs.url}): {sent} client messages "
        f"to {url}, timing {args.timing}",
        file=sys.stderr,
    )
    if conv.unknown:
        _note(f"note: the capture does not carry {', '.join(conv.unknown)}")
    try:
        res = asyncio.run(
            replay(
                conv,
                url,
                timing=args.timing,
                headers=headers,
                ignore=args.ignore or [],
                reply_timeout=args.reply_timeout,
                idle_timeout=args.wait,
            )
        )
    except ReplayError as e:
        _note(str(e))
        return 2
    for n in res.notes:
        _note(f"note: {n}")
    if args.record:
        from devconsole.store.capture import save_capture

        save_capture(args.record, res.events(), proxy=f"replay of {args.capture}")
        print(f"new run recorded to {args.record}", file=sys.stderr)
    print(res.report())
    return 1 if res.differs else 0


# ------------------------------------------------------------------ mock


def _mock(args: argparse.Namespace) -> int:
    from devconsole.proxy import ProxyError, parse_listen
    from devconsole.store.conversation import ConversationError
    from devconsole.store.mock import MockServer

    try:
        host, port = parse_listen(args.listen)
    except ProxyError as e:
        raise CliError(str(e)) from None
    session = load_capture(args.capture)
    try:
        server = MockServer(
            session,
            conn=args.conn,
            match=args.match,
            on_log=(lambda m: print(m, file=sys.stderr, flush=True)) if not args.quiet else None,
        )
    except ConversationError as e:
        raise CliError(str(e)) from None

    async def run() -> int:
        try:
            h, p = await server.start(host, port)
        except OSError as e:
            raise CliError(f"cannot listen on {args.listen}: {e.strerror or e}") from None
        shown = f"[{h}]" if ":" in h else h
        which = f"connection {args.conn}" if args.conn else "the recorded connections by path"
        print(f"mock serving {which} on ws://{shown}:{p}/ (Ctrl-C to stop)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await server.stop()
        return 0

    return asyncio.run(run())


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="act as the client of a recorded connection against a live server; diff the answers",
    )
    p.add_argument("capture", help="a capture, recording or HAR file")
    p.add_argument("--conn", metavar="ID", default=None, help="connection id (default: the first)")
    p.add_argument(
        "--to", metavar="URL", default=None, help="server URL (default: the recorded one)"
    )
    p.add_argument(
        "--timing",
        choices=["original", "fast", "reply"],
        default="reply",
        help="original: recorded gaps; fast: no waiting; reply: wait for the recorded "
        "number of answers before each message (default)",
    )
    p.add_argument(
        "--header",
        action="append",
        metavar="NAME:VALUE",
        help="send this header (again): cookies and tokens redacted in the capture",
    )
    p.add_argument("--record", metavar="FILE", default=None, help="save the new run as a capture")
    p.add_argument(
        "--ignore",
        action="append",
        metavar="PATH",
        help="JSON path left out of the comparison (ts, data.id, items[*].id, *.time)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how long to wait for more answers after the last message",
    )
    p.add_argument("--reply-timeout", type=float, default=10.0, metavar="SECONDS")
    p.set_defaults(handler=_replay)

    p = sub.add_parser("mock", help="serve a recorded connection as a WebSocket server")
    p.add_argument("capture", help="a capture, recording or HAR file")
    p.add_argument(
        "--listen",
        default="127.0.0.1:8765",
        metavar="HOST:PORT",
        help="where to listen (default 127.0.0.1:8765)",
    )
    p.add_argument(
        "--conn",
        metavar="ID",
        default=None,
        help="serve this connection (default: by the request's path)",
    )
    p.add_argument(
        "--match",
        choices=["order", "json"],
        default="order",
        help="answer by order, or by the most similar recorded JSON request",
    )
    p.add_argument("--quiet", action="store_true", help="do not log clients")
    p.set_defaults(handler=_mock)
