from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devconsole.decoders.base import decode_message
from devconsole.decoders.mqtt import MqttDecoder, MqttState, encode_packet, split_packets
from devconsole.model import Opcode
from tests.conftest import running_proxy, wait_until
from tests.protocol_servers import decoding_viewer, mosquitto

MQTT = MqttDecoder()


def feed(state: MqttState, data: bytes, side: str = "client") -> Any:
    return decode_message(MQTT, data, Opcode.BINARY, side, state)  # type: ignore[arg-type]


def test_publish_summary_and_pairing_fields() -> None:
    st_ = MqttState(4)
    raw = encode_packet(
        {"packet": "PUBLISH", "topic": "sensors/1", "qos": 1, "packet_id": 5, "payload": "21.5"}
    )
    d = feed(st_, raw)
    assert d.summary == 'MQTT PUBLISH sensors/1 qos1 id=5 "21.5"'
    p = d.packets[0]
    assert (p.key, p.role, p.method) == ("pid:5", "request", "PUBLISH sensors/1")
    ack = feed(st_, encode_packet({"packet": "PUBACK", "packet_id": 5}), "server").packets[0]
    assert (ack.key, ack.role) == ("pid:5", "reply")


def test_packets_span_frames_and_frames_carry_several() -> None:
    st_ = MqttState(4)
    a = encode_packet({"packet": "PUBLISH", "topic": "t", "qos": 0, "payload": b"\xff" * 300})
    b = encode_packet({"packet": "PINGREQ"})
    c = encode_packet(
        {"packet": "SUBSCRIBE", "packet_id": 2, "subscriptions": [{"topic": "x/#", "qos": 1}]}
    )
    stream = a + b + c
    first = feed(st_, stream[:100])
    assert not first.packets and first.note == "100 bytes of a packet continue in the next message"
    second = feed(st_, stream[100 : len(a) + len(b) + 3])
    assert [p.fields["packet"] for p in second.packets] == ["PUBLISH", "PINGREQ"]
    assert second.packets[0].fields["payload"] == b"\xff" * 300
    third = feed(st_, stream[len(a) + len(b) + 3 :])
    assert third.packets[0].fields["subscriptions"] == [{"topic": "x/#", "qos": 1}]
    # the other direction has its own buffer
    assert feed(st_, encode_packet({"packet": "PINGRESP"}), "server").packets[0].role == "pong"


def test_v5_properties_and_keepalive() -> None:
    st_ = MqttState()
    connect = {
        "packet": "CONNECT",
        "protocol": "MQTT",
        "version": 5,
        "clean_start": True,
        "keepalive": 30,
        "properties": {"session_expiry_interval": 60, "user_property": [["a", "b"]]},
        "client_id": "dev",
        "username": "u",
        "password": b"\xffpw",
    }
    d = feed(st_, encode_packet(connect))
    assert d.packets[0].fields == connect and st_.version == 5
    assert d.packets[0].heartbeat == ({"side": "client", "interval": 30.0, "timeout": 45.0},)
    pub = {
        "packet": "PUBLISH",
        "topic": "t",
        "qos": 0,
        "retain": True,
        "dup": False,
        "properties": {"message_expiry_interval": 9, "correlation_data": b"\x01"},
        "payload": "x",
    }
    assert feed(st_, encode_packet(pub, st_)).packets[0].fields == pub


def test_malformed_input_is_reported_and_the_buffer_reset() -> None:
    st_ = MqttState(4)
    d = feed(st_, b"\x00\x00")
    assert d.error == "packet type 0 is reserved" and st_.buf["client"] == b""
    d = feed(st_, b"\x30\x01\x00")  # PUBLISH shorter than its topic length field
    assert d.error is not None and "shorter" in d.error
    d = feed(st_, b"\x82\x02\x00\x01")  # SUBSCRIBE with no topic filter is legal to parse
    assert d.ok
    assert split_packets(b"\xc0") == ([], 0)


# ----------------------------------------------------------------- properties

topics = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
payloads = st.binary(max_size=40).filter(lambda b: _not_utf8(b)) | st.text(max_size=20)


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode()
    except UnicodeDecodeError:
        return True
    return False


@st.composite
def packets(draw: st.DrawFn, v5: bool) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            [
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
                "CONNACK",
                "DISCONNECT",
            ]
        )
    )
    pid = draw(st.integers(1, 65535))
    props = {"properties": {"user_property": [["k", "v"]]}} if v5 else {}
    if kind == "PUBLISH":
        qos = draw(st.integers(0, 2))
        f: dict[str, Any] = {
            "packet": kind,
            "topic": draw(topics),
            "qos": qos,
            "retain": draw(st.booleans()),
            "dup": draw(st.booleans()),
        }
        if qos:
            f["packet_id"] = pid
        f.update({"properties": {}} if v5 else {})
        f["payload"] = draw(payloads)
        return f
    if kind in ("PUBACK", "PUBREC", "PUBREL", "PUBCOMP"):
        f = {"packet": kind, "packet_id": pid}
        if v5:
            f["reason_code"] = 0
            f.update(props)
        return f
    if kind == "SUBSCRIBE":
        subs = [{"topic": draw(topics), "qos": draw(st.integers(0, 2))}]
        if v5:
            subs[0].update(no_local=False, retain_as_published=True, retain_handling=1)
        return {"packet": kind, "packet_id": pid, **props, "subscriptions": subs}
    if kind == "UNSUBSCRIBE":
        return {"packet": kind, "packet_id": pid, **props, "topics": [draw(topics)]}
    if kind in ("SUBACK", "UNSUBACK"):
        f = {"packet": kind, "packet_id": pid, **props}
        if kind == "SUBACK" or v5:
            f["reason_codes"] = [0, 1]
        return f
    if kind == "CONNACK":
        return {
            "packet": kind,
            "session_present": draw(st.booleans()),
            "reason_code": 0,
            **({"properties": {"server_keep_alive": 5}} if v5 else {}),
        }
    return {"packet": kind}


@given(st.data(), st.booleans())
def test_decode_encode_roundtrip(data: st.DataObject, v5: bool) -> None:
    fields = data.draw(packets(v5))
    state = MqttState(5 if v5 else 4)
    d = feed(state, encode_packet(fields, state))
    assert d.ok and d.packets[0].fields == fields


@given(st.lists(st.binary(max_size=30), max_size=5))
def test_fuzzed_input_never_raises(chunks: list[bytes]) -> None:
    state = MqttState()
    for c in chunks:
        assert feed(state, c).protocol == "mqtt"


# ----------------------------------------------------------------- paho-mqtt + mosquitto


@pytest.mark.timeout(60)
@pytest.mark.parametrize("version", [4, 5])
async def test_paho_and_mosquitto_through_the_proxy(short_tmp: Any, version: int) -> None:
    """paho-mqtt (3.1.1 and 5) to Debian's mosquitto over WebSocket through devconsole:
    CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH at QoS 0, 1, 2 with their acks paired,
    PINGREQ/PINGRESP as heartbeats with the negotiated keepalive."""
    import paho.mqtt.client as mqtt

    with mosquitto() as broker:
        async with running_proxy(f"reverse:http://127.0.0.1:{broker}", short_tmp) as rp:
            async with decoding_viewer(rp.tap) as v:
                proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
                c = mqtt.Client(
                    mqtt.CallbackAPIVersion.VERSION2,
                    client_id="devconsole-test",
                    transport="websockets",
                    protocol=proto,
                )
                got: list[Any] = []
                subscribed = threading.Event()
                c.on_message = lambda cl, ud, msg: got.append((msg.topic, msg.payload, msg.qos))
                c.on_subscribe = lambda *a: subscribed.set()
                c.ws_set_options(path="/mqtt")
                # paho blocks: it runs in a thread, never on the loop the proxy runs on
                await asyncio.to_thread(c.connect, "127.0.0.1", rp.port, keepalive=1)
                c.loop_start()
                try:
                    await wait_until(c.is_connected)
                    c.subscribe("sensors/#", qos=2)
                    await wait_until(subscribed.is_set)
                    for qos in (0, 1, 2):
                        c.publish(f"sensors/{qos}", f"reading {qos}".encode(), qos=qos)
                    c.publish("sensors/blob", bytes(range(256)) * 40, qos=1)
                    await wait_until(lambda: len(got) == 4)

                    def pings() -> int:
                        return sum(1 for _, f in v.packets() if f["packet"] == "PINGRESP")

                    await wait_until(lambda: pings() >= 1, timeout=15)
                finally:
                    await asyncio.to_thread(c.disconnect)
                    await asyncio.to_thread(c.loop_stop)
                await wait_until(lambda: any(x.ts_end for x in v.session.connections.values()))
                conn = next(iter(v.session.connections))
                assert v.tracker.protocol_of(conn) == "mqtt"
                assert "subprotocol mqtt" in v.tracker.reason_of(conn)
                fields = [f for _, f in v.packets()]
                kinds = [f["packet"] for f in fields]
                for k in (
                    "CONNECT",
                    "CONNACK",
                    "SUBSCRIBE",
                    "SUBACK",
                    "PUBLISH",
                    "PUBACK",
                    "PUBREC",
                    "PUBREL",
                    "PUBCOMP",
                    "PINGREQ",
                    "PINGRESP",
                    "DISCONNECT",
                ):
                    assert k in kinds, k
                connect = fields[kinds.index("CONNECT")]
                assert connect["version"] == version and connect["client_id"] == "devconsole-test"
                assert not [d for _, d in v.decoded() if not d.ok]
                blob = [f for f in fields if f.get("topic") == "sensors/blob"]
                assert blob and all(f["payload"] == bytes(range(256)) * 40 for f in blob)
                lat = v.analysis.pairs.endpoint_report("/mqtt")
                methods = {m["method"] for m in lat["methods"]}
                assert {"CONNECT", "SUBSCRIBE", "PUBLISH sensors/1", "PUBLISH sensors/2"} <= methods
                assert lat["unanswered"] == 0
                rep = v.analysis.heartbeat.report(conn, now=1e12)
                [hb] = [p for p in rep.protocol if p.protocol == "mqtt"]
                assert hb.side == "client" and hb.count >= 1 and hb.rtt_count >= 1
                assert hb.negotiated_interval == 1.0
