"""A private PostgreSQL server for a test session (the scale stack,
``WIDGET_TEST_STACK=scale``): started from the OS packages on first use, stopped when
the session ends (``stop``, called from ``tests/conftest.py``; ``atexit`` and a
watchdog process as back-ups, so a killed run leaves no server behind).

- ``initdb`` into a temp dir, ``postgres`` on a free port on 127.0.0.1 with its socket
  in that dir, ``fsync=off`` (a test server: nothing in it outlives the run).
- The schema is migrated once, into ``widget_template``; each data dir a test uses
  gets its own database ``t_<n>``, made by ``CREATE DATABASE … TEMPLATE`` (a copy of
  the template's files: a few ms, not the ~0.3 s of running the migrations).
- Keyed by data dir, as a SQLite file is: ``make_settings(tmp_path)`` twice in one
  test opens one database, as the embedded stack opens one ``widget.db``.
- ``forget_databases`` (after each test) drops the test's databases in the background
  (``WITH (FORCE)``): the run does not wait for it, nor does the disk fill up.

Admin statements go through one asyncpg connection on a thread of its own (its own
event loop), so sync and async tests, and any event loop, can ask for a database.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any

PG_BIN = Path(os.environ.get("WIDGET_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
TEMPLATE = "widget_template"
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "400",  # several processes, each with its pool
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",  # the tests provoke errors on purpose
}
# Watches the test process; if it dies without stopping the server (kill -9), stops it.
WATCHDOG = """
import os, shutil, subprocess, sys, time
parent, pg_ctl, data, root, user = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    if not os.path.exists(data):
        sys.exit(0)
    time.sleep(1)
prefix = ["runuser", "-u", user, "--"] if user else []
subprocess.run(prefix + [pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True)
shutil.rmtree(root, ignore_errors=True)
"""


class PostgresError(RuntimeError):
    pass


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One ``postgres`` process in a temp dir. As root it runs as the ``postgres``
    user (the server refuses root); otherwise as the current user."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise PostgresError(f"PostgreSQL binaries not found in {PG_BIN} (make system-deps)")
        self.root = Path(tempfile.mkdtemp(prefix="widget-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.user = "postgres" if os.geteuid() == 0 else ""
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._watchdog: subprocess.Popen[bytes] | None = None

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        done = subprocess.run(prefix + list(argv), capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise PostgresError(f"{Path(argv[0]).name} failed: {done.stderr.strip()}\n{log[-2000:]}")

    def start(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        options = " ".join(f"-c {name}={value}" for name, value in SETTINGS.items())
        for attempt in range(5):  # a free port can be taken before the server binds it
            self.port = _free_port()
            try:
                self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                          "-o", f"-p {self.port} -k {self.root} {options}", "start")
                break
            except PostgresError:
                if attempt == 4:
                    raise
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(PG_BIN / "pg_ctl"), str(self.data),
             str(self.root), self.user],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        try:
            if self.data.exists():
                self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            if self._watchdog is not None:
                self._watchdog.wait(10)  # it sees the data dir gone and exits

    def dsn(self, database: str = "postgres") -> str:
        """For asyncpg itself."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """For the service (``WIDGET_DATABASE_URL``)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"


class _Admin:
    """An asyncpg connection to the ``postgres`` database on its own thread and loop."""

    def __init__(self, dsn: str) -> None:
        import asyncpg

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="postgres-admin", daemon=True)
        self.thread.start()
        self.conn = self.run(asyncpg.connect(dsn))
        self.lock = asyncio.Lock()  # one statement at a time on the connection

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.submit(coro).result(120)

    def close(self) -> None:
        try:
            self.run(self.conn.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class Session:
    """The server, the migrated template, and the databases handed out.

    A database given back after a test is closed to new connections, its remaining
    ones ended, renamed (a process the test left behind can never reach the next
    test's data under the old name: it finds no such database), emptied (every
    table's rows deleted, sequences restarted) and handed out again: ~10 ms instead of
    ~100 ms for a copy of the template. One that cannot be (not from the template, or
    its schema changed) is dropped."""

    def __init__(self) -> None:
        began = time.monotonic()
        self.server = PostgresServer()
        try:
            self.server.start()
            self.started_in = time.monotonic() - began
            self.admin = _Admin(self.server.dsn())
            self.admin.run(self._sql(f"CREATE DATABASE {TEMPLATE}"))
            self.admin.run(_migrate(self.server.url(TEMPLATE)))
            self.admin.run(self._sql(f"ALTER DATABASE {TEMPLATE} WITH IS_TEMPLATE true"))
        except BaseException:
            self.server.stop()
            raise
        self.ready_in = time.monotonic() - began
        self.created = 0
        self.handed_out = 0
        self.left_connected: list[str] = []  # who gave a database back with connections still open
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._by_data_dir: dict[str, _Database] = {}
        self._free: list[_Database] = []  # emptied, ready to hand out (admin loop only)
        self._returns: list[Future[Any]] = []
        self._pool = asyncio.Lock()  # a take waits for the give-backs queued before it (admin loop)

    async def _sql(self, sql: str, *args: Any) -> Any:
        async with self.admin.lock:
            return await self.admin.conn.execute(sql, *args)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        async with self.admin.lock:
            return await self.admin.conn.fetchval(sql, *args)

    def database(self, data_dir: Path, *, empty: bool = False) -> str:
        """The database of this data dir (on first use: migrated, or ``empty``)."""
        key = str(Path(data_dir).resolve())
        with self._lock:
            db = self._by_data_dir.get(key)
            if db is None:
                db = self._by_data_dir[key] = self.admin.run(self._take(empty))
                self.handed_out += 1
        return self.server.url(db.name)

    async def _take(self, empty: bool) -> _Database:
        async with self._pool:
            if not empty and self._free:
                return self._free.pop()
            name = self._new_name()
            await self._sql(f"CREATE DATABASE {name} TEMPLATE {'template0' if empty else TEMPLATE}")
            self.created += 1
            return await _Database.open(name, self.server.dsn(name), migrated=not empty)

    def _new_name(self) -> str:
        return f"t_{next(self._numbers)}"

    def forget_databases(self, owner: str = "") -> None:
        """Give back every database handed out so far (after the test ``owner``),
        without waiting."""
        with self._lock:
            databases, self._by_data_dir = list(self._by_data_dir.values()), {}
            self._returns = [f for f in self._returns if not f.done()]
            self._returns += [self.admin.submit(self._give_back(db, owner)) for db in databases]

    async def _give_back(self, db: _Database, owner: str) -> None:
        async with self._pool:
            try:
                if db.migrated and await self._reset(db, owner):
                    self._free.append(db)
                    return
            except Exception:  # noqa: BLE001 - not reusable: dropped below
                pass
            await db.close()
            await self._sql(f"DROP DATABASE IF EXISTS {db.name} WITH (FORCE)")

    async def _reset(self, db: _Database, owner: str) -> bool:
        await db.close()
        await self._sql(f"ALTER DATABASE {db.name} WITH ALLOW_CONNECTIONS false")
        for _ in range(50):  # connections closed at the test's end may take a moment to go
            if not await self._fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", db.name):
                break
            await asyncio.sleep(0.002)
        else:
            self.left_connected.append(owner or db.name)
            for _ in range(1000):  # end them; a dying backend may still commit
                if not await self._fetchval(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()) ended", db.name):
                    break
                await asyncio.sleep(0.002)
            else:
                return False
        name = self._new_name()
        await self._sql(f"ALTER DATABASE {db.name} RENAME TO {name}")
        await self._sql(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
        db.name = name
        await db.connect(self.server.dsn(name))
        return await db.empty()

    def close(self) -> None:
        try:
            for returned in self._returns:
                returned.result(60)
            for db in self._free:
                self.admin.run(db.close())
            self.admin.close()
        finally:
            self.server.stop()


class _Database:
    """A database handed out; for one made from the template, what it holds when new
    and the admin's own connection to it (to empty it)."""

    def __init__(self, name: str, migrated: bool) -> None:
        self.name = name
        self.migrated = migrated
        self.conn: Any = None
        self.schema: list[Any] = []
        self.sequences: list[str] = []

    @classmethod
    async def open(cls, name: str, dsn: str, *, migrated: bool) -> _Database:
        db = cls(name, migrated)
        if migrated:
            await db.connect(dsn)
            db.schema = await db._schema()
            db.sequences = [r[0] for r in await db.conn.fetch(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")]
        return db

    async def connect(self, dsn: str) -> None:
        import asyncpg

        self.conn = await asyncpg.connect(dsn)
        await self.conn.execute("SET session_replication_role = replica")  # rows go in any order: no FK checks

    async def close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            await conn.close()

    async def _schema(self) -> list[Any]:
        return [tuple(r) for r in await self.conn.fetch(
            "SELECT c.relname, c.relkind::text, (SELECT string_agg(version_num, ',') FROM alembic_version) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' ORDER BY 1")]

    async def empty(self) -> bool:
        """Delete every row but the schema version, restart the sequences; False if the
        schema is no longer the template's."""
        if await self._schema() != self.schema:
            return False
        tables = [r[0] for r in self.schema if r[1] == "r" and r[0] != "alembic_version"]
        await self.conn.execute("; ".join(
            [f"DELETE FROM {t}" for t in tables] + [f"ALTER SEQUENCE {s} RESTART" for s in self.sequences]))
        return True


async def _migrate(url: str) -> None:
    from widget.store import Store

    store = Store(url)
    try:
        await store.migrate()
    finally:
        await store.close()


_session: Session | None = None
_session_lock = threading.Lock()


def session() -> Session:
    """The session's server, started on first use."""
    global _session
    with _session_lock:
        if _session is None:
            _session = Session()
            atexit.register(stop)
        return _session


def database_url(data_dir: Path, *, empty: bool = False) -> str:
    return session().database(data_dir, empty=empty)


def fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one query on a database handed out (its own short connection)."""
    import asyncpg

    async def rows() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return session().admin.run(rows())


def summary() -> str | None:
    """One line about the session's server, for the end of the run."""
    if _session is None:
        return None
    s = _session
    line = (f"PostgreSQL: server up in {s.started_in:.1f} s, template migrated by {s.ready_in:.1f} s; "
            f"{s.handed_out} databases handed out, {s.created} created")
    if s.left_connected:
        line += (f"; {len(s.left_connected)} given back with connections still open (ended, renamed): "
                 + ", ".join(sorted(set(s.left_connected))))
    return line


def forget_databases(owner: str = "") -> None:
    if _session is not None:
        _session.forget_databases(owner)


def stop() -> None:
    global _session
    with _session_lock:
        if _session is not None:
            current, _session = _session, None
            current.close()
