"""Signed tokens (itsdangerous), one salt per purpose.

itsdangerous' own timestamp has 1 s resolution and one max_age for all tokens, so
every token carries its own ``exp`` (µs since the epoch) that we check ourselves.
Keys are oldest first: sign with the newest, verify with all (rotation).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

EMBED = "widget.embed"
CRM_LINK = "widget.crm-link"
CRM_SESSION = "widget.crm-session"


class InvalidToken(Exception):
    """Missing, garbage, bad signature, retired key or wrong purpose."""


class TokenExpired(Exception):
    def __init__(self, claims: dict[str, Any]) -> None:
        super().__init__("token expired")
        self.claims = claims  # still tells the company, for framing the page


class _StampedSigner(TimestampSigner):
    """itsdangerous' timestamp signer with the timestamp given, not read from the clock:
    the same payload, timestamp and key sign to the same token (``Signer.resign``)."""

    def __init__(self, *args: Any, timestamp: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timestamp = timestamp

    def get_timestamp(self) -> int:
        return self._timestamp


@dataclass(frozen=True)
class Stamped:
    """A token and what signs it again: ``payload`` (the claims with jti and exp) and
    itsdangerous' ``timestamp``. Neither is secret: without a key they sign nothing."""

    token: str
    exp: int
    payload: dict[str, Any]
    timestamp: int


class Signer:
    def __init__(self, keys: list[str], clock: Callable[[], int]) -> None:
        self._keys = keys
        self._clock = clock  # µs since the epoch

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._keys, salt=purpose)

    def sign(self, purpose: str, claims: dict[str, Any], ttl_seconds: int) -> tuple[str, int]:
        """Returns (token, exp in µs)."""
        stamped = self.stamp(purpose, claims, ttl_seconds)
        return stamped.token, stamped.exp

    def stamp(self, purpose: str, claims: dict[str, Any], ttl_seconds: int) -> Stamped:
        """A new token with what ``resign`` needs to make it again."""
        exp = self._clock() + ttl_seconds * 1_000_000
        payload = {**claims, "jti": secrets.token_urlsafe(9), "exp": exp}
        timestamp = int(time.time())
        return Stamped(self.resign(purpose, payload, timestamp), exp, payload, timestamp)

    def resign(self, purpose: str, payload: dict[str, Any], timestamp: int) -> str:
        """The token of ``payload`` signed at ``timestamp`` with the newest key: the very
        token ``stamp`` made while that key is the newest, an equivalent one after a
        rotation. So a stored response need not hold a usable token (``embed_tokens``)."""
        serializer = URLSafeTimedSerializer(
            self._keys, salt=purpose, signer=_StampedSigner, signer_kwargs={"timestamp": timestamp})
        return serializer.dumps(payload)

    def verify(self, purpose: str, token: str | None) -> dict[str, Any]:
        if not token or len(token) > 4096:
            raise InvalidToken()
        try:
            claims = self._serializer(purpose).loads(token)
        except BadData:
            raise InvalidToken() from None
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
            raise InvalidToken()
        if claims["exp"] <= self._clock():
            raise TokenExpired(claims)
        return claims


def new_api_key() -> str:
    return "wk_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # API keys carry 256 bits of entropy, so a plain SHA-256 is enough at rest.
    return hashlib.sha256(key.encode()).hexdigest()
