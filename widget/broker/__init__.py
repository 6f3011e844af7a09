"""Room-change fan-out, chosen by URL scheme (``memory://``, later ``redis://``).

A subscriber gets a bounded queue of snapshots for one channel. Snapshots are whole
room states, so when a slow subscriber's queue is full the oldest is dropped: a
stream may skip versions but never goes back.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

QUEUE_SIZE = 16


class Subscription(Protocol):
    async def get(self) -> dict[str, Any] | None:
        """The next message; None once the broker is closed. Safe to cancel."""
        ...


class Broker(Protocol):
    async def publish(self, channel: str, message: dict[str, Any]) -> None: ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def room_channel(company_id: str, room_id: str) -> str:
    return f"room:{company_id}:{room_id}"


def create_broker(url: str) -> Broker:
    if url.startswith("memory://"):
        from widget.broker.memory import MemoryBroker

        return MemoryBroker()
    raise ValueError(f"unsupported broker URL scheme: {url.split(':', 1)[0]}")
