"""Engine set-up per backend and Alembic migrations.

SQLite (the stdlib driver): WAL, a busy timeout and foreign keys per connection;
pysqlite defers BEGIN, so write transactions start with ``BEGIN IMMEDIATE`` (taken on
the connection's ``immediate`` execution option) to make read-then-write atomic
across processes. How transactions run: ``database.py``.

PostgreSQL (asyncpg, the ``scale`` extra, imported only for a ``postgresql`` URL):
READ COMMITTED; a write that reads before it writes locks the company row first
(see ``database.py``); the worker's claims skip rows another claim holds
(``FOR UPDATE SKIP LOCKED``). Migrations take an advisory lock, so processes
starting together migrate one after the other, and the later ones find the schema
at head.

A write waits at most ``lock_timeout`` seconds (``WIDGET_LOCK_TIMEOUT``) for a lock
another process holds (SQLite's write lock: its busy timeout; PostgreSQL's row locks,
e.g. the company row every write takes: its ``lock_timeout``), then fails whole and the
API answers 503 with ``Retry-After``. Migrations wait as long as they must.

A store that cannot be opened at start (malformed URL, missing driver, server down,
refused login, no such database, a migration refused) raises ``StoreUnavailable``
with one line that says why (never the password).
"""

from __future__ import annotations

import errno
import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
import sqlalchemy
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from widget.settings import SettingsError
from widget.store.database import Database, PostgresDatabase, SqliteDatabase

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key held while migrating: "widget migrate" as a 64-bit number.
MIGRATION_LOCK = int.from_bytes(b"widgetmg", "big") >> 1
CONNECT_TIMEOUT = 10  # seconds for a PostgreSQL connection (asyncpg's default is 60)
LOCK_TIMEOUT = 5.0  # seconds a write waits for a lock another process holds (the setting's default)


class StoreUnavailable(SettingsError):
    """The store of WIDGET_DATABASE_URL cannot be opened: the message is one line naming
    the database (its password hidden) and the reason. A ``SettingsError``, as the
    broker's ``BrokerUnavailable`` is: the CLI prints it as one line and exits 2."""


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise StoreUnavailable(
            "invalid database URL (expected sqlite+aiosqlite:///path or "
            "postgresql+asyncpg://user:password@host:port/database)"
        ) from None


def open_database(url: str, lock_timeout: float = LOCK_TIMEOUT) -> Database:
    parsed = _parse(url)
    if parsed.get_backend_name() == "postgresql":
        return PostgresDatabase(_postgresql_engine(parsed, lock_timeout))
    if parsed.get_backend_name() != "sqlite":
        raise StoreUnavailable(f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql")
    return SqliteDatabase(_sqlite_engine(parsed, lock_timeout), lock_timeout)


def _sqlite_engine(url: URL, lock_timeout: float = LOCK_TIMEOUT) -> Engine:
    """The stdlib driver (``sqlite+aiosqlite://`` URLs of the RFC are run by it too):
    ``database.py`` gives each transaction one thread hop, not one per statement."""
    if url.database and url.database != ":memory:" and not url.query.get("uri"):  # (file: URIs as given)
        try:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"database {url}: cannot create its directory {Path(url.database).parent}: {exc.strerror}: "
                "set WIDGET_DATA_DIR (or WIDGET_DATABASE_URL) to a directory this user can write"
            ) from None
    engine = sqlalchemy.create_engine(
        url.set(drivername="sqlite+pysqlite"), connect_args={"timeout": lock_timeout, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(lock_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        immediate = options.get("immediate", False)
        # On the driver's connection: one of these per transaction, and SQLAlchemy's
        # execution machinery cost more than the statement.
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgresql_engine(url: URL, lock_timeout: float = LOCK_TIMEOUT) -> AsyncEngine:
    if url.get_driver_name() != "asyncpg":
        raise StoreUnavailable(f"unsupported PostgreSQL driver {url.get_driver_name()!r}: use postgresql+asyncpg://")
    if importlib.util.find_spec("asyncpg") is None:
        raise StoreUnavailable(
            "PostgreSQL needs the asyncpg driver: install the scale extra (pip install 'widget[scale]')"
        )
    return create_async_engine(
        url,
        isolation_level="READ COMMITTED",
        pool_size=10,
        max_overflow=10,
        # No pre-ping: it cost each checkout three round trips. After a server restart
        # the first use of a stale connection fails; SQLAlchemy then drops every pooled
        # connection, a read is tried again on a fresh one (database.py), a write answers
        # 503 once (whether its COMMIT landed is unknown, so it is not repeated).
        pool_pre_ping=False,
        pool_timeout=10,
        connect_args={"timeout": CONNECT_TIMEOUT, "server_settings": {
            "application_name": "widget", "lock_timeout": f"{max(1, int(lock_timeout * 1000))}ms"}},
    )


def describe(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=True)


def unavailable(db: Database, exc: BaseException, doing: str) -> StoreUnavailable:
    """``exc`` (raised while ``doing`` something at start) as one readable line."""
    if isinstance(exc, DBAPIError):
        reason = str(exc.orig if exc.orig is not None else exc)
    elif isinstance(exc, TimeoutError):
        reason = "timed out"
    elif isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
    else:
        reason = str(exc)
    reason = " ".join(reason.split()) or type(exc).__name__
    if (cause := failure_cause(exc)) is not None:  # the cause in words, and what helps
        reason = CAUSES[cause]
    return StoreUnavailable(f"database {describe(db)}: {doing}: {reason}")


# Why a write failed, as operators and agents read it: the cause and what helps; never
# an exception's class name or driver debris. PostgreSQL by SQLSTATE, SQLite by message.
_PG_CAUSES = {
    "55P03": "locked",  # lock_not_available (lock_timeout)
    "25006": "read_only",  # read_only_sql_transaction
    "53100": "full",  # disk_full
    "42501": "denied",  # insufficient_privilege
    "42P01": "no_schema",  # undefined_table
}
_SQLITE_CAUSES = {
    "database is locked": "locked",
    "readonly database": "read_only",
    "database or disk is full": "full",
    "disk i/o error": "io",
    "unable to open database file": "cannot_open",
    "no such table": "no_schema",
}
CAUSES = {
    "locked": "another process holds the database's lock: writes wait for it and then fail; "
              "find the long write (a widget command, a migration, a sqlite3 or psql session) and end it",
    "read_only": "the database is read-only: make the database file and its directory writable "
                 "(or turn off read-only mode on the server)",
    "full": "the disk holding the database is full: free space or grow the volume",
    "io": "the database file cannot be written (disk I/O error): check the disk and the file",
    "cannot_open": "the database file cannot be opened for writing: check that its directory exists and is writable",
    "denied": "the database user lacks the privilege to write: grant it on the widget's tables",
    "no_schema": "the database has no schema yet: run `widget migrate`",
}


def failure_cause(exc: BaseException) -> str | None:
    """``locked``, ``read_only``, ``full``, ``io``, ``cannot_open``, ``denied`` (keys of
    ``CAUSES``), or None for another failure."""
    orig = getattr(exc, "orig", None) if isinstance(exc, DBAPIError) else exc
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _PG_CAUSES:
        return _PG_CAUSES[sqlstate]
    if isinstance(orig, OSError) and orig.errno in (errno.ENOSPC, errno.EDQUOT):
        return "full"
    if isinstance(orig, OSError) and orig.errno == errno.EROFS:
        return "read_only"
    text_of = str(orig if orig is not None else exc).lower()
    return next((cause for needle, cause in _SQLITE_CAUSES.items() if needle in text_of), None)


def write_failure(exc: BaseException) -> str:
    """One line: why the store cannot write, and what helps."""
    cause = failure_cause(exc)
    if cause is not None:
        return CAUSES[cause]
    if isinstance(exc, (OSError, TimeoutError)) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return "the database cannot be reached: check that it is running and reachable"
    return "the database refused the write: see the widget's log"


def read_failure(exc: BaseException) -> str:
    """One line: why the store cannot be read, and what helps."""
    if failure_cause(exc) == "cannot_open":
        return "the database file cannot be opened: check that it and its directory exist and are readable"
    return "the database cannot be reached: check that it is running and reachable (details in the widget's log)"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


async def migrate(db: Database) -> None:
    """Upgrade the schema to the newest revision (idempotent), in one write transaction.
    On PostgreSQL the upgrade runs under a transaction-scoped advisory lock: a second
    process migrating at the same time waits, then finds the schema at head (DDL is
    transactional); on SQLite ``BEGIN IMMEDIATE`` does the same."""

    def upgrade(conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL lock_timeout = 0"))  # a migration waits for another to finish
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")

    try:
        await db.read(lambda conn: None)
    except (OSError, TimeoutError, DBAPIError) as exc:
        raise unavailable(db, exc, "cannot connect") from None
    try:
        await db.write(upgrade)
    except (OSError, TimeoutError, DBAPIError) as exc:
        raise unavailable(db, exc, "cannot migrate the schema") from None
