from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devconsole.decoders.base import decode_message
from devconsole.decoders.protocols import (
    all_decoders,
    choose,
    detect,
    get_protocol,
    hint,
    parse_rules,
    protocol_names,
    sniff,
)
from devconsole.model import Opcode
from tests.conftest import ROOT, devconsole_cmd, running_proxy, wait_until, ws_server
from tests.factories import make_handshake


def hs(
    path: str = "/ws",
    query: list[tuple[str, str]] | None = None,
    offered: str = "",
    accepted: str | None = None,
    **kw: Any,
) -> Any:
    headers = [("Upgrade", "websocket")]
    if offered:
        headers.append(("Sec-WebSocket-Protocol", offered))
    return make_handshake(
        path=path, query=query or [], request_headers=headers, subprotocol=accepted, **kw
    )


@pytest.mark.parametrize(
    ("handshake", "expected"),
    [
        (hs("/socket.io/", [("EIO", "4"), ("transport", "websocket")]), "socket.io"),
        (hs("/chat/socket.io/", [("EIO", "3")]), "socket.io"),
        (hs("/signalr/connect"), "signalr"),
        (hs("/cable"), "actioncable"),
        (hs("/socket/websocket", [("vsn", "2.0.0")]), "phoenix"),
        (
            hs("/graphql", offered="graphql-transport-ws", accepted="graphql-transport-ws"),
            "graphql-ws",
        ),
        (hs("/x", offered="graphql-ws"), "graphql-ws"),
        (hs("/ws", offered="mqtt", accepted="mqtt"), "mqtt"),
        (hs("/ws", offered="v12.stomp, v11.stomp", accepted="v12.stomp"), "stomp"),
        (hs("/ws", offered="wamp.2.json"), "wamp"),
        (hs("/ws", offered="actioncable-v1-json, actioncable-unsupported"), "actioncable"),
        (hs("/ws"), None),
        # the server accepted another subprotocol than the one we know: not ours
        (hs("/ws", offered="mqtt, chat", accepted="chat"), None),
    ],
)
def test_detect_by_subprotocol_and_url(handshake: Any, expected: str | None) -> None:
    assert detect(handshake)[0] == expected


def test_weak_url_hints_need_content() -> None:
    assert detect(hs("/graphql"))[0] is None and hint(hs("/graphql"))[0] == "graphql-ws"
    assert hint(hs("/mqtt"))[0] == "mqtt" and hint(hs("/api/rpc"))[0] == "jsonrpc"
    assert hint(hs("/socket.io/", [("EIO", "4")]))[0] is None  # settled, not a hint


def test_rules_and_the_proxy_choice_come_first() -> None:
    rules = parse_rules(["/rpc/*=jsonrpc", "/off=none"])
    assert choose(hs("/rpc/v1"), rules) == ("jsonrpc", "--decoder /rpc/*=jsonrpc")
    assert choose(hs("/off", offered="mqtt", accepted="mqtt"), rules)[0] == "none"
    proxied = hs("/ws", decoder="stomp")
    assert choose(proxied) == ("stomp", "the proxy's --decoder")
    assert choose(proxied, parse_rules(["*=mqtt"]))[0] == "mqtt"  # the viewer's own rule wins
    assert parse_rules(["socket.io"]) == parse_rules(["*=socket.io"])


def test_bad_rules_are_clear() -> None:
    with pytest.raises(ValueError, match=r"unknown decoder 'nope'.*socket\.io"):
        parse_rules(["/x=nope"])
    with pytest.raises(ValueError, match="the glob matches the URL path"):
        parse_rules(["ws.example=socket.io"])


def test_sniffing_recognises_first_messages() -> None:
    cases = {
        b'0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000}': "socket.io",
        b'{"protocol":"json","version":1}\x1e': "signalr",
        b'{"type":"connection_init","payload":{}}': "graphql-ws",
        b"CONNECT\naccept-version:1.2\nhost:x\n\n\x00": "stomp",
        b'{"jsonrpc":"2.0","method":"a","id":1}': "jsonrpc",
        b'["1","1","room:lobby","phx_join",{}]': "phoenix",
        b'{"type":"welcome"}': "actioncable",
        b'[1,"realm1",{"roles":{}}]': "wamp",
        b'{"type":"chat","text":"hi"}': None,
        b"hello": None,
    }
    for payload, expected in cases.items():
        assert sniff(payload, Opcode.TEXT, "client")[0] == expected, payload
    connect = bytes([0x10, 0x10, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 4]) + b"test"
    assert sniff(connect, Opcode.BINARY, "client")[0] == "mqtt"


@settings(max_examples=300)
@given(
    st.binary(max_size=200),
    st.sampled_from([Opcode.TEXT, Opcode.BINARY]),
    st.sampled_from(["client", "server"]),
)
def test_no_decoder_raises_on_fuzzed_input(data: bytes, op: int, side: str) -> None:
    for dec in all_decoders():
        d = decode_message(dec, data, op, side, dec.new_state(), 1)  # type: ignore[arg-type]
        assert d.protocol == dec.name
        assert d.error is None or isinstance(d.error, str)
        dec.sniff(data, op, side)  # type: ignore[arg-type]


@pytest.mark.timeout(60)
async def test_proxy_decoder_choice_reaches_viewers(short_tmp: Any) -> None:
    """``devconsole proxy --decoder`` marks matching handshakes; a viewer with no rules of
    its own decodes them with that protocol."""
    from websockets.asyncio.client import connect

    from tests.protocol_servers import decoding_viewer

    async with ws_server() as (_, port):
        async with running_proxy(
            f"reverse:http://127.0.0.1:{port}", short_tmp, decoders=["/plain/*=jsonrpc"]
        ) as rp:
            async with decoding_viewer(rp.tap) as v:
                async with connect(f"ws://127.0.0.1:{rp.port}/plain/x", proxy=None) as ws:
                    await ws.send('{"jsonrpc":"2.0","method":"ping","id":1}')
                    await ws.recv()
                async with connect(f"ws://127.0.0.1:{rp.port}/other", proxy=None) as ws:
                    await ws.send('{"hello":1}')
                    await ws.recv()
                await wait_until(
                    lambda: sum(1 for m in v.session.items() if m.opcode == Opcode.TEXT) >= 4
                )
                by_path = {c.path: c for c in v.session.connections.values()}
                assert by_path["/plain/x"].handshake.decoder == "jsonrpc"
                assert by_path["/other"].handshake.decoder is None
                assert v.tracker.protocol_of(by_path["/plain/x"].id) == "jsonrpc"
                assert v.tracker.reason_of(by_path["/plain/x"].id) == "the proxy's --decoder"
                assert v.tracker.protocol_of(by_path["/other"].id) is None


def test_a_plugin_from_an_entry_point(tmp_path: Path) -> None:
    """A real installed entry point (a .dist-info on the path) in a fresh interpreter."""
    (tmp_path / "myproto.py").write_text(
        textwrap.dedent("""
        from devconsole.decoders.base import Decoded, Packet, ProtocolDecoder
        from devconsole.model import Opcode

        class Shout(ProtocolDecoder):
            name = "shout"
            title = "SHOUT protocol"
            subprotocols = ("shout.v1",)

            def sniff(self, payload, opcode, side):
                return 0.9 if payload.startswith(b"SHOUT ") else 0.0

            def decode(self, payload, opcode, side, state, seq=0):
                word = payload[6:].decode()
                return Decoded(self.name, (Packet(f"shout {word}", {"word": word}),))

            def encode(self, fields, state=None):
                return [(Opcode.TEXT, b"SHOUT " + fields["word"].encode())]
    """)
    )
    info = tmp_path / "myproto-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myproto\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[devconsole.decoders]\nshout = myproto:Shout\nbroken = myproto:Nope\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    res = subprocess.run(
        devconsole_cmd("decoders", "--json"), capture_output=True, text=True, timeout=60, env=env
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    shout = next(d for d in out["decoders"] if d["name"] == "shout")
    assert shout == {
        "name": "shout",
        "title": "SHOUT protocol",
        "subprotocols": ["shout.v1"],
        "plugin": True,
    }
    assert any("broken" in e and "Nope" in e for e in out["errors"])
    assert "socket.io" in protocol_names() and get_protocol("nope") is None
