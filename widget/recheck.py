"""The timed re-check of open streams, for a broker that can lose a message
(``redis://``: a publish that failed is not retried).

Every ``WIDGET_STREAM_RECHECK`` seconds a process reads the stored version of every
room it has streams for, in one statement per 500 rooms, and gives a ``Resync`` marker
to each stream that sent an older version: only those streams re-read their room (the
streams of one room share that read, see ``widget/stream.py``). Before, every stream
re-read its room on a timer of its own: 10,000 streams made 2,000 reads a second, which
took the process down.

One ``Recheck`` per runtime and event loop; its task runs while streams are watched.
"""

from __future__ import annotations

import asyncio
import logging
import random

from widget.broker import Resync
from widget.broker.fanout import Subscriber
from widget.runtime import Runtime

log = logging.getLogger("widget.stream")

Room = tuple[str, str]  # (company_id, room_id)


class Recheck:
    _of: dict[tuple[int, asyncio.AbstractEventLoop], Recheck] = {}

    def __init__(self, rt: Runtime, interval: float, key: tuple[int, asyncio.AbstractEventLoop]) -> None:
        self._rt = rt
        self._key = key
        self._interval = interval
        self._streams: dict[Room, set[Subscriber]] = {}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, rt: Runtime) -> Recheck:
        key = (id(rt), asyncio.get_running_loop())
        recheck = cls._of.get(key)
        if recheck is None:
            recheck = cls._of[key] = cls(rt, rt.settings.stream_recheck, key)
        return recheck

    def watch(self, room: Room, subscriber: Subscriber) -> None:
        """Re-check ``room`` for this stream's subscription (its ``version``: what the
        stream sent last) until ``unwatch``."""
        self._streams.setdefault(room, set()).add(subscriber)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stream-recheck")

    def unwatch(self, room: Room, subscriber: Subscriber) -> None:
        subscribers = self._streams.get(room)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._streams[room]
        if not self._streams:  # the last stream went: so does the task, and this
            if self._task is not None:
                self._task.cancel()
                self._task = None
            Recheck._of.pop(self._key, None)

    async def _run(self) -> None:
        while True:
            # Not in step with other processes' re-checks (a restart starts them together).
            await asyncio.sleep(self._interval * random.uniform(0.8, 1.2))
            await self.once()

    async def once(self) -> int:
        """One re-check now; the number of streams told to re-read their room."""
        rooms = list(self._streams)
        try:
            stored = await self._rt.store.room_versions(rooms)
        except Exception:  # the store is out (/readyz says so): the next round tries again
            log.debug("stream re-check could not read the store", exc_info=True)
            return 0
        behind = 0
        for room in rooms:
            version = stored.get(room, 0)
            lagging = [s for s in self._streams.get(room, ()) if s.version < version]
            if lagging:
                marker = Resync()  # one per room: its streams share one read
                for subscriber in lagging:
                    subscriber.resync(marker)
                behind += len(lagging)
        return behind
