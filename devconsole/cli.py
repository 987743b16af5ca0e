"""``devconsole`` command line: the entry layer, wiring proxy, tap, TUI and reports.

Errors a user can cause (bad address, port in use, no tap) print one line on stderr and
exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from devconsole import __version__
from devconsole.commands import chaos as chaos_commands
from devconsole.commands import intercept
from devconsole.commands import rules as rules_commands
from devconsole.commands import shape as shape_commands
from devconsole.model import (
    AbortCommand,
    CloseCommand,
    Command,
    ControlFrame,
    EndEvent,
    Event,
    GapEvent,
    HalfOpenCommand,
    HandshakeEvent,
    InjectCommand,
    Message,
    Opcode,
    OutcomeEvent,
    ProtocolErrorEvent,
    RefusedEvent,
    ReleaseCommand,
    StateEvent,
    close_code_meaning,
)
from devconsole.session import Connection, Session
from devconsole.source import SourceError
from devconsole.store.export import SnapshotExpander, event_dict, shape_json

EXIT_USAGE = 2


class CliError(Exception):
    """One line for stderr; exit 1."""


# ------------------------------------------------------------------ JSON lines


def event_json(ev: Event) -> dict[str, Any] | None:
    """The ``tail --json`` object of an event (docs/cli.md), or None for internal events.
    Live viewing shows everything; exports (``devconsole export``) redact by default."""
    return event_dict(ev, redact=False)


# ------------------------------------------------------------------ human lines


def _clock(ts: float) -> str:
    lt = time.localtime(ts)
    return time.strftime("%H:%M:%S", lt) + f".{int((ts % 1) * 1000):03d}"


def _safe(s: str) -> str:
    from devconsole.decoders import safe_text

    return safe_text(s)


def _preview(item: Message | ControlFrame, width: int = 100) -> str:
    from devconsole.decoders import preview

    return preview(item, width)


def event_line(ev: Event) -> str | None:
    if isinstance(ev, Message | ControlFrame):
        arrow = "→" if ev.side == "client" else "←"
        kind = {1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}.get(
            ev.opcode, f"op{ev.opcode}"
        )
        flags = ""
        if ev.injected:
            flags += " [injected]"
        if ev.dropped:
            flags += " [dropped]"
        if ev.held:
            flags += f" [held #{ev.held}{' ' + ev.outcome if ev.outcome else ''}]"
        if ev.rule:
            flags += _safe(f" [{ev.rule}: {ev.action}]")
        elif ev.action:
            flags += _safe(f" [{ev.action}]")
        return (
            f"{_clock(ev.ts)} #{ev.conn:<4} {ev.seq:>7} {arrow} {kind:<6} {ev.size:>7}B"
            f"{flags}  {_preview(ev)}"
        )
    if isinstance(ev, HandshakeEvent | RefusedEvent):
        hs = ev.handshake
        what = "open   " if isinstance(ev, HandshakeEvent) else "REFUSED"
        if hs.status is None and isinstance(ev, HandshakeEvent):
            what = "upgrade"
        status = hs.status if hs.status is not None else (hs.error or "-")
        extra = ""
        if hs.subprotocol:
            extra += f" subprotocol={hs.subprotocol}"
        if hs.extensions:
            extra += f" extensions={', '.join(hs.extensions)}"
        return _safe(f"{_clock(hs.ts)} #{hs.conn:<4} {what} {status} {hs.client} {hs.url}{extra}")
    if isinstance(ev, EndEvent):
        how = "clean" if ev.clean else "unclean"
        by = f" by {ev.closed_by}" if ev.closed_by else ""
        err = f" ({ev.error})" if ev.error else ""
        return _safe(f"{_clock(ev.ts)} #{ev.conn:<4} end     {how}{by}{err}")
    if isinstance(ev, ProtocolErrorEvent):
        return _safe(
            f"{_clock(ev.ts)} #{ev.conn:<4} error   {ev.side} stream at byte {ev.offset}: "
            f"{ev.error} (forwarding continues)"
        )
    if isinstance(ev, StateEvent):
        return _safe(f"{_clock(ev.ts)} #{ev.conn:<4} {ev.state:<7} {ev.detail}")
    if isinstance(ev, GapEvent):
        return f"-- {ev.missed} events missed: {ev.reason} --"
    if isinstance(ev, OutcomeEvent):
        body = f" ({ev.size}B sent instead)" if ev.body is not None else ""
        return f"{_clock(ev.ts)} #{ev.conn:<4} {ev.seq:>7}   held #{ev.held} {ev.outcome}{body}"
    return _rules_line(ev)


def _rules_line(ev: Event) -> str | None:
    from devconsole.model import RuleEvent, ShapeEvent

    if isinstance(ev, RuleEvent):
        who = f"#{ev.conn:<4}" if ev.conn else "     "
        what = f"{ev.rule}: " if ev.rule else ""
        return _safe(f"{_clock(ev.ts)} {who} rule    {what}{ev.action} {ev.detail}".rstrip())
    if isinstance(ev, ShapeEvent):
        from devconsole.shaping import describe

        parts = [f"to {to}: {describe(s)}" for to, s in sorted(ev.shape.items())] or ["none"]
        return _safe(f"{_clock(ev.ts)} #{ev.conn:<4} shape   {'; '.join(parts)} ({ev.source})")
    return None


# ------------------------------------------------------------------ tail


class TailPrinter:
    def __init__(
        self,
        out: TextIO,
        as_json: bool,
        predicate: Callable[[Message | ControlFrame], bool] | None,
        limit: int | None,
        backlog: bool,
    ) -> None:
        self.out = out
        self.as_json = as_json
        self.predicate = predicate
        self.limit = limit
        self.printed = 0
        self.expander = SnapshotExpander(backlog)
        self.done = asyncio.Event()

    def _print(self, ev: Event) -> None:
        if self.done.is_set():
            return
        if self.as_json and isinstance(ev, HandshakeEvent) and ev.handshake.status is None:
            return  # the JSON schema has one handshake per connection: the answered one
        if isinstance(ev, Message | ControlFrame) and self.predicate is not None:
            try:
                if not self.predicate(ev):
                    return
            except Exception:
                return
        if self.as_json:
            obj = event_json(ev)
            if obj is None:
                return
            line = json.dumps(obj, ensure_ascii=False)
        else:
            maybe = event_line(ev)
            if maybe is None:
                return
            line = maybe
        self.out.write(line + "\n")
        if isinstance(ev, Message | ControlFrame):
            self.printed += 1
            if self.limit is not None and self.printed >= self.limit:
                self.done.set()

    def on_events(self, events: list[Event]) -> None:
        for ev in events:
            for shown in self.expander.feed(ev):
                self._print(shown)
        with contextlib.suppress(Exception):
            self.out.flush()


async def _tail(args: argparse.Namespace) -> int:
    from devconsole.tap import TapClient

    predicate = None
    if args.filter:
        from devconsole.filters import FilterError, parse

        try:
            predicate = parse(args.filter)
        except FilterError as e:
            raise CliError(f"bad filter: {e}") from None
    client = TapClient(args.tap, args.token)
    await client.connect()
    printer = TailPrinter(sys.stdout, args.json, predicate, args.limit, not args.new)
    run = asyncio.ensure_future(client.run(printer.on_events))
    stop = asyncio.ensure_future(printer.done.wait())
    try:
        await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await client.close()
        run.cancel()
        stop.cancel()
        with contextlib.suppress(BaseException):
            await run
    if run.done() and not run.cancelled() and run.exception():
        raise run.exception()  # type: ignore[misc]
    return 0


# ------------------------------------------------------------------ conns


def conn_json(c: Connection) -> dict[str, Any]:
    return {
        "id": c.id,
        "client": c.client,
        "url": c.url,
        "state": c.state,
        "status": c.handshake.status,
        "msgs_in": c.msgs_in,
        "msgs_out": c.msgs_out,
        "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out,
        "close_code": c.close_code,
        "close_reason": c.close_reason,
        "closed_by": c.closed_by,
        "ts_start": c.ts_start,
        "ts_end": c.ts_end,
        "errors": c.errors,
        "shape": shape_json(c.shape),
    }


def conns_table(conns: Sequence[Connection]) -> str:
    rows = [("ID", "STATE", "CLIENT", "URL", "IN", "OUT", "BYTES IN", "BYTES OUT", "CLOSE")]
    for c in conns:
        close = ""
        if c.refused:
            close = str(c.handshake.status or c.handshake.error or "")
        elif c.close_code is not None:
            close = f"{c.close_code} {close_code_meaning(c.close_code)}"
        rows.append(
            (
                c.id,
                c.state,
                c.client,
                _safe(c.url),
                str(c.msgs_in),
                str(c.msgs_out),
                str(c.bytes_in),
                str(c.bytes_out),
                close,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


async def _collect(args: argparse.Namespace) -> Session:
    from devconsole.tap import collect

    return await collect(args.tap, args.token)


async def _conns(args: argparse.Namespace) -> int:
    session = await _collect(args)
    conns = sorted(session.connections.values(), key=lambda c: c.ts_start)
    if args.json:
        print(json.dumps([conn_json(c) for c in conns], ensure_ascii=False))
    else:
        print(conns_table(conns))
    return 0


# ------------------------------------------------------------------ faults


async def _command(args: argparse.Namespace, cmd: Command) -> int:
    from devconsole.tap import TapClient

    client = TapClient(args.tap, args.token)
    await client.connect()
    run = asyncio.ensure_future(client.run(lambda evs: None))
    try:
        res = await client.command(cmd)
    finally:
        await client.close()
        run.cancel()
        with contextlib.suppress(BaseException):
            await run
    if not res.ok:
        raise CliError(res.error)
    return 0


async def _kill(args: argparse.Namespace) -> int:
    cmd: Command
    if args.code is not None:
        cmd = CloseCommand(args.conn, args.code, args.reason or "", args.to)
    elif args.abort:
        cmd = AbortCommand(args.conn, args.rst)
    elif args.half_open:
        cmd = HalfOpenCommand(args.conn)
    else:
        cmd = ReleaseCommand(args.conn)
    return await _command(args, cmd)


async def _inject(args: argparse.Namespace) -> int:
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
    return await _command(args, cmd)


# ------------------------------------------------------------------ report


async def _report(args: argparse.Namespace) -> int:
    from devconsole.analysis.heartbeat import HeartbeatMonitor
    from devconsole.analysis.readiness import build_report, render_text
    from devconsole.tap import collect

    monitor = HeartbeatMonitor()
    session = Session(max_items=10_000_000, max_bytes=1 << 40)
    session.observers.append(monitor.on_event)
    await collect(args.tap, args.token, session=session)
    report = build_report(session, monitor, time.time())
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(render_text(report))
    return 0


# ------------------------------------------------------------------ capture files


async def _record(args: argparse.Namespace) -> int:
    from devconsole.store.capture import default_path, record
    from devconsole.tap import TapClient

    path = args.file or str(default_path())
    client = TapClient(args.tap, args.token)
    await client.connect()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(f"recording to {path} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    n = await record(client, path, duration=args.duration, stop=stop, proxy=client.proxy)
    print(f"{n} events written to {path}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from devconsole.store.export import export_capture

    res = export_capture(args.capture, args.output, fmt=args.format, redact=not args.no_redact)
    if res.error:
        print(f"devconsole: warning: {res.error}", file=sys.stderr)
    if args.output not in (None, "-"):
        print(f"{res.written} records written to {args.output}", file=sys.stderr)
    return 0


def _open(args: argparse.Namespace) -> int:
    from devconsole.store.capture import FileSource, probe

    probe(args.file)
    return _tui(FileSource(args.file))


# ------------------------------------------------------------------ proxy / TUI


def _proxy_config(args: argparse.Namespace) -> Any:
    from devconsole.proxy import ProxyConfig, parse_listen, parse_mode

    host, port = parse_listen(args.listen)
    return ProxyConfig(
        listen_host=host,
        listen_port=port,
        mode=parse_mode(args.mode),
        confdir=args.confdir,
        tap=args.tap or "",
        buffer_messages=args.buffer_messages,
        buffer_bytes=args.buffer_bytes,
        max_payload=args.max_payload,
        hold_bytes=args.hold_bytes,
        rules=args.rules or "",
        sets=args.set or [],
    )


async def _proxy(args: argparse.Namespace) -> int:
    from devconsole.proxy import ProxyError, run_proxy, setup_logging

    setup_logging(
        {"quiet": 40, "normal": 30, "verbose": 20}.get(args.log, 30),
    )
    cfg = _proxy_config(args)

    def ready(p: Any) -> None:
        addrs = ", ".join(_fmt(a) for a in p.listen_addrs)
        print(f"devconsole proxy listening on {addrs}; tap at {p.tap_address}", flush=True)

    try:
        await run_proxy(cfg, ready)
    except ProxyError as e:
        raise CliError(str(e)) from None
    return 0


def _fmt(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tui(source: Any, on_exit: Callable[[], None] | None = None) -> int:
    from devconsole.tui.app import make_app, tune_gc

    app = make_app(source)
    tune_gc()
    try:
        app.run()
    finally:
        if on_exit is not None:
            on_exit()
    return 0


def _attach(args: argparse.Namespace) -> int:
    from devconsole.tap import TapClient

    client = TapClient(args.tap, args.token)

    async def check() -> None:
        await client.connect()

    asyncio.run(check())
    # The TUI runs its own loop: it reconnects with a fresh client.
    return _tui(TapClient(args.tap, args.token))


class ChildProxy:
    """``devconsole proxy`` as a child process with a private tap socket."""

    def __init__(self, args: argparse.Namespace, extra: Sequence[str] = ()) -> None:
        from devconsole.tap import ensure_private_dir, runtime_dir

        d = ensure_private_dir(runtime_dir())
        self.tap = str(d / f"tap-{os.getpid()}.sock")
        self.log_path = str(d / f"proxy-{os.getpid()}.log")
        cmd = [
            sys.executable,
            "-m",
            "devconsole",
            "proxy",
            "--listen",
            args.listen,
            "--mode",
            args.mode,
            "--tap",
            self.tap,
            "--buffer-messages",
            str(args.buffer_messages),
            "--buffer-bytes",
            args.buffer_bytes,
            "--max-payload",
            args.max_payload,
            "--hold-bytes",
            args.hold_bytes,
            *extra,
        ]
        if args.rules:
            cmd += ["--rules", args.rules]
        if args.confdir:
            cmd += ["--confdir", args.confdir]
        for s in args.set or []:
            cmd += ["--set", s]
        self.log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, text=True
        )
        self.listen = ""

    def wait_ready(self, timeout: float = 20) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout)
            self.log.flush()
            with open(self.log_path) as fh:
                err = fh.read().strip().splitlines()
            raise CliError(err[-1] if err else "the proxy exited")
        m = re.search(r"listening on (\S+?)(?:,|;)", line)
        self.listen = m.group(1) if m else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _default(args: argparse.Namespace) -> int:
    from devconsole.proxy import parse_listen, parse_mode
    from devconsole.tap import TapClient

    parse_listen(args.listen)
    parse_mode(args.mode)
    child = ChildProxy(args)
    try:
        child.wait_ready()
        return _tui(TapClient(child.tap), child.stop)
    finally:
        child.stop()


def _demo(args: argparse.Namespace) -> int:
    from devconsole.proxy import parse_listen
    from devconsole.tap import TapClient

    parse_listen(args.listen)
    child = ChildProxy(args)
    stop_demo = None
    try:
        child.wait_ready()
        stop_demo = _start_demo_thread(child.listen, args.rate)
        if args.headless:
            print(f"demo traffic through {child.listen}; tap at {child.tap}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while child.proc.poll() is None:
                    time.sleep(0.5)
            return 0
        return _tui(TapClient(child.tap))
    finally:
        if stop_demo is not None:
            stop_demo()
        child.stop()


def _start_demo_thread(proxy: str, rate: int | None) -> Callable[[], None]:
    """Run the demo traffic in a thread with its own loop (the TUI owns the main one)."""
    import threading

    from devconsole.demo import run_demo

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def runner() -> None:
        asyncio.set_event_loop(loop)
        with contextlib.suppress(Exception):
            loop.run_until_complete(run_demo(proxy, rate=rate, stop=stop))

    t = threading.Thread(target=runner, name="devconsole-demo", daemon=True)
    t.start()

    def stopper() -> None:
        loop.call_soon_threadsafe(stop.set)
        t.join(5)

    return stopper


# ------------------------------------------------------------------ parser


def _add_tap_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tap",
        metavar="ADDR",
        default=None,
        help="tap address: a Unix socket path or tcp://127.0.0.1:PORT "
        "(default: $XDG_RUNTIME_DIR/devconsole/tap.sock)",
    )
    p.add_argument("--token", default=None, help="token for a tcp:// tap (default: its file)")


def _add_proxy_args(p: argparse.ArgumentParser, tap: bool = True) -> None:
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
    p.add_argument("--buffer-messages", type=_positive_int, default=100_000, metavar="N")
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


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return v


def _close_code(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a close code: {s!r}") from None
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devconsole",
        description="WebSocket debugging proxy and live traffic inspector. Without a "
        "command: start the proxy and the TUI.",
    )
    parser.add_argument("--version", action="version", version=f"devconsole {__version__}")
    _add_proxy_args(parser, tap=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("proxy", help="run the headless proxy with the tap")
    _add_proxy_args(p)
    p.add_argument("--log", choices=["quiet", "normal", "verbose"], default="normal")

    p = sub.add_parser("tail", help="print captured events as they arrive")
    _add_tap_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--filter", metavar="EXPR", help="filter expression (docs/filters.md)")
    p.add_argument("--new", action="store_true", help="skip the backlog; only new events")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="exit after N messages")

    p = sub.add_parser("conns", help="list connections")
    _add_tap_args(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("attach", help="attach the TUI to a running proxy's tap")
    _add_tap_args(p)

    p = sub.add_parser("kill", help="close, abort or half-open a live connection")
    _add_tap_args(p)
    p.add_argument("conn", metavar="CONN", help="connection id (devconsole conns)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--code", type=_close_code, help="send close frames with this code")
    g.add_argument("--abort", action="store_true", help="drop both TCP connections")
    g.add_argument("--half-open", action="store_true", help="forward nothing, keep sockets")
    g.add_argument("--release", action="store_true", help="end half-open")
    p.add_argument("--reason", default=None, help="close reason (with --code)")
    p.add_argument("--to", choices=["client", "server", "both"], default="both")
    p.add_argument("--rst", action="store_true", help="with --abort: send a TCP reset")

    p = sub.add_parser("inject", help="send a message or ping on a live connection")
    _add_tap_args(p)
    p.add_argument("conn", metavar="CONN")
    p.add_argument("--to", choices=["client", "server"], required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--text")
    g.add_argument("--hex")
    g.add_argument("--ping", action="store_true")

    p = sub.add_parser("report", help="production-readiness report of observed traffic")
    _add_tap_args(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("record", help="save captured events to a capture file")
    _add_tap_args(p)
    p.add_argument("file", nargs="?", help="capture file (default devconsole-DATE.dcap)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS")

    p = sub.add_parser("open", help="view a capture file in the TUI")
    p.add_argument("file")

    p = sub.add_parser("export", help="export a capture file as JSON lines or HAR")
    p.add_argument("capture")
    p.add_argument("-o", "--output", default=None, help="output file (default: stdout)")
    p.add_argument("--format", choices=["jsonl", "har"], default="jsonl")
    p.add_argument("--no-redact", action="store_true", help="keep cookies, tokens and passwords")

    intercept.register(sub)
    rules_commands.register(sub)
    shape_commands.register(sub)
    chaos_commands.register(sub)

    p = sub.add_parser("demo", help="the proxy, the TUI and simulated traffic")
    _add_proxy_args(p, tap=False)
    p.add_argument("--rate", type=_positive_int, default=None, help="flood N messages/s")
    p.add_argument("--headless", action="store_true", help="no TUI (for scripts)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    tail: list[str] | None = None
    if "--" in argv:  # a command line for a child (chaos -- CMD ARGS)
        i = argv.index("--")
        argv, tail = argv[:i], argv[i + 1 :]
    args = parser.parse_args(argv)
    if tail is not None:
        if not hasattr(args, "client"):
            parser.error("unrecognized arguments: -- " + " ".join(tail))
        args.client = tail
    try:
        if getattr(args, "handler", None):
            return int(args.handler(args))
        cmd = args.command
        if cmd == "kill":
            if args.rst and not args.abort:
                parser.error("--rst goes with --abort")
            if args.reason is not None and args.code is None:
                parser.error("--reason goes with --code")
        if cmd is None:
            return _default(args)
        if cmd == "attach":
            return _attach(args)
        if cmd == "demo":
            args.tap = None
            return _demo(args)
        if cmd == "open":
            return _open(args)
        if cmd == "export":
            return _export(args)
        runner = {
            "proxy": _proxy,
            "tail": _tail,
            "conns": _conns,
            "kill": _kill,
            "inject": _inject,
            "report": _report,
            "record": _record,
        }[cmd]
        return asyncio.run(runner(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
    except Exception as e:
        from devconsole.proxy import ProxyError
        from devconsole.store.capture import CaptureError
        from devconsole.tap import TapError

        if isinstance(e, CliError | SourceError | ProxyError | TapError | CaptureError):
            print(f"devconsole: {e}", file=sys.stderr)
            return 1
        if isinstance(e, OSError) and e.filename:
            print(f"devconsole: {e.filename}: {e.strerror}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
