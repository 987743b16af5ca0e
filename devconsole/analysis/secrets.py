"""Which names and values look like credentials: the one detector behind the handshake
lint (``analysis.handshake``), the readiness report's auth check (``analysis.readiness``)
and the redaction of exports (``store.redact``).

Core module: pure functions, no I/O. Names are split into words (on punctuation and
camelCase): a name is secret when one of its words is a credential word (``token``,
``key``, ``sig``, ``session``...) or when its letters alone contain a credential part
(``apikey``, ``accesstoken``, ``passw``...), so ``X-Amz-Signature`` and ``sessionId`` are
secret while ``author``, ``monkey`` and ``keyboard`` are not.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence

# A name is secret if one of its words (split on punctuation and camelCase) is one of
# these...
_SECRET_WORDS = frozenset(
    {
        "auth",
        "key",
        "sig",
        "sid",
        "session",
        "pwd",
        "pass",
        "token",
        "secret",
        "password",
        "ticket",
        "jwt",
        "signature",
        "cookie",
        "otp",
        "hmac",
    }
)
# ...or if its letters and digits alone (lowercase, no separators) contain one of these.
_SECRET_PARTS = (
    "token",
    "secret",
    "passw",
    "passphrase",
    "passcode",
    "apikey",
    "authorization",
    "authkey",
    "credential",
    "signature",
    "jwt",
    "ticket",
    "cookie",
    "sessionid",
    "sessid",
    "sessionkey",
    "csrf",
    "xsrf",
    "bearer",
    "privatekey",
    "accesskey",
    "secretkey",
    "clientsecret",
)
# Headers whose names match the rules above but carry no secret (and are useful to see).
_PUBLIC_HEADERS = frozenset(
    {
        "sec-websocket-key",  # a nonce, needed to check Sec-WebSocket-Accept
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "www-authenticate",  # a challenge, not a credential
        "proxy-authenticate",
    }
)
# Subprotocol names that announce a token in the next subprotocol (Kubernetes, Hasura...).
TOKEN_PROTOCOLS = frozenset(
    {"access_token", "access-token", "bearer", "authorization", "token", "auth", "jwt"}
)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_ALNUM = re.compile(r"[^A-Za-z0-9]+")


@functools.lru_cache(maxsize=4096)
def _secret(name: str, bare_key: bool) -> bool:
    words = [w.lower() for w in _NON_ALNUM.split(_CAMEL.sub(" ", name)) if w]
    if any(w in _SECRET_WORDS and (bare_key or w != "key") for w in words):
        return True
    compact = "".join(words)
    return any(p in compact for p in _SECRET_PARTS)


def is_secret_name(name: str) -> bool:
    """A query parameter, cookie, form field or subprotocol name that looks like it holds
    a credential: ``token``, ``access_token``, ``ticket``, ``auth``, ``jwt``, ``key``,
    ``api_key``, ``sig``, ``signature``, ``session``, ``sid``, ``password``, ``secret``,
    ``X-Amz-Credential``..."""
    return _secret(name[:128], True)


def is_secret_field(name: str) -> bool:
    """A JSON field name that looks like it holds a credential (``password``, ``token``,
    ``accessToken``, ``refresh_token``, ``secret``, ``api_key``, ``authorization``...). A
    bare ``key`` does not count here: it is too common in message payloads."""
    return _secret(name[:128], False)


def is_secret_header(name: str) -> bool:
    """A header whose whole value is a credential (``X-Api-Key``, ``X-Auth-Token``,
    ``X-Session-Id``, ``*token*``, ``*secret*``...). Cookie, Set-Cookie, Authorization and
    Sec-WebSocket-Protocol carry credentials in their own syntax (see
    ``devconsole.store.redact.redact_header``)."""
    lname = name.lower()
    if lname in _PUBLIC_HEADERS or lname.startswith("access-control-"):
        return False
    return _secret(name[:128], True)


# ------------------------------------------------------------------ values

# A JWT / JWS / JWE: a base64url JSON header ("eyJ" is '{"') and at least one more
# dot-separated segment. A truncated one (cut by --max-payload) still matches.
JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_.-]*")
# A run of base64 / hex / base64url characters long enough to be a token.
TOKEN_RUN = re.compile(r"[A-Za-z0-9+/=_~-]{20,}")


def is_token_run(s: str) -> bool:
    """A ``TOKEN_RUN`` match that mixes letters and digits, in both cases or 32+ long."""
    has_digit = any(c.isdigit() for c in s)
    has_alpha = any(c.isalpha() for c in s)
    if not (has_digit and has_alpha):
        return False
    mixed_case = any(c.isupper() for c in s) and any(c.islower() for c in s)
    return mixed_case or len(s) >= 32


def looks_like_token(value: str) -> bool:
    """A long random-looking string: a JWT, or 20+ base64/hex characters mixing letters and
    digits (upper and lower case, or 32 characters and more)."""
    if JWT.search(value):
        return True
    return any(is_token_run(m.group()) for m in TOKEN_RUN.finditer(value))


def subprotocol_credential(offered: Sequence[str]) -> str | None:
    """A credential carried in the offered subprotocols (browsers cannot set headers, so
    tokens travel there), described without the token: ``subprotocol "access_token" +
    token`` or ``token-like subprotocol``; None when there is none."""
    for i, p in enumerate(offered):
        if p.lower() in TOKEN_PROTOCOLS and i + 1 < len(offered):
            return f'subprotocol "{p}" + token'
    for p in offered:
        if looks_like_token(p) or is_secret_name(p):
            return "token-like subprotocol"
    return None


# ------------------------------------------------------------------ fingerprints


def fingerprint(value: str) -> str:
    """A short, stable fingerprint of a secret value: the first 8 hex digits of its
    SHA-256. Two values with the same fingerprint are (almost surely) the same, so a diff
    can say "the token differs" without showing either; it does not hide a value someone
    can guess (a short password), only keeps it off the screen."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def masked(value: str) -> str:
    """What is shown instead of a secret value: ``‹secret 3f9a1c0e, 32 chars›``."""
    return f"‹secret {fingerprint(value)}, {len(value)} chars›"
