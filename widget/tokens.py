"""Signed tokens (itsdangerous), one salt per purpose.

itsdangerous' own timestamp has 1 s resolution and one max_age for all tokens, so
every token carries its own ``exp`` (µs since the epoch) that we check ourselves.
Keys are oldest first: sign with the newest, verify with all (rotation).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any

from itsdangerous import BadData, URLSafeTimedSerializer

EMBED = "widget.embed"
CRM_LINK = "widget.crm-link"
CRM_SESSION = "widget.crm-session"


class InvalidToken(Exception):
    """Missing, garbage, bad signature, retired key or wrong purpose."""


class TokenExpired(Exception):
    def __init__(self, claims: dict[str, Any]) -> None:
        super().__init__("token expired")
        self.claims = claims  # still tells the company, for framing the page


class Signer:
    def __init__(self, keys: list[str], clock: Callable[[], int]) -> None:
        self._keys = keys
        self._clock = clock  # µs since the epoch

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._keys, salt=purpose)

    def sign(self, purpose: str, claims: dict[str, Any], ttl_seconds: int) -> tuple[str, int]:
        """Returns (token, exp in µs)."""
        exp = self._clock() + ttl_seconds * 1_000_000
        token = self._serializer(purpose).dumps({**claims, "jti": secrets.token_urlsafe(9), "exp": exp})
        return token, exp

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
