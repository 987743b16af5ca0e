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
import json
from typing import TYPE_CHECKING, Any

from devconsole.commands import CliError

if TYPE_CHECKING:
    from devconsole.decoders.base import Frame
    from devconsole.decoders.protocols import DecoderRule


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
    from devconsole.decoders.protocols import parse_rules

    for path in getattr(args, "proto_desc", None) or []:
        try:
            load_descriptor_set(path)
        except (OSError, ValueError) as e:
            raise CliError(f"--proto-desc {path}: {e}") from None
    specs = list(getattr(args, "decoder", None) or [])
    for t in getattr(args, "proto_type", None) or []:
        glob, sep, name = t.rpartition("=")
        specs.append(f"{glob if sep else '*'}=protobuf:{name}")
    try:
        parse_rules(specs)
    except ValueError as e:
        raise CliError(str(e)) from None
    return specs


def decoder_rules(args: argparse.Namespace) -> list[DecoderRule]:
    """The viewer's rules from ``add_decoder_args``'s options (CliError if invalid)."""
    from devconsole.decoders.protocols import parse_rules

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
    from devconsole.decoders.base import from_jsonable

    if text is None:
        return default
    try:
        return from_jsonable(json.loads(text))
    except ValueError as e:
        raise CliError(f"{what}: not JSON: {e}") from None


async def inject_frames(args: argparse.Namespace) -> list[Frame]:
    """The frames ``inject --sio-event``/``--proto`` asks for, encoded with what the
    connection's backlog says about its protocol (Engine.IO version, MQTT version)."""
    from devconsole.decoders.protocols import NONE
    from devconsole.decoders.tracker import ProtocolTracker
    from devconsole.session import Session
    from devconsole.tap import collect

    if args.sio_event:
        name = "socket.io"
        a = _json_arg(args.args, "--args", [])
        if not isinstance(a, list):
            raise CliError("--args: a JSON array of the event's arguments")
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
            raise CliError("--proto: name a protocol")
        fields = _json_arg(args.decoded, "--decoded", None)
        if not isinstance(fields, dict):
            raise CliError("--proto needs --decoded with the packet's fields as a JSON object")
    tracker = ProtocolTracker(decoder_rules(args))
    session = Session(max_items=10_000_000, max_bytes=1 << 40)
    session.observers.append(tracker.on_event)
    await collect(args.tap, args.token, session=session, idle=0.2, timeout=5)
    if args.conn not in session.connections:
        raise CliError(f"unknown connection {args.conn!r}")
    try:
        return tracker.encode(args.conn, fields, name)
    except ValueError as e:
        raise CliError(f"{name}: {e}") from None


async def send_frames(args: argparse.Namespace, frames: list[Frame]) -> int:
    """Inject ``frames`` in order, sent together so they stay together (a Socket.IO
    packet and its binary attachments): on one tap connection, or through Redis to the
    proxy that owns the connection."""
    from devconsole import sources
    from devconsole.model import InjectCommand

    cmds = [InjectCommand(args.conn, args.to, op, data) for op, data in frames]
    for res in await sources.send_commands(args.tap, args.token, cmds):
        if not res.ok:
            raise CliError(res.error)
    return 0


def wants_protocol_inject(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "sio_event", None) or getattr(args, "proto", None))


def inject(args: argparse.Namespace) -> int:
    """``devconsole inject --sio-event``/``--proto`` (the rest: ``commands.faults``)."""
    return asyncio.run(_inject(args))


async def _inject(args: argparse.Namespace) -> int:
    return await send_frames(args, await inject_frames(args))


# --------------------------------------------------------------------------- decoders


def _list(args: argparse.Namespace) -> int:
    from devconsole.decoders.protocols import PLUGIN_ERRORS, all_decoders

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
