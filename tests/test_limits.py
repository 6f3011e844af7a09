"""429 rate limiting per company and 503 when the store is unreachable."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import create_engine
from starlette.applications import Starlette

from tests.support import FakeClock, make_settings, new_tenant
from widget.app import create_app
from widget.ratelimit import RateLimiter
from widget.store.database import SqliteDatabase


def test_token_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(2, monotonic=lambda: now[0])
    assert [limiter.acquire("acme") for _ in range(4)] == [0, 0, 0, 0]  # burst = 2 x rate
    assert limiter.acquire("acme") == 0.5
    assert limiter.acquire("globex") == 0  # per company
    now[0] += 0.5
    assert limiter.acquire("acme") == 0
    assert RateLimiter(0).acquire("acme") == 0  # off


async def test_over_the_limit_answers_429_with_retry_after(tmp_path: Path, clock: FakeClock) -> None:
    app = create_app(make_settings(tmp_path, rate_limit=1), clock)
    async with app.router.lifespan_context(app):
        tenant = await new_tenant(app.state.runtime)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=tenant.headers) as http:
            statuses = [(await http.get("/api/v1/rooms/r-1")).status_code for _ in range(3)]
            assert statuses == [200, 200, 429]
            limited = await http.get("/api/v1/rooms/r-1")
            assert limited.json()["error"]["code"] == "rate_limited"
            assert int(limited.headers["retry-after"]) >= 1
            anonymous = await http.get("/api/v1/rooms/r-1", headers={"Authorization": ""})
            assert anonymous.status_code == 401  # auth is checked before the limit


async def test_store_outage_answers_503_never_500(app: Starlette, api: httpx.AsyncClient) -> None:
    store = app.state.runtime.store
    healthy = store.db
    # A real database on a file that cannot be opened: every query fails.
    store.db = SqliteDatabase(create_engine("sqlite:////proc/no-such-dir/widget.db"))
    try:
        for response in (await api.get("/api/v1/rooms/r-1"),
                         await api.post("/api/v1/deals", json={"name": "d", "stage": "s", "pipeline": "p"})):
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "unavailable"
            assert response.headers["retry-after"] == "5"
        ready = await api.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["store"].startswith("unavailable")
    finally:
        await store.db.close()
        store.db = healthy
