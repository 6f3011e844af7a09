"""Abuse limits (issue 11), 429 ``rate_limited`` with ``Retry-After`` in the RFC shape:
failed API-key authentication per source address (a key guesser is cut off after a
small burst, a valid key from elsewhere is not; behind a trusted proxy the source is
what the proxy appended to ``X-Forwarded-For``, never what the client wrote there), and
``/open`` and ``/telemetry`` per embed token (the PRD's metrics cannot be inflated)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.helpers import assert_error, deal
from tests.support import FakeClock, Tenant, make_settings, mint_token, new_tenant, running_app
from widget.ratelimit import RateLimiter

BURST = 5


@asynccontextmanager
async def limited_app(tmp_path: Path, clock: FakeClock, **settings: Any) -> AsyncIterator[tuple[Starlette, Tenant]]:
    async with running_app(make_settings(tmp_path, **settings), clock) as app:
        yield app, await new_tenant(app.state.runtime)


@asynccontextmanager
async def from_address(app: Starlette, address: str, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose connection comes from ``address`` (the ASGI scope's ``client``)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", **options) as http:
        yield http


def wrong_key() -> dict[str, str]:
    return {"Authorization": f"Bearer wk_{secrets.token_urlsafe(32)}"}


def assert_limited(response: httpx.Response) -> None:
    assert_error(response, 429, "rate_limited")
    assert int(response.headers["retry-after"]) >= 1


async def test_guessing_api_keys_is_cut_off_after_a_burst_and_a_valid_key_elsewhere_is_not(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with limited_app(tmp_path, clock, auth_failure_burst=BURST) as (app, tenant):
        async with from_address(app, "198.51.100.7") as guesser, from_address(app, "192.0.2.1") as other:
            for _ in range(BURST):
                assert_error(await guesser.get("/api/v1/rooms/r-1", headers=wrong_key()), 401, "unauthorized")
            # Past the burst: refused before the key is looked at, on any route (a 404
            # would otherwise tell a right key from a wrong one), even with a real key.
            assert_limited(await guesser.get("/api/v1/rooms/r-1", headers=wrong_key()))
            assert_limited(await guesser.get("/api/v1/no-such-route", headers=wrong_key()))
            assert_limited(await guesser.post("/api/v1/deals", json=deal(), headers=wrong_key()))
            assert_limited(await guesser.get("/api/v1/rooms/r-1", headers=tenant.headers))
            # Another address, with its valid key, is served as before.
            assert (await other.get("/api/v1/rooms/r-1", headers=tenant.headers)).status_code == 200
            assert (await other.post("/api/v1/deals", json=deal(), headers=tenant.headers)).status_code == 201


async def test_successful_requests_do_not_count_against_the_address(tmp_path: Path, clock: FakeClock) -> None:
    async with limited_app(tmp_path, clock, auth_failure_burst=BURST) as (app, tenant):
        async with from_address(app, "192.0.2.1") as http:
            for _ in range(3 * BURST):
                assert (await http.get("/api/v1/rooms/r-1", headers=tenant.headers)).status_code == 200
            assert_error(await http.get("/api/v1/rooms/r-1", headers=wrong_key()), 401, "unauthorized")


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy_and_only_its_own_part(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with limited_app(tmp_path, clock, auth_failure_burst=BURST, trusted_proxies="10.0.0.0/8") as (app, tenant):
        async with from_address(app, "10.1.2.3") as proxy, from_address(app, "198.51.100.7") as direct:
            # Through the proxy: a guesser writing a new X-Forwarded-For each time is
            # still known by the address the proxy appended.
            for n in range(BURST):
                forwarded = {"X-Forwarded-For": f"203.0.113.{n}, 198.51.100.50"}
                assert (await proxy.get("/api/v1/rooms/r-1", headers={**wrong_key(), **forwarded})).status_code == 401
            limited = {"X-Forwarded-For": "203.0.113.99, 198.51.100.50"}
            assert_limited(await proxy.get("/api/v1/rooms/r-1", headers={**wrong_key(), **limited}))
            # Another client behind the same proxy is not.
            served = await proxy.get("/api/v1/rooms/r-1", headers={**tenant.headers, "X-Forwarded-For": "192.0.2.9"})
            assert served.status_code == 200
            # Not from a trusted proxy: X-Forwarded-For is the client's own words, ignored.
            for n in range(BURST):
                spoofed = {"X-Forwarded-For": f"192.0.2.{100 + n}"}
                assert (await direct.get("/api/v1/rooms/r-1", headers={**wrong_key(), **spoofed})).status_code == 401
            assert_limited(await direct.get("/api/v1/rooms/r-1", headers={**wrong_key(), "X-Forwarded-For": "192.0.2.200"}))


@pytest.mark.parametrize("route", ["open", "telemetry"])
async def test_open_and_telemetry_are_limited_per_embed_token(tmp_path: Path, clock: FakeClock, route: str) -> None:
    async with limited_app(tmp_path, clock, open_rate=1, telemetry_rate=1) as (app, tenant):
        async with from_address(app, "192.0.2.1", headers=tenant.headers) as http:
            made = (await http.post("/api/v1/deals", json=deal(room_id="r-1", creator_flag="bot"))).json()
            token, other_token = await mint_token(http, "r-1"), await mint_token(http, "r-1")
            body = {"kind": "deal", "id": made["id"]} | ({"event": "displayed"} if route == "telemetry" else {})
            ok = 200 if route == "open" else 204

            async def call(with_token: str) -> httpx.Response:
                return await http.post(f"/embed/rooms/r-1/{route}", params={"token": with_token}, json=body)

            for _ in range(10):  # the burst: ten times the rate, at least 10
                response = await call(token)
                assert response.status_code == ok, response.text
            assert_limited(await call(token))
            assert (await call(other_token)).status_code == ok  # per token


def test_the_defaults(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert (settings.auth_failure_rate, settings.auth_failure_burst, settings.open_rate,
            settings.telemetry_rate, settings.trusted_proxies) == (0.2, 10, 1.0, 2.0, [])


def test_buckets_of_addresses_and_tokens_that_went_quiet_are_dropped() -> None:
    """Memory stays bounded by the keys active within one refill time: a flood of new
    addresses or tokens does not grow the limiter for ever."""
    now = [0.0]
    limiter = RateLimiter(1.0, lambda: now[0], burst=10)
    for n in range(5000):
        limiter.acquire(f"198.51.{n // 256}.{n % 256}")
    now[0] += 10  # every bucket full again: the same as none
    for n in range(9000):  # the map doubles: a sweep drops the 5,000 full buckets
        limiter.acquire(f"token-{n}")
    assert len(limiter._buckets) <= 9000
    assert limiter.acquire("token-1") == 0.0 and limiter.wait("token-1") == 0.0
