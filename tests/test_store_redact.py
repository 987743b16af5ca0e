"""The redaction heuristics: secret-looking names, header values, URLs and payloads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devconsole.analysis.secrets import (
    is_secret_field,
    is_secret_header,
    is_secret_name,
    looks_like_token,
)
from devconsole.store.redact import (
    REDACTED,
    redact_bytes,
    redact_header,
    redact_pairs,
    redact_text,
    redact_tokens,
    redact_url,
)

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"


@pytest.mark.parametrize(
    "name",
    [
        "token",
        "access_token",
        "accessToken",
        "ticket",
        "auth",
        "jwt",
        "key",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "sig",
        "signature",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "session",
        "sessionId",
        "sid",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "refresh_token",
        "csrf_token",
        "authorization",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    ["EIO", "transport", "room", "channel", "v", "id", "user", "author", "monkey", "keyboard",
     "passive", "compass", "apiVersion", "page", "format", "lang"],
)  # fmt: skip
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_json_fields_do_not_treat_a_bare_key_as_secret() -> None:
    assert not is_secret_field("key")
    assert is_secret_field("api_key") and is_secret_field("privateKey")
    assert is_secret_field("password") and is_secret_field("refreshToken")


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("X-Api-Key", True),
        ("X-Auth-Token", True),
        ("X-CSRF-Token", True),
        ("X-Session-Id", True),
        ("X-Client-Secret", True),
        ("Sec-WebSocket-Key", False),
        ("Sec-WebSocket-Accept", False),
        ("Sec-WebSocket-Version", False),
        ("WWW-Authenticate", False),
        ("Access-Control-Allow-Credentials", False),
        ("Access-Control-Allow-Headers", False),
        ("Host", False),
        ("Origin", False),
        ("User-Agent", False),
        ("Keep-Alive", False),
    ],
)
def test_secret_headers(name: str, secret: bool) -> None:
    assert is_secret_header(name) is secret


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("Cookie", "a=1; b=two", f"a={REDACTED}; b={REDACTED}"),
        ("cookie", "lonely", REDACTED),
        ("Set-Cookie", "sid=abc; Path=/; HttpOnly", f"sid={REDACTED}; Path=/; HttpOnly"),
        ("Authorization", "Bearer abc.def", f"Bearer {REDACTED}"),
        ("Authorization", "Basic dXNlcjpwYXNz", f"Basic {REDACTED}"),
        ("Proxy-Authorization", "Digest username=x, response=y", f"Digest {REDACTED}"),
        ("Authorization", "rawtoken", REDACTED),
        ("Sec-WebSocket-Protocol", "graphql-transport-ws", "graphql-transport-ws"),
        ("Sec-WebSocket-Protocol", f"access_token, {JWT}", f"access_token, {REDACTED}"),
        (
            "Sec-WebSocket-Protocol",
            "base64url.bearer.authorization.k8s.io.ZXlKaGJHY2lPaUpTVXpJMU5p, v4.channel.k8s.io",
            f"base64url.bearer.authorization.k8s.io.{REDACTED}, v4.channel.k8s.io",
        ),
        ("X-Api-Key", "k-123", REDACTED),
        ("X-Auth-Token", "t", REDACTED),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("WWW-Authenticate", 'Bearer realm="x"', 'Bearer realm="x"'),
        ("Referer", "https://app/?token=abc&page=2", f"https://app/?token={REDACTED}&page=2"),
        ("X-Custom", f"v={JWT}", f"v={REDACTED}"),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (X11; Linux x86_64)"),
    ],
)
def test_redact_header(name: str, value: str, expected: str) -> None:
    assert redact_header(name, value) == expected


def test_tokens() -> None:
    assert looks_like_token(JWT)
    assert looks_like_token("AbCdEfGh1234567890XyZw")
    assert looks_like_token("3f2a9c0d4b5e6f708192a3b4c5d6e7f8")  # 32 hex
    assert not looks_like_token("graphql-transport-ws")
    assert not looks_like_token("chat-2024-01-protocol-version")
    assert not looks_like_token("v10.stomp")
    assert redact_tokens("chat, v2") == "chat, v2"


def test_redact_url() -> None:
    url = "wss://user:pw@host:8443/ws?ticket=abc&v=2&X-Amz-Signature=ff#frag"
    assert redact_url(url) == (
        f"wss://user:{REDACTED}@host:8443/ws?ticket={REDACTED}&v=2&X-Amz-Signature={REDACTED}#frag"
    )
    assert redact_url("ws://h/ws?EIO=4&transport=websocket") == (
        "ws://h/ws?EIO=4&transport=websocket"
    )
    assert redact_url(f"ws://h/ws/{JWT}") == f"ws://h/ws/{REDACTED}"
    assert redact_url("ws://h/ws?access%5Ftoken=x") == f"ws://h/ws?access%5Ftoken={REDACTED}"


def test_redact_pairs() -> None:
    q = [("ticket", "abc"), ("room", "lobby"), ("x", JWT)]
    assert redact_pairs(q) == [("ticket", REDACTED), ("room", "lobby"), ("x", REDACTED)]
    assert redact_pairs([("a", "1")], all_values=True) == [("a", REDACTED)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"password": "x"}', f'{{"password": "{REDACTED}"}}'),
        ('{"user":"bob","token":123}', f'{{"user":"bob","token":"{REDACTED}"}}'),
        (
            '{"auth": {"access_token": "a", "refresh_token": "b"}, "n": 1}',
            f'{{"auth": {{"access_token": "{REDACTED}", "refresh_token": "{REDACTED}"}}, "n": 1}}',
        ),
        ('{"key": "user:42"}', '{"key": "user:42"}'),
        ('{"esc": "a \\" b", "secret": "s\\"t"}', f'{{"esc": "a \\" b", "secret": "{REDACTED}"}}'),
        ('{"refresh_token": "abc', f'{{"refresh_token": "{REDACTED}"'),  # truncated payload
        (
            '{"data":"{\\"token\\":\\"abc\\",\\"a\\":1}"}',
            f'{{"data":"{{\\"token\\":\\"{REDACTED}\\",\\"a\\":1}}"}}',
        ),
        ('42["auth",{"apiKey":"AK1"}]', f'42["auth",{{"apiKey":"{REDACTED}"}}]'),
        (f"hello {JWT} bye", f"hello {REDACTED} bye"),
        (JWT[:40], REDACTED),  # a JWT cut short by --max-payload
        (
            "CONNECT\nlogin:guest\npasscode:hunter2\n\n\x00",
            f"CONNECT\nlogin:guest\npasscode:{REDACTED}\n\n\x00",
        ),
        (
            "GET /?token=t HTTP/1.1\r\nAuthorization: Bearer zzzzzz\r\nCookie: a=1\r\n",
            f"GET /?token={REDACTED} HTTP/1.1\r\nAuthorization: Bearer {REDACTED}\r\n"
            f"Cookie: a={REDACTED}\r\n",
        ),
        ("use bearer abcdef123 here", f"use bearer {REDACTED} here"),
        ("see https://x/y?access_token=zzz&page=2", f"see https://x/y?access_token={REDACTED}&page=2"),
        ("plain text, nothing: here", "plain text, nothing: here"),
        ('{"type":"ping","id":7}', '{"type":"ping","id":7}'),
        ("", ""),
    ],
)  # fmt: skip
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert redact_text(expected) == expected  # idempotent


def test_redact_bytes_keeps_other_bytes_exactly() -> None:
    data = b'\xff\x00{"password":"p\xc3\xa9"}\xfe' + "é".encode()
    assert redact_bytes(data) == b'\xff\x00{"password":"[REDACTED]"}\xfe' + "é".encode()
    blob = bytes(range(256)) * 4
    assert redact_bytes(blob) == blob


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12)),
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)


def json_pairs(doc: Any) -> list[tuple[str, Any]]:
    """Every (key, value) of every object in a parsed JSON document."""
    if isinstance(doc, dict):
        return [*doc.items(), *(p for v in doc.values() for p in json_pairs(v))]
    if isinstance(doc, list):
        return [p for v in doc for p in json_pairs(v)]
    return []


def insert(doc: Any, path: list[int], field: str, secret: str) -> Any:
    """Put {field: secret} somewhere in doc."""
    if isinstance(doc, dict) and doc and path:
        k = sorted(doc)[path[0] % len(doc)]
        doc[k] = insert(doc[k], path[1:], field, secret)
        return doc
    if isinstance(doc, list) and doc and path:
        i = path[0] % len(doc)
        doc[i] = insert(doc[i], path[1:], field, secret)
        return doc
    return {"wrapper": doc, field: secret}


@settings(max_examples=300, deadline=None)
@given(
    json_values,
    st.lists(st.integers(0, 10), max_size=4),
    st.sampled_from(["password", "token", "access_token", "refreshToken", "api_key", "secret"]),
    st.integers(0, 2**64),
    st.booleans(),
)
def test_a_secret_field_anywhere_in_json_disappears(
    doc: Any, path: list[int], field: str, n: int, compact: bool
) -> None:
    secret = f"S3cr3t{n:x}Z"
    doc = insert(doc, path, field, secret)
    seps = (",", ":") if compact else (", ", ": ")
    text = json.dumps(doc, ensure_ascii=False, separators=seps)
    out = redact_text(text)
    assert secret not in out
    # still valid JSON, with the field kept and only its value replaced
    assert (field, REDACTED) in json_pairs(json.loads(out))


# arbitrary text, mixed with pieces of what redaction looks for
_secretish = st.sampled_from(
    ['"token": "', '"password":', "?access_token=", "&key=", "Bearer ", "passcode:", "\n",
     "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", '\\"secret\\":\\"', "é", "\x00"]
)  # fmt: skip
texts = st.lists(_secretish | st.text(max_size=30), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | texts)
def test_redact_text_never_fails(text: str) -> None:
    out = redact_text(text)
    assert isinstance(out, str)
    data = text.encode("utf-8", "surrogatepass")
    out_bytes = redact_bytes(data)
    assert isinstance(out_bytes, bytes)
    if text.isascii():  # then bytes and text are redacted alike
        assert out_bytes == out.encode()
