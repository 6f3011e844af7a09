"""Local fan-out, shared by every broker: channel → this process's subscribers.

A transport (in-process for ``memory://``, one Redis connection for ``redis://``) hands
each message to ``Fanout.deliver`` once; the fan-out wraps it in one ``Message`` and puts
that same object in the buffer of every local subscriber of the channel, so what the
streams make of it (the bytes they send) is made once per process, not once per stream.
Transport and fan-out stay apart, as in encode/broadcaster: a broker only moves messages
between processes.

Buffers are bounded (``QUEUE_SIZE``): messages are whole room snapshots, so when a
slow subscriber's buffer is full the oldest is dropped, and a stream that fell behind
takes the newest of what is buffered (``drain``). A stream may skip versions, never go
back, and never holds more than ``QUEUE_SIZE`` snapshots.

A ``Resync`` marker is what a transport delivers to every subscriber after it lost
messages (its connection was down): it replaces whatever was buffered, and the stream
re-reads its room from the store. One marker per broadcast, so the streams of a room
that got the same one can share that read.

Thousands of subscribers sit idle at once, so one costs little: no buffer until
something arrives, no event object, only a future while ``get`` waits; a channel's
subscribers are a list (most rooms have one or two).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Protocol

QUEUE_SIZE = 16


class Message(dict[str, Any]):
    """A published room snapshot (its keys as published, ``version`` among them), as
    this process received it: one object for all of its local subscribers.

    ``encoded`` holds what streams send for it, made by the first stream that sends it
    and reused by the others (see ``widget/stream.py``)."""

    __slots__ = ("encoded",)

    def __init__(self, snapshot: Mapping[str, Any]) -> None:
        super().__init__(snapshot)
        self.encoded: bytes | None = None


class Resync:
    """Messages may have been lost: re-read the state from the store (any read that
    starts after this marker was made will do)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Resync()"


class Subscriber:
    """One local subscription: a bounded buffer, newest last.

    ``notify`` (optional) is called whenever something arrives or the subscription
    closes: a stream that also waits for other things (its timers, its client) waits
    on one wake-up of its own. ``get`` is for a consumer that waits on this alone.

    ``send_now`` (optional, set by the consumer) is offered each message first while
    nothing is buffered: True if it took the message (a stream sent it at once, see
    ``widget/sse.py``'s ``Wakeup.write``), and nothing is buffered or notified."""

    __slots__ = ("_buffer", "_notify", "_waiter", "_closed", "version", "send_now")

    def __init__(self, notify: Callable[[], None] | None = None) -> None:
        self._buffer: list[Message | Resync] | None = None  # made when something arrives
        self._notify = notify
        self._waiter: asyncio.Future[None] | None = None  # while get() waits
        self._closed = False
        # The newest version its consumer has (a stream: sent), for the timed re-check
        # of a broker that can lose messages (widget/recheck.py).
        self.version = 0
        self.send_now: Callable[[Message], bool] | None = None

    def put(self, item: Message) -> None:
        if self._closed:
            return
        if self._buffer is None and self.send_now is not None and self.send_now(item):
            return
        if self._buffer is None:
            self._buffer = [item]
        else:
            self._buffer.append(item)
            if len(self._buffer) > QUEUE_SIZE:
                del self._buffer[0]  # full: the oldest goes
        self._ready()

    def resync(self, marker: Resync) -> None:
        if not self._closed:
            self._buffer = [marker]  # the store read the marker causes covers all of it
            self._ready()

    def close(self) -> None:
        self._closed = True
        self._ready()

    @property
    def closed(self) -> bool:
        return self._closed

    def _ready(self) -> None:
        if self._notify is not None:
            self._notify()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Message | Resync | None:
        """The next buffered item; None once closed and empty. Safe to cancel (nothing
        is taken from the buffer before the wait ends)."""
        while not self._buffer:
            if self._closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._buffer.pop(0)

    def drain(self) -> list[Message | Resync]:
        """Everything buffered now, oldest first, without waiting."""
        items, self._buffer = self._buffer, None
        return items or []

    async def __aiter__(self) -> AsyncIterator[Message | Resync]:
        while (item := await self.get()) is not None:
            yield item


class _Joinable(Protocol):
    async def _join(self, channel: str, notify: Callable[[], None] | None) -> Subscriber: ...

    def _leave(self, channel: str, subscriber: Subscriber) -> None: ...


class Subscribed:
    """What a broker's ``subscribe`` returns: joined on entry (the broker's ``_join``),
    left on exit (its ``_leave``). A class, not an ``asynccontextmanager`` generator:
    one lives as long as each stream, and this weighs ~0.3 KB less."""

    __slots__ = ("_broker", "_channel", "_notify", "_subscriber")

    def __init__(self, broker: _Joinable, channel: str, notify: Callable[[], None] | None) -> None:
        self._broker, self._channel, self._notify = broker, channel, notify

    async def __aenter__(self) -> Subscriber:
        self._subscriber = await self._broker._join(self._channel, self._notify)
        return self._subscriber

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None,
    ) -> None:
        self._broker._leave(self._channel, self._subscriber)


class Fanout:
    """This process's subscribers by channel."""

    def __init__(self) -> None:
        self._channels: dict[str, list[Subscriber]] = {}
        self._closed = False

    def add(self, channel: str, notify: Callable[[], None] | None = None) -> tuple[Subscriber, bool]:
        """A new subscriber, and whether it is the channel's first here."""
        subscriber = Subscriber(notify)
        if self._closed:
            subscriber.close()
        subscribers = self._channels.setdefault(channel, [])
        subscribers.append(subscriber)
        return subscriber, len(subscribers) == 1

    def remove(self, channel: str, subscriber: Subscriber) -> bool:
        """Forget a subscriber; True if it was the channel's last here."""
        subscribers = self._channels.get(channel)
        if subscribers is None:
            return False
        subscribers.remove(subscriber)
        if subscribers:
            return False
        del self._channels[channel]
        return True

    def deliver(self, channel: str, snapshot: Mapping[str, Any]) -> None:
        subscribers = self._channels.get(channel)
        if not subscribers:
            return
        message = Message(snapshot)  # one object for all of them
        for subscriber in subscribers:
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
