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


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("regular", "regular"),
        ("socks5", "socks5"),
        ("transparent", "transparent"),
        ("reverse:http://127.0.0.1:9000", "reverse:http://127.0.0.1:9000"),
        ("reverse:https://api.example", "reverse:https://api.example"),
        ("reverse:ws://127.0.0.1:9000", "reverse:http://127.0.0.1:9000"),  # as a user writes it
        ("reverse:wss://api.example/", "reverse:https://api.example/"),
        ("upstream:http://127.0.0.1:3128", "upstream:http://127.0.0.1:3128"),
    ],
)
def test_modes_a_websocket_proxy_can_use(mode: str, expected: str) -> None:
    assert parse_mode(mode) == expected


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("reverse:notaurl", "reverse:http://HOST[:PORT]"),  # was taken for https://notaurl:443
        ("reverse:example.com:80", "reverse:http://HOST[:PORT]"),
        ("reverse:", "reverse:http://HOST[:PORT]"),
        ("reverse:http://", "reverse:http://HOST[:PORT]"),
        ("reverse:tcp://127.0.0.1:9000", "WebSocket"),  # raw TCP: no upgrade to see
        ("reverse:dns://1.1.1.1", "WebSocket"),
        ("reverse:quic://127.0.0.1:9000", "WebSocket"),
        ("upstream:notaurl", "upstream:http://HOST[:PORT]"),
        ("upstream:ftp://x:1", "upstream:http://HOST[:PORT]"),
        ("dns", "WebSocket"),
        ("teleport", "unknown mode"),
    ],
)
def test_modes_are_validated_up_front_with_one_line(mode: str, why: str) -> None:
    with pytest.raises(ProxyError) as info:
        parse_mode(mode)
    msg = str(info.value)
    assert msg.startswith(f"bad --mode {mode!r}: ") and why in msg, msg
    assert "\n" not in msg


async def test_a_bad_mode_given_to_the_proxy_directly_is_refused(short_tmp: Path) -> None:
    cfg = ProxyConfig(
        listen_port=0,
        mode="reverse:notaurl",
        tap=str(short_tmp / "t.sock"),
        confdir=str(short_tmp / "c"),
    )
    with pytest.raises(ProxyError, match="bad --mode"):
        await DevconsoleProxy(cfg).start()


async def test_port_in_use_is_one_line_and_logs_nothing_else(short_tmp: Path) -> None:
    import io
    import logging

    from devconsole.proxy import setup_logging

    log = io.StringIO()
    setup_logging(logging.WARNING, log)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        cfg = ProxyConfig(
            listen_port=port, tap=str(short_tmp / "t.sock"), confdir=str(short_tmp / "c")
        )
        with pytest.raises(ProxyError) as info:
            await DevconsoleProxy(cfg).start()
    finally:
        s.close()
        for name in ("mitmproxy", "devconsole"):
            logging.getLogger(name).handlers[:] = []
    assert str(info.value) == (
        f"cannot listen on 127.0.0.1:{port}: address already in use "
        "(choose another with --listen HOST:PORT)"
    )
    assert log.getvalue() == ""  # no ERROR line from mitmproxy before it


@pytest.mark.parametrize(
    ("host", "tap", "warnings"),
    [
        ("127.0.0.1", "", []),
        ("localhost", "tcp://127.0.0.1:0", []),
        ("::1", "/tmp/x.sock", []),
        ("*", "", ["proxy"]),
        ("0.0.0.0", "", ["proxy"]),
        ("", "", ["proxy"]),
        ("::", "tcp://0.0.0.0:9999", ["proxy", "tap"]),
        ("127.0.0.1", "tcp://0.0.0.0:9999", ["tap"]),
        ("127.0.0.1", "tcp://[::]:9999", ["tap"]),
        ("192.0.2.7", "", ["proxy"]),  # a LAN address: reachable from that network
    ],
)
def test_listening_beyond_loopback_is_warned_about(
    host: str, tap: str, warnings: list[str]
) -> None:
    from devconsole.proxy import exposure_warnings

    got = exposure_warnings(ProxyConfig(listen_host=host, listen_port=8080, tap=tap))
    assert [w.split(" ", 2)[1] for w in got] == warnings, got  # "the proxy ..." / "the tap ..."
    for w in got:
        assert "reachable from the network" in w and "\n" not in w
