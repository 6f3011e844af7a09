"""Calls to the systems we don't own (the Chat Panel, Omnichannel) through the runtime's
HTTP client: one deadline for the whole call, and every failure as an ``UpstreamError``
with a short machine reason and whether trying again later can help."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from widget.runtime import Runtime


class UpstreamError(Exception):
    def __init__(self, reason: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason  # e.g. "timeout", "http_503", "malformed_json", "not_configured"
        self.transient = transient
        self.retry_after = retry_after  # seconds the upstream asked us to wait, if it did


async def request(rt: Runtime, method: str, url: str, *, timeout: float, **options: Any) -> httpx.Response:
    """The response, whatever its status; ``timeout`` bounds the whole call, and each
    network step (the client's default would cut a slow answer short of it)."""
    try:
        async with asyncio.timeout(timeout):
            return await rt.http.request(method, url, timeout=timeout, **options)
    except (TimeoutError, httpx.TimeoutException):
        raise UpstreamError("timeout", transient=True) from None
    except httpx.ConnectError:
        raise UpstreamError("connect_error", transient=True) from None
    except httpx.TransportError:  # e.g. the connection dropped mid-answer
        raise UpstreamError("network_error", transient=True) from None


def refused(response: httpx.Response) -> UpstreamError:
    """An answer we can't use, by status: 429 and 5xx may pass (with the upstream's
    ``Retry-After``), anything else will not."""
    status = response.status_code
    if status == 429 or status >= 500:
        return UpstreamError(f"http_{status}", transient=True,
                             retry_after=retry_after(response.headers.get("retry-after")))
    return UpstreamError(f"http_{status}", transient=False)


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None if absent or odd."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
