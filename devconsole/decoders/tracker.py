"""Per-connection protocol state: which decoder a connection uses, and its messages decoded.

Core module: no I/O. Every viewer (tail, report, export, the TUI) and the proxy itself
(rules and breakpoints) keep a ``ProtocolTracker`` beside their Session::

    tracker = ProtocolTracker(rules=parse_rules(["/rpc=jsonrpc"]))
    session.observers.append(tracker.on_event)   # handshakes, messages, in order
    tracker.listeners.append(fn)                 # fn(item, decoded): pairing, heartbeats
    d = tracker.decoded(item)                    # Decoded | None, for any buffered item
    tracker.set_override("3", "stomp")           # the TUI's per-connection choice
    tracker.set_override("3", None)              # back to automatic

Messages are decoded as they arrive (``eager``) on connections whose protocol is known,
so stateful protocols (MQTT packets across frames, Socket.IO binary attachments) see
them in order; the results of the last ``max_cached`` messages are kept. An older item
is decoded again on demand, on its own (right for every message that holds whole
packets). Connections with no protocol cost a dictionary lookup per message once
sniffing (their first ``sniff_messages`` messages) has given up.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from devconsole.decoders.base import Decoded, Frame, ProtocolDecoder, decode_message
from devconsole.decoders.protocols import (
    NONE,
    DecoderRule,
    choose,
    get_protocol,
    hint,
    sniff,
)
from devconsole.model import (
    ControlFrame,
    Event,
    Handshake,
    HandshakeEvent,
    Item,
    Message,
    Opcode,
    RefusedEvent,
    Snapshot,
)

Listener = Callable[[Item, Decoded], None]

__all__ = ["Listener", "ProtocolTracker"]


# A protocol chosen from one message's content alone is on probation: if it fails to
# decode PROBATION_FAILS of the connection's next PROBATION messages, it was a false
# positive (a chat app's {"type":"welcome",...} is not Action Cable) and is dropped.
PROBATION = 5
PROBATION_FAILS = 2


class _Conn:
    __slots__ = (
        "decoder",
        "fails",
        "gen",
        "hs",
        "name",
        "override",
        "probation",
        "reason",
        "rejected",
        "sniff_left",
        "state",
    )

    def __init__(self, hs: Handshake | None, sniff_left: int) -> None:
        self.hs = hs
        self.name: str | None = None
        self.decoder: ProtocolDecoder | None = None
        self.state: Any = None
        self.reason = ""
        self.override: str | None = None
        self.sniff_left = sniff_left
        self.gen = 0  # bumped when the protocol changes: older cached results are stale
        self.probation = 0  # messages left to confirm a protocol sniffed from content
        self.fails = 0
        self.rejected: tuple[str, ...] = ()  # sniffed and then failed: not sniffed again


class ProtocolTracker:
    def __init__(
        self,
        rules: Sequence[DecoderRule] = (),
        *,
        eager: bool = True,
        max_cached: int = 50_000,
        sniff_messages: int = 20,
        max_connections: int = 10_000,
    ) -> None:
        self.rules = list(rules)
        self.eager = eager
        self.max_cached = max_cached
        self.sniff_messages = sniff_messages
        self.max_connections = max_connections
        self.listeners: list[Listener] = []
        self._conns: dict[str, _Conn] = {}
        self._cache: OrderedDict[int, tuple[str, int, Decoded]] = OrderedDict()

    # ----------------------------------------------------------------- connections

    def _conn(self, conn: str, hs: Handshake | None = None) -> _Conn:
        c = self._conns.get(conn)
        if c is None:
            c = self._conns[conn] = _Conn(hs, self.sniff_messages)
            if hs is not None:
                self._choose(c)
            if len(self._conns) > self.max_connections:
                del self._conns[next(iter(self._conns))]
        elif hs is not None and (c.hs is None or c.hs.status is None):
            c.hs = hs  # the answer to the upgrade (accepted subprotocol) decides
            if c.override is None:
                self._choose(c)
        return c

    def _choose(self, c: _Conn) -> None:
        name: str | None
        if c.override is not None:
            name, reason = c.override, "chosen for this connection"
        else:
            name, reason = choose(c.hs, self.rules)
        self._set(c, name, reason)

    def _set(self, c: _Conn, name: str | None, reason: str) -> None:
        dec = None
        if name is not None and name != NONE:
            try:
                dec = get_protocol(name)
            except ValueError as e:
                name, reason = None, f"decoder {name}: {e}"
            if dec is None and name is not None:
                reason = f"unknown decoder {name!r}"
                name = None
        if dec is not None and c.decoder is dec:
            return
        c.gen += 1
        c.name = name
        c.decoder = dec
        c.reason = reason
        c.state = dec.new_state(c.hs) if dec is not None else None

    def protocol_of(self, conn: str) -> str | None:
        """The decoder name in use for ``conn`` (None: not decoded, or not known yet)."""
        c = self._conns.get(conn)
        return None if c is None or c.decoder is None else c.decoder.name

    def reason_of(self, conn: str) -> str:
        """Why that decoder (``subprotocol graphql-transport-ws``, ``URL /socket.io/``,
        ``--decoder /rpc=jsonrpc``, ``content``, ``chosen for this connection``)."""
        c = self._conns.get(conn)
        return "" if c is None else c.reason

    def set_override(self, conn: str, name: str | None) -> None:
        """Use decoder ``name`` for ``conn`` (``"none"``: no decoding; None: automatic
        again). Raises ValueError for an unknown name. Cached results of the connection
        are dropped; its state starts afresh."""
        if name is not None and name != NONE and get_protocol(name) is None:
            raise ValueError(f"unknown decoder {name!r}")
        c = self._conn(conn)
        c.override = name
        c.sniff_left = 0 if name is not None else self.sniff_messages
        c.decoder = None  # force a fresh state even for the same decoder
        self._choose(c)

    def override_of(self, conn: str) -> str | None:
        c = self._conns.get(conn)
        return None if c is None else c.override

    def handshake(self, conn: str) -> Handshake | None:
        c = self._conns.get(conn)
        return None if c is None else c.hs

    # ----------------------------------------------------------------- events

    def on_event(self, ev: Event) -> None:
        """A Session observer: feed it every event, in order."""
        if type(ev) is Message:
            c = self._conns.get(ev.conn)
            if c is not None and c.decoder is None and c.sniff_left <= 0:
                return  # the hot path of a connection nobody decodes
            self.feed(ev)
        elif isinstance(ev, HandshakeEvent | RefusedEvent):
            self._conn(ev.handshake.conn, ev.handshake)
        elif isinstance(ev, Snapshot):
            for cs in ev.connections:
                self._conn(cs.handshake.conn, cs.handshake)

    def feed(self, item: Item) -> Decoded | None:
        """Decode the next message of its connection (in order); None if the connection
        has no protocol (yet)."""
        if isinstance(item, ControlFrame) or item.opcode not in (Opcode.TEXT, Opcode.BINARY):
            return None
        c = self._conns.get(item.conn)
        if c is None:
            c = self._conn(item.conn)
        if c.decoder is None:
            if c.sniff_left <= 0:
                return None
            c.sniff_left -= 1
            name, why = hint(c.hs) if c.override is None else (None, "")
            if name is not None:
                dec = get_protocol(name)
                if (
                    dec is not None
                    and decode_message(
                        dec, item.payload, item.opcode, item.side, dec.new_state(c.hs)
                    ).ok
                ):
                    self._set(c, name, f"{why}, confirmed by content")
            if c.decoder is None:
                name, _ = sniff(item.payload, item.opcode, item.side)
                if name is None or name in c.rejected:
                    return None
                self._set(c, name, "content")
                c.probation, c.fails = PROBATION + 1, 0
            if c.decoder is None:
                return None
        if not self.eager:
            return None
        d = decode_message(c.decoder, item.payload, item.opcode, item.side, c.state, item.seq)
        if c.probation:
            c.probation -= 1
            if d.error is not None and not d.packets:
                c.fails += 1
                if c.fails >= PROBATION_FAILS and c.name is not None:
                    c.rejected += (c.name,)
                    c.probation = 0
                    self._set(c, None, f"not {c.name}: it did not decode the next messages")
                    return None
        self._store(item.seq, item.conn, c.gen, d)
        if d.joined_to is not None and d.packets:
            # the whole packet now shows on its first message too
            joined = Decoded(
                d.protocol, d.packets, d.error, "joined with its binary attachments", None
            )
            self._store(d.joined_to, item.conn, c.gen, joined)
        if not d.pending:
            for fn in self.listeners:
                fn(item, d)
        return d

    def _store(self, seq: int, conn: str, gen: int, d: Decoded) -> None:
        cache = self._cache
        cache[seq] = (conn, gen, d)
        cache.move_to_end(seq)
        while len(cache) > self.max_cached:
            cache.popitem(last=False)

    # ----------------------------------------------------------------- queries

    def decoded(self, item: Item, *, store: bool = True) -> Decoded | None:
        """``item`` decoded by its connection's protocol, or None (a control frame, or a
        connection without one). Never raises; a message that does not decode gives a
        Decoded with ``error``. ``store=False`` leaves the cache of results alone: what a
        thread other than the one feeding the tracker calls (a viewer's filter rescan)."""
        if isinstance(item, ControlFrame) or item.opcode not in (Opcode.TEXT, Opcode.BINARY):
            return None
        c = self._conns.get(item.conn)
        if c is None or c.decoder is None:
            return None
        hit = self._cache.get(item.seq)
        if hit is not None and hit[0] == item.conn and hit[1] == c.gen:
            return hit[2]
        dec = c.decoder
        d = decode_message(dec, item.payload, item.opcode, item.side, dec.new_state(c.hs), item.seq)
        if store:
            self._store(item.seq, item.conn, c.gen, d)
        return d

    def decode_with(self, item: Item, name: str) -> Decoded | None:
        """``item`` decoded by the named decoder on its own (a preview of an override)."""
        dec = get_protocol(name)
        if dec is None or isinstance(item, ControlFrame):
            return None
        hs = self.handshake(item.conn)
        return decode_message(
            dec, item.payload, item.opcode, item.side, dec.new_state(hs), item.seq
        )

    def encode(self, conn: str, fields: dict[str, Any], name: str | None = None) -> list[Frame]:
        """The WebSocket messages that carry the packet ``fields`` on ``conn``, encoded by
        ``name`` (default: the connection's protocol) with what the connection has
        negotiated (Engine.IO and MQTT versions). Raises ValueError."""
        c = self._conns.get(conn)
        if name is None:
            if c is None or c.decoder is None:
                raise ValueError(f"connection {conn} has no known protocol: name one")
            dec: ProtocolDecoder | None = c.decoder
        else:
            dec = get_protocol(name)
        if dec is None:
            raise ValueError(f"unknown decoder {name!r}")
        state = c.state if c is not None and c.decoder is dec else None
        if state is None:
            state = dec.new_state(c.hs if c is not None else None)
        return dec.encode(fields, state)

    def forget(self, conn: str) -> None:
        self._conns.pop(conn, None)
