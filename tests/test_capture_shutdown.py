"""Stopping the proxy during traffic (SIGTERM, Ctrl-C): a quiet exit, every open
connection closed with 1001 to both peers, an end event for each, recordings complete."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from devconsole.model import EndEvent
from tests.conftest import ROOT, run_cli, running_proxy, viewer, wait_until, ws_server


class Echo:
    def __init__(self) -> None:
        self.closes: list[tuple[int | None, str | None]] = []

    async def __call__(self, ws: ServerConnection) -> None:
        try:
            async for m in ws:
                await ws.send(m)
        except ConnectionClosed:
            pass
        self.closes.append((ws.close_code, ws.close_reason))


async def chatter(ws) -> BaseException | None:  # type: ignore[no-untyped-def]
    """Echo round trips until the connection closes."""
    try:
        while True:
            await ws.send("x" * 100)
            await ws.recv()
    except ConnectionClosed as e:
        return e


async def test_stop_closes_live_connections_with_1001_and_records_their_end(
    short_tmp: Path,
) -> None:
    echo = Echo()
    async with ws_server(echo) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                clients = [await connect(f"ws://127.0.0.1:{rp.port}/{i}") for i in range(3)]
                tasks = [asyncio.ensure_future(chatter(ws)) for ws in clients]
                await v.wait_for(lambda v: len(list(v.session.items())) > 30)
                await rp.proxy.stop()
                for t in tasks:
                    await asyncio.wait_for(t, 5)
                for ws in clients:
                    assert ws.close_code == 1001 and ws.close_reason == "going away"
                await wait_until(lambda: len(echo.closes) == 3)
                assert echo.closes == [(1001, "going away")] * 3
                ends = [e for e in v.events if isinstance(e, EndEvent)]
                assert sorted(e.conn for e in ends) == ["1", "2", "3"]
                assert all(e.closed_by == "proxy" for e in ends)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_during_traffic_is_a_quiet_exit_and_the_recording_is_complete(
    short_tmp: Path, sig: signal.Signals
) -> None:
    echo = Echo()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tap = str(short_tmp / "tap.sock")
    dcap = str(short_tmp / "rec.dcap")
    async with ws_server(echo) as (_, port):
        proxy = subprocess.Popen(
            [
                sys.executable, "-m", "devconsole", "proxy", "--listen", "127.0.0.1:0",
                "--mode", f"reverse:http://127.0.0.1:{port}", "--tap", tap,
                "--confdir", str(short_tmp / "conf"),
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        recorder = None
        try:
            assert proxy.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proxy.stdout.readline), 30)
            m = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert m, line
            recorder = subprocess.Popen(
                [sys.executable, "-m", "devconsole", "record", dcap, "--tap", tap],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            await wait_until(lambda: Path(dcap).exists(), timeout=20)
            ws = await connect(f"ws://127.0.0.1:{m.group(1)}/live")
            task = asyncio.ensure_future(chatter(ws))
            await asyncio.sleep(0.5)
            proxy.send_signal(sig)
            _, err = await asyncio.wait_for(asyncio.to_thread(proxy.communicate), 20)
            assert proxy.returncode == 0
            assert "Traceback" not in err and "CancelledError" not in err, err
            await asyncio.wait_for(task, 5)
            assert (ws.close_code, ws.close_reason) == (1001, "going away")
            await wait_until(lambda: len(echo.closes) == 1)
            assert echo.closes == [(1001, "going away")]
            # the recorder saw the tap close; what it wrote ends with the connection's end
            await asyncio.wait_for(asyncio.to_thread(recorder.wait), 20)
        finally:
            for p in (proxy, recorder):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
    r = run_cli("export", dcap, "--no-redact")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    ends = [e for e in events if e["event"] == "end"]
    assert len(ends) == 1 and ends[0]["closed_by"] == "proxy"
    closes = [e for e in events if e["event"] == "close" and e.get("injected")]
    assert {(c["from"], c["code"]) for c in closes} == {("client", 1001), ("server", 1001)}
