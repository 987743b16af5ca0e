"""Intercept end to end: real websockets clients and servers through the real proxy
(mitmproxy on loopback), breakpoints and decisions sent over the tap like the CLI does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection

from devconsole.model import (
    BreakpointCommand,
    DropCommand,
    ForwardCommand,
    HalfOpenCommand,
    Message,
    Opcode,
    OutcomeEvent,
    ReleaseCommand,
    RemoveBreakpointCommand,
)
from tests.conftest import (
    client_ssl_trusting,
    running_proxy,
    server_ssl,
    viewer,
    wait_until,
    ws_server,
)


class Recorder:
    """A server that records what it receives, echoing it back."""

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.received: list[str | bytes] = []
        self.conn: ServerConnection | None = None

    async def __call__(self, ws: ServerConnection) -> None:
        self.conn = ws
        with contextlib.suppress(Exception):
            async for msg in ws:
                self.received.append(msg)
                if self.echo:
                    await ws.send(msg)


async def add_breakpoint(v, expr: str, **kw) -> int:
    res = await v.client.command(BreakpointCommand(expr, **kw))
    assert res.ok, res.error
    return int(res.info)


async def held_items(v, n: int = 1) -> list[Message]:
    await v.wait_for(lambda v: len(v.session.held) >= n)
    return sorted(v.session.held.values(), key=lambda m: m.held)  # type: ignore[return-value]


async def test_held_message_arrives_only_when_forwarded_then_intact_and_in_order(
    short_tmp: Path,
) -> None:
    rec = Recorder(echo=False)
    async with ws_server(rec) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                await add_breakpoint(v, "from:client json:op=buy")
                async with connect(f"ws://127.0.0.1:{rp.port}/trade", ping_interval=None) as ws:
                    await ws.send('{"op": "hello"}')
                    await wait_until(lambda: rec.received == ['{"op": "hello"}'])
                    await ws.send('{"op": "buy", "qty": 1}')
                    for i in range(5):
                        await ws.send(f'{{"op": "after", "i": {i}}}')
                    [held] = await held_items(v)
                    assert held.payload == b'{"op": "buy", "qty": 1}'
                    await asyncio.sleep(0.5)
                    assert rec.received == ['{"op": "hello"}']  # nothing passed it
                    res = await v.client.command(ForwardCommand(held.held))
                    assert res.ok, res.error
                    await wait_until(lambda: len(rec.received) == 7)
                    assert rec.received == [
                        '{"op": "hello"}',
                        '{"op": "buy", "qty": 1}',
                        *(f'{{"op": "after", "i": {i}}}' for i in range(5)),
                    ]
                await v.wait_for(lambda v: any(isinstance(e, OutcomeEvent) for e in v.events))
                [oc] = [e for e in v.events if isinstance(e, OutcomeEvent)]
                assert oc.outcome == "forwarded" and oc.seq == held.seq
                assert v.session.get(held.seq).outcome == "forwarded"
                assert not v.session.held


@pytest.mark.parametrize(
    ("sent", "body", "opcode", "expect"),
    [
        ("change me", b"changed!", Opcode.TEXT, "changed!"),
        (b"\x01change me", b"\xff\x00\xfe", 0, b"\xff\x00\xfe"),
    ],
)
async def test_edited_message_arrives_as_edited(
    short_tmp: Path, sent: str | bytes, body: bytes, opcode: int, expect: str | bytes
) -> None:
    rec = Recorder(echo=False)
    async with ws_server(rec) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                await add_breakpoint(v, "change")
                async with connect(f"ws://127.0.0.1:{rp.port}/e") as ws:
                    await ws.send(sent)
                    await ws.send("next")
                    [held] = await held_items(v)
                    res = await v.client.command(ForwardCommand(held.held, "", body, opcode))
                    assert res.ok, res.error
                    await wait_until(lambda: len(rec.received) == 2)
                    assert rec.received == [expect, "next"]
                await v.wait_for(lambda v: v.session.get(held.seq).outcome == "edited")
                m = v.session.get(held.seq)
                assert (
                    isinstance(m, Message)
                    and m.edited == body
                    and m.payload == (sent.encode() if isinstance(sent, str) else sent)
                )


async def test_dropped_message_never_arrives_and_the_next_does(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                await add_breakpoint(v, "from:server secret")
                async with connect(f"ws://127.0.0.1:{rp.port}/d") as ws:
                    await ws.send("public")
                    assert await ws.recv() == "public"
                    await ws.send("secret")  # the echo of this one is held
                    await ws.send("later")
                    [held] = await held_items(v)
                    assert held.side == "server"
                    res = await v.client.command(DropCommand(held.held))
                    assert res.ok, res.error
                    assert await asyncio.wait_for(ws.recv(), 5) == "later"
                    res = await v.client.command(DropCommand(held.held))
                    assert not res.ok and "no longer held" in res.error


async def test_pings_are_answered_while_a_message_is_held(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                await add_breakpoint(v, "from:client stuck")
                async with connect(f"ws://127.0.0.1:{rp.port}/p") as ws:
                    await ws.send("stuck")
                    await held_items(v)
                    for _ in range(3):
                        pong = await ws.ping()
                        await asyncio.wait_for(pong, 5)  # the server answered through us
                    await v.client.command(ForwardCommand(0))
                    assert await asyncio.wait_for(ws.recv(), 5) == "stuck"


async def test_timeout_forwards_and_is_recorded(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                await add_breakpoint(v, "from:client slow", timeout=0.5)
                async with connect(f"ws://127.0.0.1:{rp.port}/t") as ws:
                    t0 = time.monotonic()
                    await ws.send("slow")
                    assert await asyncio.wait_for(ws.recv(), 10) == "slow"
                    assert time.monotonic() - t0 >= 0.45
                await v.wait_for(
                    lambda v: any(
                        isinstance(e, OutcomeEvent) and e.outcome == "timeout-forwarded"
                        for e in v.events
                    )
                )


async def test_timeout_can_drop(short_tmp: Path) -> None:
    rec = Recorder(echo=False)
    async with ws_server(rec) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                await add_breakpoint(v, "gone", timeout=0.3, on_timeout="drop")
                async with connect(f"ws://127.0.0.1:{rp.port}/t") as ws:
                    await ws.send("gone")
                    await ws.send("kept")
                    await wait_until(lambda: rec.received == ["kept"])
                await v.wait_for(
                    lambda v: any(
                        isinstance(e, OutcomeEvent) and e.outcome == "timeout-dropped"
                        for e in v.events
                    )
                )


def big_json(i: int) -> str:
    text = "compress this text, " * (10 + i % 5)
    return f'{{"i": {i}, "text": "{text}"}}'


@pytest.mark.parametrize("action", ["edit", "drop"])
async def test_deflate_with_context_takeover_keeps_both_peers_decoding(
    short_tmp: Path, action: str
) -> None:
    async with ws_server() as (_, port):  # an echo server; permessage-deflate by default
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with connect(f"ws://127.0.0.1:{rp.port}/z") as ws:
                    await add_breakpoint(v, "from:client json:i=3")
                    sent = [big_json(i) for i in range(8)]
                    for s in sent[:3]:
                        await ws.send(s)
                        assert await ws.recv() == s
                    for s in sent[3:]:
                        await ws.send(s)
                    [held] = await held_items(v)
                    assert held.compressed
                    if action == "edit":
                        new = big_json(33)
                        cmd = ForwardCommand(held.held, "", new.encode(), Opcode.TEXT)
                        expect = [new, *sent[4:]]
                    else:
                        cmd = DropCommand(held.held)  # type: ignore[assignment]
                        expect = sent[4:]
                    assert (await v.client.command(cmd)).ok
                    got = [await asyncio.wait_for(ws.recv(), 5) for _ in expect]
                    assert got == expect
                    # and both ways, well after the change
                    for i in range(40, 45):
                        await ws.send(big_json(i))
                        assert await asyncio.wait_for(ws.recv(), 5) == big_json(i)
                [conn] = v.session.connections.values()
                assert "permessage-deflate" in ",".join(conn.handshake.extensions)
                assert not conn.errors


async def test_deflate_half_open_release_no_longer_fails(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                async with connect(f"ws://127.0.0.1:{rp.port}/h", ping_interval=None) as ws:
                    for i in range(3):
                        await ws.send(big_json(i))
                        assert await ws.recv() == big_json(i)
                    conn = next(iter(rp.session.connections))
                    assert (await v.client.command(HalfOpenCommand(conn))).ok
                    for i in range(3, 6):
                        await ws.send(big_json(i))  # lost in the tunnel
                    await v.wait_for(lambda v: sum(1 for i in v.session.items() if i.dropped) >= 3)
                    assert (await v.client.command(ReleaseCommand(conn))).ok
                    for i in range(6, 12):
                        await ws.send(big_json(i))
                        assert await asyncio.wait_for(ws.recv(), 5) == big_json(i)


async def test_removing_a_breakpoint_keeps_what_it_holds(short_tmp: Path) -> None:
    rec = Recorder(echo=False)
    async with ws_server(rec) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                bp = await add_breakpoint(v, "one")
                async with connect(f"ws://127.0.0.1:{rp.port}/r") as ws:
                    await ws.send("one")
                    await held_items(v)
                    assert (await v.client.command(RemoveBreakpointCommand(bp))).ok
                    await v.wait_for(lambda v: v.session.breakpoints == [])
                    await ws.send("two")
                    await asyncio.sleep(0.3)
                    assert rec.received == []  # "two" queues behind the held "one"
                    res = await v.client.command(ForwardCommand(0, "1"))
                    assert res.ok and res.info == "1"
                    await wait_until(lambda: rec.received == ["one", "two"])


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


async def test_a_breakpoint_on_a_flood_stays_bounded_and_responsive(short_tmp: Path) -> None:
    """5,000 messages/s into a breakpoint that matches all of them: the proxy holds up to
    its bound, then stops reading the sender (TCP backpressure); memory stays flat, the
    tap answers at once, and forward --all delivers everything, in order."""
    from devconsole.tap import collect

    received: list[str] = []

    async def sink(ws: ServerConnection) -> None:
        async for m in ws:
            received.append(m)  # type: ignore[arg-type]

    hold = 1 << 20
    # no keepalive: a paused sender's pongs wait in the kernel buffers behind its data
    async with ws_server(sink, compression=None, ping_interval=None) as (_, port):
        async with running_proxy(
            f"reverse:http://127.0.0.1:{port}", short_tmp, hold_bytes="1m"
        ) as rp:
            async with viewer(rp.tap) as v:
                await add_breakpoint(v, "from:client flood")
                async with connect(
                    f"ws://127.0.0.1:{rp.port}/flood", compression=None, ping_interval=None
                ) as ws:
                    sent = 0
                    stop = asyncio.Event()

                    async def flood() -> None:
                        nonlocal sent
                        loop = asyncio.get_running_loop()
                        t0 = loop.time()
                        while not stop.is_set():
                            # 50 messages every 10 ms: 5,000 messages/s
                            for _ in range(50):
                                await ws.send(f"flood {sent:07d} " + "x" * 180)
                                sent += 1
                            await asyncio.sleep(max(0.0, t0 + sent / 5000 - loop.time()))

                    sender = asyncio.ensure_future(flood())
                    [stream] = rp.capture._streams.values()
                    up = stream.relay.up
                    await wait_until(lambda: up.paused, timeout=20)
                    rss0 = rss_bytes()
                    held0 = len(rp.session.held)
                    assert 0.8 * hold < up.qbytes < hold + (256 << 10)
                    # the flood goes on for two more seconds against a proxy that waits
                    await asyncio.sleep(2.0)
                    assert up.paused and up.qbytes < hold + (256 << 10)
                    assert len(rp.session.held) <= held0 + 300  # at most what was in flight
                    assert rss_bytes() - rss0 < 32 << 20
                    assert received == []
                    # a viewer attaching now (what `devconsole conns` does) gets its answer
                    t0 = time.monotonic()
                    snap = await collect(rp.tap, timeout=5)
                    assert time.monotonic() - t0 < 1.0
                    assert len(snap.held) == len(rp.session.held) and len(snap.connections) == 1
                    stop.set()
                    # let it all go: no breakpoint any more, then everything held
                    assert (await v.client.command(RemoveBreakpointCommand(0))).ok
                    res = await v.client.command(ForwardCommand(0))
                    assert res.ok and int(res.info) >= held0
                    await asyncio.wait_for(sender, 30)
                    await wait_until(lambda: len(received) == sent, timeout=60)
                    assert received == [f"flood {i:07d} " + "x" * 180 for i in range(sent)]


async def test_intercept_on_wss_through_the_mitmproxy_ca(
    short_tmp: Path, server_cert: tuple[Path, Path]
) -> None:
    """TLS on both sides: held bytes written later (inject.tcp through the TLS layers)
    arrive in order."""
    async with ws_server(ssl=server_ssl(server_cert)) as (_, port):
        async with running_proxy("regular", short_tmp, sets=["ssl_insecure=true"]) as rp:
            async with viewer(rp.tap) as v:
                await add_breakpoint(v, "from:server json:n=1")
                ca = Path(rp.confdir) / "mitmproxy-ca-cert.pem"
                async with connect(
                    f"wss://127.0.0.1:{port}/tls",
                    proxy=f"http://127.0.0.1:{rp.port}",
                    ssl=client_ssl_trusting(ca),
                ) as ws:
                    for i in range(4):
                        await ws.send(f'{{"n": {i}}}')
                    assert await ws.recv() == '{"n": 0}'
                    [held] = await held_items(v)
                    with pytest.raises(asyncio.TimeoutError):
                        await asyncio.wait_for(ws.recv(), 0.5)
                    res = await v.client.command(ForwardCommand(held.held, "", b'{"n": 10}'))
                    assert res.ok, res.error
                    got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)]
                    assert got == ['{"n": 10}', '{"n": 2}', '{"n": 3}']
