"""In-process broker: one process, zero set-up."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from widget.broker import QUEUE_SIZE

_CLOSED = object()


class _Queue:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)

    def put(self, item: Any) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # drop the oldest snapshot
        self.queue.put_nowait(item)

    async def get(self) -> dict[str, Any] | None:
        item = await self.queue.get()
        if item is _CLOSED:
            self.queue.put_nowait(_CLOSED)  # stay closed for later calls
            return None
        return item

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while (item := await self.get()) is not None:
            yield item


class MemoryBroker:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[_Queue]] = defaultdict(set)

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        for queue in list(self._subscribers.get(channel, ())):
            queue.put(message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[_Queue]:
        queue = _Queue()
        self._subscribers[channel].add(queue)
        try:
            yield queue
        finally:
            subscribers = self._subscribers.get(channel)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[channel]

    def subscriber_count(self, channel: str) -> int:
        return len(self._subscribers.get(channel, ()))

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        """End every subscription so open streams finish (app shutdown)."""
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put(_CLOSED)
