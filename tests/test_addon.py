"""addons/devconsole_addon.py inside plain mitmdump: the same capture and tap."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

from tests.conftest import ROOT, ws_server


def _mitmdump() -> str:
    exe = Path(sys.executable).with_name("mitmdump")
    return str(exe) if exe.exists() else shutil.which("mitmdump") or "mitmdump"


async def test_mitmdump_with_the_addon_serves_the_tap(short_tmp: Path) -> None:
    tap = short_tmp / "tap.sock"
    async with ws_server() as (_, up):
        proc = subprocess.Popen(
            [
                _mitmdump(),
                "-q",
                "-s",
                str(ROOT / "addons" / "devconsole_addon.py"),
                "--mode",
                f"reverse:http://127.0.0.1:{up}",
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                "0",
                "--set",
                f"confdir={short_tmp / 'conf'}",
                "--set",
                f"devconsole_tap={tap}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            deadline = time.monotonic() + 20
            while not tap.exists():
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the addon did not open its tap"
                await asyncio.sleep(0.1)
            # mitmdump prints nothing with -q: find its port through the tap's snapshot
            from devconsole.tap import TapClient

            c = TapClient(str(tap))
            await c.connect()
            await c.close()
            port = int(c.proxy.rsplit(":", 1)[1])
            async with connect(f"ws://127.0.0.1:{port}/via-mitmdump") as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                out = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "devconsole", "conns", "--json", "--tap", str(tap)],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            assert out.returncode == 0, out.stderr
            [conn] = json.loads(out.stdout)
            assert conn["url"].endswith("/via-mitmdump")
            assert conn["msgs_in"] == 1 and conn["msgs_out"] == 1
        finally:
            proc.terminate()
            proc.wait(10)
        assert not tap.exists()  # the addon removes its socket on exit
