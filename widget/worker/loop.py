"""The outbox worker (RFC sections 1, 8, 9): claims due rows with a lease, runs each
topic's handler out of the request path, records the outcome, and once a day runs the
retention purge.

Delivery is at least once, and one loop at a time: a claim leases rows for ``LEASE``
seconds (a row whose worker died is due again when it ends), and every outcome write
is fenced by the claim's attempt count, so a worker that lost its lease cannot
overwrite a newer claim. Handlers make their writes idempotent for the rare re-run
(a worker killed after the handler's write, before the row was marked done).
Rows whose topic has no handler here are never claimed.

Times in the database come from the runtime's clock; only the loop's own waiting is
real time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager

from widget import logs, metrics
from widget.runtime import Runtime
from widget.worker import chat_history, notify
from widget.worker.jobs import Fail, Handler, Job, Retry
from widget.worker.purge import purge

HANDLERS: Mapping[str, Handler] = {
    "chat_history": chat_history.HANDLER,
    **{topic: notify.HANDLER for topic in notify.TOPICS},
}
SECOND = 1_000_000  # µs
LEASE = 30.0  # seconds: far above one attempt (chat history: 2 s, notify: 5 s) and a batch of them
BATCH = 10  # rows per claim, run concurrently (rows of one record in order)
POLL = 1.0  # seconds between claims when idle and not nudged
# Seconds a nudged loop waits before it claims, so that a burst of creates is claimed
# (and its rows settled) in batches, not one claim per create; at most the poll interval.
GATHER = 0.05
PURGE_EVERY = 24 * 3600.0  # seconds of the runtime's clock

log = logging.getLogger("widget.worker")
_wakers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()


def nudge() -> None:
    """Wake this process's worker loops now (call it after a commit that wrote outbox
    rows), rather than at their next poll. Safe from any thread; a no-op without loops."""
    for loop, wake in list(_wakers):
        if not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)


async def run_worker(
    rt: Runtime,
    stop: asyncio.Event,
    *,
    handlers: Mapping[str, Handler] | None = None,
    poll_interval: float = POLL,
    purge_interval: float = PURGE_EVERY,
    batch_size: int = BATCH,
) -> None:
    """Run until ``stop`` is set; rows being handled then are interrupted and handed
    back (due at once). Cancelling the task instead leaves them to their lease."""
    handlers = HANDLERS if handlers is None else handlers
    wake = asyncio.Event()
    waker = (asyncio.get_running_loop(), wake)
    _wakers.add(waker)
    last_purge: int | None = None
    try:
        while not stop.is_set():
            if last_purge is None or rt.now() - last_purge >= purge_interval * SECOND:
                last_purge = rt.now()
                await _purge(rt)
            wake.clear()  # before claiming: a nudge from now on finds work or wakes us
            jobs = await _claim(rt, handlers, batch_size)
            if jobs:
                await _run_batch(rt, handlers, jobs, stop)
            else:
                await _wait(poll_interval, stop, wake)
                if wake.is_set():
                    await _wait(min(GATHER, poll_interval), stop)
    finally:
        _wakers.discard(waker)


@asynccontextmanager
async def in_background(rt: Runtime) -> AsyncIterator[None]:
    """The worker as a task of this process for the body's duration (the embedded
    default of `widget serve`); on exit it stops cleanly, handing back unfinished rows."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(rt, stop), name="outbox-worker")
    try:
        yield
    finally:
        stop.set()
        await task


async def _purge(rt: Runtime) -> None:
    try:
        await purge(rt, dry_run=False)
    except Exception:
        log.exception("retention purge failed; the next run is in a day")


async def _claim(rt: Runtime, handlers: Mapping[str, Handler], batch_size: int) -> list[Job]:
    now = rt.now()
    try:
        rows = await rt.store.claim_outbox(
            handlers, now=now, lease_until=now + int(LEASE * SECOND), limit=batch_size
        )
        return [Job.from_row(row) for row in rows]
    except Exception:  # the store is down or busy: try again at the next poll
        log.exception("could not claim outbox rows")
        return []


async def _wait(seconds: float, *events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def _run_batch(rt: Runtime, handlers: Mapping[str, Handler], jobs: list[Job], stop: asyncio.Event) -> None:
    # Rows of one record keep their order (a later Omnichannel "deleted" must not
    # overtake its "created"); different records run side by side.
    by_record: dict[tuple[object, object], list[Job]] = {}
    for job in jobs:
        by_record.setdefault((job.payload.get("kind"), job.payload.get("record_id")), []).append(job)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.gather(*(_run_in_order(rt, handlers, group, stopping) for group in by_record.values()))
    finally:
        stopping.cancel()
        await asyncio.gather(stopping, return_exceptions=True)


async def _run_in_order(
    rt: Runtime, handlers: Mapping[str, Handler], jobs: list[Job], stopping: asyncio.Future[bool]
) -> None:
    for job in jobs:
        await _run_job(rt, handlers[job.topic], job, stopping)


async def _run_job(rt: Runtime, handler: Handler, job: Job, stopping: asyncio.Future[bool]) -> None:
    if job.attempts > handler.max_attempts:
        # Claimed that often without an outcome: its workers died while running it.
        await _give_up(rt, handler, job, "abandoned", f"gave up: claimed {job.attempts} times, no outcome")
        return
    if stopping.done():
        await _settle(rt.store.outbox_release(job.id, job.attempts, now=rt.now()), job)
        return
    attempt = asyncio.ensure_future(handler.run(rt, job))
    try:
        await asyncio.wait([attempt, stopping], return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        attempt.cancel()
        raise
    if not attempt.done():  # stopping: interrupt the handler, hand the row back
        attempt.cancel()
        await asyncio.wait([attempt])
    if attempt.cancelled():
        await _settle(rt.store.outbox_release(job.id, job.attempts, now=rt.now()), job)
    else:
        await _record(rt, handler, job, attempt.exception())


async def _record(rt: Runtime, handler: Handler, job: Job, error: BaseException | None) -> None:
    if error is None:
        await _settle(rt.store.outbox_done(job.id, job.attempts, now=rt.now()), job)
        return
    metrics.ATTEMPT_FAILURES.labels(job.topic).inc()
    if isinstance(error, Fail):
        await _give_up(rt, handler, job, error.reason, f"failed: {error.reason}")
        return
    after = 0.0
    if isinstance(error, Retry):
        reason, after = error.reason, error.after or 0.0
    else:
        reason = "internal_error"
        log.error("%s row %s: handler raised", job.topic, job.id, exc_info=error)
    if job.attempts >= handler.max_attempts:
        await _give_up(rt, handler, job, reason, f"gave up after {job.attempts} attempts: {reason}")
        return
    at = rt.now() + int(max(handler.retry_delay(job.attempts), min(after, handler.backoff_cap)) * SECOND)
    logs.event("outbox_retry", logging.WARNING, topic=job.topic, outbox_id=job.id,
               attempts=job.attempts, reason=reason)
    await _settle(rt.store.outbox_retry(job.id, job.attempts, at=at, error=reason), job)


async def _give_up(rt: Runtime, handler: Handler, job: Job, reason: str, error: str) -> None:
    try:
        await handler.give_up(rt, job, reason)
    except Exception:  # the row stays leased and is given up again when the lease ends
        log.exception("%s row %s: give-up hook failed", job.topic, job.id)
        return
    logs.event("outbox_gave_up", logging.WARNING, topic=job.topic, outbox_id=job.id,
               attempts=job.attempts, reason=reason)
    metrics.GAVE_UP.labels(job.topic).inc()
    await _settle(rt.store.outbox_done(job.id, job.attempts, now=rt.now(), error=error), job)


async def _settle(write: Awaitable[bool], job: Job) -> None:
    """Record an outcome; if that fails the lease brings the row back later."""
    try:
        if not await write:
            log.warning("%s row %s: lease lost, outcome dropped", job.topic, job.id)
    except Exception:
        log.exception("%s row %s: could not record the outcome", job.topic, job.id)
