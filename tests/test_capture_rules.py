"""Rules end to end: real websockets clients and servers through the real proxy (mitmproxy
on loopback) with ``--rules FILE``; every effect is observed at the receiving peer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devconsole.model import ForwardCommand, Message, RuleEvent, RulesCommand
from devconsole.proxy import ProxyError
from tests.conftest import running_proxy, viewer, wait_until, ws_server


class Server:
    """Records what each path receives and the request headers; echoes unless told."""

    def __init__(self) -> None:
        self.received: dict[str, list[str | bytes]] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.subprotocols: dict[str, str | None] = {}
        self.extensions: dict[str, list[str]] = {}

    async def __call__(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else "?"
        self.headers[path] = {k.lower(): v for k, v in ws.request.headers.raw_items()}  # type: ignore[union-attr]
        self.subprotocols[path] = ws.subprotocol
        self.extensions[path] = [type(e).__name__ for e in ws.protocol.extensions]
        got = self.received.setdefault(path, [])
        with contextlib.suppress(ConnectionClosed):
            async for msg in ws:
                got.append(msg)
                if path.startswith("/echo"):
                    await ws.send(msg)
                elif path == "/feed" and msg == "go":
                    for i in range(1, 6):
                        await ws.send(json.dumps({"type": "item", "id": i}))


def write_rules(tmp: Path, text: str, name: str = "rules.toml") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


MESSAGE_RULES = """
[[rule]]
name = "shout"
path = "/echo1"
match = "from:client hello"
rewrite = { regex = "hello", replace = "HELLO" }

[[rule]]
name = "admin"
path = "/echo1"
match = "from:client json:type=login"
set = { role = "admin" }
delete = ["token"]

[[rule]]
name = "lose third"
path = "/feed"
match = "from:server"
nth = 3
drop = true

[[rule]]
name = "twice"
path = "/echo2"
match = "from:server twice"
duplicate = true

[[rule]]
name = "mock"
path = "/echo2"
match = "from:client json:method=subscribe"
respond = { json = { id = "${json.id}", error = "denied" } }

[[rule]]
name = "ack"
path = "/echo2"
match = "from:client json:method=order"
respond = '{"ack": ${json.id}}'
forward = true

[[rule]]
name = "slow"
path = "/echo3"
match = "from:client slow"
delay = "300ms"

[[rule]]
name = "kick"
path = "/echo3"
match = "from:client kick"
close = { code = 4007, reason = "kicked" }
"""


async def test_every_message_action_at_the_receiving_peer(short_tmp: Path) -> None:
    srv = Server()
    rules = write_rules(short_tmp, MESSAGE_RULES)
    async with ws_server(srv) as (_, port):
        async with running_proxy(
            f"reverse:http://127.0.0.1:{port}", short_tmp, rules=str(rules)
        ) as rp:
            async with viewer(rp.tap) as v:
                url = f"ws://127.0.0.1:{rp.port}"
                # rewrite; set and delete JSON fields
                async with connect(url + "/echo1") as ws:
                    await ws.send("hello there")
                    assert await ws.recv() == "HELLO there"
                    await ws.send('{"type": "login", "token": "t0k3n", "user": "al"}')
                    assert json.loads(await ws.recv()) == {
                        "type": "login",
                        "user": "al",
                        "role": "admin",
                    }
                assert srv.received["/echo1"][0] == "HELLO there"
                # drop the third message the server sends
                async with connect(url + "/feed") as ws:
                    await ws.send("go")
                    got = [json.loads(await asyncio.wait_for(ws.recv(), 5))["id"] for _ in range(4)]
                    assert got == [1, 2, 4, 5]
                # duplicate; respond instead; respond and forward
                async with connect(url + "/echo2") as ws:
                    await ws.send("twice please")
                    assert [await ws.recv() for _ in range(2)] == ["twice please"] * 2
                    await ws.send('{"method": "subscribe", "id": 9}')
                    assert json.loads(await ws.recv()) == {"id": 9, "error": "denied"}
                    await ws.send('{"method": "order", "id": 5}')
                    replies = {await ws.recv(), await ws.recv()}
                    assert replies == {'{"ack": 5}', '{"method": "order", "id": 5}'}
                assert '{"method": "subscribe", "id": 9}' not in srv.received["/echo2"]
                # delay: measured at the server, against an undelayed message
                async with connect(url + "/echo3") as ws:
                    t0 = time.monotonic()
                    await ws.send("slow one")
                    assert await asyncio.wait_for(ws.recv(), 5) == "slow one"
                    slow = time.monotonic() - t0
                    t0 = time.monotonic()
                    await ws.send("fast")
                    assert await asyncio.wait_for(ws.recv(), 5) == "fast"
                    fast = time.monotonic() - t0
                    assert slow - fast >= 0.29
                    # close with a code
                    await ws.send("kick me")
                    with pytest.raises(ConnectionClosed) as exc:
                        await asyncio.wait_for(ws.recv(), 5)
                    assert exc.value.rcvd is not None and exc.value.rcvd.code == 4007
                assert "kick me" not in srv.received["/echo3"]
                # the stream says which rule changed what, and keeps the original
                await v.wait_for(
                    lambda v: any(isinstance(e, Message) and e.rule == "shout" for e in v.events)
                )
                [m] = [e for e in v.events if isinstance(e, Message) and e.rule == "shout"]
                assert m.payload == b"hello there" and m.edited == b"HELLO there"
                assert m.outcome == "edited"


async def test_hold_rule_then_forward_over_the_tap(short_tmp: Path) -> None:
    srv = Server()
    rules = write_rules(short_tmp, '[[rule]]\nmatch = "from:client look"\nhold = true\n')
    async with ws_server(srv) as (_, port):
        async with running_proxy(
            f"reverse:http://127.0.0.1:{port}", short_tmp, rules=str(rules)
        ) as rp:
            async with viewer(rp.tap) as v:
                async with connect(f"ws://127.0.0.1:{rp.port}/echo") as ws:
                    await ws.send("look at me")
                    await v.wait_for(lambda v: len(v.session.held) == 1)
                    await asyncio.sleep(0.2)
                    assert srv.received["/echo"] == []
                    [held] = v.session.held.values()
                    assert held.rule == "rule 1"
                    res = await v.client.command(ForwardCommand(held.held))
                    assert res.ok, res.error
                    assert await asyncio.wait_for(ws.recv(), 5) == "look at me"


HANDSHAKE_RULES = """
[[handshake]]
name = "headers"
path = "/echo-h"
response_headers = { add = { "X-Devconsole" = "yes" } }
[handshake.request_headers]
add = { "X-Debug" = "1" }
remove = ["X-Secret"]
replace = { "Origin" = "https://x.test" }

[[handshake]]
name = "maintenance"
path = "/down"
refuse = { status = 503, body = "back soon", headers = { "Retry-After" = "7" } }

[[handshake]]
name = "no deflate"
path = "/plain"
strip_extension = "permessage-deflate"

[[handshake]]
name = "old protocol"
path = "/proto"
strip_subprotocol = "v2"
"""


async def test_handshake_actions(short_tmp: Path) -> None:
    srv = Server()
    rules = write_rules(short_tmp, HANDSHAKE_RULES)

    def pick(conn: ServerConnection, offered: list[str]) -> str | None:
        return next((p for p in ("v2", "v1") if p in offered), None)

    async with ws_server(srv, select_subprotocol=pick) as (_, port):
        async with running_proxy(
            f"reverse:http://127.0.0.1:{port}", short_tmp, rules=str(rules)
        ) as rp:
            async with viewer(rp.tap) as v:
                url = f"ws://127.0.0.1:{rp.port}"
                headers = {"X-Secret": "s", "Origin": "http://o.test"}
                async with connect(url + "/echo-h", additional_headers=headers) as ws:
                    assert ws.response.headers["X-Devconsole"] == "yes"
                seen = srv.headers["/echo-h"]
                assert seen["x-debug"] == "1" and "x-secret" not in seen
                assert seen["origin"] == "https://x.test"
                # refuse: the client gets the status, the headers and the body
                with pytest.raises(InvalidStatus) as exc:
                    async with connect(url + "/down"):
                        pass
                resp = exc.value.response
                assert resp.status_code == 503 and resp.body == b"back soon"
                assert resp.headers["Retry-After"] == "7"
                assert "/down" not in srv.headers  # the server never saw it
                # strip permessage-deflate from the offer: nothing negotiated
                async with connect(url + "/plain") as ws:
                    assert ws.protocol.extensions == []
                assert srv.extensions["/plain"] == []
                async with connect(url + "/echo-x") as ws:  # the control: deflate
                    assert ws.protocol.extensions
                # strip a subprotocol: the server picks the next one offered
                async with connect(url + "/proto", subprotocols=["v2", "v1"]) as ws:
                    assert ws.subprotocol == "v1"
                assert srv.subprotocols["/proto"] == "v1"
                await v.wait_for(
                    lambda v: (
                        {e.rule for e in v.events if isinstance(e, RuleEvent)}
                        >= {"headers", "maintenance", "no deflate", "old protocol"}
                    )
                )
                refused = [c for c in v.session.connections.values() if c.path == "/down"]
                assert refused and refused[0].handshake.status == 503


async def test_rules_file_reloads_and_a_broken_edit_keeps_the_rules(short_tmp: Path) -> None:
    srv = Server()
    rules = write_rules(short_tmp, '[[rule]]\nmatch = "from:client a"\ndrop = true\n')
    async with ws_server(srv) as (_, port):
        async with running_proxy(
            f"reverse:http://127.0.0.1:{port}", short_tmp, rules=str(rules)
        ) as rp:
            async with viewer(rp.tap) as v:
                async with connect(f"ws://127.0.0.1:{rp.port}/echo") as ws:
                    await ws.send("a")
                    await ws.send("b")
                    assert await asyncio.wait_for(ws.recv(), 5) == "b"
                    # a new version: drop b instead (the mtime must change)
                    rules.write_text('[[rule]]\nmatch = "from:client b"\ndrop = true\n')
                    os.utime(rules, (time.time() + 1, time.time() + 1))
                    await v.wait_for(
                        lambda v: any(
                            isinstance(e, RuleEvent) and e.action == "loaded" and e.ts > 0
                            for e in v.events
                        ),
                        timeout=10,
                    )

                    async def reloaded() -> bool:
                        await ws.send("b")
                        await ws.send("a")
                        return await asyncio.wait_for(ws.recv(), 5) == "a"

                    assert await reloaded()
                    # an edit with an error: reported with line and column, rules kept
                    rules.write_text('[[rule]]\nmatch = "from:client b"\ndrop = maybe\n')
                    os.utime(rules, (time.time() + 2, time.time() + 2))
                    await v.wait_for(
                        lambda v: any(
                            isinstance(e, RuleEvent) and e.action == "error" for e in v.events
                        ),
                        timeout=10,
                    )
                    [err] = [
                        e for e in v.events if isinstance(e, RuleEvent) and e.action == "error"
                    ]
                    assert f"{rules}:3:8:" in err.detail and "keeping" in err.detail
                    assert await reloaded()  # still the previous rules


async def test_rules_over_the_tap_and_their_errors(short_tmp: Path) -> None:
    srv = Server()
    async with ws_server(srv) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                res = await v.client.command(RulesCommand('[[rule]]\nmatch = "(x"\ndrop = true'))
                assert not res.ok and res.error.startswith("rules:2:10:")
                res = await v.client.command(RulesCommand('[[rule]]\nmatch = "x"\ndrop = true'))
                assert res.ok and res.info == "1"
                async with connect(f"ws://127.0.0.1:{rp.port}/echo") as ws:
                    await ws.send("x")
                    await ws.send("y")
                    assert await asyncio.wait_for(ws.recv(), 5) == "y"
                await wait_until(lambda: srv.received.get("/echo") == ["y"])


async def test_a_rules_file_with_an_error_stops_the_proxy_from_starting(short_tmp: Path) -> None:
    rules = write_rules(short_tmp, '[[rule]]\nmatch = "x"\ndelay = "later"\n')
    with pytest.raises(ProxyError, match=r"rules.toml:3:9: delay: expected a duration"):
        async with running_proxy("reverse:http://127.0.0.1:9", short_tmp, rules=str(rules)):
            pass
