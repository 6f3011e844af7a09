"""The running parts tests share: a controllable clock, settings, a company with its
API key, an app with its lifespan, uvicorn in a thread, and the widget's log events.

Imported by tests, e2e and benchmarks (never ``tests.conftest``, which only holds
fixtures built from these)."""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from widget import companies
from widget.app import create_app
from widget.models import to_micros
from widget.runtime import Runtime, system_clock
from widget.settings import Settings, load_settings
from widget.store import Store

T0 = to_micros(datetime(2026, 11, 25, 9, 0, tzinfo=UTC))
DEFAULT_ORIGINS = ["http://localhost:8001", "https://inbox.example.com"]


CHECKOUT = Path(__file__).resolve().parent.parent


class FakeClock:
    """An injectable clock (µs since the epoch) that only moves when told."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)


@dataclass
class Tenant:
    id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


# Which stack the suite runs on: "embedded" (SQLite file + memory broker, the default)
# or "scale" (PostgreSQL + Redis servers the run starts: tests/postgres_support.py,
# tests/redis_support.py). `make test` runs both.
STACK = os.environ.get("WIDGET_TEST_STACK", "embedded")
if STACK not in ("embedded", "scale"):
    raise RuntimeError(f"WIDGET_TEST_STACK must be embedded or scale, not {STACK!r}")
SCALE = STACK == "scale"


def _redis_ready() -> bool:
    """The Redis half of the scale stack is there (its test server and the broker)."""
    return (importlib.util.find_spec("tests.redis_support") is not None
            and importlib.util.find_spec("widget.broker.redis") is not None)


def stack_urls(data_dir: Path, *, migrated: bool = True) -> dict[str, str]:
    """The settings that put a data dir on the scale stack: its own PostgreSQL database
    (the same one for every call with this data dir, as a SQLite file would be; made
    from the migrated template unless ``migrated`` is False) and the session's Redis.
    Empty on the embedded stack."""
    if not SCALE:
        return {}
    from tests import postgres_support

    urls = {"database_url": postgres_support.database_url(data_dir, empty=not migrated)}
    if _redis_ready():
        from tests import redis_support

        urls["broker_url"] = redis_support.broker_url()
    return urls


def stack_env(data_dir: Path, *, migrated: bool = True) -> dict[str, str]:
    """``stack_urls`` as environment variables, for ``widget`` subprocesses and the CLI."""
    return {f"WIDGET_{name.upper()}": value for name, value in stack_urls(data_dir, migrated=migrated).items()}


def schema_revision(data_dir: Path) -> str | None:
    """The schema revision stored for this data dir (its SQLite file, or on the scale
    stack its database); None when there is no database or no schema yet."""
    if SCALE:
        from tests import postgres_support

        url = stack_urls(data_dir)["database_url"]
        tables = postgres_support.fetch(url, "SELECT 1 FROM pg_tables WHERE tablename = 'alembic_version'")
        rows = postgres_support.fetch(url, "SELECT version_num FROM alembic_version") if tables else []
    else:
        import sqlite3

        path = data_dir / "widget.db"
        if not path.exists():
            return None
        db = sqlite3.connect(path)
        try:
            rows = db.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.OperationalError:  # no such table
            rows = []
        finally:
            db.close()
    return rows[0][0] if rows else None


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from widget.store.engine import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


_sqlite_template: Path | None = None
_sqlite_template_lock = threading.Lock()


def _migrated_sqlite_file() -> Path:
    """A SQLite file migrated to head, made once per session: a test's data dir starts
    from a copy of it, as on the scale stack from the template database (a migration
    run per test costs ~50 ms: about a minute of the suite)."""
    global _sqlite_template
    with _sqlite_template_lock:
        if _sqlite_template is None:
            data_dir = Path(tempfile.mkdtemp(prefix="widget-template-"))
            atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
            settings = load_settings(data_dir=data_dir, secret_keys="template-key-0123456789")
            store = Store(settings.db_url, settings.lock_timeout)

            async def migrate() -> None:
                try:
                    await store.migrate()
                finally:
                    await store.close()

            with ThreadPoolExecutor(1) as pool:  # (make_settings may run inside an event loop)
                pool.submit(asyncio.run, migrate()).result()
            assert not (data_dir / "widget.db-wal").exists()  # all of it in the one file
            _sqlite_template = data_dir / "widget.db"
    return _sqlite_template


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings on a data dir of the test's own (``tmp_path / "data"``); on the scale
    stack, with its own database (see ``stack_urls``: a first start told not to migrate
    finds it empty, as it would find a new SQLite file) and the session's Redis. On
    SQLite a new data dir starts from a migrated copy, unless the start is told not to
    migrate."""
    data_dir = Path(str(overrides.get("data_dir", tmp_path / "data")))
    migrated = overrides.get("migrate_on_start", True) is not False
    stack = stack_urls(data_dir, migrated=migrated) if "database_url" not in overrides else {}
    if not SCALE and migrated and "database_url" not in overrides and not (data_dir / "widget.db").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_migrated_sqlite_file(), data_dir / "widget.db")
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "secret_keys": "test-key-0123456789abcdef",
        "public_url": "http://127.0.0.1:8000",
        "log_format": "json",
        "rate_limit": 0,  # tests drive bursts; tests/test_limits.py turns it on
        # A Chat Panel is named (never called: no worker runs unless a test starts one),
        # so bot records get their chat-history job as deployed; without one the entry
        # fails in the create itself (tests/test_chat_history.py).
        "chat_panel_url": "http://chat-panel.test/api",
        # Timeline entries stay as written unless a test runs the worker itself.
        "embedded_worker": False,
        **stack,
        **overrides,
    }
    return load_settings(**values)


@asynccontextmanager
async def running_app(settings: Settings, clock: Any = None, **options: Any) -> AsyncIterator[Starlette]:
    """An app with its lifespan entered (store migrated, broker open)."""
    application = create_app(settings, clock or system_clock, **options)
    async with application.router.lifespan_context(application):
        yield application


def asgi_client(application: Starlette, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver", **options)


async def new_tenant(
    runtime: Runtime, company_id: str = "acme", frame_origins: list[str] | None = None
) -> Tenant:
    row, key = await companies.create_company(runtime, company_id, company_id.title(), frame_origins or DEFAULT_ORIGINS)
    return Tenant(row["id"], key)


async def mint_token(http: httpx.AsyncClient, room_id: str = "room-1", **body: object) -> str:
    """An embed token minted through the API (``http`` carries the company's key)."""
    response = await http.post("/api/v1/embed-tokens", json={"room_id": room_id, "agent_id": "agent-7", **body})
    assert response.status_code == 201, response.text
    return response.json()["token"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """uvicorn serving an app in a background thread, on a free port."""

    def __init__(self, application: Starlette, port: int | None = None) -> None:
        self.app = application
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            application, host="127.0.0.1", port=self.port, log_config=None,
            access_log=False, timeout_graceful_shutdown=2, lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def seed_company(
    settings: Settings, company_id: str = "acme", frame_origins: list[str] | None = None
) -> Tenant:
    """Create a company in the database before a live server starts (own event loop,
    own thread, so it works from sync and async tests alike)."""

    async def work() -> Tenant:
        async with running_app(settings) as application:
            return await new_tenant(application.state.runtime, company_id, frame_origins)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work()).result()


class WidgetLog:
    """The structured events logged on the ``widget`` logger during a test.

    ``logs.configure`` (run by the app's lifespan) stops ``widget`` from propagating,
    so caplog's root handler would see nothing: the ``widget_log`` fixture attaches
    caplog's handler to the ``widget`` logger itself."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def events(self, name: str | None = None) -> list[logging.LogRecord]:
        return [
            r for r in self.caplog.records
            if getattr(r, "event", None) and (name is None or r.event == name)  # type: ignore[attr-defined]
        ]

    def props(self, name: str) -> list[dict[str, object]]:
        return [dict(getattr(r, "props", {})) for r in self.events(name)]

    def clear(self) -> None:
        self.caplog.clear()


@dataclass
class Clocked:
    """An app whose settings enable the ``X-Test-Clock`` header (E1 scenarios)."""

    app: Starlette
    runtime: Runtime
    tenant: Tenant
    http: httpx.AsyncClient
    clock: FakeClock


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    """Until the ``widget serve`` at ``url`` answers ``/readyz``; its log if it died."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} not ready: {log.read_text()}"
        time.sleep(0.1)


class WidgetServer:
    """``python -m widget serve`` (embedded worker) on a fixed port and data dir; each
    start is a new process; ``kill`` is SIGKILL. Its stderr goes to ``serve-N.log``."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WIDGET_")} | {
            "WIDGET_DATA_DIR": str(tmp_path / "data"), "WIDGET_SECRET_KEYS": "test-key-0123456789abcdef",
            "WIDGET_PUBLIC_URL": self.url, "WIDGET_LOG_FORMAT": "json", "WIDGET_RATE_LIMIT": "0",
            "WIDGET_EMBEDDED_WORKER": "true", **stack_env(tmp_path / "data"),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "widget", *args], env=self.env, cwd=CHECKOUT,
                              capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    def log(self, n: int) -> Path:
        return self.tmp_path / f"serve-{n}.log"

    async def start(self) -> None:
        self.starts += 1
        with open(self.log(self.starts), "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "widget", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env, cwd=CHECKOUT, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + 20
        async with httpx.AsyncClient(timeout=1) as http:
            while True:
                assert self.process.poll() is None, self.log(self.starts).read_text()
                assert time.monotonic() < deadline, "widget serve did not start"
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None


@contextmanager
def serving_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A plain HTTP server of the test's own (a fake upstream) in a thread: its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
