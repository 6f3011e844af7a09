"""Concurrent writers on one database through separate connections (separate
runtimes: ``Store`` with its own engine and pool, broker, as separate processes or
workers would have; SQLite file or, on the scale stack, PostgreSQL + Redis): latest
wins stays exact, every room change bumps the version exactly once, ticket numbers
stay unique, created_at stays strictly increasing (PRD S01 concurrency, E1), an
idempotency key is claimed once and a deduplicated event stored once.
``tests/test_postgres.py`` does the same from several OS processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import deal
from tests.support import T0, FakeClock, make_settings, new_tenant
from widget import records as record_ops
from widget.app import create_app
from widget.broker import room_channel
from widget.models import DealIn, TicketIn
from widget.runtime import Runtime, open_runtime
from widget.store import Keyed, KeyTaken, Row


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[list[Runtime]]:
    """Two runtimes, each with its own Store (engine, connections) and broker, on one
    database; their clocks stand still, the second one 5 s ahead of the first."""
    settings = make_settings(tmp_path)
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(open_runtime(settings, FakeClock(T0 + ahead)))
            for ahead in (0, 5_000_000)
        ]


async def company(services: list[Runtime]) -> Row:
    await new_tenant(services[0])
    row = await services[1].store.get_company("acme")
    assert row is not None
    return row


@asynccontextmanager
async def each_publish(services: list[Runtime], channel: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Subscribes every runtime's broker to ``channel`` and reads them all the while (a
    subscriber's bounded buffer drops the oldest when 20 creates publish at once); on
    exit, after 50 ms without a new message, the list holds each publish once.
    memory:// is per process: a subscription sees only its own runtime's publishes. A
    shared broker (redis://) shows each subscription all of them: they must agree."""
    messages: list[dict[str, Any]] = []
    seen: list[list[dict[str, Any]]] = [[] for _ in services]

    async def read(subscription: Any, into: list[dict[str, Any]]) -> None:
        while (message := await subscription.get()) is not None:
            if isinstance(message, dict):  # not a Resync marker
                into.append(message)

    async with AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(s.broker.subscribe(channel)) for s in services]
        readers = [asyncio.create_task(read(sub, into)) for sub, into in zip(subs, seen)]
        try:
            yield messages
            count = -1
            while count != (count := sum(map(len, seen))):
                await asyncio.sleep(0.05)
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    if services[0].settings.broker_url.startswith("memory://"):
        messages.extend(m for into in seen for m in into)
    else:
        versions = [sorted(m["version"] for m in into) for into in seen]
        assert all(v == versions[0] for v in versions), versions
        messages.extend(seen[0])


async def test_two_concurrent_creates_for_one_room_each_bump_once(services: list[Runtime]) -> None:
    acme = await company(services)
    for attempt in range(10):
        room_id = f"room-{attempt}"
        async with each_publish(services, room_channel("acme", room_id)) as messages:
            records = await asyncio.gather(*(
                record_ops.create(s, "deal", acme, DealIn(name=f"from {i}", stage="New", pipeline="P",
                                                     room_id=room_id, creator_flag="bot"))
                for i, s in enumerate(services)
            ))
        assert sorted(m["version"] for m in messages) == [1, 2], (attempt, messages)  # each writer's, once
        winner = max(records, key=lambda r: (r["created_at"], r["id"]))
        assert records[0]["created_at"] != records[1]["created_at"]
        for store in (services[0].store, services[1].store):
            state = await store.room_state("acme", room_id)
            assert state.version == 2
            assert state.deal is not None and state.deal["id"] == winner["id"]
        # The message with version 2 is the final snapshot: it shows the winner.
        last = max(messages, key=lambda m: m["version"])
        assert last["deal"]["id"] == winner["id"]


async def test_many_concurrent_creates_from_two_writers(services: list[Runtime]) -> None:
    acme = await company(services)
    async with each_publish(services, room_channel("acme", "busy-room")) as messages:
        records = await asyncio.gather(*(
            record_ops.create(services[i % 2], "deal", acme, DealIn(
                name=f"deal {i}", stage="New", pipeline="P", room_id="busy-room",
                creator_flag="bot" if i % 3 else "agentic_ai"))
            for i in range(20)
        ))
    times = sorted(r["created_at"] for r in records)
    assert len(set(times)) == 20  # strictly increasing: no ties
    versions = sorted(m["version"] for m in messages)
    assert versions == list(range(1, 21))  # every create won once, each bump published once
    state = await services[0].store.room_state("acme", "busy-room")
    winner = max(records, key=lambda r: (r["created_at"], r["id"]))
    assert state.version == 20 and state.deal is not None and state.deal["id"] == winner["id"]


async def test_concurrent_tickets_get_unique_sequential_numbers(services: list[Runtime]) -> None:
    acme = await company(services)
    records = await asyncio.gather(*(
        record_ops.create(services[i % 2], "ticket", acme, TicketIn(name=f"t{i}", status="Open"))
        for i in range(20)
    ))
    assert sorted(r["unique_id"] for r in records) == [f"TCK-{n:06d}" for n in range(1, 21)]
    # Numbers follow creation order.
    by_time = sorted(records, key=lambda r: r["created_at"])
    assert [r["unique_id"] for r in by_time] == [f"TCK-{n:06d}" for n in range(1, 21)]


async def test_concurrent_delete_and_newer_create_stay_consistent(services: list[Runtime]) -> None:
    acme = await company(services)
    for attempt in range(10):
        room_id = f"room-{attempt}"
        old = await record_ops.create(services[0], "deal", acme, DealIn(
            name="old", stage="s", pipeline="p", room_id=room_id, creator_flag="bot"))
        async with each_publish(services, room_channel("acme", room_id)) as messages:
            _, new = await asyncio.gather(
                record_ops.delete(services[0], "deal", acme, old["id"]),
                record_ops.create(services[1], "deal", acme, DealIn(
                    name="new", stage="s", pipeline="p", room_id=room_id, creator_flag="agentic_ai")),
            )
        state = await services[1].store.room_state("acme", room_id)
        assert state.deal is not None and state.deal["id"] == new["id"], attempt
        # Delete first: 1 → 2 (empty) → 3 (new). Create first: 1 → 2 (new), delete of a
        # replaced record does not bump. Either way each bump was published once.
        assert state.version in (2, 3)
        assert sorted(m["version"] for m in messages) == list(range(2, state.version + 1))


async def test_two_apps_sharing_the_database_over_http(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    clock = FakeClock()
    apps = [create_app(settings, clock), create_app(settings, clock)]
    async with AsyncExitStack() as stack:
        for application in apps:
            await stack.enter_async_context(application.router.lifespan_context(application))
        tenant = await new_tenant(apps[0].state.runtime)
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=a), base_url="http://x", headers=tenant.headers))
            for a in apps
        ]
        for attempt in range(10):
            room_id = f"r-{attempt}"
            responses = await asyncio.gather(*(
                c.post("/api/v1/deals", json=deal(room_id=room_id, creator_flag="bot", name=f"n{i}"))
                for i, c in enumerate(clients)
            ))
            assert [r.status_code for r in responses] == [201, 201]
            records = [r.json() for r in responses]
            winner = max(records, key=lambda r: (r["created_at"], r["id"]))
            for c in clients:
                room = (await c.get(f"/api/v1/rooms/{room_id}")).json()
                assert room["version"] == 2 and room["deal"]["id"] == winner["id"]


async def test_a_keyed_create_sent_at_once_through_two_writers_creates_one_record(services: list[Runtime]) -> None:
    """The same Idempotency-Key through two processes' stores at once: the key is taken
    in the transaction that creates the record, so one record, and every other request
    meets the key taken with the winner's stored response."""
    acme = await company(services)
    for attempt in range(5):
        now = services[0].now()
        keyed = Keyed("acme", "/api/v1/deals", f"k-{attempt}", "h", 201, now, now - 1)
        body = DealIn(name="once", stage="New", pipeline="P", room_id=f"keyed-{attempt}", creator_flag="bot")
        outcomes = await asyncio.gather(*(
            record_ops.create(services[i % 2], "deal", acme, body, None, keyed) for i in range(10)
        ), return_exceptions=True)
        created = [o for o in outcomes if isinstance(o, dict)]
        taken = [o for o in outcomes if isinstance(o, KeyTaken)]
        assert len(created) == 1 and len(taken) == 9, outcomes
        assert {json.loads(t.existing["response"])["id"] for t in taken if t.existing} == {created[0]["id"]}
        state = await services[0].store.room_state("acme", f"keyed-{attempt}")
        assert state.version == 1 and state.deal is not None and state.deal["id"] == created[0]["id"]


async def test_a_deduplicated_event_stored_at_once_from_two_writers_is_stored_once(services: list[Runtime]) -> None:
    await company(services)
    event = ("deal_preview_displayed", {"deal_id": "de_1", "agent_id": "a"})
    for attempt in range(5):
        stored = await asyncio.gather(*(
            services[i % 2].store.record_event("acme", event, services[0].now(), f"displayed:deal:de_1:{attempt}")
            for i in range(10)
        ))
        assert sum(stored) == 1, stored
    counts = await services[1].store.event_counts("acme", 0, T0 + 10_000_000)
    assert counts == {"deal_preview_displayed": 5}


async def test_outbox_claims_from_two_writers_never_share_a_row(services: list[Runtime]) -> None:
    acme = await company(services)
    for n in range(30):
        await record_ops.create(services[0], "deal", acme, DealIn(
            name=f"d{n}", stage="s", pipeline="p", room_id=f"room-{n}", creator_flag="bot"))
    now = T0 + 10_000_000
    claims = await asyncio.gather(*(
        services[i % 2].store.claim_outbox(["chat_history"], now=now, lease_until=now + 30_000_000, limit=4)
        for i in range(10)
    ))
    ids = [row["id"] for rows in claims for row in rows]
    assert len(ids) == len(set(ids)) == 30  # every row claimed, none twice
    assert all(row["attempts"] == 1 for rows in claims for row in rows)
