"""The child proxy that ``devconsole`` and ``devconsole demo`` start: ready on its
"listening" line, a startup error as the proxy's own last line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from devconsole.childproxy import ChildProxy, ChildProxyError
from devconsole.cli import build_parser

pytestmark = pytest.mark.timeout(60)


def _args(short_tmp: Path, *extra: str) -> argparse.Namespace:
    return build_parser().parse_args(
        ["--listen", "127.0.0.1:0", "--confdir", str(short_tmp / "conf"), *extra]
    )


def test_ready_reports_the_listen_address_and_stop_ends_it(short_tmp: Path) -> None:
    child = ChildProxy(_args(short_tmp))
    try:
        child.wait_ready()
        host, _, port = child.listen.rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0
        assert Path(child.tap).exists()
    finally:
        child.stop()
    assert child.proc.returncode is not None
    assert not Path(child.tap).exists()


def test_a_startup_error_is_the_proxys_last_line(short_tmp: Path) -> None:
    child = ChildProxy(_args(short_tmp, "--set", "no_such_option=1"))
    try:
        with pytest.raises(ChildProxyError, match="no_such_option"):
            child.wait_ready()
    finally:
        child.stop()
