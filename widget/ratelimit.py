"""Per-company request rate limit for the record API: a token bucket per API key's
company, in process memory (each worker limits on its own)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, per_second: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_second
        self.burst = max(1.0, 2 * per_second)
        self._monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}  # company -> (tokens, at)

    def acquire(self, company_id: str) -> float:
        """0 if the request may go ahead, else the seconds to wait before retrying."""
        if self.rate <= 0:
            return 0.0
        now = self._monotonic()
        tokens, at = self._buckets.get(company_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._buckets[company_id] = (tokens - 1, now)
            return 0.0
        self._buckets[company_id] = (tokens, now)
        return (1 - tokens) / self.rate


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
