"""``Idempotency-Key`` on every POST (RFC section 5): scoped to (company, route), kept
24 h for 2xx, canonical-JSON body match, 409 for another body or while running."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sqlalchemy import insert

from tests.support import FakeClock, Tenant, new_tenant
from tests.helpers import assert_error, deal, execute, ticket
from widget.runtime import Runtime
from widget.store import schema

JSON = {"Content-Type": "application/json"}
ROUTES = [
    ("/api/v1/deals", deal(room_id="r-1", creator_flag="bot", source="wa")),
    ("/api/v1/tickets", ticket(room_id="r-1", creator_flag="bot")),
    ("/api/v1/contacts", {"name": "Budi", "phone": "+62"}),
    ("/api/v1/embed-tokens", {"room_id": "r-1", "agent_id": "agent-1"}),
]


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


@pytest.mark.parametrize(("path", "body"), ROUTES)
async def test_same_key_same_body_replays_the_stored_response(
    api: httpx.AsyncClient, clock: FakeClock, path: str, body: dict[str, object]
) -> None:
    first = await api.post(path, json=body, headers=key("k-1"))
    assert first.status_code == 201, first.text
    clock.advance(60)
    # Same canonical JSON: other key order and whitespace.
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=4).encode()
    again = await api.post(path, content=reordered, headers={**JSON, **key("k-1")})
    assert again.status_code == 201, again.text
    assert again.json() == first.json()


async def test_replay_creates_only_one_record(api: httpx.AsyncClient) -> None:
    first = (await api.post("/api/v1/tickets", json=ticket(room_id="r-1", creator_flag="bot"),
                            headers=key("once"))).json()
    for _ in range(3):
        again = await api.post("/api/v1/tickets", json=ticket(room_id="r-1", creator_flag="bot"),
                               headers=key("once"))
        assert again.json()["id"] == first["id"]
    room = (await api.get("/api/v1/rooms/r-1")).json()
    assert room["version"] == 1 and room["ticket"]["id"] == first["id"]
    # The next ticket gets the next number: the replays consumed none.
    nxt = (await api.post("/api/v1/tickets", json=ticket())).json()
    assert nxt["unique_id"] == "TCK-000002"


async def test_without_a_key_every_post_creates(api: httpx.AsyncClient) -> None:
    a = (await api.post("/api/v1/deals", json=deal())).json()
    b = (await api.post("/api/v1/deals", json=deal())).json()
    assert a["id"] != b["id"]


@pytest.mark.parametrize(("path", "body"), ROUTES)
async def test_same_key_other_body_is_409(api: httpx.AsyncClient, path: str, body: dict[str, object]) -> None:
    first = await api.post(path, json=body, headers=key("k-1"))
    assert first.status_code == 201
    other = {**body, "name": "Other"} if "name" in body else {**body, "agent_id": "agent-2"}
    assert_error(await api.post(path, json=other, headers=key("k-1")), 409, "idempotency_conflict")
    # Nor does an extra optional field make it "the same".
    extra = {**body, "source": "x"} if path.endswith(("deals", "tickets")) else {**body, "locale": "id"} \
        if path.endswith("tokens") else {**body, "email": "e@x"}
    assert_error(await api.post(path, json=extra, headers=key("k-1")), 409, "idempotency_conflict")
    # The original is still replayed.
    assert (await api.post(path, json=body, headers=key("k-1"))).json() == first.json()


async def test_same_key_on_another_route_is_independent(api: httpx.AsyncClient) -> None:
    results = []
    for path, body in ROUTES:
        response = await api.post(path, json=body, headers=key("shared"))
        assert response.status_code == 201, (path, response.text)
        results.append(response.json())
    d = results[0]
    t = results[1]
    assert d["id"] != t["id"]


async def test_same_key_in_another_company_is_independent(
    api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    other = await new_tenant(runtime, "globex")
    mine = (await api.post("/api/v1/deals", json=deal(), headers=key("k"))).json()
    theirs = await client.post("/api/v1/deals", json=deal(), headers={**other.headers, **key("k")})
    assert theirs.status_code == 201
    assert theirs.json()["id"] != mine["id"]
    # And another body there is not a conflict with ours.
    theirs2 = await client.post("/api/v1/deals", json=deal(name="x"),
                                headers={**other.headers, **key("k2")})
    assert theirs2.status_code == 201
    assert (await api.post("/api/v1/deals", json=deal(name="y"), headers=key("k2"))).status_code == 201


async def test_a_failed_request_does_not_consume_the_key(api: httpx.AsyncClient) -> None:
    k = key("retry-me")
    # 422 from validation, 400, 415 and 413: none of them keeps the key.
    assert_error(await api.post("/api/v1/deals", json={"name": "only"}, headers=k), 422, "validation_failed")
    assert_error(await api.post("/api/v1/deals", content=b"{", headers={**JSON, **k}), 400, "malformed_json")
    assert_error(await api.post("/api/v1/deals", content=b"{}", headers={"Content-Type": "text/plain", **k}),
                 415, "unsupported_media_type")
    assert_error(await api.post("/api/v1/deals", content=b" " * (64 * 1024 + 1), headers={**JSON, **k}),
                 413, "payload_too_large")
    fixed = await api.post("/api/v1/deals", json=deal(), headers=k)
    assert fixed.status_code == 201, fixed.text
    assert (await api.post("/api/v1/deals", json=deal(), headers=k)).json()["id"] == fixed.json()["id"]


async def test_a_request_refused_by_the_service_does_not_consume_the_key(api: httpx.AsyncClient) -> None:
    k = key("token-1")
    too_long = {"room_id": "r-1", "agent_id": "a", "ttl_seconds": 10_000}
    assert_error(await api.post("/api/v1/embed-tokens", json=too_long, headers=k), 422, "validation_failed",
                 {"ttl_seconds"})
    fixed = await api.post("/api/v1/embed-tokens", json={"room_id": "r-1", "agent_id": "a"}, headers=k)
    assert fixed.status_code == 201, fixed.text
    again = await api.post("/api/v1/embed-tokens", json={"room_id": "r-1", "agent_id": "a"}, headers=k)
    assert again.json()["token"] == fixed.json()["token"]


async def test_key_is_kept_24_hours(api: httpx.AsyncClient, clock: FakeClock) -> None:
    first = (await api.post("/api/v1/deals", json=deal(), headers=key("day"))).json()
    clock.advance(24 * 3600 - 1)
    assert (await api.post("/api/v1/deals", json=deal(), headers=key("day"))).json()["id"] == first["id"]
    assert_error(await api.post("/api/v1/deals", json=deal(name="x"), headers=key("day")),
                 409, "idempotency_conflict")
    clock.advance(2)  # 24 h + 1 s after the first request
    fresh = await api.post("/api/v1/deals", json=deal(), headers=key("day"))
    assert fresh.status_code == 201
    assert fresh.json()["id"] != first["id"]
    # The key now belongs to the new request.
    assert (await api.post("/api/v1/deals", json=deal(), headers=key("day"))).json()["id"] == fresh.json()["id"]


async def test_expired_key_accepts_another_body(api: httpx.AsyncClient, clock: FakeClock) -> None:
    await api.post("/api/v1/deals", json=deal(), headers=key("day"))
    clock.advance(24 * 3600 + 1)
    other = await api.post("/api/v1/deals", json=deal(name="other"), headers=key("day"))
    assert other.status_code == 201 and other.json()["name"] == "other"


async def test_same_key_while_the_first_is_still_running_is_409(
    api: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    contact = (await api.post("/api/v1/contacts", json={"name": "Budi"})).json()
    real_lookup = runtime.store.contact_state
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow_lookup(company_id: str, contact_id: str) -> str:
        entered.set()
        await release.wait()
        return await real_lookup(company_id, contact_id)

    monkeypatch.setattr(runtime.store, "contact_state", slow_lookup)
    body = deal(contact_id=contact["id"], room_id="r-1", creator_flag="bot")
    first = asyncio.create_task(api.post("/api/v1/deals", json=body, headers=key("busy")))
    await asyncio.wait_for(entered.wait(), 5)
    assert_error(await api.post("/api/v1/deals", json=body, headers=key("busy")), 409, "idempotency_conflict")
    release.set()
    done = await first
    assert done.status_code == 201 and done.json()["contact_id"] == contact["id"]
    assert (await api.post("/api/v1/deals", json=body, headers=key("busy"))).json() == done.json()
    assert (await api.get("/api/v1/rooms/r-1")).json()["version"] == 1


async def test_a_claim_left_by_the_former_two_step_scheme_never_holds_the_key(
    api: httpx.AsyncClient, runtime: Runtime, tenant: Tenant
) -> None:
    # Before the response was stored with the work, a request first claimed its key
    # (a row without a status); one whose process died left the claim behind. Now a
    # key is only ever taken by committed work, so such a row is free to take.
    now = runtime.now()
    await execute(runtime, insert(schema.idempotency_keys).values(
        company_id=tenant.id, route="/api/v1/deals", key="crashed", body_hash="0" * 64, created_at=now))
    retried = await api.post("/api/v1/deals", json=deal(), headers=key("crashed"))
    assert retried.status_code == 201
    again = await api.post("/api/v1/deals", json=deal(), headers=key("crashed"))
    assert again.json() == retried.json() and again.headers["idempotent-replayed"] == "true"
