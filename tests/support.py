"""The running parts tests share: a controllable clock, settings, a company with its
API key, an app with its lifespan, uvicorn in a thread, and the widget's log events.

Imported by tests, e2e and benchmarks (never ``tests.conftest``, which only holds
fixtures built from these)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
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

T0 = to_micros(datetime(2026, 11, 25, 9, 0, tzinfo=UTC))
DEFAULT_ORIGINS = ["http://localhost:8001", "https://inbox.example.com"]


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
        # Timeline entries stay as written unless a test runs the worker itself.
        "embedded_worker": False,
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
