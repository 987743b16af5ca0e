"""``devconsole shape`` and ``conns --json``'s shape as a user runs them (subprocesses)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.conftest import run_cli, running_proxy, viewer, ws_server


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args)


async def conns(tap: str) -> list[dict]:  # type: ignore[type-arg]
    r = await cli("conns", "--json", "--tap", tap)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


async def test_shape_a_connection_and_see_it_in_conns(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v, connect(f"ws://127.0.0.1:{rp.port}/s") as ws:
                await v.wait_for(lambda v: bool(v.session.connections))
                [conn] = v.session.connections
                tap = ("--tap", rp.tap)
                r = await cli("shape", conn, "--to", "client", "--latency", "200ms",
                              "--jitter", "10ms", "--pongs", "delay:1s", *tap)  # fmt: skip
                assert r.returncode == 0, r.stderr
                assert r.stdout.strip() == (
                    f"connection {conn}, to client: latency 200ms +-10ms, pongs +1s"
                )
                [c] = await conns(rp.tap)
                assert c["shape"] == {
                    "client": {"latency": 0.2, "jitter": 0.01, "pongs": "delay", "pong_delay": 1.0}
                }
                t0 = time.monotonic()
                await ws.send("x")
                await asyncio.wait_for(ws.recv(), 5)
                assert time.monotonic() - t0 >= 0.18
                r = await cli("shape", conn, "--rate", "1mbit", *tap)  # both ways
                assert r.returncode == 0
                [c] = await conns(rp.tap)
                assert c["shape"] == {"client": {"rate": 125000.0}, "server": {"rate": 125000.0}}
                r = await cli("shape", conn, "--clear", *tap)
                assert r.returncode == 0 and r.stdout.strip().endswith("cleared")
                [c] = await conns(rp.tap)
                assert c["shape"] == {}
                # every connection of an endpoint, now and later
                r = await cli("shape", "--path", "/s*", "--to", "server", "--stall", *tap)
                assert r.returncode == 0 and "(1 live)" in r.stdout
                [c] = await conns(rp.tap)
                assert c["shape"] == {"server": {"stall": True}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("shape", "1", "--latency", "soon"), "expected a duration"),
        (("shape", "1", "--rate", "10k"), "expected a rate"),
        (("shape", "1"), "give a condition"),
        (("shape", "1", "--clear", "--stall"), "--clear goes alone"),
        (("shape", "--latency", "1s"), "give a connection id"),
        (("shape", "1", "--latency", "10ms", "--jitter", "1s"), "jitter"),
        (("shape", "1", "--pongs", "sometimes"), "drop or delay"),
    ],
)
def test_bad_usage_is_one_line(args: tuple[str, ...], message: str, short_tmp: Path) -> None:
    r = run_cli(*args, "--tap", str(short_tmp / "none.sock"))
    assert r.returncode == 1
    assert r.stderr.startswith("devconsole: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


async def test_unknown_connection(short_tmp: Path) -> None:
    async with running_proxy("reverse:http://127.0.0.1:9", short_tmp) as rp:
        r = await cli("shape", "42", "--latency", "1s", "--tap", rp.tap)
        assert r.returncode == 1 and "unknown connection" in r.stderr
