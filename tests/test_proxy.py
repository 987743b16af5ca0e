"""The minimal mitmproxy Master: option handling and startup errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from devconsole.proxy import DevconsoleProxy, ProxyConfig, ProxyError, parse_listen, parse_mode


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":9000", ("127.0.0.1", 9000)),
        ("9001", ("127.0.0.1", 9001)),
        ("[::1]:8080", ("::1", 8080)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_listen(spec: str, expected: tuple[str, int]) -> None:
    assert parse_listen(spec) == expected


@pytest.mark.parametrize("spec", ["", "host:", "host:x", "1.2.3.4:70000", "::1:80", "[::1]"])
def test_parse_listen_rejects(spec: str) -> None:
    with pytest.raises(ProxyError):
        parse_listen(spec)


def test_parse_mode() -> None:
    assert parse_mode("reverse:http://127.0.0.1:9000") == "reverse:http://127.0.0.1:9000"
    assert parse_mode("upstream:http://127.0.0.1:3128") == "upstream:http://127.0.0.1:3128"
    with pytest.raises(ProxyError, match="bad --mode"):
        parse_mode("teleport")


async def test_proxy_binds_loopback_and_turns_off_mitmproxys_websocket_layer(
    short_tmp: Path,
) -> None:
    p = DevconsoleProxy(
        ProxyConfig(listen_port=0, tap=str(short_tmp / "t.sock"), confdir=str(short_tmp / "c"))
    )
    addrs = await p.start()
    try:
        assert addrs[0][0] == "127.0.0.1" and addrs[0][1] > 0
        assert p.master is not None
        assert p.master.options.websocket is False
        assert p.master.options.rawtcp is True
        names = {type(a).__name__ for a in p.master.addons.chain}
        assert "Dumper" not in names and "Capture" in names
        assert (short_tmp / "t.sock").exists()
    finally:
        await p.stop()
    assert not (short_tmp / "t.sock").exists()


async def test_port_in_use_raises_proxy_error(short_tmp: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        p = DevconsoleProxy(
            ProxyConfig(
                listen_port=s.getsockname()[1],
                tap=str(short_tmp / "t.sock"),
                confdir=str(short_tmp / "c"),
            )
        )
        with pytest.raises(ProxyError, match="address already in use"):
            await p.start()
    finally:
        s.close()


async def test_bad_set_and_bad_buffer_options(short_tmp: Path) -> None:
    for cfg in (
        ProxyConfig(listen_port=0, sets=["nonexistent=1"]),
        ProxyConfig(listen_port=0, buffer_bytes="lots"),
        ProxyConfig(listen_port=0, max_payload="-1"),
    ):
        cfg.tap = str(short_tmp / "t.sock")
        cfg.confdir = str(short_tmp / "c")
        with pytest.raises(ProxyError):
            await DevconsoleProxy(cfg).start()


async def test_second_proxy_on_the_same_tap_is_refused(short_tmp: Path) -> None:
    cfg = ProxyConfig(listen_port=0, tap=str(short_tmp / "t.sock"), confdir=str(short_tmp / "c"))
    p1 = DevconsoleProxy(cfg)
    await p1.start()
    try:
        with pytest.raises(ProxyError, match="in use"):
            await DevconsoleProxy(cfg).start()
    finally:
        await p1.stop()
