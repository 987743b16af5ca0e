"""How to hide secrets in exports: scrub a header value, a URL, a cookie or a message
payload. Pure functions, no I/O. Which names and values look secret is decided by
``devconsole.analysis.secrets``, the same detector the handshake lint and the readiness
report use.

Everything that is replaced becomes ``[REDACTED]``; names (header names, cookie names,
query parameter names, JSON field names, the auth scheme) are kept so an export still
shows *that* a credential was sent, and where.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

from devconsole.analysis.secrets import (
    JWT,
    TOKEN_RUN,
    is_secret_field,
    is_secret_header,
    is_secret_name,
    is_token_run,
)

REDACTED = "[REDACTED]"


def redact_tokens(value: str) -> str:
    """Replace the JWTs and token-looking runs in ``value`` (keeps the rest)."""
    value = JWT.sub(REDACTED, value)
    return TOKEN_RUN.sub(lambda m: REDACTED if is_token_run(m.group()) else m.group(), value)


def redact_cookie_header(value: str) -> str:
    """``Cookie: a=1; b=2`` -> ``a=[REDACTED]; b=[REDACTED]``."""
    parts = []
    for part in value.split(";"):
        name, eq, _ = part.partition("=")
        if eq:
            parts.append(f"{name}={REDACTED}")
        elif part.strip():  # a value without a name
            parts.append(part[: len(part) - len(part.lstrip())] + REDACTED)
        else:
            parts.append(part)
    return ";".join(parts)


def redact_set_cookie(value: str) -> str:
    """``Set-Cookie: sid=abc; Path=/; HttpOnly`` -> ``sid=[REDACTED]; Path=/; HttpOnly``."""
    first, sep, attrs = value.partition(";")
    name, eq, _ = first.partition("=")
    first = f"{name}={REDACTED}" if eq else REDACTED
    return first + sep + attrs


_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,30})\s+\S")


def redact_authorization(value: str) -> str:
    """``Bearer abc`` -> ``Bearer [REDACTED]``; a value without a scheme -> ``[REDACTED]``."""
    m = _SCHEME.match(value)
    return f"{m.group(1)} {REDACTED}" if m else REDACTED


def redact_header(name: str, value: str) -> str:
    """The value of header ``name`` with its secrets replaced."""
    lname = name.lower()
    if lname == "cookie":
        return redact_cookie_header(value)
    if lname == "set-cookie":
        return redact_set_cookie(value)
    if lname in ("authorization", "proxy-authorization"):
        return redact_authorization(value)
    if lname == "sec-websocket-protocol":
        return redact_tokens(value)
    if is_secret_header(name):
        return REDACTED
    # A JWT or a secret query parameter in any other header (Referer, a custom one...)
    return redact_url_params(redact_jwts(value))


def redact_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, redact_header(k, v)) for k, v in headers]


def redact_pairs(
    pairs: list[tuple[str, str]], *, all_values: bool = False
) -> list[tuple[str, str]]:
    """Query parameters (or cookies with ``all_values``): secret-looking values replaced."""
    return [(k, REDACTED if all_values or is_secret_name(k) else redact_jwts(v)) for k, v in pairs]


def redact_jwts(value: str) -> str:
    return JWT.sub(REDACTED, value)


# ``name=value`` after ``?`` or ``&`` (a query string, in a URL or anywhere in a text).
_PARAM = re.compile(r"([?&;])([^=&#?;\s\"'<>]{1,128})=([^&#;\s\"'<>]*)")


def redact_url_params(text: str) -> str:
    """Values of secret-looking query parameters in every URL-ish ``?a=b&c=d`` in ``text``."""
    if "=" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        if is_secret_name(unquote_plus(m.group(2))):
            return f"{m.group(1)}{m.group(2)}={REDACTED}"
        return m.group()

    return _PARAM.sub(sub, text)


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*):[^/?#@]*@")


def redact_url(url: str) -> str:
    """A URL with the password of its userinfo, its secret query values and any JWT in it
    replaced."""
    url = _USERINFO.sub(lambda m: f"{m.group(1)}:{REDACTED}@", url)
    return redact_jwts(redact_url_params(url))


# ------------------------------------------------------------------ payloads

# "name": "value" (the value possibly cut short by truncation) or "name": 123
_JSON_FIELD = re.compile(
    r'"((?:[^"\\\n]|\\.){1,128})"(\s*:\s*)("(?:[^"\\]|\\.)*(?:"|\Z)|-?\d[\d.eE+-]*)',
    re.DOTALL,
)
# the same inside a JSON-encoded string: \"name\":\"value\"
_JSON_FIELD_ESCAPED = re.compile(
    r'\\"([A-Za-z0-9_.$@-]{1,128})\\"(\s*:\s*)(\\"(?:[^"\\]|\\[^"])*(?:\\"|\Z)|-?\d[\d.eE+-]*)'
)
# header-like lines (STOMP frames, raw HTTP): "passcode:secret", "Authorization: Bearer x"
_HEADER_LINE = re.compile(r"(?m)^([A-Za-z][A-Za-z0-9_-]{0,63})([ \t]*:[ \t]*)([^\r\n]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9+/=._~-]{6,}")


def _field_sub(m: re.Match[str]) -> str:
    if not is_secret_field(m.group(1)):
        return m.group()
    value = m.group(3)
    quote = '\\"' if value.startswith('\\"') else '"'
    return f"{m.group()[: m.start(3) - m.start()]}{quote}{REDACTED}{quote}"


def _line_sub(m: re.Match[str]) -> str:
    name = m.group(1)
    lname = name.lower()
    if lname in ("authorization", "proxy-authorization"):
        value = redact_authorization(m.group(3))
    elif lname == "cookie":
        value = redact_cookie_header(m.group(3))
    elif lname == "set-cookie":
        value = redact_set_cookie(m.group(3))
    elif is_secret_header(name):
        value = REDACTED
    else:
        return m.group()
    return f"{name}{m.group(2)}{value}"


def redact_text(text: str) -> str:
    """A message payload (or any text) with its secrets replaced: JWTs, values of JSON
    fields named like secrets (also inside JSON-encoded strings), ``Bearer``/``Basic``
    credentials, secret query parameters, and secret header-like lines (STOMP's
    ``passcode:``)."""
    if not text:
        return text
    text = JWT.sub(REDACTED, text)
    if '"' in text:
        text = _JSON_FIELD.sub(_field_sub, text)
        if '\\"' in text:
            text = _JSON_FIELD_ESCAPED.sub(_field_sub, text)
    if ":" in text:
        text = _HEADER_LINE.sub(_line_sub, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return redact_url_params(text)


def redact_bytes(data: bytes) -> bytes:
    """``redact_text`` on raw bytes (binary payloads, invalid UTF-8): the patterns are
    ASCII, so Latin-1 maps every byte to itself and back."""
    if not data:
        return data
    return redact_text(data.decode("latin-1")).encode("latin-1")


def redact_value(value: Any, depth: int = 0) -> Any:
    """A decoded value (a protocol's fields: dicts, lists, text, bytes) with its secrets
    replaced: values of fields named like secrets (``password``, ``passcode``,
    ``authorization``...) and, inside text and bytes, what ``redact_text`` finds."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray):
        return redact_bytes(bytes(value))
    if depth > 100:
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED
            if isinstance(k, str) and is_secret_field(k) and value[k] not in (None, "", b"")
            else redact_value(value[k], depth + 1)
            for k in value
        }
    if isinstance(value, list | tuple):
        return [redact_value(v, depth + 1) for v in value]
    return value
