"""Fixtures built from ``tests/support.py``: a real app with its lifespan (SQLite file
+ memory broker), a controllable clock, a company with its API key, uvicorn in a thread."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from tests.support import (
    Clocked,
    FakeClock,
    LiveServer,
    Tenant,
    WidgetLog,
    asgi_client,
    make_settings,
    new_tenant,
    running_app,
    seed_company,
)
from widget.app import create_app
from widget.runtime import Runtime
from widget.settings import Settings


@pytest.fixture
def widget_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An environment with no WIDGET_* settings but a data dir of the test's own, for
    code that reads its settings from the environment (the CLI, load_settings)."""
    for name in list(os.environ):
        if name.startswith("WIDGET_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WIDGET_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def app(settings: Settings, clock: FakeClock) -> AsyncIterator[Starlette]:
    async with running_app(settings, clock) as application:
        yield application


@pytest.fixture
def runtime(app: Starlette) -> Runtime:
    return app.state.runtime


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as http:
        yield http


@pytest.fixture
async def tenant(runtime: Runtime) -> Tenant:
    return await new_tenant(runtime)


@pytest.fixture
async def api(client: httpx.AsyncClient, tenant: Tenant) -> httpx.AsyncClient:
    client.headers.update(tenant.headers)
    return client


@pytest.fixture
def live(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[LiveServer, Tenant]]:
    """A live uvicorn server on a fresh database with one company."""
    live_settings = make_settings(tmp_path)
    tenant = seed_company(live_settings)
    with LiveServer(create_app(live_settings, clock)) as server:
        yield server, tenant


@pytest.fixture
def widget_log(app: Starlette, caplog: pytest.LogCaptureFixture) -> Iterator[WidgetLog]:
    logger = logging.getLogger("widget")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="widget"):
            yield WidgetLog(caplog)
    finally:
        logger.removeHandler(caplog.handler)


@pytest.fixture
async def clocked(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Clocked]:
    async with running_app(make_settings(tmp_path, test_clock=True), clock) as application:
        runtime = application.state.runtime
        tenant = await new_tenant(runtime)
        async with asgi_client(application, headers=tenant.headers) as http:
            yield Clocked(application, runtime, tenant, http, clock)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``logs.configure`` (app start-up) rewires loggers globally, with a handler bound to
    the stream of the moment (possibly a capture that is closed later): put them back."""
    names = ("widget", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate,
                 logging.getLogger(n).level, logging.getLogger(n).disabled) for n in names}
    yield
    for name, (handlers, propagate, level, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers = handlers
        logger.propagate = propagate
        logger.setLevel(level)
        logger.disabled = disabled
