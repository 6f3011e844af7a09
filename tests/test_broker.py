"""The broker contract, for every broker (``memory://`` and ``redis://`` against a real
redis-server): channels, release of subscriptions, bounded buffers that drop the oldest
snapshot (a stream may skip versions, never go back), messages arriving whole with their
``published_at``, as one object for all the subscribers of a process (decoded once),
``notify`` on arrival and on close, and close ending every subscription.

Redis-only behaviour (several processes, one subscription per room, outages) is in
``tests/test_redis_broker.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.helpers import next_after_quiet, next_message
from tests.redis_support import RedisServer
from widget.broker import QUEUE_SIZE, Broker, BrokerUnavailable, create_broker, room_channel
from widget.rooms import PUBLISHED_AT


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
def broker_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return request.getfixturevalue("redis_server").url()


@pytest.fixture
async def broker(broker_url: str) -> AsyncIterator[Broker]:
    opened = create_broker(broker_url)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


def snapshot(version: int) -> dict[str, object]:
    return {"room_id": "r-1", "version": version, "deal": None, "ticket": None}


def test_room_channel_is_per_company_and_room() -> None:
    channels = {room_channel(c, r) for c in ("acme", "globex") for r in ("r-1", "r-2")}
    assert len(channels) == 4


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError):
        create_broker("kafka://x")


async def test_publish_reaches_every_subscriber_of_the_channel_only(broker: Broker) -> None:
    async with broker.subscribe(room_channel("acme", "r-1")) as a, \
            broker.subscribe(room_channel("acme", "r-1")) as b, \
            broker.subscribe(room_channel("acme", "r-2")) as other:
        await broker.publish(room_channel("acme", "r-1"), snapshot(1))
        assert await next_message(a) == snapshot(1)
        assert await next_message(b) == snapshot(1)
        control = broker.publish(room_channel("acme", "r-2"), snapshot(7))
        assert await next_after_quiet(other, control) == snapshot(7)  # r-1's never came
        await broker.publish(room_channel("globex", "r-1"), snapshot(9))
        control = broker.publish(room_channel("acme", "r-1"), snapshot(8))
        assert await next_after_quiet(a, control) == snapshot(8)  # globex's never came


async def test_publish_without_subscribers_is_fine_and_late_subscribers_see_only_new(broker: Broker) -> None:
    await broker.publish(room_channel("acme", "r-1"), snapshot(1))
    async with broker.subscribe(room_channel("acme", "r-1")) as sub:
        control = broker.publish(room_channel("acme", "r-1"), snapshot(2))
        assert (await next_after_quiet(sub, control))["version"] == 2  # not the earlier 1


async def test_subscription_is_released_on_exit_even_when_cancelled(broker: Broker) -> None:
    channel = room_channel("acme", "r-1")
    entered = asyncio.Event()

    async def listener() -> None:
        async with broker.subscribe(channel) as sub:
            entered.set()
            await next_message(sub, 30)

    task = asyncio.create_task(listener())
    await entered.wait()
    assert broker.subscriber_count(channel) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert broker.subscriber_count(channel) == 0
    await broker.publish(channel, snapshot(1))  # nobody left: no error


async def test_slow_subscriber_keeps_the_newest_and_never_goes_back(broker: Broker) -> None:
    channel = room_channel("acme", "r-1")
    last = QUEUE_SIZE + 5
    async with broker.subscribe(channel) as slow, broker.subscribe(channel) as fast:
        for version in range(1, last + 1):
            await broker.publish(channel, snapshot(version))
        # Positive control: every local subscriber gets a message in the same hand-over,
        # so once the reading one has the last, the slow one's buffer is complete.
        while (await next_message(fast))["version"] < last:
            pass
        kept = [item["version"] for item in slow.drain()]  # type: ignore[index]
    assert kept == list(range(last - QUEUE_SIZE + 1, last + 1))  # bounded, in order, newest last


async def test_messages_arrive_whole_with_their_publishing_time(broker: Broker) -> None:
    channel = room_channel("acme", "r-1")
    message = {"room_id": "r-1", "version": 3, "ticket": None, PUBLISHED_AT: time.time(),
               "deal": {"id": "d-1", "name": "Laptop \u201corder\u201d\nline 2", "stage": "New",
                        "pipeline": "Sales", "url": "http://x/crm/deals/d-1", "creator": "Bot",
                        "created_at": "2026-11-25T09:00:00.000000Z"}}
    async with broker.subscribe(channel) as sub:
        await broker.publish(channel, message)
        assert await next_message(sub) == message  # published_at too, as the same float


async def test_the_subscribers_of_a_process_get_one_message_object(broker: Broker) -> None:
    """Decoded once per process (Redis), wrapped once (memory): what a stream makes of
    it can be made once. The control: a second publish is a new object."""
    channel = room_channel("acme", "r-1")
    async with broker.subscribe(channel) as a, broker.subscribe(channel) as b:
        await broker.publish(channel, snapshot(1))
        first = await next_message(a)
        assert await next_message(b) is first
        await broker.publish(channel, snapshot(2))
        second = await next_message(a)
        assert await next_message(b) is second and second is not first


async def test_notify_is_called_when_something_arrives_and_when_the_broker_closes(broker: Broker) -> None:
    channel = room_channel("acme", "r-1")
    calls: list[int] = []
    async with broker.subscribe(channel, lambda: calls.append(len(calls))) as sub, \
            broker.subscribe(channel) as control:
        await broker.publish(channel, snapshot(1))
        await next_message(control)  # one hand-over for both: the other has it now
        assert len(calls) == 1 and [m["version"] for m in sub.drain()] == [1]  # type: ignore[index]
        await broker.close()
        assert len(calls) == 2 and sub.closed and sub.drain() == []


async def test_close_ends_open_subscriptions(broker: Broker) -> None:
    channel = room_channel("acme", "r-1")
    async with broker.subscribe(channel) as sub:
        waiter = asyncio.create_task(sub.get() if hasattr(sub, "get") else anext(aiter(sub), None))
        await asyncio.sleep(0)
        await broker.close()
        assert await asyncio.wait_for(waiter, 1) is None


async def test_ping(broker: Broker) -> None:
    await broker.ping()


async def test_an_unreachable_redis_at_start_is_one_readable_line(tmp_path: Path) -> None:
    closed_port = RedisServer(tmp_path).port  # never started
    broker = create_broker(f"redis://127.0.0.1:{closed_port}/0")
    with pytest.raises(BrokerUnavailable) as failure:
        await broker.start()
    await broker.close()
    message = str(failure.value)
    assert "\n" not in message and "WIDGET_BROKER_URL" in message
    assert f"127.0.0.1:{closed_port}" in message
