"""The registry of application-protocol decoders and how a connection's protocol is chosen.

Core module: no I/O (plugins are found through ``importlib.metadata`` entry points, read
once, on first use).

Built in: ``socket.io``, ``signalr``, ``graphql-ws``, ``stomp``, ``mqtt``, ``jsonrpc``,
``phoenix``, ``actioncable``, ``wamp``; ``protobuf:pkg.Message`` when descriptor sets
are loaded (``devconsole.decoders.protobuf``). Third-party decoders register through the
entry point group ``devconsole.decoders``: each entry point names a ``ProtocolDecoder``
subclass (or instance, or a function returning one).

How a connection's protocol is chosen, first match wins (``choose()``):

1. a per-connection override (``ProtocolTracker.set_override``, the TUI's menu);
2. the viewer's own rules (``--decoder PATH_GLOB=NAME`` on tail, report, export...);
3. the proxy's choice, carried in the handshake (``Handshake.decoder``, set by
   ``devconsole proxy --decoder PATH_GLOB=NAME``);
4. the handshake: the accepted (else offered) ``Sec-WebSocket-Protocol``, then URL
   conventions (``/socket.io/?EIO=4``, ``/signalr``, ``/cable``,
   ``/socket/websocket?vsn=2.0.0``...);
5. content: the first messages that decode with a weaker URL hint (``/graphql``,
   ``/mqtt``, ``/stomp``, ``/rpc``: ``hint()``), else that a decoder recognises
   (``sniff()``).

The name ``none`` turns decoding off for a connection.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from devconsole.decoders.actioncable import ActionCableDecoder
from devconsole.decoders.base import ProtocolDecoder
from devconsole.decoders.graphql_ws import GraphQLWSDecoder
from devconsole.decoders.jsonrpc import JsonRpcDecoder
from devconsole.decoders.mqtt import MqttDecoder
from devconsole.decoders.phoenix import PhoenixDecoder
from devconsole.decoders.signalr import SignalRDecoder
from devconsole.decoders.socketio import SocketIODecoder
from devconsole.decoders.stomp import StompDecoder
from devconsole.decoders.wamp import WampDecoder
from devconsole.model import Handshake, Side

__all__ = [
    "ENTRY_POINT_GROUP",
    "NONE",
    "PLUGIN_ERRORS",
    "DecoderRule",
    "choose",
    "get_protocol",
    "load_plugins",
    "parse_rules",
    "protocol_names",
    "register_factory",
    "register_protocol",
    "sniff",
]

log = logging.getLogger("devconsole.decoders")

ENTRY_POINT_GROUP = "devconsole.decoders"
NONE = "none"
DETECT_THRESHOLD = 0.8  # handshake scores from here settle the protocol
HINT_THRESHOLD = 0.5  # from here to DETECT_THRESHOLD: a hint that content must confirm
SNIFF_THRESHOLD = 0.6

_DECODERS: dict[str, ProtocolDecoder] = {}
# "protobuf" -> a function of the part after "protobuf:" that returns a decoder
_FACTORIES: dict[str, Callable[[str], ProtocolDecoder]] = {}
PLUGIN_ERRORS: list[str] = []  # entry points that failed to load, one line each
_plugins_loaded = False


def register_protocol(decoder: ProtocolDecoder) -> None:
    """Add a decoder (replacing one of the same name)."""
    if not decoder.name or decoder.name == NONE or ":" in decoder.name:
        raise ValueError(f"bad decoder name {decoder.name!r}")
    _DECODERS[decoder.name] = decoder


def register_factory(prefix: str, factory: Callable[[str], ProtocolDecoder]) -> None:
    """Decoders named ``prefix:ARG`` (``protobuf:pkg.Message``), built on first use."""
    _FACTORIES[prefix] = factory


for _d in (
    SocketIODecoder(),
    SignalRDecoder(),
    GraphQLWSDecoder(),
    StompDecoder(),
    MqttDecoder(),
    JsonRpcDecoder(),
    PhoenixDecoder(),
    ActionCableDecoder(),
    WampDecoder(),
):
    register_protocol(_d)


def _install_builtin_factories() -> None:
    from devconsole.decoders import protobuf

    protobuf.install()


_install_builtin_factories()


def load_plugins() -> list[str]:
    """Register the decoders of the ``devconsole.decoders`` entry point group (once).
    Returns the errors (also kept in ``PLUGIN_ERRORS``); a broken plugin never stops
    devconsole."""
    global _plugins_loaded
    if _plugins_loaded:
        return PLUGIN_ERRORS
    _plugins_loaded = True
    from importlib.metadata import entry_points

    try:
        eps = list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception as e:  # a broken installed distribution's metadata
        PLUGIN_ERRORS.append(f"reading entry points: {e}")
        return PLUGIN_ERRORS
    for ep in eps:
        try:
            add_plugin(ep.load())
        except Exception as e:
            PLUGIN_ERRORS.append(f"decoder plugin {ep.name!r} ({ep.value}): {e}")
            log.warning("%s", PLUGIN_ERRORS[-1])
    return PLUGIN_ERRORS


def add_plugin(obj: object) -> ProtocolDecoder:
    """Register what an entry point names: a ProtocolDecoder subclass, an instance, or a
    function returning an instance."""
    if isinstance(obj, type) and issubclass(obj, ProtocolDecoder):
        dec = obj()
    elif isinstance(obj, ProtocolDecoder):
        dec = obj
    elif callable(obj):
        dec = obj()
        if not isinstance(dec, ProtocolDecoder):
            raise TypeError(f"returned {type(dec).__name__}, not a ProtocolDecoder")
    else:
        raise TypeError(f"{type(obj).__name__} is not a ProtocolDecoder")
    register_protocol(dec)
    return dec


def get_protocol(name: str) -> ProtocolDecoder | None:
    """The decoder called ``name`` (``protobuf:pkg.Message`` style names included)."""
    load_plugins()
    dec = _DECODERS.get(name)
    if dec is not None:
        return dec
    prefix, sep, arg = name.partition(":")
    if sep and prefix in _FACTORIES:
        dec = _FACTORIES[prefix](arg)  # raises ValueError for a bad argument
        _DECODERS[name] = dec
        return dec
    return None


def protocol_names() -> list[str]:
    """Every decoder name, built-ins first (for menus and error messages)."""
    load_plugins()
    return list(_DECODERS)


def factory_prefixes() -> list[str]:
    """The ``prefix`` of decoders named ``prefix:ARG`` (``protobuf``)."""
    return list(_FACTORIES)


def all_decoders() -> list[ProtocolDecoder]:
    load_plugins()
    return list(_DECODERS.values())


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class DecoderRule:
    """``--decoder PATH_GLOB=NAME``: connections whose URL path matches ``glob``
    (fnmatch; ``*`` crosses slashes) use decoder ``name`` (or ``none``)."""

    glob: str
    name: str

    def matches(self, hs: Handshake) -> bool:
        return fnmatch.fnmatchcase(hs.path, self.glob)

    def __str__(self) -> str:
        return f"{self.glob}={self.name}"


def check_name(name: str) -> str:
    """``name`` if it names a decoder (or ``none``); ValueError with the choices if not."""
    if name == NONE:
        return name
    try:
        dec = get_protocol(name)
    except ValueError as e:
        raise ValueError(f"decoder {name!r}: {e}") from None
    if dec is None:
        raise ValueError(
            f"unknown decoder {name!r} (known: {', '.join([*protocol_names(), NONE])})"
        )
    return name


def parse_rules(specs: Iterable[str]) -> list[DecoderRule]:
    """``["/socket.io/*=socket.io", "/api/rpc=jsonrpc"]`` -> rules. A spec without ``=``
    applies to every path. Raises ValueError with a message for the user."""
    out = []
    for spec in specs:
        glob, sep, name = spec.rpartition("=")
        if not sep:
            glob, name = "*", spec
        glob, name = glob.strip() or "*", name.strip()
        if not glob.startswith(("/", "*", "?", "[")):
            raise ValueError(f"--decoder {spec!r}: the glob matches the URL path, e.g. /ws/*")
        out.append(DecoderRule(glob, check_name(name)))
    return out


# --------------------------------------------------------------------------- choosing


def detect(hs: Handshake) -> tuple[str | None, str]:
    """The protocol the handshake announces, and why (``subprotocol graphql-ws``,
    ``URL /socket.io/``), or ``(None, "")``. A weaker URL hint (``/graphql``, ``/rpc``)
    is not enough here: see ``hint``."""
    name, why, score = _best(hs)
    return (name, why) if score >= DETECT_THRESHOLD else (None, "")


def hint(hs: Handshake | None) -> tuple[str | None, str]:
    """A protocol the URL suggests without settling it (``/graphql``, ``/mqtt``,
    ``/stomp``, ``/rpc``): the tracker takes it once a message decodes with it."""
    if hs is None:
        return None, ""
    name, why, score = _best(hs)
    return (name, why) if HINT_THRESHOLD <= score < DETECT_THRESHOLD else (None, "")


def _best(hs: Handshake) -> tuple[str | None, str, float]:
    best: tuple[float, str | None, str] = (0.0, None, "")
    for dec in all_decoders():
        try:
            score = dec.detect(hs)
        except Exception:
            continue
        if score > best[0]:
            sub = hs.subprotocol or ", ".join(hs.requested_subprotocols)
            why = f"subprotocol {sub}" if score >= 0.9 and sub else f"URL {hs.path}"
            best = (score, dec.name, why)
    return best[1], best[2], best[0]


def choose(hs: Handshake | None, rules: Sequence[DecoderRule] = ()) -> tuple[str | None, str]:
    """Steps 2-4 of the module docstring: ``(name or None, reason)``."""
    if hs is None:
        return None, ""
    for rule in rules:
        if rule.matches(hs):
            return rule.name, f"--decoder {rule}"
    proxy_choice = getattr(hs, "decoder", None)
    if proxy_choice:
        return proxy_choice, "the proxy's --decoder"
    return detect(hs)


def sniff(payload: bytes, opcode: int, side: Side) -> tuple[str | None, float]:
    """The decoder that best recognises one message, if any is sure enough."""
    best: tuple[float, str | None] = (0.0, None)
    for dec in all_decoders():
        try:
            score = dec.sniff(payload, opcode, side)
        except Exception:
            continue
        if score > best[0]:
            best = (score, dec.name)
    if best[0] >= SNIFF_THRESHOLD:
        return best[1], best[0]
    return None, best[0]
