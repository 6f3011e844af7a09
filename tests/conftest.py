"""Shared fixtures: a real app with its lifespan (SQLite file + memory broker), a
controllable clock, a company with its API key, and uvicorn in a thread."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from widget.app import create_app
from widget.models import to_micros
from widget.service import Service
from widget.settings import Settings, load_settings

T0 = to_micros(datetime(2026, 11, 25, 9, 0, tzinfo=UTC))


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


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "secret_keys": "test-key-0123456789abcdef",
        "public_url": "http://127.0.0.1:8000",
        "log_format": "json",
        "rate_limit": 0,  # tests drive bursts; tests/test_limits.py turns it on
        **overrides,
    }
    return load_settings(**values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def app(settings: Settings, clock: FakeClock) -> AsyncIterator[Starlette]:
    application = create_app(settings, clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def service(app: Starlette) -> Service:
    return app.state.service


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def new_tenant(
    service: Service, company_id: str = "acme", frame_origins: list[str] | None = None
) -> Tenant:
    row, key = await service.create_company(
        company_id, company_id.title(), frame_origins or ["http://localhost:8001", "https://inbox.example.com"]
    )
    return Tenant(row["id"], key)


@pytest.fixture
async def tenant(service: Service) -> Tenant:
    return await new_tenant(service)


@pytest.fixture
async def api(client: httpx.AsyncClient, tenant: Tenant) -> httpx.AsyncClient:
    client.headers.update(tenant.headers)
    return client


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
        application = create_app(settings)
        async with application.router.lifespan_context(application):
            return await new_tenant(application.state.service, company_id, frame_origins)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work()).result()


@pytest.fixture
def live(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[LiveServer, Tenant]]:
    """A live uvicorn server on a fresh database with one company."""
    live_settings = make_settings(tmp_path)
    tenant = seed_company(live_settings)
    with LiveServer(create_app(live_settings, clock)) as server:
        yield server, tenant


# -- added for the record-API suite (issue 3) ----------------------------------------


class WidgetLog:
    """The structured events logged on the ``widget`` logger during a test.

    ``logs.configure`` (run by the app's lifespan) stops ``widget`` from propagating,
    so caplog's root handler would see nothing: this attaches caplog's handler to the
    ``widget`` logger itself."""

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


@pytest.fixture
def widget_log(app: Starlette, caplog: pytest.LogCaptureFixture) -> Iterator[WidgetLog]:
    logger = logging.getLogger("widget")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="widget"):
            yield WidgetLog(caplog)
    finally:
        logger.removeHandler(caplog.handler)


@dataclass
class Clocked:
    """An app whose settings enable the ``X-Test-Clock`` header (E1 scenarios)."""

    app: Starlette
    service: Service
    tenant: Tenant
    http: httpx.AsyncClient
    clock: FakeClock


@pytest.fixture
async def clocked(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Clocked]:
    application = create_app(make_settings(tmp_path, test_clock=True), clock)
    async with application.router.lifespan_context(application):
        service = application.state.service
        tenant = await new_tenant(service)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=tenant.headers
        ) as http:
            yield Clocked(application, service, tenant, http, clock)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``logs.configure`` (app start-up) rewires loggers globally, with a handler bound to
    the stream of the moment (possibly a capture that is closed later): put them back."""
    names = ("widget", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate,
                 logging.getLogger(n).level, logging.getLogger(n).disabled) for n in names}
    yield
    for name, (handlers, propagate, level, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers = handlers
        logger.propagate = propagate
        logger.setLevel(level)
        logger.disabled = disabled
