"""The running parts, built and closed in one place: settings, clock, store, broker,
signer and the HTTP client for upstreams (Chat Panel, Omnichannel).

The app's lifespan, the CLI, the worker and the tests all enter ``open_runtime``;
nothing else constructs a store, a broker or a signer."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache

import httpx

from widget.broker import Broker, create_broker
from widget.settings import Settings
from widget.store import Store
from widget.tokens import Signer

Clock = Callable[[], int]  # µs since the epoch, UTC
# Upstream calls are bounded: the RFC gives the Chat Panel 2 s.
UPSTREAM_TIMEOUT = httpx.Timeout(2.0)


def system_clock() -> int:
    return time.time_ns() // 1000


@cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS context, made once per process: reading the CA bundle takes
    ~50 ms, and every runtime opened (the CLI's, each test's) would read it again."""
    return httpx.create_ssl_context()


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    clock: Clock
    store: Store
    broker: Broker
    signer: Signer
    http: httpx.AsyncClient

    def now(self) -> int:
        return self.clock()


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    clock: Clock = system_clock,
    *,
    migrate: bool = True,
    upstream: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Runtime]:
    """Open every part (migrating the schema unless told not to) and close them all,
    in reverse, however the body ends. ``upstream`` replaces the network for the
    systems we do not own (tests pass an ``httpx.MockTransport``)."""
    store = Store(settings.db_url, settings.lock_timeout)
    try:
        broker = create_broker(settings.broker_url)
        try:
            await broker.start()  # unreachable: BrokerUnavailable, one readable line
            async with httpx.AsyncClient(
                transport=upstream, verify=_tls(), timeout=UPSTREAM_TIMEOUT, follow_redirects=False
            ) as http:
                if migrate:
                    await store.migrate()
                yield Runtime(settings, clock, store, broker, Signer(settings.signing_keys(), clock), http)
        finally:
            await broker.close()
    finally:
        await store.close()
