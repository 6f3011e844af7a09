"""Caps on the concurrent streams of this process per embed token, per room and per
company (issue 11): one token cannot hold every file descriptor of the process (1,100
streams on one token took a server down), nor one room or company crowd out the rest.

A stream over a cap is refused with 429 and ``Retry-After`` before anything is sent; the
component then shows the room from ``/state`` and retries with its backoff, quietly.
Each process counts its own streams (as the record API's rate limit does).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from widget.http_errors import ApiError
from widget.settings import Settings

RETRY_AFTER = 5  # seconds: a tab closes, a stream reconnects elsewhere
KINDS = ("token", "room", "company")


class StreamLimits:
    def __init__(self, settings: Settings) -> None:
        self._caps = (settings.streams_per_token, settings.streams_per_room, settings.streams_per_company)
        self._open: Counter[tuple[Any, ...]] = Counter()

    def held(self, claims: dict[str, Any]) -> Held:
        """A place for a stream of the token with these claims, taken on entering (or
        ``ApiError`` 429 if that would pass a cap), given back on exit."""
        company = claims["company"]
        return Held(self, (("token", claims.get("jti"), claims["exp"]),
                           ("room", company, claims["room_id"]), ("company", company)))

    def count(self, what: str, *key: Any) -> int:
        """Open streams of a token (``jti, exp``), room (``company, room``) or company."""
        return self._open[(what, *key)]


class Held:
    """A context manager, not a ``contextmanager`` generator: one lives as long as each
    stream, and a generator's frame weighs more."""

    __slots__ = ("_limits", "_keys")

    def __init__(self, limits: StreamLimits, keys: tuple[tuple[Any, ...], ...]) -> None:
        self._limits, self._keys = limits, keys

    def __enter__(self) -> None:
        counts = self._limits._open
        for what, cap, key in zip(KINDS, self._limits._caps, self._keys):
            if cap and counts[key] >= cap:
                raise ApiError(
                    429, f"too many open streams for this {what} (at most {cap}); close one or retry later",
                    headers={"Retry-After": str(RETRY_AFTER)})
        for key in self._keys:
            counts[key] += 1

    def __exit__(self, *exc: object) -> None:
        counts = self._limits._open
        for key in self._keys:
            counts[key] -= 1
            if not counts[key]:
                del counts[key]
