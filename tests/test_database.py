"""How SQLite transactions run (``widget/store/database.py``): writes at once on the
loop's thread; while another process holds the write lock, on a writer thread that
takes them in turn, requests' first and in arrival order; reads never wait."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from tests.helpers import hold_the_write_lock
from widget.store import database
from widget.store.database import SqliteDatabase
from widget.store.engine import open_database

pytestmark = pytest.mark.sqlite_only("the SQLite runner itself")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = open_database(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    assert isinstance(database, SqliteDatabase)
    await database.write(lambda conn: conn.execute(text("CREATE TABLE log (what TEXT)")))
    try:
        yield database
    finally:
        await database.close()


def logged(conn: Connection) -> list[str]:
    return [what for (what,) in conn.execute(text("SELECT what FROM log ORDER BY rowid"))]


def append(what: str):  # type: ignore[no-untyped-def]
    return lambda conn: conn.execute(text("INSERT INTO log VALUES (:w)"), {"w": what})


async def test_a_write_runs_at_once_on_the_loops_thread_and_checkpoints_the_wal_elsewhere(
    db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "CHECKPOINT_EVERY", 3)
    checkpoints: list[str] = []
    real_checkpoint = db._checkpoint
    monkeypatch.setattr(db, "_checkpoint", lambda: (checkpoints.append(threading.current_thread().name),
                                                    real_checkpoint()))
    ran_on = await db.write(lambda conn: (append("now")(conn), threading.current_thread())[1])
    assert ran_on is threading.main_thread()
    for i in range(5):
        await db.write(append(f"w{i}"))
    await asyncio.to_thread(db._offload.submit(lambda: None).result)  # the checkpoint job ran
    assert checkpoints and all(name.startswith("sqlite-reader") for name in checkpoints)
    assert len(await db.read(logged)) == 6


async def test_while_another_process_writes_requests_queue_first_in_order_then_background_ones(
    db: SqliteDatabase,
) -> None:
    release, holding = await hold_the_write_lock(db)
    first = asyncio.ensure_future(db.write(append("request-0")))  # the writer thread waits with it
    await asyncio.sleep(0.05)
    background = asyncio.ensure_future(db.write(append("worker"), background=True))  # queued before ...
    await asyncio.sleep(0)
    requests = [asyncio.ensure_future(db.write(append(f"request-{i}"))) for i in (1, 2)]
    await asyncio.sleep(0.05)
    assert await db.read(logged) == []  # nothing committed while the other process holds the lock
    release.set()
    await asyncio.wait_for(asyncio.gather(holding, first, background, *requests), 5)
    # ... the requests that came after it, which go first, in the order they came.
    assert await db.read(logged) == ["request-0", "request-1", "request-2", "worker"]


async def test_a_read_does_not_wait_for_a_write_in_progress(db: SqliteDatabase) -> None:
    await db.write(append("committed"))
    release, holding = await hold_the_write_lock(db)
    try:
        # Another connection holds SQLite's write lock; a read still answers at once,
        # from the last commit (WAL).
        assert await asyncio.wait_for(db.read(logged), 1) == ["committed"]
        assert await asyncio.wait_for(db.read(logged, offload=True), 1) == ["committed"]
    finally:
        release.set()
    await holding
    assert await db.read(logged) == ["committed"]


async def test_a_failed_write_is_rolled_back_and_the_next_one_runs(db: SqliteDatabase) -> None:
    def fails(conn: Connection) -> None:
        conn.execute(text("INSERT INTO log VALUES ('half')"))
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await db.write(fails)
    await db.write(append("next"))
    assert await db.read(logged) == ["next"]


async def test_a_write_whose_caller_went_away_still_commits_and_the_queue_goes_on(db: SqliteDatabase) -> None:
    release, holding = await hold_the_write_lock(db)
    abandoned = asyncio.ensure_future(db.write(append("abandoned")))
    await asyncio.sleep(0)
    abandoned.cancel()  # the client disconnected: its transaction is one whole, run anyway
    later = asyncio.ensure_future(db.write(append("later")))
    release.set()
    await asyncio.wait_for(asyncio.gather(holding, later), 5)
    assert await db.read(logged) == ["abandoned", "later"]
