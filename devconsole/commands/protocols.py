"""Command-line parts of application-protocol decoding (docs/protocols.md).

- ``add_decoder_args(p)``: ``--decoder PATH_GLOB=NAME``, ``--proto-desc FILE.desc``,
  ``--proto-type [PATH_GLOB=]pkg.Message`` on ``proxy`` and on the viewers (tail, report,
  export, open, attach);
- ``decoder_rules(args)``: those options as rules for a ProtocolTracker;
- ``inject_frames(args)``: ``inject --sio-event NAME --args JSON`` and
  ``inject --proto NAME --decoded JSON``, encoded with the connection's protocol state;
- ``register(sub)``: ``devconsole decoders`` lists the decoders (built-in and plugins).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

from devconsole.decoders.base import Frame, from_jsonable
from devconsole.decoders.protocols import (
    NONE,
    PLUGIN_ERRORS,
    DecoderRule,
    all_decoders,
    parse_rules,
)
from devconsole.model import Command, InjectCommand


def _error(msg: str) -> Exception:
    from devconsole.cli import CliError

    return CliError(msg)


def add_decoder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--decoder",
        action="append",
        metavar="PATH_GLOB=NAME",
        help="decode connections whose URL path matches with this protocol (socket.io, "
        "signalr, graphql-ws, stomp, mqtt, jsonrpc, phoenix, actioncable, wamp, "
        "protobuf:pkg.Message, a plugin's, or none); repeatable; first match wins",
    )
    p.add_argument(
        "--proto-desc",
        action="append",
        metavar="FILE.desc",
        help="a protobuf descriptor set (protoc --include_imports --descriptor_set_out)",
    )
    p.add_argument(
        "--proto-type",
        action="append",
        metavar="[PATH_GLOB=]pkg.Message",
        help="decode binary messages (of the paths matching) as this protobuf message",
    )


def decoder_specs(args: argparse.Namespace) -> list[str]:
    """``--decoder`` and ``--proto-type`` as ``PATH_GLOB=NAME`` strings (validated), and
    the descriptor sets loaded."""
    from devconsole.decoders.protobuf import load_descriptor_set

    for path in getattr(args, "proto_desc", None) or []:
        try:
            load_descriptor_set(path)
        except (OSError, ValueError) as e:
            raise _error(f"--proto-desc {path}: {e}") from None
    specs = list(getattr(args, "decoder", None) or [])
    for t in getattr(args, "proto_type", None) or []:
        glob, sep, name = t.rpartition("=")
        specs.append(f"{glob if sep else '*'}=protobuf:{name}")
    try:
        parse_rules(specs)
    except ValueError as e:
        raise _error(str(e)) from None
    return specs


def decoder_rules(args: argparse.Namespace) -> list[DecoderRule]:
    """The viewer's rules from ``add_decoder_args``'s options (CliError if invalid)."""
    return parse_rules(decoder_specs(args))


# --------------------------------------------------------------------------- inject


def add_inject_args(p: argparse.ArgumentParser, group: Any) -> None:
    """The protocol-level choices of ``devconsole inject`` (``group``: its mutually
    exclusive group of what to send)."""
    group.add_argument("--sio-event", metavar="NAME", help="emit this Socket.IO event")
    group.add_argument(
        "--proto", metavar="NAME", help="send --decoded fields encoded by this protocol"
    )
    p.add_argument("--args", metavar="JSON", help="--sio-event: a JSON array of arguments")
    p.add_argument("--namespace", default="/", help="--sio-event: the namespace (default /)")
    p.add_argument("--ack", type=int, default=None, help="--sio-event: ask for this ack id")
    p.add_argument(
        "--decoded",
        metavar="JSON",
        help='--proto: the packet\'s fields as in tail --json "decoded" ({"$b64": ...} for bytes)',
    )


def _json_arg(text: str | None, what: str, default: Any) -> Any:
    if text is None:
        return default
    try:
        return from_jsonable(json.loads(text))
    except ValueError as e:
        raise _error(f"{what}: not JSON: {e}") from None


def wants_protocol_inject(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "sio_event", None) or getattr(args, "proto", None))


async def inject_frames(args: argparse.Namespace) -> list[Frame]:
    """The frames ``inject --sio-event``/``--proto`` asks for, encoded with what the
    connection's backlog says about its protocol (Engine.IO version, MQTT version)."""
    from devconsole.decoders.tracker import ProtocolTracker
    from devconsole.session import Session
    from devconsole.tap import collect

    if args.sio_event:
        name = "socket.io"
        a = _json_arg(args.args, "--args", [])
        if not isinstance(a, list):
            raise _error("--args: a JSON array of the event's arguments")
        fields: dict[str, Any] = {
            "type": "event",
            "namespace": args.namespace,
            "event": args.sio_event,
            "args": a,
        }
        if args.ack is not None:
            fields["ack"] = args.ack
    else:
        name = args.proto
        if name == NONE:
            raise _error("--proto: name a protocol")
        fields = _json_arg(args.decoded, "--decoded", None)
        if not isinstance(fields, dict):
            raise _error("--proto needs --decoded with the packet's fields as a JSON object")
    tracker = ProtocolTracker(decoder_rules(args))
    session = Session(max_items=10_000_000, max_bytes=1 << 40)
    session.observers.append(tracker.on_event)
    await collect(args.tap, args.token, session=session, idle=0.2, timeout=5)
    if args.conn not in session.connections:
        raise _error(f"unknown connection {args.conn!r}")
    try:
        return tracker.encode(args.conn, fields, name)
    except ValueError as e:
        raise _error(f"{name}: {e}") from None


async def send_frames(args: argparse.Namespace, frames: list[Frame]) -> int:
    """Inject ``frames`` in order, on one tap connection, all sent at once so they stay
    together (a Socket.IO packet and its binary attachments)."""
    from devconsole.tap import TapClient

    client = TapClient(args.tap, args.token)
    await client.connect()
    run = asyncio.ensure_future(client.run(lambda evs: None))
    cmds: list[Command] = [InjectCommand(args.conn, args.to, op, data) for op, data in frames]
    try:
        results = await asyncio.gather(*(client.command(c) for c in cmds))
    finally:
        await client.close()
        run.cancel()
        with contextlib.suppress(BaseException):
            await run
    for res in results:
        if not res.ok:
            raise _error(res.error)
    return 0


async def inject(args: argparse.Namespace) -> int:
    return await send_frames(args, await inject_frames(args))


# --------------------------------------------------------------------------- decoders


def _list(args: argparse.Namespace) -> int:
    decoder_specs(args)  # loads --proto-desc, checks --decoder
    rows: list[dict[str, Any]] = []
    for d in all_decoders():
        rows.append(
            {
                "name": d.name,
                "title": d.title,
                "subprotocols": list(d.subprotocols),
                "plugin": not type(d).__module__.startswith("devconsole."),
            }
        )
    if args.json:
        print(json.dumps({"decoders": rows, "errors": PLUGIN_ERRORS}, ensure_ascii=False))
        return 0
    from devconsole.decoders import safe_text

    w = max(len(r["name"]) for r in rows)
    for r in rows:
        subs = f"  [{', '.join(r['subprotocols'])}]" if r["subprotocols"] else ""
        plug = "  (plugin)" if r["plugin"] else ""
        print(safe_text(f"{r['name']:<{w}}  {r['title']}{subs}{plug}"))
    for e in PLUGIN_ERRORS:
        print(safe_text(f"error: {e}"))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("decoders", help="list the application-protocol decoders")
    p.add_argument("--json", action="store_true")
    add_decoder_args(p)
    p.set_defaults(handler=_list)
