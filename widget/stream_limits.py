"""Caps on the concurrent streams of this process per embed token, per room and per
company (issue 11): one token cannot hold every file descriptor of the process (1,100
streams on one token took a server down), nor one room or company crowd out the rest.

A stream over a cap is refused with 429 and ``Retry-After`` before anything is sent; the
component then shows the room from ``/state`` and retries with its backoff, quietly.
Each process counts its own streams (as the record API's rate limit does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from widget.http_errors import ApiError
from widget.settings import Settings

RETRY_AFTER = 5  # seconds: a tab closes, a stream reconnects elsewhere


class StreamLimits:
    def __init__(self, settings: Settings) -> None:
        self._caps = {"token": settings.streams_per_token, "room": settings.streams_per_room,
                      "company": settings.streams_per_company}
        self._open: Counter[tuple[Any, ...]] = Counter()

    @contextmanager
    def held(self, claims: dict[str, Any]) -> Iterator[None]:
        """A stream of the token with these claims is open for the block; ``ApiError``
        429 if that would pass a cap (nothing is held then)."""
        company = claims["company"]
        keys = {"token": ("token", claims.get("jti"), claims["exp"]),
                "room": ("room", company, claims["room_id"]), "company": ("company", company)}
        for what, key in keys.items():
            cap = self._caps[what]
            if cap and self._open[key] >= cap:
                raise ApiError(
                    429, f"too many open streams for this {what} (at most {cap}); close one or retry later",
                    headers={"Retry-After": str(RETRY_AFTER)})
        for key in keys.values():
            self._open[key] += 1
        try:
            yield
        finally:
            for key in keys.values():
                self._open[key] -= 1
                if not self._open[key]:
                    del self._open[key]

    def count(self, what: str, *key: Any) -> int:
        """Open streams of a token (``jti, exp``), room (``company, room``) or company."""
        return self._open[(what, *key)]
