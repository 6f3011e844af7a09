"""Local fan-out, shared by every broker: channel → this process's subscribers.

A transport (in-process for ``memory://``, one Redis connection for ``redis://``) hands
each message to ``Fanout.deliver`` once; the fan-out puts that same object in the
buffer of every local subscriber of the channel. Transport and fan-out stay apart, as
in encode/broadcaster: a broker only moves messages between processes.

Buffers are bounded (``QUEUE_SIZE``): messages are whole room snapshots, so when a
slow subscriber's buffer is full the oldest is dropped, and a stream that fell behind
takes the newest of what is buffered (``drain``). A stream may skip versions, never go
back, and never holds more than ``QUEUE_SIZE`` snapshots.

A ``Resync`` marker is what a transport delivers to every subscriber after it lost
messages (its connection was down): it replaces whatever was buffered, and the stream
re-reads its room from the store. One marker per broadcast, so the streams of a room
that got the same one can share that read.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

QUEUE_SIZE = 16

Message = dict[str, Any]


class Resync:
    """Messages may have been lost: re-read the state from the store (any read that
    starts after this marker was made will do)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Resync()"


class Subscriber:
    """One local subscription: a bounded buffer, newest last."""

    __slots__ = ("_buffer", "_ready", "_closed")

    def __init__(self, size: int = QUEUE_SIZE) -> None:
        self._buffer: deque[Message | Resync] = deque(maxlen=size)  # full: drops the oldest
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, item: Message) -> None:
        if not self._closed:
            self._buffer.append(item)
            self._ready.set()

    def resync(self, marker: Resync) -> None:
        if not self._closed:
            self._buffer.clear()  # the store read the marker causes covers all of it
            self._buffer.append(marker)
            self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def get(self) -> Message | Resync | None:
        """The next buffered item; None once closed and empty. Safe to cancel (nothing
        is taken from the buffer before the wait ends)."""
        while not self._buffer:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._buffer.popleft()

    def drain(self) -> list[Message | Resync]:
        """Everything buffered now, oldest first, without waiting."""
        items = list(self._buffer)
        self._buffer.clear()
        return items

    async def __aiter__(self) -> AsyncIterator[Message | Resync]:
        while (item := await self.get()) is not None:
            yield item


class Fanout:
    """This process's subscribers by channel."""

    def __init__(self) -> None:
        self._channels: dict[str, set[Subscriber]] = {}
        self._closed = False

    def add(self, channel: str) -> tuple[Subscriber, bool]:
        """A new subscriber, and whether it is the channel's first here."""
        subscriber = Subscriber()
        if self._closed:
            subscriber.close()
        subscribers = self._channels.setdefault(channel, set())
        subscribers.add(subscriber)
        return subscriber, len(subscribers) == 1

    def remove(self, channel: str, subscriber: Subscriber) -> bool:
        """Forget a subscriber; True if it was the channel's last here."""
        subscribers = self._channels.get(channel)
        if subscribers is None:
            return False
        subscribers.discard(subscriber)
        if subscribers:
            return False
        del self._channels[channel]
        return True

    def deliver(self, channel: str, message: Message) -> None:
        for subscriber in self._channels.get(channel, ()):
            subscriber.put(message)

    def resync(self) -> None:
        """Tell every subscriber to re-read the store (one marker for all of them)."""
        marker = Resync()
        for subscribers in self._channels.values():
            for subscriber in subscribers:
                subscriber.resync(marker)

    def close(self) -> None:
        """End every subscription (and any made later): their streams finish."""
        self._closed = True
        for subscribers in self._channels.values():
            for subscriber in subscribers:
                subscriber.close()

    def channels(self) -> set[str]:
        return set(self._channels)

    def count(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))
