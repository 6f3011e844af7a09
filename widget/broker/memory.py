"""In-process broker (``memory://``): one process, zero set-up. Publishing is handing
the message to the local fan-out, so nothing can be lost on the way."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from widget.broker.fanout import Fanout, Subscribed, Subscriber


class MemoryBroker:
    may_lose_messages = False

    def __init__(self) -> None:
        self._fanout = Fanout()

    async def start(self) -> None:
        return None

    async def publish(self, channel: str, message: Mapping[str, Any]) -> None:
        self._fanout.deliver(channel, message)

    def subscribe(self, channel: str, notify: Callable[[], None] | None = None) -> Subscribed:
        return Subscribed(self, channel, notify)

    async def _join(self, channel: str, notify: Callable[[], None] | None) -> Subscriber:
        subscriber, _ = self._fanout.add(channel, notify)
        return subscriber

    def _leave(self, channel: str, subscriber: Subscriber) -> None:
        self._fanout.remove(channel, subscriber)

    def subscriber_count(self, channel: str) -> int:
        return self._fanout.count(channel)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        """End every subscription so open streams finish (app shutdown)."""
        self._fanout.close()
