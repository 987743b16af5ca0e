from __future__ import annotations

from devconsole.analysis.backoff import default_lineage_key
from devconsole.analysis.clients import ClientLabels, client_key, short_agent
from devconsole.model import Connection
from devconsole.samples import handshake

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
EDGE = CHROME + " Edg/126.0.2592.68"
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)


def test_short_agent_names_the_client_not_the_engine() -> None:
    assert short_agent(FIREFOX) == "Firefox/128"
    assert short_agent(CHROME) == "Chrome/126"
    assert short_agent(EDGE) == "Edg/126"
    assert short_agent(SAFARI) == "Safari/17"
    assert short_agent("Python/3.11 websockets/15.0.1") == "websockets/15"
    assert short_agent("okhttp/4.12.0") == "okhttp/4"
    assert short_agent("my-bot") == "my-bot"
    assert short_agent("") == "" and short_agent(None) == ""
    assert "\x1b" not in short_agent("\x1b[31mevil/1")


def with_headers(conn: str, ua: str | None, cookies=(), client="127.0.0.1:50001"):
    headers = [("Host", "example.com"), ("Upgrade", "websocket")]
    if ua is not None:
        headers.append(("User-Agent", ua))
    if cookies:
        headers.append(("Cookie", "; ".join(f"{k}={v}" for k, v in cookies)))
    return handshake(conn, cookies=cookies, client=client, request_headers=headers)


def test_client_key_is_agent_and_cookie_names_never_values() -> None:
    hs = with_headers("1", "Python/3.11 websockets/15.0.1", [("session", "s3cr3t"), ("theme", "x")])
    assert client_key(hs) == "websockets/15 session,theme"
    assert "s3cr3t" not in client_key(hs)
    assert client_key(with_headers("2", None, client="127.0.0.1:50007")) == ":50007"
    assert client_key(with_headers("3", None, [("sid", "1")])) == "sid"


def test_labels_tell_apart_clients_that_read_the_same() -> None:
    labels = ClientLabels(default_lineage_key)
    a1 = Connection("1", with_headers("1", FIREFOX, [("session", "alice")]))
    b1 = Connection("2", with_headers("2", FIREFOX, [("session", "bob")], "127.0.0.1:50002"))
    a2 = Connection("3", with_headers("3", FIREFOX, [("session", "alice")], "127.0.0.1:50003"))
    assert labels.label(a1) == "Firefox/128 session"
    assert labels.label(b1) == "Firefox/128 session (2)"
    assert labels.label(a2) == "Firefox/128 session"  # the same client, a new port
    assert len(labels) == 2
