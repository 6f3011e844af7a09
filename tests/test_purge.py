"""Retention (PRD section 5.1, RFC section 8): timeline entries older than
TIMELINE_RETENTION_DAYS, idempotency keys older than 24 h, outbox rows finished more
than 7 days ago and used CRM links past their expiry go; a dry run only counts them;
the worker purges once a day."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.helpers import scalar_of
from tests.support import FakeClock
from tests.worker_support import COMPANY, bot_record, outbox, wait_until, worker_runtime
from widget.runtime import Runtime
from widget.store import Keyed, KeyTaken, schema
from widget.worker import purge, run_worker
from widget.worker.loop import SECOND
from widget.worker.purge import DAY

HOUR = 3600 * SECOND


async def count(rt: Runtime, table: object) -> int:
    return await scalar_of(rt, select(func.count()).select_from(table))  # type: ignore[arg-type]


async def entry_ages(rt: Runtime, records: dict[str, str]) -> list[str]:
    """The ages (labels of ``records``) whose timeline entry is still there."""
    return [age for age, record_id in records.items() if await rt.store.timeline("deal", record_id)]


async def test_each_kind_is_purged_past_its_age_and_a_dry_run_only_counts(tmp_path: Path, clock: FakeClock) -> None:
    async with worker_runtime(tmp_path, clock) as rt:
        now = clock.now
        records = {
            age: await bot_record(rt, f"room-{age}", at=now - offset, topics=())
            for age, offset in {
                "364 days": 364 * DAY, "365 days": 365 * DAY, "365 days + 1 µs": 365 * DAY + 1,
                "366 days": 366 * DAY,
            }.items()
        }
        for key, age in {"fresh": 23 * HOUR, "24 h": 24 * HOUR, "24 h + 1 µs": 24 * HOUR + 1}.items():
            await rt.store.remember(Keyed(COMPANY, "deals", key, "hash", 201, now - age, 0), {"key": key})
        for age in [7 * DAY, 7 * DAY + 1, 30 * DAY]:
            await bot_record(rt, f"done-{age}", at=now - age - SECOND)
            [job] = await rt.store.claim_outbox(["chat_history"], now=now, lease_until=now, limit=1)
            await rt.store.outbox_done(job["id"], job["attempts"], now=now - age)
        await bot_record(rt, "undone", at=now - 30 * DAY)  # never finished: live work, kept
        for jti, expires_at in {"expired": now - 1, "expiring": now, "valid": now + HOUR}.items():
            assert await rt.store.use_crm_link(jti, COMPANY, expires_at=expires_at, now=now - HOUR)
        # (those four records' own timeline entries are 7–30 days old: kept)

        expected = {"timeline_entries": 2, "idempotency_keys": 1, "outbox_done": 2, "used_crm_links": 1}
        tables = (schema.timeline_entries, schema.idempotency_keys, schema.outbox, schema.used_crm_links)
        before = [await count(rt, t) for t in tables]
        assert await purge(rt, dry_run=True) == expected
        assert [await count(rt, t) for t in tables] == before
        assert await purge(rt, dry_run=False) == expected
        assert await purge(rt, dry_run=False) == dict.fromkeys(expected, 0)

        assert await entry_ages(rt, records) == ["364 days", "365 days"]  # exactly at the limit: kept
        assert await rt.store.get_record("deal", COMPANY, records["366 days"]) is not None  # the record stays
        with pytest.raises(KeyTaken) as kept:  # kept; "24 h + 1 µs" went
            await rt.store.remember(Keyed(COMPANY, "deals", "24 h", "hash", 201, now, 0), {})
        assert kept.value.existing is not None and kept.value.existing["created_at"] == now - 24 * HOUR
        assert await count(rt, schema.idempotency_keys) == 2
        left = {(r["done_at"], r["next_attempt_at"]) for r in await outbox(rt)}
        assert left == {(now - 7 * DAY, now), (None, now - 30 * DAY)}
        assert not await rt.store.use_crm_link("expiring", COMPANY, expires_at=now, now=now)  # still known
        assert await rt.store.use_crm_link("expired", COMPANY, expires_at=now - 1, now=now)  # forgotten


async def test_retention_follows_the_setting(tmp_path: Path, clock: FakeClock) -> None:
    async with worker_runtime(tmp_path, clock, timeline_retention_days=30) as rt:
        records = {age: await bot_record(rt, f"room-{age}", at=clock.now - age * DAY, topics=()) for age in (29, 31)}
        assert (await purge(rt, dry_run=False))["timeline_entries"] == 1
        assert await entry_ages(rt, records) == [29]


async def test_the_worker_purges_when_it_starts_and_then_once_per_interval(tmp_path: Path, clock: FakeClock) -> None:
    async with worker_runtime(tmp_path, clock, lambda request: httpx.Response(200, json={"messages": []})) as rt:
        first = await bot_record(rt, "room-old", at=clock.now - 400 * DAY, topics=())
        stop = asyncio.Event()
        task = asyncio.create_task(run_worker(rt, stop, poll_interval=0.01, purge_interval=3600))
        await wait_until(lambda: no_entries(rt, first))
        # Another expired entry, and fresh work: the worker runs the work, the purge waits.
        second = await bot_record(rt, "room-also-old", at=clock.now - 400 * DAY, topics=())
        fresh = await bot_record(rt, "room-new")
        await wait_until(lambda: all_done(rt))
        assert await rt.store.timeline("deal", second) and await rt.store.timeline("deal", fresh)
        clock.advance(3600)
        await wait_until(lambda: no_entries(rt, second))
        stop.set()
        await task
        assert await rt.store.timeline("deal", fresh)


async def no_entries(rt: Runtime, record_id: str) -> bool:
    return not await rt.store.timeline("deal", record_id)


async def all_done(rt: Runtime) -> bool:
    return all(row["done_at"] is not None for row in await outbox(rt))
