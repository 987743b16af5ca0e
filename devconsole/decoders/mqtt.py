"""MQTT 3.1.1 and 5.0 over WebSocket (binary messages carrying the MQTT byte stream).

Core module: no I/O. MQTT over WebSocket is a byte stream per direction: a packet may
span several WebSocket messages and one message may carry several packets, so decoding
keeps, per connection and direction, the bytes of an unfinished packet. The protocol
version (3.1.1 = 4, 5.0 = 5, 3.1 = 3) comes from the CONNECT packet; before one is seen
packets are read as 3.1.1.

Fields: ``packet`` (CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP,
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH),
``topic``, ``qos``, ``retain``, ``dup``, ``packet_id``, ``payload`` (text, or bytes when
not UTF-8), ``properties`` (MQTT 5, by snake_case name; ``user_property`` a list of
pairs), ``reason_code``; CONNECT: ``protocol``, ``version``, ``clean_start``,
``keepalive``, ``client_id``, ``username``, ``password``, ``will``; CONNACK:
``session_present``; SUBSCRIBE: ``subscriptions`` (``[{"topic", "qos", ...options}]``);
SUBACK/UNSUBACK: ``reason_codes``; UNSUBSCRIBE: ``topics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devconsole.decoders.base import (
    Decoded,
    DecodeError,
    Frame,
    Packet,
    ProtocolDecoder,
    short_value,
)
from devconsole.model import Handshake, Opcode, Side

TYPES = (
    None,
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "PINGREQ",
    "PINGRESP",
    "DISCONNECT",
    "AUTH",
)
_CODE = {name: i for i, name in enumerate(TYPES) if name}
MAX_PACKET = 256 << 20  # the largest remaining length MQTT allows
_ACKS = ("PUBACK", "PUBREC", "PUBREL", "PUBCOMP")

# MQTT 5 properties: id -> (name, kind)
PROPERTIES: dict[int, tuple[str, str]] = {
    1: ("payload_format_indicator", "byte"),
    2: ("message_expiry_interval", "u32"),
    3: ("content_type", "str"),
    8: ("response_topic", "str"),
    9: ("correlation_data", "bin"),
    11: ("subscription_identifier", "varint"),
    17: ("session_expiry_interval", "u32"),
    18: ("assigned_client_identifier", "str"),
    19: ("server_keep_alive", "u16"),
    21: ("authentication_method", "str"),
    22: ("authentication_data", "bin"),
    23: ("request_problem_information", "byte"),
    24: ("will_delay_interval", "u32"),
    25: ("request_response_information", "byte"),
    26: ("response_information", "str"),
    28: ("server_reference", "str"),
    31: ("reason_string", "str"),
    33: ("receive_maximum", "u16"),
    34: ("topic_alias_maximum", "u16"),
    35: ("topic_alias", "u16"),
    36: ("maximum_qos", "byte"),
    37: ("retain_available", "byte"),
    38: ("user_property", "pair"),
    39: ("maximum_packet_size", "u32"),
    40: ("wildcard_subscription_available", "byte"),
    41: ("subscription_identifier_available", "byte"),
    42: ("shared_subscription_available", "byte"),
}
_PROP_IDS = {name: (pid, kind) for pid, (name, kind) in PROPERTIES.items()}
_REPEATED = frozenset({"user_property", "subscription_identifier"})


class MqttState:
    """Per connection: the protocol version and each direction's unfinished bytes."""

    __slots__ = ("buf", "keepalive", "version")

    def __init__(self, version: int | None = None) -> None:
        self.version = version
        self.keepalive: int | None = None
        self.buf: dict[str, bytes] = {"client": b"", "server": b""}


# --------------------------------------------------------------------------- reading


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise DecodeError("packet shorter than its fields")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def varint(self) -> int:
        value, shift = 0, 0
        for _ in range(4):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
        raise DecodeError("variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        raw = self.binary()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("a string field is not UTF-8") from None

    def rest(self) -> bytes:
        return self.take(self.left())

    def properties(self) -> dict[str, Any]:
        size = self.varint()
        r = _Reader(self.take(size))
        out: dict[str, Any] = {}
        while r.left():
            pid = r.varint()
            if pid not in PROPERTIES:
                raise DecodeError(f"unknown MQTT 5 property {pid}")
            name, kind = PROPERTIES[pid]
            v: Any
            if kind == "byte":
                v = r.byte()
            elif kind == "u16":
                v = r.u16()
            elif kind == "u32":
                v = r.u32()
            elif kind == "varint":
                v = r.varint()
            elif kind == "str":
                v = r.string()
            elif kind == "bin":
                v = r.binary()
            else:
                v = [r.string(), r.string()]
            if name in _REPEATED:
                out.setdefault(name, []).append(v)
            elif name in out:
                raise DecodeError(f"property {name} given twice")
            else:
                out[name] = v
        return out


def _text_or_bytes(b: bytes) -> str | bytes:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b


def split_packets(data: bytes) -> tuple[list[tuple[int, int, bytes]], int]:
    """Complete packets ``(type, flags, body)`` at the start of ``data`` and how many
    bytes they take. Raises DecodeError for a malformed fixed header."""
    out: list[tuple[int, int, bytes]] = []
    pos = 0
    n = len(data)
    while pos < n:
        first = data[pos]
        length, shift, i = 0, 0, pos + 1
        while True:
            if i >= n:
                return out, pos  # the length is not all here yet
            b = data[i]
            length |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise DecodeError("remaining length longer than 4 bytes")
        if first >> 4 == 0:
            raise DecodeError("packet type 0 is reserved")
        if i + length > n:
            return out, pos
        out.append((first >> 4, first & 0x0F, data[i : i + length]))
        pos = i + length
    return out, pos


class MqttDecoder(ProtocolDecoder):
    name = "mqtt"
    title = "MQTT 3.1.1 and 5.0"
    short = "MQTT"
    subprotocols = ("mqtt", "mqttv3.1", "mqttv3.1.1", "mqttv5")
    stateful = True

    def url_score(self, hs: Handshake) -> float:
        return 0.6 if "mqtt" in hs.path.lower() else 0.0

    def sniff(self, payload: bytes, opcode: int, side: Side) -> float:
        if opcode != Opcode.BINARY or len(payload) < 10:
            return 0.0
        if payload[0] == 0x10 and (
            b"\x00\x04MQTT" in payload[:8] or b"\x00\x06MQIsdp" in payload[:10]
        ):
            return 0.95
        return 0.0

    def new_state(self, hs: Handshake | None = None) -> MqttState:
        return MqttState()

    def decode(self, payload: bytes, opcode: int, side: Side, state: Any, seq: int = 0) -> Decoded:
        st = state if isinstance(state, MqttState) else MqttState()
        data = st.buf[side] + payload if st.buf[side] else payload
        try:
            raw, used = split_packets(data)
        except DecodeError:
            st.buf[side] = b""
            raise
        packets: list[Packet] = []
        error = None
        for t, flags, body in raw:
            try:
                packets.append(self._packet(t, flags, body, side, st))
            except DecodeError as e:
                error = f"{TYPES[t]}: {e}"
                break
        rest = data[used:]
        if len(rest) > MAX_PACKET + 5:
            st.buf[side] = b""
            raise DecodeError("a packet larger than MQTT allows")
        st.buf[side] = bytes(rest)
        note = None
        if rest:
            note = f"{len(rest)} bytes of a packet continue in the next message"
        if error is not None and not packets:
            raise DecodeError(error)
        return Decoded(self.name, tuple(packets), error=error, note=note)

    # ----------------------------------------------------------------- packets

    def _packet(self, t: int, flags: int, body: bytes, side: Side, st: MqttState) -> Packet:
        name = TYPES[t]
        assert name is not None
        v5 = st.version == 5
        r = _Reader(body)
        f: dict[str, Any] = {"packet": name}
        key = role = method = None
        hb: tuple[dict[str, Any], ...] = ()
        summary = f"MQTT {name}"
        if name == "CONNECT":
            f["protocol"] = r.string()
            version = r.byte()
            f["version"] = version
            st.version = version
            v5 = version == 5
            cf = r.byte()
            f["clean_start"] = bool(cf & 0x02)
            f["keepalive"] = r.u16()
            if v5:
                f["properties"] = r.properties()
            f["client_id"] = r.string()
            if cf & 0x04:
                will: dict[str, Any] = {}
                if v5:
                    will["properties"] = r.properties()
                will["topic"] = r.string()
                will["payload"] = _text_or_bytes(r.binary())
                will["qos"] = (cf >> 3) & 3
                will["retain"] = bool(cf & 0x20)
                f["will"] = will
            if cf & 0x80:
                f["username"] = r.string()
            if cf & 0x40:
                f["password"] = _text_or_bytes(r.binary())
            st.keepalive = f["keepalive"]
            summary += f" v{ {3: '3.1', 4: '3.1.1', 5: '5'}.get(version, version) }"
            summary += f" client_id={f['client_id']} keepalive={f['keepalive']}s"
            key, role, method = "connect", "request", "CONNECT"
            if f["keepalive"]:
                k = f["keepalive"]
                hb = ({"side": "client", "interval": float(k), "timeout": 1.5 * k},)
        elif name == "CONNACK":
            f["session_present"] = bool(r.byte() & 1)
            f["reason_code"] = r.byte()
            if v5:
                f["properties"] = r.properties()
                ska = f["properties"].get("server_keep_alive")
                if ska:
                    hb = ({"side": "client", "interval": float(ska), "timeout": 1.5 * ska},)
            summary += f" rc={f['reason_code']}"
            key, role = "connect", "reply"
        elif name == "PUBLISH":
            qos = (flags >> 1) & 3
            if qos == 3:
                raise DecodeError("QoS 3 is not allowed")
            f["topic"] = r.string()
            f["qos"] = qos
            f["retain"] = bool(flags & 1)
            f["dup"] = bool(flags & 8)
            if qos:
                f["packet_id"] = r.u16()
            if v5:
                f["properties"] = r.properties()
            f["payload"] = _text_or_bytes(r.rest())
            summary += f" {f['topic']} qos{qos}"
            if qos:
                summary += f" id={f['packet_id']}"
                key, role, method = f"pid:{f['packet_id']}", "request", f"PUBLISH {f['topic']}"
            summary += f" {short_value(f['payload'], 80)}"
        elif name in _ACKS:
            f["packet_id"] = r.u16()
            if v5 and r.left():
                f["reason_code"] = r.byte()
                if r.left():
                    f["properties"] = r.properties()
            summary += f" id={f['packet_id']}"
            key = f"pid:{f['packet_id']}"
            role = {"PUBACK": "reply", "PUBREC": "partial", "PUBCOMP": "reply"}.get(name)
            if name == "PUBREL":
                key = None
        elif name in ("SUBSCRIBE", "UNSUBSCRIBE"):
            f["packet_id"] = r.u16()
            if v5:
                f["properties"] = r.properties()
            if name == "SUBSCRIBE":
                subs = []
                while r.left():
                    topic = r.string()
                    opts = r.byte()
                    s: dict[str, Any] = {"topic": topic, "qos": opts & 3}
                    if v5:
                        s["no_local"] = bool(opts & 4)
                        s["retain_as_published"] = bool(opts & 8)
                        s["retain_handling"] = (opts >> 4) & 3
                    subs.append(s)
                f["subscriptions"] = subs
                shown = " ".join(f"{s['topic']} qos{s['qos']}" for s in subs)
            else:
                topics = []
                while r.left():
                    topics.append(r.string())
                f["topics"] = topics
                shown = " ".join(topics)
            summary += f" {shown} id={f['packet_id']}"
            key, role, method = f"pid:{f['packet_id']}", "request", name
        elif name in ("SUBACK", "UNSUBACK"):
            f["packet_id"] = r.u16()
            if v5:
                f["properties"] = r.properties()
            if name == "SUBACK" or v5:
                f["reason_codes"] = list(r.rest())
            summary += f" id={f['packet_id']}"
            if f.get("reason_codes"):
                summary += f" {f['reason_codes']}"
            key, role = f"pid:{f['packet_id']}", "reply"
        elif name in ("PINGREQ", "PINGRESP"):
            role = "ping" if name == "PINGREQ" else "pong"
        elif name in ("DISCONNECT", "AUTH"):
            if v5 and r.left():
                f["reason_code"] = r.byte()
                if r.left():
                    f["properties"] = r.properties()
            if "reason_code" in f:
                summary += f" rc={f['reason_code']}"
        if r.left():
            raise DecodeError(f"{r.left()} unexpected bytes at the end")
        if name in ("SUBSCRIBE", "UNSUBSCRIBE", "PUBREL") and flags != 2:
            raise DecodeError(f"{name} must have flags 0010")
        return Packet(summary, f, key, role, method, hb)

    # ----------------------------------------------------------------- encode

    def encode(self, fields: Mapping[str, Any], state: Any = None) -> list[Frame]:
        return [(Opcode.BINARY, encode_packet(fields, state))]


def _varint(n: int) -> bytes:
    if n < 0 or n > 268_435_455:
        raise ValueError(f"{n} does not fit a variable byte integer")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _bin(b: bytes) -> bytes:
    if len(b) > 0xFFFF:
        raise ValueError("a field longer than 65535 bytes")
    return len(b).to_bytes(2, "big") + b


def _str(s: Any) -> bytes:
    if not isinstance(s, str):
        raise ValueError(f"expected a string, got {type(s).__name__}")
    return _bin(s.encode())


def _data(v: Any) -> bytes:
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, bytes | bytearray):
        return bytes(v)
    raise ValueError("expected text or bytes")


def _props(p: Any) -> bytes:
    if p is None:
        return b"\x00"
    if not isinstance(p, Mapping):
        raise ValueError("properties must be an object")
    out = bytearray()
    for name, value in p.items():
        if name not in _PROP_IDS:
            raise ValueError(f"unknown MQTT 5 property {name!r}")
        pid, kind = _PROP_IDS[name]
        values = value if name in _REPEATED else [value]
        for v in values:
            out += _varint(pid)
            if kind == "byte":
                out.append(int(v))
            elif kind == "u16":
                out += int(v).to_bytes(2, "big")
            elif kind == "u32":
                out += int(v).to_bytes(4, "big")
            elif kind == "varint":
                out += _varint(int(v))
            elif kind == "str":
                out += _str(v)
            elif kind == "bin":
                out += _bin(_data(v))
            else:
                k, val = v
                out += _str(k) + _str(val)
    return _varint(len(out)) + bytes(out)


def _u16(fields: Mapping[str, Any], name: str) -> bytes:
    v = fields.get(name)
    if not isinstance(v, int) or not 0 <= v <= 0xFFFF:
        raise ValueError(f"{name} must be an integer 0-65535")
    return v.to_bytes(2, "big")


def encode_packet(fields: Mapping[str, Any], state: Any = None) -> bytes:
    """One MQTT packet (version from the CONNECT fields, else ``state``, else 3.1.1)."""
    name = fields.get("packet")
    if name not in _CODE:
        raise ValueError(f"unknown MQTT packet {name!r}")
    version = state.version if isinstance(state, MqttState) and state.version else 4
    if name == "CONNECT":
        version = int(fields.get("version", version))
    v5 = version == 5
    flags = 0
    body = bytearray()
    if name == "CONNECT":
        cf = 0x02 if fields.get("clean_start", True) else 0
        will = fields.get("will")
        if will:
            cf |= 0x04 | ((int(will.get("qos", 0)) & 3) << 3) | (0x20 if will.get("retain") else 0)
        if "username" in fields:
            cf |= 0x80
        if "password" in fields:
            cf |= 0x40
        body += _str(fields.get("protocol", "MQIsdp" if version == 3 else "MQTT"))
        body.append(version)
        body.append(cf)
        body += _u16({"k": fields.get("keepalive", 60)}, "k")
        if v5:
            body += _props(fields.get("properties"))
        body += _str(fields.get("client_id", ""))
        if will:
            if v5:
                body += _props(will.get("properties"))
            body += _str(will.get("topic")) + _bin(_data(will.get("payload", b"")))
        if "username" in fields:
            body += _str(fields["username"])
        if "password" in fields:
            body += _bin(_data(fields["password"]))
    elif name == "CONNACK":
        body.append(1 if fields.get("session_present") else 0)
        body.append(int(fields.get("reason_code", 0)))
        if v5:
            body += _props(fields.get("properties"))
    elif name == "PUBLISH":
        qos = int(fields.get("qos", 0))
        if qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        flags = (qos << 1) | (1 if fields.get("retain") else 0) | (8 if fields.get("dup") else 0)
        body += _str(fields.get("topic"))
        if qos:
            body += _u16(fields, "packet_id")
        if v5:
            body += _props(fields.get("properties"))
        body += _data(fields.get("payload", b""))
    elif name in _ACKS:
        flags = 2 if name == "PUBREL" else 0
        body += _u16(fields, "packet_id")
        if v5 and ("reason_code" in fields or "properties" in fields):
            body.append(int(fields.get("reason_code", 0)))
            if "properties" in fields:
                body += _props(fields["properties"])
    elif name in ("SUBSCRIBE", "UNSUBSCRIBE"):
        flags = 2
        body += _u16(fields, "packet_id")
        if v5:
            body += _props(fields.get("properties"))
        if name == "SUBSCRIBE":
            subs = fields.get("subscriptions") or []
            if not subs:
                raise ValueError("SUBSCRIBE needs subscriptions")
            for s in subs:
                opts = int(s.get("qos", 0)) & 3
                if v5:
                    opts |= (4 if s.get("no_local") else 0) | (
                        8 if s.get("retain_as_published") else 0
                    )
                    opts |= (int(s.get("retain_handling", 0)) & 3) << 4
                body += _str(s.get("topic")) + bytes([opts])
        else:
            topics = fields.get("topics") or []
            if not topics:
                raise ValueError("UNSUBSCRIBE needs topics")
            for t in topics:
                body += _str(t)
    elif name in ("SUBACK", "UNSUBACK"):
        body += _u16(fields, "packet_id")
        if v5:
            body += _props(fields.get("properties"))
        if name == "SUBACK" or v5:
            body += bytes(int(c) for c in fields.get("reason_codes", []))
    elif (
        name in ("DISCONNECT", "AUTH")
        and v5
        and ("reason_code" in fields or "properties" in fields)
    ):
        body.append(int(fields.get("reason_code", 0)))
        if "properties" in fields:
            body += _props(fields["properties"])
    return bytes([(_CODE[name] << 4) | flags]) + _varint(len(body)) + bytes(body)
