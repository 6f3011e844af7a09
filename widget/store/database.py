"""How the store's transactions run: each is one synchronous function of a SQLAlchemy
``Connection``, handed to the backend's runner whole.

SQLite (the stdlib driver): a statement costs SQLite tens of microseconds, far less
than a thread hop (aiosqlite made one per cursor call, ~50 per create), a context
switch on a busy machine, or a wait for the GIL behind a thread running SQLAlchemy's
Python (up to the 5 ms switch interval). So a write, a request's or the worker's, runs
right on the event loop's thread, in one go (nothing awaits inside it, so this
process's writes never interleave: they run in the order they were asked for), on a
connection that does not wait for SQLite's lock. Only while another process holds
that lock (a CLI command, a separate worker) does a write go to the writer thread,
which waits for it (busy timeout); while requests' writes are queued there, later ones
queue behind them, and background writes behind those. The loop's connection never
checkpoints the WAL (that can take milliseconds): every ``CHECKPOINT_EVERY`` writes a
checkpoint runs on a thread.
Reads are short and in WAL mode never wait for a writer: they run inline too, on a
connection of their own, without BEGIN and COMMIT (autocommit): this process's
writes cannot fall between a read's statements (both run whole on the loop's
thread), and another process's can only make a later row newer, never older. The
few reads that scan (``offload``) run on a reader thread, in one transaction.

PostgreSQL (asyncpg): the same functions run through ``AsyncConnection.run_sync``;
a write that names its company first locks the company row (``SELECT … FOR
UPDATE``), so the writers of one company queue on the server whatever process they
run in.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from widget.store import schema

T = TypeVar("T")
Work = Callable[[Connection], T]

FOREGROUND, BACKGROUND, STOP = 0, 1, 2
CHECKPOINT_EVERY = 500  # writes on the loop's connection between WAL checkpoints


class Database(Protocol):
    engine: Engine | AsyncEngine

    async def read(self, work: Work[T], *, offload: bool = False) -> T: ...

    async def write(self, work: Work[T], *, company_id: str | None = None, background: bool = False) -> T:
        """``work`` in one write transaction, committed when it returns (rolled back
        if it raises). ``background``: the worker's, which waits while a request's
        write is waiting."""
        ...

    async def close(self) -> None: ...


class _LockHeld(Exception):
    """Another connection holds SQLite's write lock."""


def _begin(conn: Connection) -> Any:
    """``conn.begin()``, with an error of the BEGIN the engine's ``begin`` event emits
    (the driver's own, unwrapped) raised as SQLAlchemy's: a lock timeout or a read-only
    file is then a store error like any other (503), not an unexpected one (500)."""
    try:
        return conn.begin()
    except sqlite3.OperationalError as exc:
        raise OperationalError("BEGIN IMMEDIATE", None, exc) from None


class SqliteDatabase:
    def __init__(self, engine: Engine, lock_timeout: float = 5.0) -> None:
        self.engine = engine
        # Seconds a write waits for the lock another process holds, counted from when
        # it was asked for: writes queued behind a waiting one do not wait in turn.
        self.lock_timeout = lock_timeout
        self._reader: Connection | None = None
        self._inline: Connection | None = None
        self._inline_writes = 0
        self._queued = 0  # requests' writes handed to the writer thread, not finished yet
        self._offload = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
        self._writes: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._writer.start()

    async def read(self, work: Work[T], *, offload: bool = False) -> T:
        if offload:
            return await asyncio.get_running_loop().run_in_executor(self._offload, self._read_on_new, work)
        if self._reader is None:
            self._reader = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return work(self._reader)

    def _read_on_new(self, work: Work[T]) -> T:
        with self.engine.connect() as conn, conn.begin():
            return work(conn)

    async def write(self, work: Work[T], *, company_id: str | None = None, background: bool = False) -> T:
        if not self._queued:  # (else it would overtake requests queued before it)
            try:
                return self._write_here(work)
            except _LockHeld:
                pass
        if not background:
            self._queued += 1
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        deadline = time.monotonic() + self.lock_timeout
        self._writes.put((BACKGROUND if background else FOREGROUND, next(self._order), (work, done, loop, deadline)))
        return await done  # cancelled: the write still runs (or ran) to its end

    def _write_here(self, work: Work[T]) -> T:
        if self._inline is None:
            self._inline = self.engine.connect().execution_options(immediate=True)
            driver = self._inline.connection.driver_connection
            driver.execute("PRAGMA busy_timeout=0")
            driver.execute("PRAGMA wal_autocheckpoint=0")
        try:
            transaction = _begin(self._inline)  # BEGIN IMMEDIATE, answered at once
        except OperationalError as exc:
            if "database is locked" in str(exc):
                raise _LockHeld from None
            raise
        with transaction:
            result = work(self._inline)
        self._inline_writes += 1
        if self._inline_writes % CHECKPOINT_EVERY == 0:
            self._offload.submit(self._checkpoint)
        return result

    def _checkpoint(self) -> None:
        with self.engine.connect() as conn:
            conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _write_loop(self) -> None:
        conn: Connection | None = None
        while True:
            priority, _, job = self._writes.get()
            if job is None:
                break
            work, done, loop, deadline = job
            try:
                if conn is None:
                    conn = self.engine.connect().execution_options(immediate=True)
                # What is left of this write's wait (none: one try): BEGIN IMMEDIATE
                # fails with "database is locked" past it, before anything is written.
                left = max(0, int((deadline - time.monotonic()) * 1000))
                conn.connection.driver_connection.execute(f"PRAGMA busy_timeout={left}")
                with _begin(conn):
                    result = work(conn)
            except BaseException as exc:  # handed to the awaiting request
                if conn is not None and conn.invalidated:  # a broken connection: the next write opens anew
                    conn.close()
                    conn = None
                loop.call_soon_threadsafe(self._finished, priority, done, None, exc)
            else:
                loop.call_soon_threadsafe(self._finished, priority, done, result, None)
        if conn is not None:
            conn.close()

    def _finished(self, priority: int, done: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
        if priority == FOREGROUND:
            self._queued -= 1
        if done.cancelled():
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(result)

    async def close(self) -> None:
        self._writes.put((STOP, next(self._order), None))  # after every queued write
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._offload.shutdown(wait=True)
        for conn in (self._reader, self._inline):
            if conn is not None:
                conn.close()
        self._reader = self._inline = None
        self.engine.dispose()


class PostgresDatabase:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Reads without BEGIN and ROLLBACK (two round trips): under READ COMMITTED each
        # statement reads its own snapshot anyway.
        self._reads = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def read(self, work: Work[T], *, offload: bool = False) -> T:
        try:
            async with self._reads.connect() as conn:
                return await conn.run_sync(work)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        async with self._reads.connect() as conn:  # the pool was stale (a server restart)
            return await conn.run_sync(work)

    async def write(self, work: Work[T], *, company_id: str | None = None, background: bool = False) -> T:
        async with self.engine.connect() as conn, conn.begin():
            if company_id is not None:
                companies = schema.companies.c
                await conn.execute(select(companies.id).where(companies.id == company_id).with_for_update())
            return await conn.run_sync(work)

    async def close(self) -> None:
        await self.engine.dispose()
