from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from devconsole.decoders.base import decode_message
from devconsole.decoders.stomp import StompDecoder, StompState, frame
from devconsole.model import Opcode
from tests.conftest import running_proxy, wait_until, ws_server
from tests.protocol_servers import decoding_viewer

STOMP = StompDecoder()


def dec(data: bytes, side: str = "client", state: Any = None) -> Any:
    return decode_message(STOMP, data, Opcode.TEXT, side, state or StompState())  # type: ignore[arg-type]


def test_frames_from_the_spec() -> None:
    d = dec(b"SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\x00\n\n")
    assert d.summary == 'STOMP SEND /queue/a "hello queue a"'
    assert d.packets[0].fields == {
        "command": "SEND",
        "headers": {"destination": "/queue/a", "content-type": "text/plain"},
        "body": "hello queue a",
    }
    # escaped header values (not in CONNECT/CONNECTED), a repeated header keeps the first
    d = dec(
        b"MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\\cb\nfoo:1\nfoo:2\n\n\x00",
        "server",
    )
    assert d.packets[0].fields["headers"] == {
        "subscription": "0",
        "message-id": "007",
        "destination": "/queue/a:b",
        "foo": "1",
    }
    # content-length lets the body hold NULs
    d = dec(b"SEND\ndestination:/b\ncontent-length:3\n\na\x00b\x00")
    assert d.packets[0].fields["body"] == "a\x00b"
    assert dec(b"\n").packets[0].fields == {"command": "heart-beat"}
    assert dec(b"\r\n").packets[0].role == "beat"


def test_receipts_pair_and_heartbeats_negotiate() -> None:
    state = StompState()
    c = dec(b"CONNECT\naccept-version:1.2\nhost:h\nheart-beat:500,1000\n\n\x00", state=state)
    assert (c.packets[0].key, c.packets[0].role) == ("connect", "request")
    ok = dec(b"CONNECTED\nversion:1.2\nheart-beat:2000,400\n\n\x00", "server", state)
    # client sends every max(500, 400); server every max(2000, 1000)
    assert ok.packets[0].heartbeat == (
        {"side": "client", "interval": 0.5, "timeout": None},
        {"side": "server", "interval": 2.0, "timeout": None},
    )
    sub = dec(b"SUBSCRIBE\nid:0\ndestination:/queue/a\nreceipt:r1\n\n\x00")
    assert sub.summary == "STOMP SUBSCRIBE /queue/a id=0 receipt=r1"
    assert (sub.packets[0].key, sub.packets[0].method) == ("receipt:r1", "SUBSCRIBE /queue/a")
    r = dec(b"RECEIPT\nreceipt-id:r1\n\n\x00", "server").packets[0]
    assert (r.key, r.role) == ("receipt:r1", "reply")


def test_bad_frames_say_why() -> None:
    assert dec(b"HELLO\n\n\x00").error == "unknown STOMP command 'HELLO'"
    assert dec(b"SEND\ndestination:/a\n\nno nul").error == "the frame does not end with a NUL byte"
    assert dec(b"SEND\nbroken\n\n\x00").error == "a header line without ':' ('broken')"
    assert "escape" in (dec(b"SEND\nx:\\t\n\n\x00").error or "")
    # a good frame then a bad one: the good one is kept, the error is reported
    d = dec(b"SEND\ndestination:/a\n\n\x00SEND\n")
    assert len(d.packets) == 1 and d.error is not None


header_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)


@given(
    st.sampled_from(["SEND", "SUBSCRIBE", "MESSAGE", "RECEIPT", "ERROR", "ACK", "DISCONNECT"]),
    st.dictionaries(header_text.filter(lambda k: k != "content-length"), header_text, max_size=4),
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20),
)
def test_decode_encode_roundtrip(command: str, headers: dict[str, str], body: str) -> None:
    fields = {"command": command, "headers": headers, "body": body}
    [(_op, payload)] = STOMP.encode(fields)
    d = dec(payload)
    assert d.ok and d.packets[0].fields == fields


@given(st.binary(max_size=80))
def test_fuzzed_input_never_raises(data: bytes) -> None:
    assert decode_message(STOMP, data, Opcode.TEXT, "client", StompState()).protocol == "stomp"


# ----------------------------------------------------------------- stomp.py


@pytest.mark.timeout(60)
async def test_stomp_py_client_through_the_proxy(short_tmp: Any) -> None:
    """stomp.py's WebSocket client (STOMP 1.2 frames built by a real implementation)
    against a small STOMP server written for the test (no STOMP broker with a WebSocket
    listener is packaged here), through devconsole: subscription, send, receipts
    (paired), heart-beats (negotiated)."""
    import stomp

    async def broker(ws: Any) -> None:
        subs: dict[str, str] = {}
        n = 0
        state = StompState()

        async def beats() -> None:
            while True:
                await asyncio.sleep(0.2)
                await ws.send("\n")

        beat_task: asyncio.Task[None] | None = None
        try:
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    data = raw.encode() if isinstance(raw, str) else raw
                    d = decode_message(STOMP, data, Opcode.TEXT, "client", state)
                    for p in d.packets:
                        f = p.fields
                        cmd, h = f["command"], f.get("headers", {})
                        if cmd in ("CONNECT", "STOMP"):
                            await ws.send(
                                frame("CONNECTED", {"version": "1.2", "heart-beat": "200,200"})
                            )
                            beat_task = asyncio.ensure_future(beats())
                        elif cmd == "SUBSCRIBE":
                            subs[h["destination"]] = h["id"]
                        elif cmd == "SEND" and h["destination"] in subs:
                            n += 1
                            await ws.send(
                                frame(
                                    "MESSAGE",
                                    {
                                        "subscription": subs[h["destination"]],
                                        "message-id": str(n),
                                        "destination": h["destination"],
                                    },
                                    f["body"],
                                )
                            )
                        if "receipt" in h:
                            await ws.send(frame("RECEIPT", {"receipt-id": h["receipt"]}))
        finally:
            if beat_task is not None:
                beat_task.cancel()

    async with ws_server(broker, subprotocols=["v12.stomp"]) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with decoding_viewer(rp.tap) as v:
                got: list[str] = []
                received = threading.Event()

                class Listener(stomp.ConnectionListener):  # type: ignore[misc]
                    def on_message(self, frame: Any) -> None:
                        got.append(frame.body)
                        received.set()

                conn = stomp.WSStompConnection(
                    [("127.0.0.1", rp.port)],
                    ws_path="/stomp",
                    heartbeats=(200, 200),
                    header={"Sec-WebSocket-Protocol": "v12.stomp"},
                )
                conn.set_listener("", Listener())
                await asyncio.to_thread(conn.connect, wait=True)
                try:
                    await asyncio.to_thread(
                        conn.subscribe, "/queue/a", id="0", ack="auto", receipt="s1"
                    )
                    await asyncio.to_thread(conn.send, "/queue/a", "hello queue a", receipt="m1")
                    await wait_until(received.is_set)

                    def beats() -> int:  # the server's heart-beats the viewer decoded
                        return sum(
                            1
                            for m, f in v.packets()
                            if f == {"command": "heart-beat"} and m.side == "server"
                        )

                    await wait_until(lambda: beats() >= 3)
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(conn.disconnect)
                assert got == ["hello queue a"]
                cid = next(iter(v.session.connections))
                assert v.tracker.protocol_of(cid) == "stomp"
                commands = [f["command"] for _, f in v.packets()]
                assert {"CONNECTED", "SUBSCRIBE", "SEND", "MESSAGE", "RECEIPT"} <= set(commands)
                assert {"CONNECT", "STOMP"} & set(commands)  # stomp.py 1.2 sends STOMP
                assert not [d for _, d in v.decoded() if not d.ok]
                lat = v.analysis.pairs.endpoint_report("/stomp")
                methods = {m["method"] for m in lat["methods"]}
                assert {"CONNECT", "SUBSCRIBE /queue/a", "SEND /queue/a"} <= methods
                rep = v.analysis.heartbeat.report(cid, now=1e12)
                server = [p for p in rep.protocol if p.protocol == "stomp" and p.side == "server"]
                assert server and server[0].count >= 3 and server[0].negotiated_interval == 0.2
