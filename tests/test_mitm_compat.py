"""The version-checked reach into mitmproxy internals, on the installed mitmproxy."""

from __future__ import annotations

import asyncio
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection

from devconsole import mitm_compat
from tests.conftest import running_proxy, wait_until, ws_server


def test_installed_mitmproxy_is_supported() -> None:
    assert mitm_compat.supported(), mitm_compat.MITMPROXY_VERSION


# The functions below work on connections mitmproxy relays: the fast relay off.
SLOW = ["devconsole_fast_relay=false"]


async def test_writers_reach_both_sockets_of_a_live_flow(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp, sets=SLOW) as rp:
            async with connect(f"ws://127.0.0.1:{rp.port}/c") as ws:
                await ws.send("x")
                await ws.recv()
                [stream] = rp.capture._streams.values()
                writers = mitm_compat.writers(stream.flow)
                assert len(writers) == 2
                peers = {w.get_extra_info("peername")[1] for w in writers}
                assert port in peers  # the server side
                assert mitm_compat.end_connection(stream.flow, abort=True) == 2
                await wait_until(lambda: not rp.capture._streams)
            assert mitm_compat.writers(stream.flow) == []


async def test_pause_and_resume_reading_give_real_tcp_backpressure(short_tmp: Path) -> None:
    """Paused, the proxy stops reading the client: the client's sends block once the
    socket buffers are full and the server receives nothing more; resumed, it all flows."""
    got = 0
    done = asyncio.Event()
    total = 64 << 20

    async def count(ws: ServerConnection) -> None:
        nonlocal got
        async for msg in ws:
            got += len(msg)
            if got >= total:
                done.set()

    chunk = b"x" * (64 << 10)
    async with ws_server(count, compression=None) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp, sets=SLOW) as rp:
            async with connect(
                f"ws://127.0.0.1:{rp.port}/bp", compression=None, ping_interval=None
            ) as ws:
                await ws.send(chunk)
                await wait_until(lambda: got == len(chunk))
                [stream] = rp.capture._streams.values()
                assert mitm_compat.is_reading(stream.flow, True) is True
                assert mitm_compat.pause_reading(stream.flow, True)
                assert mitm_compat.is_reading(stream.flow, True) is False
                sent = len(chunk)

                async def send_all() -> None:
                    nonlocal sent
                    while sent < total:
                        await ws.send(chunk)
                        sent += len(chunk)

                sender = asyncio.ensure_future(send_all())
                await asyncio.sleep(1.0)
                assert not sender.done()  # blocked: the kernel buffers are full
                before = got
                await asyncio.sleep(0.5)
                assert got == before < total  # and nothing more reached the server
                # the server side is still read (only the client was paused)
                assert mitm_compat.is_reading(stream.flow, False) is True
                assert mitm_compat.resume_reading(stream.flow, True)
                await asyncio.wait_for(sender, 30)
                await asyncio.wait_for(done.wait(), 30)
                assert got == total
