"""The queue of one process's SQLite writers.

SQLite has one writer at a time. Left to themselves, writers on pooled connections poll
in SQLite's busy handler, whose back-off makes waits spiky; here they wait their turn
in the process instead (``BEGIN IMMEDIATE`` still serialises against other processes).
Requests' writes go before the worker's background writes, so the worker's outbox
bookkeeping never queues ahead of a create, however busy the worker is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class WriterQueue:
    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._writing = False
        self._foreground_waiting = 0

    @asynccontextmanager
    async def turn(self, *, background: bool) -> AsyncIterator[None]:
        async with self._changed:
            if background:
                await self._changed.wait_for(lambda: not self._writing and not self._foreground_waiting)
            else:
                self._foreground_waiting += 1
                try:
                    await self._changed.wait_for(lambda: not self._writing)
                finally:
                    self._foreground_waiting -= 1
                    self._changed.notify_all()  # a background writer may go now (even if we were cancelled)
            self._writing = True
        try:
            yield
        finally:
            async with self._changed:
                self._writing = False
                self._changed.notify_all()
