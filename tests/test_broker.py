"""The in-process broker (``memory://``): channels, release of subscriptions, bounded
queues that drop the oldest snapshot (a stream may skip versions, never go back), and
close ending every subscription."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import next_after_quiet, next_message
from widget.broker import QUEUE_SIZE, create_broker, room_channel


def snapshot(version: int) -> dict[str, object]:
    return {"room_id": "r-1", "version": version, "deal": None, "ticket": None}


def test_room_channel_is_per_company_and_room() -> None:
    channels = {room_channel(c, r) for c in ("acme", "globex") for r in ("r-1", "r-2")}
    assert len(channels) == 4


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError):
        create_broker("kafka://x")


async def test_publish_reaches_every_subscriber_of_the_channel_only() -> None:
    broker = create_broker("memory://")
    try:
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
    finally:
        await broker.close()


async def test_publish_without_subscribers_is_fine_and_late_subscribers_see_only_new() -> None:
    broker = create_broker("memory://")
    try:
        await broker.publish(room_channel("acme", "r-1"), snapshot(1))
        async with broker.subscribe(room_channel("acme", "r-1")) as sub:
            control = broker.publish(room_channel("acme", "r-1"), snapshot(2))
            assert (await next_after_quiet(sub, control))["version"] == 2  # not the earlier 1
    finally:
        await broker.close()


async def test_subscription_is_released_on_exit_even_when_cancelled() -> None:
    broker = create_broker("memory://")
    channel = room_channel("acme", "r-1")
    entered = asyncio.Event()

    async def listener() -> None:
        async with broker.subscribe(channel) as sub:
            entered.set()
            await next_message(sub, 30)

    task = asyncio.create_task(listener())
    await entered.wait()
    assert broker.subscriber_count(channel) == 1  # type: ignore[attr-defined]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert broker.subscriber_count(channel) == 0  # type: ignore[attr-defined]
    await broker.publish(channel, snapshot(1))  # nobody left: no error
    await broker.close()


async def test_slow_subscriber_drops_the_oldest_and_never_goes_back() -> None:
    broker = create_broker("memory://")
    channel = room_channel("acme", "r-1")
    try:
        async with broker.subscribe(channel) as sub:
            for version in range(1, QUEUE_SIZE + 6):
                await broker.publish(channel, snapshot(version))
            seen = []
            while True:
                try:
                    seen.append((await next_message(sub, 0.05))["version"])
                except TimeoutError:
                    break
        assert len(seen) == QUEUE_SIZE
        assert seen == sorted(seen)  # in order, newest last
        assert seen[-1] == QUEUE_SIZE + 5
    finally:
        await broker.close()


async def test_close_ends_open_subscriptions() -> None:
    broker = create_broker("memory://")
    channel = room_channel("acme", "r-1")
    async with broker.subscribe(channel) as sub:
        waiter = asyncio.create_task(sub.get() if hasattr(sub, "get") else anext(aiter(sub), None))
        await asyncio.sleep(0)
        await broker.close()
        assert await asyncio.wait_for(waiter, 1) is None


async def test_ping() -> None:
    broker = create_broker("memory://")
    await broker.ping()
    await broker.close()
