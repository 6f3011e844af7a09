"""Room-change fan-out, chosen by URL scheme: ``memory://`` (in-process) or
``redis://`` / ``rediss://`` (Redis pub/sub, several processes or hosts).

A broker moves messages (whole room snapshots with their ``version``) between
processes; ``fanout.py`` hands each one, as one ``Message`` object, to this process's
subscribers, each with a bounded buffer that drops the oldest snapshot (a stream may
skip versions, never go back).
A broker that can lose messages (``may_lose_messages``: Redis while its connection is
down, or a publish that failed) delivers a ``Resync`` marker to every subscriber once
it is back, and each process also re-checks its streams' rooms on a timer
(``WIDGET_STREAM_RECHECK``, ``widget/recheck.py``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from widget.broker.fanout import QUEUE_SIZE, Message, Resync
from widget.settings import SettingsError

__all__ = ["QUEUE_SIZE", "Broker", "BrokerUnavailable", "Message", "Resync",
           "Subscription", "create_broker", "room_channel"]


class BrokerUnavailable(SettingsError):
    """The broker of WIDGET_BROKER_URL cannot be used at start; the message is one line."""


class Subscription(Protocol):
    version: int  # the newest version its consumer has (set by it; for the re-check)

    async def get(self) -> Message | Resync | None:
        """The next message (or a ``Resync`` marker); None once the broker is closed.
        Safe to cancel."""
        ...

    def drain(self) -> list[Message | Resync]:
        """Everything buffered now, oldest first, without waiting."""
        ...

    @property
    def closed(self) -> bool:
        """The broker closed it: nothing more will arrive."""
        ...


class Broker(Protocol):
    may_lose_messages: bool

    async def start(self) -> None:
        """Connect; raise BrokerUnavailable (one readable line) if that is impossible."""
        ...

    async def publish(self, channel: str, message: Mapping[str, Any]) -> None: ...

    def subscribe(
        self, channel: str, notify: Callable[[], None] | None = None,
    ) -> AbstractAsyncContextManager[Subscription]:
        """Subscribed on entry: a message published after entering reaches it (unless
        the broker is down, in which case a Resync follows when it is back). ``notify``
        is called (synchronously, from the broker) whenever something arrives for it or
        it is closed."""
        ...

    def subscriber_count(self, channel: str) -> int:
        """This process's subscribers of the channel."""
        ...

    async def ping(self) -> None:
        """Raise if messages cannot flow right now (``/readyz``)."""
        ...

    async def close(self) -> None:
        """End every local subscription, stop background work, close connections."""
        ...


def room_channel(company_id: str, room_id: str) -> str:
    return f"room:{company_id}:{room_id}"


def create_broker(url: str) -> Broker:
    scheme = url.split(":", 1)[0]
    if scheme == "memory":
        from widget.broker.memory import MemoryBroker

        return MemoryBroker()
    if scheme in ("redis", "rediss"):
        if importlib.util.find_spec("redis") is None:
            raise BrokerUnavailable(
                "WIDGET_BROKER_URL is redis://… but the redis package is missing: "
                "pip install 'widget[scale]'"
            )
        from widget.broker.redis import RedisBroker

        return RedisBroker(url)
    raise ValueError(f"unsupported broker URL scheme: {scheme}")
