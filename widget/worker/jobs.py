"""The contract between the outbox loop and a topic's handler.

A handler's ``run`` returning means done. It raises ``Retry`` for a failure worth
another attempt (network, timeout, 5xx, 429) and ``Fail`` for one that will not get
better (4xx, a malformed answer, missing configuration); any other exception counts
as ``Retry("internal_error")``. When the loop gives up (a ``Fail``, or ``Retry`` on
the last attempt) it calls ``give_up`` with the reason before finishing the row.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from widget.runtime import Runtime
from widget.store import Row
from widget.upstream import UpstreamError


class JobError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # short and machine-readable: "timeout", "http_503"


class Retry(JobError):
    """Try again later, unless this was the last attempt; ``after``: the upstream's
    own wait in seconds (``Retry-After``), honoured when longer than the backoff."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class Fail(JobError):
    """Give up now."""


def upstream_failure(exc: UpstreamError) -> JobError:
    """A failed call to a system we don't own, as the loop's outcome."""
    return Retry(exc.reason, after=exc.retry_after) if exc.transient else Fail(exc.reason)


@dataclass(frozen=True)
class Job:
    id: int
    company_id: str
    topic: str
    payload: dict[str, Any]  # {"kind", "record_id", "room_id"}
    attempts: int  # counting this one; also the lease's fencing token

    @classmethod
    def from_row(cls, row: Row) -> Job:
        return cls(row["id"], row["company_id"], row["topic"], json.loads(row["payload"]), row["attempts"])


async def _nothing(rt: Runtime, job: Job, reason: str) -> None:
    return None


@dataclass(frozen=True)
class Handler:
    run: Callable[[Runtime, Job], Awaitable[None]]
    give_up: Callable[[Runtime, Job, str], Awaitable[None]] = _nothing
    max_attempts: int = 5
    backoff: float = 1.0  # seconds before the second attempt, doubling after each
    backoff_cap: float = 60.0

    def retry_delay(self, attempts: int) -> float:
        """Exponential backoff with "equal jitter": at least half the step, so retries
        stay spaced, and a random other half, so rows that failed together spread out."""
        step = min(self.backoff_cap, self.backoff * 2 ** (attempts - 1))
        return step / 2 + random.uniform(0, step / 2)
