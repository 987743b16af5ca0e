"""Redis addresses: parsing, the password from the environment, safe display."""

from __future__ import annotations

import pytest

from devconsole.scale.config import (
    PASSWORD_ENV,
    RedisConfigError,
    is_redis_url,
    parse_redis_url,
    redis_error_text,
)


def test_urls_parse_and_display_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    t = parse_redis_url("rediss://user:s3cret@redis.internal:6380/2?ssl_cert_reqs=none")
    assert (t.host, t.port, t.db, t.tls) == ("redis.internal", 6380, 2, True)
    assert t.display == "rediss://redis.internal:6380/2"
    assert "s3cret" not in t.display
    assert not t.password_from_env
    t = parse_redis_url("redis://127.0.0.1")
    assert (t.port, t.db, t.stream) == (6379, 0, None)
    assert is_redis_url("redis://x") and not is_redis_url("/tmp/tap.sock")


def test_stream_in_the_url_is_devconsoles_not_redis_pys() -> None:
    t = parse_redis_url("redis://127.0.0.1:6379/0?stream=shop&socket_keepalive=true")
    assert t.stream == "shop"
    assert "stream=" not in t.url and "socket_keepalive=true" in t.url
    with pytest.raises(RedisConfigError):
        parse_redis_url("redis://127.0.0.1/0?stream=a%20b")


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert parse_redis_url("redis://127.0.0.1:6379/0").password_from_env
    assert not parse_redis_url("redis://:inline@127.0.0.1:6379/0").password_from_env
    client = parse_redis_url("redis://127.0.0.1:6379/0").client()
    assert client.connection_pool.connection_kwargs["password"] == "from-env"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6379", "redis://", "redis://127.0.0.1:notaport/0", "redis://h/db1"],
)
def test_bad_urls_are_one_clear_error(url: str) -> None:
    with pytest.raises(RedisConfigError):
        parse_redis_url(url)


def test_redis_errors_say_what_to_do() -> None:
    from redis.exceptions import AuthenticationError
    from redis.exceptions import ConnectionError as RedisConnectionError

    tls = RedisConnectionError(
        "Error 1 connecting. [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    assert redis_error_text(tls).endswith(
        "(trust its CA with ?ssl_ca_certs=PATH in the URL, or skip the check with"
        " ?ssl_cert_reqs=none)"
    )
    auth = redis_error_text(AuthenticationError("invalid username-password pair"))
    assert auth.startswith("AuthenticationError: invalid username-password pair (")
    assert PASSWORD_ENV in auth
    assert redis_error_text(RedisConnectionError("Connection refused")) == (
        "ConnectionError: Connection refused"
    )
    assert redis_error_text(TimeoutError()) == "TimeoutError"
