"""The version-checked reach into mitmproxy internals, on the installed mitmproxy."""

from __future__ import annotations

from pathlib import Path

from websockets.asyncio.client import connect

from devconsole import mitm_compat
from tests.conftest import running_proxy, wait_until, ws_server


def test_installed_mitmproxy_is_supported() -> None:
    assert mitm_compat.supported(), mitm_compat.MITMPROXY_VERSION


async def test_writers_reach_both_sockets_of_a_live_flow(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
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
