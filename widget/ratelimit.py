"""Token buckets in process memory (each worker limits on its own), one class for every
limit: record-API requests per company, failed API-key authentications per source
address, ``/open`` and ``/telemetry`` calls per embed token.

Buckets of sources and tokens come and go: once a bucket is full again it is the same
as no bucket, so those are dropped whenever the map has doubled since the last sweep;
memory stays bounded by the keys active within one refill time."""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Iterable

from starlette.requests import Request

SWEEP_AT_LEAST = 1024  # keys kept before a sweep is worth it


class RateLimiter:
    def __init__(
        self, per_second: float, monotonic: Callable[[], float] = time.monotonic, burst: float | None = None
    ) -> None:
        self.rate = per_second
        self.burst = max(1.0, burst if burst is not None else 2 * per_second)
        self._monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._sweep_at = SWEEP_AT_LEAST

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def acquire(self, key: str) -> float:
        """0 if the request may go ahead (one token taken), else the seconds to wait
        before retrying."""
        if self.rate <= 0:
            return 0.0
        now = self._monotonic()
        tokens = self._tokens(key, now)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) >= self._sweep_at:
                self._sweep(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate

    def wait(self, key: str) -> float:
        """What ``acquire`` would answer, without taking a token: for limits that count
        only some outcomes (failed authentications), checked before the attempt."""
        if self.rate <= 0:
            return 0.0
        tokens = self._tokens(key, self._monotonic())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def _sweep(self, now: float) -> None:
        self._buckets = {key: (tokens, at) for key, (tokens, at) in self._buckets.items()
                         if tokens + (now - at) * self.rate < self.burst}
        self._sweep_at = max(SWEEP_AT_LEAST, 2 * len(self._buckets))


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(values: Iterable[str]) -> list[Network]:
    """``WIDGET_TRUSTED_PROXIES`` entries (addresses or CIDR blocks); ValueError if one
    is neither."""
    return [ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip()]


def _within(address: str, trusted: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def source_address(request: Request, trusted: list[Network]) -> str:
    """The address a request came from: the connection's peer; when that peer is a
    trusted proxy, the right-most address of ``X-Forwarded-For`` that is not one (what
    a proxy appends can be believed, what the client sent cannot)."""
    peer = request.client.host if request.client else ""
    if not trusted or not _within(peer, trusted):
        return peer
    forwarded = [part.strip() for part in ",".join(request.headers.getlist("x-forwarded-for")).split(",")]
    source = peer
    for address in reversed([part for part in forwarded if part]):
        source = address
        if not _within(address, trusted):
            break
    return source
