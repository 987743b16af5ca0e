"""The one credential detector: names (query parameters, cookies, JSON fields, headers,
subprotocols) and values (JWTs, token-looking runs) that the handshake lint, the readiness
report and the export redaction all judge the same way."""

from __future__ import annotations

import pytest

from devconsole.analysis.readiness import handshake_auth, query_tickets
from devconsole.analysis.secrets import (
    is_secret_field,
    is_secret_name,
    looks_like_token,
    subprotocol_credential,
)
from devconsole.store.redact import REDACTED, redact_pairs

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"


@pytest.mark.parametrize(
    "name",
    [
        "token",
        "access_token",
        "ACCESS-TOKEN",
        "ticket",
        "auth",
        "jwt",
        "key",
        "api_key",
        "sig",
        "signature",
        "session",
        "sessionId",
        "X-Amz-Signature",
        "bearer",
        "password",
    ],
)
def test_credential_names_of_the_handshake_lint(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["room", "page", "v", "lang", "", "---", "channel", "id"])
def test_ordinary_names_of_the_handshake_lint(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("ticket", True),
        ("access_token", True),
        ("hmac", True),
        ("X-Amz-Credential", True),
        ("author", False),  # "auth" inside a word is not a credential
        ("oauth_state", False),
        ("monkey", False),
        ("room", False),
    ],
)
def test_lint_readiness_and_redaction_agree_on_a_query_parameter(name: str, secret: bool) -> None:
    from devconsole.analysis.handshake import lint_handshake
    from devconsole.samples import handshake

    hs = handshake(cookies=(), query=[(name, "v4lue")])
    linted = any(f.topic == "query" for f in lint_handshake(hs))
    reported = query_tickets(hs) == [name]
    redacted = redact_pairs(hs.query) == [(name, REDACTED)]
    assert linted is reported is redacted is secret
    assert (handshake_auth(hs) == [f"query {name}"]) is secret


def test_json_fields_do_not_count_a_bare_key() -> None:
    assert not is_secret_field("key") and is_secret_name("key")
    assert is_secret_field("authToken") and not is_secret_field("author")


def test_subprotocol_credentials() -> None:
    assert subprotocol_credential(["access_token", JWT]) == 'subprotocol "access_token" + token'
    assert subprotocol_credential(["v1", JWT]) == "token-like subprotocol"
    k8s = "base64url.bearer.authorization.k8s.io.ZXlKaGJHY2lPaUpTVXpJMU5pSXNJbXRw"
    assert subprotocol_credential(["v4.channel.k8s.io", k8s]) == "token-like subprotocol"
    for plain in (["graphql-transport-ws"], ["wamp.2.json", "wamp.2.msgpack"], ["mqtt"]):
        assert subprotocol_credential(plain) is None
    assert subprotocol_credential([]) is None


def test_token_values() -> None:
    assert looks_like_token(JWT) and looks_like_token("AbCdEfGh1234567890XyZw")
    assert not looks_like_token("graphql-transport-ws") and not looks_like_token("v10.stomp")
