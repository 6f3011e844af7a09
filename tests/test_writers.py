"""The queue of SQLite writers in one process: one at a time, requests' writes first."""

from __future__ import annotations

import asyncio

from widget.store.writers import WriterQueue


async def test_a_waiting_request_write_goes_before_a_waiting_background_write() -> None:
    queue = WriterQueue()
    order: list[str] = []
    writing = 0

    async def write(name: str, background: bool) -> None:
        nonlocal writing
        async with queue.turn(background=background):
            writing += 1
            assert writing == 1  # one writer at a time
            order.append(name)
            await asyncio.sleep(0)
            writing -= 1

    async with queue.turn(background=False):  # a write in progress
        worker = asyncio.create_task(write("worker", True))  # waits first ...
        await asyncio.sleep(0)
        requests = [asyncio.create_task(write(f"request-{i}", False)) for i in range(2)]
        await asyncio.sleep(0)
        assert order == []
    await asyncio.wait_for(asyncio.gather(worker, *requests), 2)
    # ... but the requests waiting with it go first; the worker still gets its turn.
    assert order == ["request-0", "request-1", "worker"]


async def test_a_cancelled_waiter_does_not_block_the_queue() -> None:
    queue = WriterQueue()
    async with queue.turn(background=False):
        waiting = asyncio.create_task(queue.turn(background=False).__aenter__())
        await asyncio.sleep(0)
        waiting.cancel()
    async with asyncio.timeout(2):
        async with queue.turn(background=True):  # would wait forever if still counted
            pass
