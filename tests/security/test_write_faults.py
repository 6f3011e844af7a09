"""The store refusing or holding up writes (issue 11): ``/readyz`` notices a store that
cannot write (a real read-only database: an SQLite file opened read-only, a PostgreSQL
database in read-only mode), with a text that says the cause and what helps; a write
held up by a lock another process holds waits ``WIDGET_LOCK_TIMEOUT``, then answers
503 with ``Retry-After`` and leaves nothing half-written."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.helpers import assert_error, deal
from tests.support import SCALE, FakeClock, Tenant, asgi_client, make_settings, new_tenant, running_app
from widget.runtime import Runtime
from widget.settings import Settings

CLASS_NAME = re.compile(r"[A-Z][a-z]+[A-Z]\w*|Error|Exception")  # CamelCase, *Error, *Exception


def _database_name(settings: Settings) -> str:
    return settings.database_url.rpartition("/")[2].split("?")[0]


def _admin(settings: Settings, sql: str) -> None:
    """SQL on the PostgreSQL server's maintenance database, as its superuser."""
    from tests import postgres_support

    base, _, _ = settings.database_url.rpartition("/")
    postgres_support.fetch(f"{base}/postgres", sql)


@asynccontextmanager
async def read_only_store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[tuple[httpx.AsyncClient, Tenant]]:
    """An app whose store can be read but not written: a migrated database with a company,
    then reopened read-only (SQLite: the file opened ``mode=ro``; PostgreSQL:
    ``default_transaction_read_only`` on the database)."""
    settings = make_settings(tmp_path)
    async with running_app(settings, clock) as app, asgi_client(app) as http:
        tenant = await new_tenant(app.state.runtime)
        assert (await http.get("/readyz")).status_code == 200
    if SCALE:
        _admin(settings, f"ALTER DATABASE {_database_name(settings)} SET default_transaction_read_only = on")
        url = settings.database_url
    else:
        url = f"sqlite+aiosqlite:///file:{settings.data_dir / 'widget.db'}?mode=ro&uri=true"
    read_only = make_settings(tmp_path, database_url=url, migrate_on_start=False)
    try:
        async with running_app(read_only, clock) as app, asgi_client(app) as http:
            yield http, tenant
    finally:
        if SCALE:
            _admin(settings, f"ALTER DATABASE {_database_name(settings)} RESET default_transaction_read_only")


async def test_readyz_says_the_store_cannot_write_when_the_database_is_read_only(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with read_only_store(tmp_path, clock) as (http, tenant):
        ready = await http.get("/readyz")
        assert ready.status_code == 503, ready.text
        store = ready.json()["checks"]["store"]
        assert store.startswith("unavailable: the store cannot write: the database is read-only: make "), store
        assert not CLASS_NAME.search(store), store
        assert ready.json()["checks"]["broker"] == "ok"
        assert (await http.get("/healthz")).json() == {"status": "ok"}  # the process is up
        # What the check says is what writes meet; reads still work.
        http.headers.update(tenant.headers)
        assert_error(await http.post("/api/v1/deals", json=deal()), 503, "unavailable")
        assert (await http.get("/api/v1/rooms/r-1")).status_code == 200


@asynccontextmanager
async def lock_held_elsewhere(runtime: Runtime, company_id: str) -> AsyncIterator[None]:
    """Another process holding the lock a write of this company needs: SQLite's write
    lock (a connection of its own in ``BEGIN IMMEDIATE``), or on PostgreSQL the company's
    row (``SELECT … FOR UPDATE`` in an open transaction)."""
    entered, release = threading.Event(), threading.Event()
    if SCALE:
        import asyncpg

        holder = await asyncpg.connect(runtime.settings.database_url.replace("postgresql+asyncpg", "postgresql"))
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT id FROM companies WHERE id = $1 FOR UPDATE", company_id)
        try:
            yield
        finally:
            await transaction.rollback()
            await holder.close()
        return

    def hold() -> None:
        other = sqlite3.connect(runtime.store.db.engine.url.database, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            entered.set()
            release.wait(30)
            other.execute("ROLLBACK")
        finally:
            other.close()

    holding = asyncio.ensure_future(asyncio.to_thread(hold))
    assert await asyncio.to_thread(entered.wait, 10)
    try:
        yield
    finally:
        release.set()
        await holding


async def test_a_write_blocked_by_a_lock_held_elsewhere_is_503_after_the_lock_timeout_and_writes_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(tmp_path, lock_timeout=1)
    async with running_app(settings, clock) as app, asgi_client(app) as http:
        tenant = await new_tenant(app.state.runtime)
        http.headers.update(tenant.headers)
        body = deal(room_id="r-1", creator_flag="bot")
        async with lock_held_elsewhere(app.state.runtime, tenant.id):
            started = time.monotonic()
            # Three at once: each waits from when it was asked, not behind the others.
            answers = await asyncio.gather(*(
                http.post("/api/v1/deals", json=body, headers={"Idempotency-Key": f"k-{n}"}) for n in range(3)))
            waited = time.monotonic() - started
            for response in answers:
                assert_error(response, 503, "unavailable")
                assert response.headers["retry-after"] == "5"
                assert "nothing was written" in response.json()["error"]["message"]
            assert 0.9 < waited < 2.5, waited  # the lock timeout (1 s), not 30 s, nor 3 × 1 s
        # Nothing of them is in the store, and their keys are free: a retry does the work.
        room = (await http.get("/api/v1/rooms/r-1")).json()
        assert (room["version"], room["deal"]) == (0, None)
        retried = await http.post("/api/v1/deals", json=body, headers={"Idempotency-Key": "k-0"})
        assert retried.status_code == 201, retried.text
        assert (await http.get("/api/v1/rooms/r-1")).json()["version"] == 1


def test_the_lock_timeout_is_five_seconds_by_default(tmp_path: Path) -> None:
    assert make_settings(tmp_path).lock_timeout == 5.0


async def test_readyz_writes_at_most_once_a_second(tmp_path: Path, clock: FakeClock) -> None:
    """Probes stay cheap: within a second they share the last write check's answer."""
    settings = make_settings(tmp_path)
    if SCALE:
        from tests import postgres_support

        def marker() -> object:  # the revision row's version: a new one per UPDATE
            return postgres_support.fetch(settings.database_url, "SELECT xmin::text FROM alembic_version")
    else:
        other: list[sqlite3.Connection] = []

        def marker() -> object:  # moves whenever another connection commits a change
            if not other:
                other.append(sqlite3.connect(settings.data_dir / "widget.db"))
            return other[0].execute("PRAGMA data_version").fetchone()

    async with running_app(settings, clock) as app, asgi_client(app) as http:
        before = marker()
        started = time.monotonic()
        assert (await http.get("/readyz")).status_code == 200
        written = marker()
        assert written != before  # the first probe wrote
        for _ in range(10):
            assert (await http.get("/readyz")).status_code == 200
        if time.monotonic() - started < 0.9:  # (a slow machine may have passed the second)
            assert marker() == written  # the next ten did not
        await asyncio.sleep(max(0.0, started + 1.05 - time.monotonic()))  # the interval itself
        assert (await http.get("/readyz")).status_code == 200
        assert marker() != written  # a second later, one writes again
    if not SCALE:
        other[0].close()
