"""Engine set-up per backend and Alembic migrations.

SQLite: WAL, a busy timeout and foreign keys per connection; pysqlite defers BEGIN,
so write transactions start with ``BEGIN IMMEDIATE`` (taken on the connection's
``immediate`` execution option) to make read-then-write atomic across connections.

PostgreSQL (asyncpg, the ``scale`` extra, imported only for a ``postgresql`` URL):
READ COMMITTED; a write that reads before it writes locks the company row first
(``SELECT … FOR UPDATE``, see ``Store._write``), so the writers of one company queue
on the server whatever process they run in; the worker's claims skip rows another
claim holds (``FOR UPDATE SKIP LOCKED``). Migrations take an advisory lock, so
processes starting together migrate one after the other, and the later ones find
the schema at head.

A store that cannot be opened at start (malformed URL, missing driver, server down,
refused login, no such database, a migration refused) raises ``StoreUnavailable``
with one line that says why (never the password).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from widget.settings import SettingsError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key held while migrating: "widget migrate" as a 64-bit number.
MIGRATION_LOCK = int.from_bytes(b"widgetmg", "big") >> 1
CONNECT_TIMEOUT = 10  # seconds for a PostgreSQL connection (asyncpg's default is 60)


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


def create_engine(url: str) -> AsyncEngine:
    parsed = _parse(url)
    if parsed.get_backend_name() == "postgresql":
        return _postgresql_engine(parsed)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgresql_engine(url: URL) -> AsyncEngine:
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
        pool_pre_ping=True,  # a server restart costs the next checkout a reconnect, not a 503
        pool_timeout=10,
        connect_args={"timeout": CONNECT_TIMEOUT, "server_settings": {"application_name": "widget"}},
    )


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def describe(engine: AsyncEngine) -> str:
    return engine.url.render_as_string(hide_password=True)


def unavailable(engine: AsyncEngine, exc: BaseException, doing: str) -> StoreUnavailable:
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
    return StoreUnavailable(f"database {describe(engine)}: {doing}: {reason}")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the schema to the newest revision (idempotent). On PostgreSQL the
    upgrade runs under a transaction-scoped advisory lock: a second process migrating
    at the same time waits, then finds the schema at head (DDL is transactional)."""

    def upgrade(sync_conn) -> None:  # type: ignore[no-untyped-def]
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, "head")

    try:
        conn = await engine.connect()
    except (OSError, TimeoutError, DBAPIError) as exc:
        raise unavailable(engine, exc, "cannot connect") from None
    try:
        conn = await conn.execution_options(immediate=True)
        async with conn.begin():
            if not is_sqlite(engine):
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            await conn.run_sync(upgrade)
    except (OSError, TimeoutError, DBAPIError) as exc:
        raise unavailable(engine, exc, "cannot migrate the schema") from None
    finally:
        await conn.close()


async def write_connection(engine: AsyncEngine) -> AsyncConnection:
    conn = await engine.connect()
    return await conn.execution_options(immediate=True)
