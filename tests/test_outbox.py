"""What a write puts in the outbox, in the record's own transaction (RFC sections 1, 8,
9): chat-history fetch and Omnichannel notifications for bot/AI records with a room
only (actor filter, E3)."""

from __future__ import annotations

import json

import httpx

from tests.support import Tenant
from tests.helpers import deal, ticket
from widget import companies
from widget.runtime import Runtime


async def omni_tenant(runtime: Runtime) -> Tenant:
    row, key = await companies.create_company(runtime, "omni", "Omni", ["http://localhost:8001"],
                                            "http://localhost:8001/omni", "shh")
    return Tenant(row["id"], key)


async def topics(runtime: Runtime, company_id: str) -> list[tuple[str, str, str]]:
    rows = await runtime.store.outbox_rows(company_id)
    return [(r["topic"], json.loads(r["payload"])["kind"], json.loads(r["payload"])["record_id"]) for r in rows]


async def test_bot_records_with_a_room_enqueue_history_and_notifications(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    tenant = await omni_tenant(runtime)
    h = tenant.headers
    d = (await client.post("/api/v1/deals", json=deal(room_id="r-1", creator_flag="bot"), headers=h)).json()
    t = (await client.post("/api/v1/tickets", json=ticket(room_id="r-1", creator_flag="agentic_ai"),
                           headers=h)).json()
    await client.patch(f"/api/v1/deals/{d['id']}", json={"stage": "Won"}, headers=h)
    await client.patch(f"/api/v1/deals/{d['id']}", json={"stage": "Won"}, headers=h)  # no change
    await client.delete(f"/api/v1/tickets/{t['id']}", headers=h)
    assert await topics(runtime, "omni") == [
        ("chat_history", "deal", d["id"]),
        ("notify.created", "deal", d["id"]),
        ("chat_history", "ticket", t["id"]),
        ("notify.created", "ticket", t["id"]),
        ("notify.updated", "deal", d["id"]),
        ("notify.deleted", "ticket", t["id"]),
    ]
    payload = json.loads((await runtime.store.outbox_rows("omni"))[0]["payload"])
    assert payload == {"kind": "deal", "record_id": d["id"], "room_id": "r-1"}


async def test_manual_or_roomless_records_enqueue_nothing(client: httpx.AsyncClient, runtime: Runtime) -> None:
    tenant = await omni_tenant(runtime)
    h = tenant.headers
    for body in (deal(room_id="r-1"), deal(room_id="r-1", creator_flag="robot"), deal(creator_flag="bot")):
        record = (await client.post("/api/v1/deals", json=body, headers=h)).json()
        await client.patch(f"/api/v1/deals/{record['id']}", json={"name": "changed"}, headers=h)
        await client.delete(f"/api/v1/deals/{record['id']}", headers=h)
    assert await topics(runtime, "omni") == []


async def test_company_without_omnichannel_url_gets_no_notifications(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    d = (await api.post("/api/v1/deals", json=deal(room_id="r-1", creator_flag="bot"))).json()
    await api.patch(f"/api/v1/deals/{d['id']}", json={"name": "x"})
    await api.delete(f"/api/v1/deals/{d['id']}")
    assert await topics(runtime, "acme") == [("chat_history", "deal", d["id"])]
