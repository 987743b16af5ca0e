"""The scale-out options of ``devconsole proxy`` and the viewers (cli.py calls these)."""

from __future__ import annotations

import argparse

from devconsole.scale.config import DEFAULT_MAXLEN, DEFAULT_STREAM


def add_proxy_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scale-out over Redis (docs/scale.md)")
    g.add_argument(
        "--publish",
        metavar="URL",
        default=None,
        help="also publish events to this Redis stream: redis://[user:password@]HOST:PORT/DB "
        "or rediss://... (password also from DEVCONSOLE_REDIS_PASSWORD)",
    )
    g.add_argument(
        "--name", default=None, help="this proxy's instance name (default: HOSTNAME:PORT)"
    )
    g.add_argument(
        "--stream",
        default=None,
        metavar="NAME",
        help=f"the deployment's stream (default {DEFAULT_STREAM}; viewers: URL?stream=NAME)",
    )
    g.add_argument(
        "--stream-maxlen",
        type=int,
        default=None,
        metavar="N",
        help=f"stream entries Redis keeps (default {DEFAULT_MAXLEN}, ~128 KiB each at most)",
    )
    g.add_argument(
        "--accept-commands",
        action="store_true",
        help="run kill/inject sent through Redis (off: anyone who can write to that Redis "
        "could act on live connections)",
    )
    g.add_argument(
        "--backplane",
        metavar="URL",
        default=None,
        help="record the app's Redis pub/sub backplane at this URL (with --channels)",
    )
    g.add_argument(
        "--channels",
        metavar="PATTERN[,PATTERN]",
        default=None,
        help="channel patterns of the backplane (PSUBSCRIBE), e.g. 'chat:*,socketio'",
    )
    g.add_argument(
        "--trace-key",
        metavar="PATH",
        default=None,
        help="match publications to frames by this JSON path (e.g. data.id); "
        "default: the same payload",
    )


def proxy_sets(args: argparse.Namespace) -> list[str]:
    """The mitmproxy option settings (``NAME=VALUE``) of the scale-out arguments."""
    out: list[str] = []

    def put(name: str, value: object) -> None:
        if value is not None and value is not False:
            out.append(f"{name}={'true' if value is True else value}")

    # in this order: each setting is validated as it is made, with those before it
    put("devconsole_publish", getattr(args, "publish", None))
    put("devconsole_name", getattr(args, "name", None))
    put("devconsole_stream", getattr(args, "stream", None))
    put("devconsole_stream_maxlen", getattr(args, "stream_maxlen", None))
    put("devconsole_accept_commands", getattr(args, "accept_commands", False))
    put("devconsole_channels", getattr(args, "channels", None))
    put("devconsole_trace_key", getattr(args, "trace_key", None))
    put("devconsole_backplane", getattr(args, "backplane", None))
    return out


def add_trace_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trace-key",
        metavar="PATH",
        default=None,
        help="backplane trace: match publications to frames by this JSON path "
        "(default: what the recording proxy was given, else the same payload)",
    )
