"""``devconsole chaos`` end to end: the real CLI, the demo's /feed server and backoff client
(``devconsole.demo_feed``), a scenario that passes and one that fails; exit codes, JUnit
XML, and no process left behind."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from devconsole.demo import DemoConfig, start_demo_server
from tests.conftest import ROOT, devconsole_cmd

pytestmark = pytest.mark.slow

PASSING = """
[scenario]
name = "feed recovers"
path = "/feed"
duration = "7s"

[[step]]
at = "0.5s"
for = "1.4s"
[[step.handshake]]
path = "/feed"
refuse = 503

[[step]]
at = "0.5s"
close = { code = 1012, reason = "restart" }

[[step]]
at = "4s"
half_open = "2.5s"

[[expect]]
reconnect_within = "4s"
after = 2

[[expect]]
backoff = "exponential"

[[expect]]
half_open_detected_within = "2s"

[[expect]]
first_message_within = "2s"
from = "server"
"""

FAILING = """
[scenario]
name = "too demanding"
path = "/feed"
duration = "3s"

[[step]]
at = "0.5s"
for = "1s"
[[step.handshake]]
path = "/feed"
refuse = 503

[[step]]
at = "0.5s"
abort = true

[[expect]]
reconnect_within = "50ms"

[[expect]]
backoff = "fixed"

[[expect]]
name = "the client kept its first message coming"
first_message_within = "5s"
"""


async def run_chaos(tmp: Path, scenario: str, *extra: str) -> tuple[int, str, str, int]:
    """Serve the demo, run ``devconsole chaos`` with the /feed client; returns the exit
    status, stdout, stderr and the client's pid."""
    cfg = DemoConfig.fast()
    cfg.feed_lifetime = (1e9, 1e9)
    server, port = await start_demo_server(config=cfg)
    path = tmp / "scenario.toml"
    path.write_text(scenario)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        proc = await asyncio.create_subprocess_exec(
            *devconsole_cmd(
                "chaos",
                str(path),
                "--mode",
                f"reverse:http://127.0.0.1:{port}",
                *extra,
                "--",
                sys.executable,
                "-m",
                "devconsole.demo_feed",
                "client",
                "{url}",
                "--fast",
                "--ping-interval",
                "0.3",
                "--ping-timeout",
                "0.5",
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=str(ROOT),
        )
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        server.close()
        await server.wait_closed()
    m = re.search(r"\(pid (\d+)\)", err.decode())
    assert m is not None, err.decode()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode(), int(m.group(1))


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_scenario_that_passes(short_tmp: Path) -> None:
    junit = short_tmp / "out.xml"
    code, out, err, pid = await run_chaos(short_tmp, PASSING, "--junit", str(junit))
    assert code == 0, out + err
    assert out.count("PASS") == 4 and "4 of 4 expectation(s) passed" in out
    assert "step 2: close 1012" in out and "refused 503" in out
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "4"
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    names = [c.get("name") for c in suite.iter("testcase")]
    assert names == [
        "reconnect within 4s (after step 2)",
        "backoff exponential",
        "half-open detected within 2s",
        "first server message within 2s",
    ]
    assert gone(pid)


async def test_a_scenario_that_fails(short_tmp: Path) -> None:
    junit = short_tmp / "out.xml"
    code, out, err, pid = await run_chaos(short_tmp, FAILING, "--junit", str(junit))
    assert code == 1, out + err
    assert "FAIL  reconnect within 50ms" in out
    assert re.search(r"FAIL  backoff fixed\s+(exponential|single|irregular)", out)
    assert "PASS  the client kept its first message coming" in out
    assert "1 of 3 expectation(s) passed" in out
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "2"
    failures = {c.get("name"): c.find("failure") for c in suite.iter("testcase")}
    f = failures["reconnect within 50ms"]
    assert f is not None and (f.get("message") or "").startswith("measured: ")
    assert failures["the client kept its first message coming"] is None
    assert gone(pid)


def test_scenario_errors_exit_2_with_line_and_column(short_tmp: Path) -> None:
    import subprocess

    path = short_tmp / "bad.toml"
    path.write_text('[[step]]\nat = "1s"\nclose = 999\n[[expect]]\nbackoff = "fixed"\n')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(
        devconsole_cmd("chaos", str(path), "--mode", "reverse:http://127.0.0.1:9", "--", "true"),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.returncode == 2
    assert f"{path}:3:9: step 1: 999 is not a close code" in p.stderr


def test_no_connection_is_a_failure_not_a_hang(short_tmp: Path) -> None:
    import subprocess

    path = short_tmp / "s.toml"
    path.write_text('[scenario]\nwait = "1s"\n[[expect]]\nbackoff = "not-storm"\n')
    junit = short_tmp / "j.xml"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(
        devconsole_cmd(
            "chaos",
            str(path),
            "--mode",
            "reverse:http://127.0.0.1:9",
            "--junit",
            str(junit),
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(30)",
        ),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.returncode == 1
    assert "ERROR no connection on any path: none within 1 s" in p.stdout
    m = re.search(r"\(pid (\d+)\)", p.stderr)
    assert m is not None and gone(int(m.group(1)))
    assert ET.parse(junit).getroot().get("errors") == "1"
