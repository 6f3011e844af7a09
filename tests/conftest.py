"""Fixtures built from ``tests/support.py``: a real app with its lifespan (SQLite file
+ memory broker, or with ``WIDGET_TEST_STACK=scale`` PostgreSQL + Redis), a controllable
clock, a company with its API key, uvicorn in a thread.

Stack selection: ``@pytest.mark.sqlite_only(reason)`` tests are about the embedded
stack itself and are skipped on the scale stack; ``@pytest.mark.scale_only(reason)``
the other way round."""

from __future__ import annotations

import importlib.util
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
    SCALE,
    STACK,
    Tenant,
    WidgetLog,
    WidgetServer,
    asgi_client,
    make_settings,
    new_tenant,
    running_app,
    seed_company,
    stack_env,
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
def widget_stack_env(widget_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``widget_env`` on the stack under test: on the scale stack WIDGET_DATABASE_URL
    names a database of the test's own, empty as a new data dir's SQLite file would
    be, and WIDGET_BROKER_URL the session's Redis."""
    for name, value in stack_env(widget_env / "data", migrated=False).items():
        monkeypatch.setenv(name, value)
    return widget_env


_SUMMARY = pytest.StashKey[str | None]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    line = terminalreporter.config.stash.get(_SUMMARY, None)
    if line:
        terminalreporter.write_line(line)


def pytest_report_header(config: pytest.Config) -> str:
    return f"widget stack: {STACK} ({'PostgreSQL + Redis' if SCALE else 'SQLite + memory broker'})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SCALE:  # the same test on another store would test nothing new
        once = [item for item in items if item.get_closest_marker("any_stack") is not None]
        if once:
            config.hook.pytest_deselected(items=once)
            items[:] = [item for item in items if item.get_closest_marker("any_stack") is None]
    other = "sqlite_only" if SCALE else "scale_only"
    for item in items:
        marker = item.get_closest_marker(other)
        if marker is not None:
            reason = marker.args[0] if marker.args else marker.kwargs.get("reason", other)
            item.add_marker(pytest.mark.skip(reason=f"{other.replace('_', ' ')}: {reason}"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if SCALE:
        from tests import postgres_support

        session.config.stash[_SUMMARY] = postgres_support.summary()
        postgres_support.stop()
        if importlib.util.find_spec("tests.redis_support") is not None:
            from tests import redis_support

            redis_support.stop()


@pytest.fixture(autouse=True)
def _stack_databases(request: pytest.FixtureRequest) -> Iterator[None]:
    """Scale stack: the test's databases go back to the pool when it is over (after
    every other fixture of the test has closed its engines)."""
    yield
    if SCALE:
        from tests import postgres_support

        postgres_support.forget_databases(request.node.nodeid)


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


@pytest.fixture
def widget_server(tmp_path: Path) -> Iterator[WidgetServer]:
    """A ``widget serve`` process of the test's own (started by the test), killed at the end."""
    server = WidgetServer(tmp_path)
    try:
        yield server
    finally:
        server.kill()
