"""``devconsole handshake CONN``: a connection's upgrade handshake, or its diff against
another (``--diff OTHER``) or against the latest accepted upgrade of its endpoint
(``--diff auto``), from a running proxy's tap or a capture, recording or HAR file. What
it prints is ``devconsole.store.handshakes``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from devconsole.commands import CliError, add_tap_args


def register(sub: Any) -> None:
    p = sub.add_parser(
        "handshake",
        help="print a connection's upgrade handshake, or its diff against another",
        description="Print the upgrade handshake of connection CONN (the ids of devconsole "
        "conns), or with --diff what its request lacks, adds or changes compared with "
        "another connection's. Secret values are shown as a name and a fingerprint.",
    )
    p.add_argument("conn", metavar="CONN", help="connection id, e.g. 4 or #4")
    p.add_argument(
        "capture",
        nargs="?",
        default=None,
        help="a capture, recording or HAR file (default: the proxy's tap)",
    )
    p.add_argument(
        "--diff",
        metavar="OTHER|auto",
        default=None,
        help="compare with connection OTHER, or (auto) with the latest accepted upgrade "
        "of the same endpoint",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--show-secrets",
        action="store_true",
        help="print cookie, token and credential values in full (default: a fingerprint)",
    )
    add_tap_args(p)
    p.set_defaults(handler=handshake)


def _conn_id(spec: str) -> str:
    cid = spec.strip().lstrip("#")
    if not cid:
        raise CliError(f"not a connection id: {spec!r}")
    return cid


def _load(args: argparse.Namespace) -> Any:
    """The Session of the tap (or Redis stream), or of ``args.capture``: a capture file, a
    recording or a HAR file, read as ``open``, ``export`` and ``report`` read it."""
    if args.capture is None:
        from devconsole.tap import collect

        return asyncio.run(collect(args.tap, args.token))
    from devconsole.commands.store import load_capture

    return load_capture(args.capture)


def handshake(args: argparse.Namespace) -> int:
    from devconsole.analysis.handshake_diff import auto_diff, diff_connections, endpoint_of
    from devconsole.store.handshakes import diff_json, diff_text, handshake_json, handshake_text

    cid = _conn_id(args.conn)
    other = None if args.diff in (None, "auto") else _conn_id(args.diff)
    session = _load(args)
    conns = session.connections
    conn = conns.get(cid)
    where = "the capture" if args.capture else "the proxy"
    if conn is None:
        raise CliError(f"no connection {cid} in {where} (devconsole conns lists them)")
    show = args.show_secrets
    if args.diff is None:
        found = auto_diff(conn, conns.values())
        diff = found[1] if found is not None else None
        if args.json:
            print(
                json.dumps(handshake_json(conn, show_secrets=show, diff=diff), ensure_ascii=False)
            )
        else:
            sys.stdout.write(handshake_text(conn, show_secrets=show, diff=diff))
        return 0
    if other is None:
        found = auto_diff(conn, conns.values())
        if found is None:
            server, path = endpoint_of(conn.handshake)
            raise CliError(
                f"no other accepted upgrade of {path} at {server} to compare {cid} with; "
                "name one: --diff ID"
            )
        diff = found[1]
    else:
        ref = conns.get(other)
        if ref is None:
            raise CliError(f"no connection {other} in {where} (devconsole conns lists them)")
        if ref.id == conn.id:
            raise CliError("--diff: compare with another connection")
        diff = diff_connections(conn, ref)
    if args.json:
        print(json.dumps(diff_json(conn, diff, show_secrets=show), ensure_ascii=False))
    else:
        sys.stdout.write(diff_text(conn, diff, show_secrets=show))
    return 0
