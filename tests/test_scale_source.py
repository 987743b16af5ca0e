"""Many proxies, one view: two `devconsole proxy --publish` processes, real websockets
clients on each, real redis-server, and the viewers reading `--tap redis://...`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from devconsole.model import InstanceEvent, Message
from devconsole.scale.redisserver import RedisServer
from devconsole.scale.source import RedisSource
from devconsole.session import Session
from devconsole.tap import collect
from tests.conftest import wait_until, ws_server
from tests.scale_helpers import cli, need_redis_server, proxy_process


@contextlib.asynccontextmanager
async def two_proxies(
    tmp: Path, rs: RedisServer, up: int, *extra: str
) -> AsyncIterator[tuple[int, int]]:
    mode = f"reverse:http://127.0.0.1:{up}"
    with (
        proxy_process(
            tmp / "a", "--mode", mode, "--publish", rs.url, "--name", "app-a", *extra
        ) as a,
        proxy_process(
            tmp / "b", "--mode", mode, "--publish", rs.url, "--name", "app-b", *extra
        ) as b,
    ):
        yield a.port, b.port


async def test_tail_sees_both_instances_in_time_order(short_tmp: Path, redis_server) -> None:
    async with ws_server() as (_, up), two_proxies(short_tmp, redis_server, up) as (pa, pb):
        async with (
            connect(f"ws://127.0.0.1:{pa}/left", compression=None) as wa,
            connect(f"ws://127.0.0.1:{pb}/right", compression=None) as wb,
        ):
            for i in range(5):
                await wa.send(f"a{i}")
                await wa.recv()
                await wb.send(f"b{i}")
                await wb.recv()
            code, out, err = await cli("tail", "--json", "--tap", redis_server.url, "--limit", "20")
    assert code == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    msgs = [x for x in lines if x["event"] == "message"]
    assert len(msgs) == 20
    # every event carries its instance, and ids are INSTANCE/ID
    assert {m["instance"] for m in msgs} == {"app-a", "app-b"}
    assert all(m["conn"].startswith(m["instance"] + "/") for m in msgs)
    # both instances interleaved, in time order, numbered in that order
    ts = [m["ts"] for m in msgs]
    assert ts == sorted(ts)
    assert [m["seq"] for m in msgs] == sorted(m["seq"] for m in msgs)
    texts = [m["text"] for m in msgs if m["from"] == "client"]
    assert texts == [f"{s}{i}" for i in range(5) for s in "ab"]
    hs = [x for x in lines if x["event"] == "handshake"]
    assert {h["instance"] for h in hs} == {"app-a", "app-b"}
    assert {h["request"]["path"] for h in hs} == {"/left", "/right"}


async def test_conns_and_kill_through_redis(short_tmp: Path, redis_server) -> None:
    received: dict[str, int | None] = {}

    async def client(port: int, path: str) -> None:
        async with connect(f"ws://127.0.0.1:{port}{path}") as ws:
            await ws.send("hi")
            await ws.recv()
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except ConnectionClosed as e:
                received[path] = e.rcvd.code if e.rcvd else None

    async with (
        ws_server() as (_, up),
        two_proxies(short_tmp, redis_server, up, "--accept-commands") as (pa, pb),
    ):
        tasks = [
            asyncio.ensure_future(client(pa, "/one")),
            asyncio.ensure_future(client(pb, "/two")),
        ]
        try:
            conns: list[dict] = []
            for _ in range(50):
                code, out, err = await cli("conns", "--json", "--tap", redis_server.url)
                assert code == 0, err
                conns = [c for c in json.loads(out) if c["state"] == "open"]
                if len(conns) == 2 and all(c["msgs_in"] == 1 for c in conns):
                    break
                await asyncio.sleep(0.2)
            by_path = {c["url"].rsplit("/", 1)[1]: c for c in conns}
            assert by_path["two"]["instance"] == "app-b"
            assert by_path["two"]["id"] == "app-b/1"
            assert by_path["one"]["id"] == "app-a/1"
            # the same id on the other instance is another connection: kill app-b's only
            code, out, err = await cli(
                "kill", "app-b/1", "--code", "4012", "--reason", "bye", "--tap", redis_server.url
            )
            assert code == 0, err
            await asyncio.wait_for(tasks[1], 10)
            assert received == {"/two": 4012}
            assert not tasks[0].done()
            # the proxy's own errors come back the same way
            url = redis_server.url
            code, _, err = await cli("kill", "app-a/99", "--code", "4000", "--tap", url)
            assert code == 1
            assert "app-a: unknown connection '99'" in err
            code, _, err = await cli(
                "inject", "app-a/1", "--to", "client", "--text", "x", "--tap", redis_server.url
            )
            assert code == 0, err
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_commands_are_refused_without_accept_commands(short_tmp: Path, redis_server) -> None:
    async with ws_server() as (_, up), two_proxies(short_tmp, redis_server, up) as (pa, _pb):
        async with connect(f"ws://127.0.0.1:{pa}/x") as ws:
            await ws.send("hi")
            await ws.recv()
            code, _, err = await cli("kill", "app-a/1", "--code", "4000", "--tap", redis_server.url)
            assert code == 1
            assert "started without --accept-commands" in err
            code, _, err = await cli("kill", "1", "--code", "4000", "--tap", redis_server.url)
            assert code == 1
            assert "INSTANCE/ID" in err
            await ws.send("still open")
            assert await ws.recv() == "still open"


async def test_late_viewer_counts_right_and_sees_a_dead_proxy_gone(
    short_tmp: Path, redis_server
) -> None:
    mode_args = ("--publish", redis_server.url)
    async with ws_server() as (_, up):
        mode = f"reverse:http://127.0.0.1:{up}"
        with proxy_process(short_tmp / "a", "--mode", mode, *mode_args, "--name", "a") as a:
            with proxy_process(short_tmp / "b", "--mode", mode, *mode_args, "--name", "b") as b:
                async with connect(f"ws://127.0.0.1:{b.port}/b") as wb:
                    for _ in range(30):
                        await wb.send("x")
                        await wb.recv()
                    await collect(
                        redis_server.url,
                        until=lambda s: (
                            "b/1" in s.connections and s.connections["b/1"].msgs_in == 30
                        ),
                    )
                    b.proc.kill()  # dies without a goodbye
                    b.proc.wait()
            async with connect(f"ws://127.0.0.1:{a.port}/a") as wa:
                for _ in range(7):
                    await wa.send("y")
                    await wa.recv()
                # a's messages are in the stream (its publisher flushes on its own
                # schedule): the late viewer must find them as backlog, not live
                await collect(
                    redis_server.url,
                    until=lambda s: "a/1" in s.connections and s.connections["a/1"].msgs_out == 7,
                )
                # a viewer attaching now, with a small backlog: counters from snapshots
                src = RedisSource(redis_server.url, backlog_limit=4)
                session = Session()
                events: list = []

                def on(evs: list) -> None:
                    events.extend(evs)
                    session.apply_all(evs)

                task = asyncio.ensure_future(src.run(on))
                try:
                    await wait_until(
                        lambda: (
                            session.connections.get("a/1") is not None
                            and session.connections["a/1"].msgs_out == 7
                            and session.instances.get("b") is not None
                            and session.instances["b"].state == "gone"
                        ),
                        timeout=15,
                    )
                finally:
                    await src.close()
                    task.cancel()
    assert session.connections["b/1"].msgs_out == 30
    assert session.connections["b/1"].msgs_in == 30
    assert session.instances["a"].state == "up"
    assert sum(1 for e in events if isinstance(e, Message)) <= 4  # the backlog limit
    assert any(isinstance(e, InstanceEvent) and e.name == "b" for e in events)


async def test_breakpoints_held_forward_and_drop_through_redis(
    short_tmp: Path, redis_server
) -> None:
    """`break add` through Redis holds a message on each instance, both with held id 1;
    `held` names them INSTANCE/ID; forward (edited) and drop reach their instance only."""
    url = redis_server.url
    tap = ("--tap", url)
    async with (
        ws_server() as (_, up),
        two_proxies(short_tmp, redis_server, up, "--accept-commands") as (pa, pb),
        connect(f"ws://127.0.0.1:{pa}/a", ping_interval=None) as wa,
        connect(f"ws://127.0.0.1:{pb}/b", ping_interval=None) as wb,
    ):
        code, out, err = await cli("break", "add", 'from:client "hold"', *tap)
        assert code == 0, err
        assert out.split() == ["app-a/1", "app-b/1"]  # one on each instance
        code, out, err = await cli("break", "list", "--json", *tap)
        assert code == 0, err
        bps = [json.loads(x) for x in out.splitlines()]
        assert [(b["id"], b["instance"]) for b in bps] == [
            ("app-a/1", "app-a"),
            ("app-b/1", "app-b"),
        ]
        await wa.send("hold a")
        await wb.send("hold b")

        async def held() -> list[dict]:
            code, out, err = await cli("held", "--json", *tap)
            assert code == 0, err
            return [json.loads(x) for x in out.splitlines()]

        listed: list[dict] = []
        for _ in range(50):
            listed = await held()
            if len(listed) == 2:
                break
            await asyncio.sleep(0.2)
        by_id = {h["id"]: h for h in listed}
        assert sorted(by_id) == ["app-a/1", "app-b/1"]  # the same proxy id, no collision
        assert by_id["app-b/1"]["text"] == "hold b" and by_id["app-b/1"]["instance"] == "app-b"
        assert by_id["app-a/1"]["conn"] == "app-a/1"
        # an id without its instance is ambiguous; one the instance does not hold fails there
        code, _, err = await cli("forward", "1", *tap)
        assert code == 1 and "INSTANCE/ID" in err
        code, _, err = await cli("drop", "app-a/7", *tap)
        assert code == 1 and err.startswith("devconsole: app-a:") and "7" in err
        # forward app-b's edited: only b's client hears the echo
        code, _, err = await cli("forward", "app-b/1", "--text", "edited b", *tap)
        assert code == 0, err
        assert await asyncio.wait_for(wb.recv(), 10) == "edited b"
        # drop app-a's: nothing comes back, the next message flows
        code, _, err = await cli("drop", "app-a/1", *tap)
        assert code == 0, err
        await wa.send("after")
        assert await asyncio.wait_for(wa.recv(), 10) == "after"
        for _ in range(50):
            if not await held():
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("still held")
        # breakpoints by INSTANCE/ID: app-a's removed, app-b's still holds
        code, _, err = await cli("break", "rm", "app-a/1", *tap)
        assert code == 0, err
        code, out, _ = await cli("break", "list", "--json", *tap)
        assert [json.loads(x)["id"] for x in out.splitlines()] == ["app-b/1"]
        await wa.send("hold a again")
        assert await asyncio.wait_for(wa.recv(), 10) == "hold a again"
        await wb.send("hold b again")
        for _ in range(50):
            listed = await held()
            if listed:
                break
            await asyncio.sleep(0.2)
        assert [h["id"] for h in listed] == ["app-b/2"]
        code, out, err = await cli("forward", "--all", *tap)
        assert code == 0, err
        assert out.strip() == "1 held message(s) forwarded"
        assert await asyncio.wait_for(wb.recv(), 10) == "hold b again"


async def test_what_a_killed_proxy_held_is_lost_not_listed(short_tmp: Path, redis_server) -> None:
    """A proxy SIGKILLed while it holds a message: a live viewer marks that message lost
    once the instance is gone, and `held` no longer lists it; the other one's stays."""
    url = redis_server.url
    tap = ("--tap", url)
    args = ("--publish", url, "--accept-commands")
    async with ws_server() as (_, up):
        mode = f"reverse:http://127.0.0.1:{up}"
        with (
            proxy_process(short_tmp / "a", "--mode", mode, *args, "--name", "app-a") as a,
            proxy_process(short_tmp / "b", "--mode", mode, *args, "--name", "app-b") as b,
        ):
            src = RedisSource(url)
            session = Session()
            task = asyncio.ensure_future(src.run(session.apply_all))
            try:
                async with (
                    connect(f"ws://127.0.0.1:{a.port}/a", ping_interval=None) as wa,
                    connect(f"ws://127.0.0.1:{b.port}/b", ping_interval=None) as wb,
                ):
                    code, out, err = await cli("break", "add", 'from:client "hold"', *tap)
                    assert code == 0, err
                    await wa.send("hold a")
                    await wb.send("hold b")
                    await wait_until(lambda: len(session.held) == 2, timeout=15)
                    b.proc.kill()  # no goodbye: its held message dies with it
                    b.proc.wait()
                    await wait_until(
                        lambda: (
                            session.instances.get("app-b") is not None
                            and session.instances["app-b"].state == "gone"
                        ),
                        timeout=15,
                    )
                    assert list(session.held) == ["app-a/1"]
                    (lost,) = [it for it in session.buffer if it.conn == "app-b/1"]
                    assert lost.outcome == "lost"
                    code, out, err = await cli("held", "--json", *tap)
                    assert code == 0, err
                    assert [json.loads(x)["id"] for x in out.splitlines()] == ["app-a/1"]
                    code, out, err = await cli("forward", "--all", *tap)
                    assert code == 0, err
                    assert await asyncio.wait_for(wa.recv(), 10) == "hold a"
            finally:
                await src.close()
                task.cancel()


async def test_a_tls_redis_with_a_password(
    short_tmp: Path, server_cert, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rediss://` with redis-py's CA option and a password in the URL: the proxy
    publishes, a viewer reads, and neither shows the password. Without the CA the viewer
    fails in one line naming the certificate."""
    need_redis_server()
    with RedisServer(tls=server_cert, password="s3cret-pw") as rs:
        url = rs.url.replace("rediss://", "rediss://:s3cret-pw@")
        assert url.startswith("rediss://:s3cret-pw@127.0.0.1:")
        async with ws_server() as (_, up):
            mode = f"reverse:http://127.0.0.1:{up}"
            with proxy_process(short_tmp, "--mode", mode, "--publish", url, "--name", "tls") as p:
                async with connect(f"ws://127.0.0.1:{p.port}/t") as ws:
                    for i in range(3):
                        await ws.send(f"over tls {i}")
                        await ws.recv()
                lines: list[dict] = []
                for _ in range(50):
                    code, out, err = await cli("tail", "--json", "--tap", url, "--limit", "6")
                    assert code == 0, err
                    lines = [json.loads(x) for x in out.splitlines()]
                    if sum(1 for x in lines if x["event"] == "message") == 6:
                        break
                    await asyncio.sleep(0.2)
                texts = [x["text"] for x in lines if x["event"] == "message"]
                assert texts == [f"over tls {i}" for i in range(3) for _ in "ab"]
                code, out, err = await cli("conns", "--tap", url)
                assert code == 0, err
                assert "tls/1" in out and "s3cret-pw" not in out + err
                # the same server, not trusted: a clear error, no traceback
                bare = url.split("?", 1)[0]
                code, out, err = await cli("conns", "--tap", bare)
                assert code == 1
                assert "CERTIFICATE_VERIFY_FAILED" in err and "Traceback" not in err
                assert "?ssl_ca_certs=PATH" in err  # what to do about it
                assert "s3cret-pw" not in err
                # the wrong password: said so, and where a password goes
                wrong = url.replace("s3cret-pw", "nope")
                code, out, err = await cli("conns", "--tap", wrong)
                assert code == 1 and "Traceback" not in err
                assert "AuthenticationError" in err and "DEVCONSOLE_REDIS_PASSWORD" in err
                # the password from the environment instead of the URL
                monkeypatch.setenv("DEVCONSOLE_REDIS_PASSWORD", "s3cret-pw")
                s = await collect(rs.url, until=lambda s: "tls/1" in s.connections)
                assert s.connections["tls/1"].msgs_in == 3
