"""`devconsole demo --scale 2`: two app instances joined by a Redis backplane, each behind
its own proxy publishing to Redis, one view of both, with a backplane trace."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import ROOT, devconsole_cmd, run_cli
from tests.scale_helpers import env, need_redis_server


def test_scaled_demo_runs_two_instances_in_one_view(short_tmp: Path) -> None:
    need_redis_server()
    proc = subprocess.Popen(
        devconsole_cmd("demo", "--scale", "2", "--headless", "--listen", "127.0.0.1:0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=str(ROOT),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "view them all with: devconsole attach redis://" in line, line
        url = line.rsplit(" ", 1)[1].strip()
        deadline = time.monotonic() + 60
        report: dict = {}
        while time.monotonic() < deadline:
            r = run_cli("report", "--json", "--tap", url, timeout=60)
            assert r.returncode == 0, r.stderr
            report = json.loads(r.stdout)
            chat = [e for e in report["endpoints"] if e["path"] == "/chat"]
            if chat and chat[0]["backplane"] and chat[0]["backplane"]["deliveries"] >= 8:
                insts = chat[0]["backplane"]["instances"]
                if set(insts) == {"app-1", "app-2"}:
                    break
            time.sleep(1)
        else:
            raise AssertionError(f"no backplane trace across both instances: {report}")
        r = run_cli("conns", "--json", "--tap", url)
        conns = json.loads(r.stdout)
        assert {c["instance"] for c in conns} == {"app-1", "app-2"}
        assert any(c["url"].endswith("PSUBSCRIBE demo:*") for c in conns)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # everything it started is gone, its Redis too
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_scaled_demo_without_redis_server_says_how_to_get_it(short_tmp: Path) -> None:
    e = env()
    e["PATH"] = str(short_tmp)  # no redis-server on it
    r = subprocess.run(
        devconsole_cmd("demo", "--scale", "2", "--headless", "--listen", "127.0.0.1:0"),
        capture_output=True,
        text=True,
        env=e,
        cwd=str(ROOT),
        timeout=30,
    )
    assert r.returncode == 1
    assert "apt-get install -y redis-server" in r.stderr
    assert os.path.isdir(short_tmp)
