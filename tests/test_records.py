"""Deals and tickets through the record API: shapes, times, creator labels, text
stored as given, URLs, PATCH and soft DELETE (RFC section 5, PRD S01/S06/NEG-3)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete

from tests.support import T0, Clocked, FakeClock, make_settings, new_tenant
from tests.helpers import DEAL_KEYS, RFC3339_US, TICKET_KEYS, assert_error, body_for, deal, ticket
from widget.app import create_app
from widget.models import rfc3339, to_micros
from widget.runtime import Runtime
from widget.store import schema
from widget.tokens import hash_api_key

PUBLIC = "http://127.0.0.1:8000"


def micros(value: str) -> int:
    return to_micros(datetime.fromisoformat(value))


async def test_create_deal_exact_shape(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/deals", json=deal(room_id="room-1", creator_flag="bot",
                                                           source="whatsapp"))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == DEAL_KEYS
    assert isinstance(body["id"], str) and body["id"]
    assert body == {
        "id": body["id"], "number": "DEAL-000001", "name": "Laptop order", "stage": "New", "pipeline": "Sales",
        "room_id": "room-1", "contact_id": None, "creator_flag": "bot", "creator": "Bot",
        "source": "whatsapp", "url": f"{PUBLIC}/crm/deals/{body['id']}",
        "created_at": "2026-11-25T09:00:00.000000Z", "updated_at": "2026-11-25T09:00:00.000000Z",
    }
    assert (await api.get(f"/api/v1/deals/{body['id']}")).json() == body


async def test_create_ticket_exact_shape(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/tickets", json=ticket(room_id="room-1", creator_flag="agentic_ai"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == TICKET_KEYS
    assert body == {
        "id": body["id"], "unique_id": "TCK-000001", "name": "Refund request", "status": "Open",
        "room_id": "room-1", "contact_id": None, "creator_flag": "agentic_ai", "creator": "AI",
        "source": None, "url": f"{PUBLIC}/crm/tickets/{body['id']}",
        "created_at": "2026-11-25T09:00:00.000000Z", "updated_at": "2026-11-25T09:00:00.000000Z",
    }
    assert (await api.get(f"/api/v1/tickets/{body['id']}")).json() == body


async def test_ids_are_unique_strings_across_kinds_and_companies(
    api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    other = await new_tenant(runtime, "globex")
    ids = set()
    for _ in range(5):
        for kind in ("deal", "ticket"):
            ids.add((await api.post(f"/api/v1/{kind}s", json=body_for(kind))).json()["id"])
            ids.add((await client.post(f"/api/v1/{kind}s", json=body_for(kind), headers=other.headers)).json()["id"])
    assert len(ids) == 20


async def test_ticket_unique_id_is_sequential_per_company(
    api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    numbers = [(await api.post("/api/v1/tickets", json=ticket())).json()["unique_id"] for _ in range(3)]
    assert numbers == ["TCK-000001", "TCK-000002", "TCK-000003"]
    # Deals don't consume ticket numbers, and deleted tickets keep theirs.
    await api.post("/api/v1/deals", json=deal())
    fourth = (await api.post("/api/v1/tickets", json=ticket())).json()
    assert fourth["unique_id"] == "TCK-000004"
    assert (await api.delete(f"/api/v1/tickets/{fourth['id']}")).status_code == 204
    assert (await api.post("/api/v1/tickets", json=ticket())).json()["unique_id"] == "TCK-000005"
    # A second company starts again at TCK-000001.
    other = await new_tenant(runtime, "globex")
    first = await client.post("/api/v1/tickets", json=ticket(), headers=other.headers)
    assert first.json()["unique_id"] == "TCK-000001"
    assert (await api.post("/api/v1/tickets", json=ticket())).json()["unique_id"] == "TCK-000006"


async def test_deal_number_is_sequential_per_company_and_cannot_be_changed(
    api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    numbers = [(await api.post("/api/v1/deals", json=deal())).json()["number"] for _ in range(2)]
    assert numbers == ["DEAL-000001", "DEAL-000002"]
    # Tickets don't consume deal numbers, and a deleted deal keeps its number.
    await api.post("/api/v1/tickets", json=ticket())
    third = (await api.post("/api/v1/deals", json=deal())).json()
    assert third["number"] == "DEAL-000003"
    assert (await api.delete(f"/api/v1/deals/{third['id']}")).status_code == 204
    assert (await api.post("/api/v1/deals", json=deal())).json()["number"] == "DEAL-000004"
    other = await new_tenant(runtime, "globex")
    assert (await client.post("/api/v1/deals", json=deal(), headers=other.headers)).json()["number"] == "DEAL-000001"
    fifth = (await api.post("/api/v1/deals", json=deal())).json()
    refused = await api.patch(f"/api/v1/deals/{fifth['id']}", json={"number": "DEAL-000009"})
    assert refused.status_code == 422
    assert (await api.get(f"/api/v1/deals/{fifth['id']}")).json()["number"] == "DEAL-000005"


async def test_created_at_comes_from_the_injected_clock(api: httpx.AsyncClient, clock: FakeClock) -> None:
    first = (await api.post("/api/v1/deals", json=deal())).json()
    assert first["created_at"] == rfc3339(T0) == "2026-11-25T09:00:00.000000Z"
    clock.advance(3600.25)
    later = (await api.post("/api/v1/tickets", json=ticket())).json()
    assert later["created_at"] == "2026-11-25T10:00:00.250000Z"
    assert later["updated_at"] == later["created_at"]


async def test_created_at_strictly_increases_when_the_clock_stands_still(api: httpx.AsyncClient) -> None:
    times = []
    for i in range(6):
        kind = "deal" if i % 2 else "ticket"
        record = (await api.post(f"/api/v1/{kind}s", json=body_for(kind))).json()
        assert RFC3339_US.fullmatch(record["created_at"]), record["created_at"]
        times.append(micros(record["created_at"]))
    assert times == [T0 + i for i in range(6)]  # each 1 µs after the previous one


async def test_created_at_never_goes_back_when_the_clock_does(api: httpx.AsyncClient, clock: FakeClock) -> None:
    a = (await api.post("/api/v1/deals", json=deal())).json()
    clock.advance(-60)
    b = (await api.post("/api/v1/deals", json=deal())).json()
    assert micros(b["created_at"]) == micros(a["created_at"]) + 1


async def test_times_are_rfc3339_utc_with_microseconds(api: httpx.AsyncClient, clock: FakeClock) -> None:
    clock.advance(0.000123)
    record = (await api.post("/api/v1/deals", json=deal())).json()
    assert record["created_at"] == "2026-11-25T09:00:00.000123Z"
    for key in ("created_at", "updated_at"):
        assert RFC3339_US.fullmatch(record[key])
        assert datetime.fromisoformat(record[key]).utcoffset().total_seconds() == 0


@pytest.mark.parametrize("kind", ["deal", "ticket"])
@pytest.mark.parametrize(
    ("flag", "creator"),
    [("bot", "Bot"), ("agentic_ai", "AI"), (None, "API"), ("robot", "API"), ("", "API"),
     ("BOT", "API"), ("Bot", "API"), ("agentic-ai", "API"), ("ai", "API"), ("x" * 64, "API")],
)
async def test_creator_label_from_creator_flag(api: httpx.AsyncClient, kind: str, flag: str | None,
                                               creator: str) -> None:
    extra = {} if flag is None else {"creator_flag": flag}
    record = (await api.post(f"/api/v1/{kind}s", json=body_for(kind, **extra))).json()
    assert record["creator"] == creator
    assert record["creator_flag"] == flag  # stored as given
    assert (await api.get(f"/api/v1/{kind}s/{record['id']}")).json()["creator"] == creator


async def test_explicit_null_creator_flag_is_the_default(api: httpx.AsyncClient) -> None:
    record = (await api.post("/api/v1/deals", json=deal(creator_flag=None))).json()
    assert (record["creator_flag"], record["creator"]) == (None, "API")


@pytest.mark.parametrize("kind", ["deal", "ticket"])
@pytest.mark.parametrize("source", ["whatsapp", "WhatsApp Business API", "  padded  ", "", "instagram/dm"])
async def test_source_is_preserved_exactly(api: httpx.AsyncClient, kind: str, source: str) -> None:
    record = (await api.post(f"/api/v1/{kind}s", json=body_for(kind, source=source, room_id="r-1",
                                                                creator_flag="bot"))).json()
    assert record["source"] == source
    changed = (await api.patch(f"/api/v1/{kind}s/{record['id']}", json={"name": "renamed"})).json()
    assert changed["source"] == source
    assert (await api.get(f"/api/v1/{kind}s/{record['id']}")).json()["source"] == source


async def test_absent_source_stays_null(api: httpx.AsyncClient) -> None:
    record = (await api.post("/api/v1/deals", json=deal(room_id="r-1", creator_flag="bot"))).json()
    assert record["source"] is None


TEXTS = [
    "<script>alert(1)</script>",
    "O'Brien \"quoted\" & <b>bold</b>",
    "Deal 🚀🔥 emoji 👩‍💻",
    "صفقة جديدة للعميل",  # RTL Arabic
    "line1\nline2\ttab",
    "{{ 7*7 }} ${x} %s",
    "日本語の取引",
]


@pytest.mark.parametrize("text", TEXTS)
async def test_text_is_stored_as_given(api: httpx.AsyncClient, text: str) -> None:
    d = (await api.post("/api/v1/deals", json=deal(name=text, stage=text, pipeline=text, source=text,
                                                  room_id="r-1", creator_flag="bot"))).json()
    assert (d["name"], d["stage"], d["pipeline"], d["source"]) == (text,) * 4
    assert (await api.get(f"/api/v1/deals/{d['id']}")).json()["name"] == text
    t = (await api.post("/api/v1/tickets", json=ticket(name=text, status=text))).json()
    assert (t["name"], t["status"]) == (text, text)
    room = (await api.get("/api/v1/rooms/r-1")).json()
    assert room["deal"]["name"] == text
    c = (await api.post("/api/v1/contacts", json={"name": text, "email": text})).json()
    assert (await api.get(f"/api/v1/contacts/{c['id']}")).json()["name"] == text


@pytest.mark.parametrize("kind", ["deal", "ticket"])
async def test_url_is_external_url_when_given_else_the_crm_page(api: httpx.AsyncClient, kind: str) -> None:
    external = "https://crm.example.com/deals/42?tab=info#top"
    given = (await api.post(f"/api/v1/{kind}s", json=body_for(kind, external_url=external))).json()
    assert given["url"] == external
    plain = (await api.post(f"/api/v1/{kind}s", json=body_for(kind))).json()
    assert plain["url"] == f"{PUBLIC}/crm/{kind}s/{plain['id']}"
    null = (await api.post(f"/api/v1/{kind}s", json=body_for(kind, external_url=None))).json()
    assert null["url"] == f"{PUBLIC}/crm/{kind}s/{null['id']}"


async def test_url_uses_the_configured_public_url(tmp_path: Path) -> None:
    application = create_app(make_settings(tmp_path / "b", public_url="https://crm.example.com/"))
    async with application.router.lifespan_context(application):
        tenant = await new_tenant(application.state.runtime)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application),
                                     base_url="http://x", headers=tenant.headers) as http:
            record = (await http.post("/api/v1/deals", json=deal())).json()
    assert record["url"] == f"https://crm.example.com/crm/deals/{record['id']}"


@pytest.mark.parametrize("kind", ["deal", "ticket"])
async def test_get_patch_delete_lifecycle(api: httpx.AsyncClient, clock: FakeClock, kind: str) -> None:
    created = (await api.post(f"/api/v1/{kind}s", json=body_for(kind, source="web"))).json()
    path = f"/api/v1/{kind}s/{created['id']}"
    assert (await api.get(path)).json() == created

    clock.advance(5)
    changes = {"name": "Renamed", "stage": "Won", "pipeline": "Enterprise"} if kind == "deal" \
        else {"name": "Renamed", "status": "Closed"}
    for field, value in changes.items():  # one field at a time
        response = await api.patch(path, json={field: value})
        assert response.status_code == 200, response.text
        assert response.json()[field] == value
    patched = (await api.get(path)).json()
    assert {k: patched[k] for k in changes} == changes
    assert patched["created_at"] == created["created_at"]
    assert patched["updated_at"] == "2026-11-25T09:00:05.000000Z"
    untouched = {k: v for k, v in created.items() if k not in changes and k != "updated_at"}
    assert {k: patched[k] for k in untouched} == untouched

    assert (await api.patch(path, json=changes)).json() == patched  # all at once, same values

    response = await api.delete(path)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await api.get(path), 404, "not_found")
    assert_error(await api.delete(path), 404, "not_found")
    assert_error(await api.patch(path, json={"name": "zombie"}), 404, "not_found")
    assert_error(await api.get(path + "/timeline"), 404, "not_found")


async def test_patch_several_fields_at_once(api: httpx.AsyncClient) -> None:
    d = (await api.post("/api/v1/deals", json=deal())).json()
    out = (await api.patch(f"/api/v1/deals/{d['id']}", json={"stage": "Won", "pipeline": "P2"})).json()
    assert (out["name"], out["stage"], out["pipeline"]) == ("Laptop order", "Won", "P2")
    t = (await api.post("/api/v1/tickets", json=ticket())).json()
    out = (await api.patch(f"/api/v1/tickets/{t['id']}", json={"name": "N", "status": "Pending"})).json()
    assert (out["name"], out["status"], out["unique_id"]) == ("N", "Pending", t["unique_id"])


async def test_deals_and_tickets_are_separate(api: httpx.AsyncClient) -> None:
    d = (await api.post("/api/v1/deals", json=deal())).json()
    t = (await api.post("/api/v1/tickets", json=ticket())).json()
    assert_error(await api.get(f"/api/v1/tickets/{d['id']}"), 404, "not_found")
    assert_error(await api.get(f"/api/v1/deals/{t['id']}"), 404, "not_found")
    assert_error(await api.delete(f"/api/v1/tickets/{d['id']}"), 404, "not_found")
    assert (await api.get(f"/api/v1/deals/{d['id']}")).status_code == 200


async def test_timeline_entry_for_bot_records_with_a_room(api: httpx.AsyncClient) -> None:
    d = (await api.post("/api/v1/deals", json=deal(room_id="room-7", creator_flag="agentic_ai"))).json()
    entries = (await api.get(f"/api/v1/deals/{d['id']}/timeline")).json()["entries"]
    assert len(entries) == 1
    entry = entries[0]
    assert set(entry) == {"id", "kind", "creator", "room_id", "room_url", "chat_preview",
                          "chat_preview_status", "created_at"}
    assert entry["kind"] == "bot_creation" and entry["creator"] == "AI" and entry["room_id"] == "room-7"
    assert entry["room_url"] == "http://localhost:8001/inbox?room=room-7"
    assert entry["chat_preview"] is None and entry["chat_preview_status"] == "pending"
    assert entry["created_at"] == d["created_at"]
    # No room, or not from a bot/AI: no entry.
    for body in (deal(creator_flag="bot"), deal(room_id="room-7"), deal(room_id="room-7", creator_flag="x")):
        other = (await api.post("/api/v1/deals", json=body)).json()
        assert (await api.get(f"/api/v1/deals/{other['id']}/timeline")).json() == {"entries": []}
    t = (await api.post("/api/v1/tickets", json=ticket(room_id="a:b@c", creator_flag="bot"))).json()
    [entry] = (await api.get(f"/api/v1/tickets/{t['id']}/timeline")).json()["entries"]
    assert entry["creator"] == "Bot" and entry["room_url"] == "http://localhost:8001/inbox?room=a%3Ab%40c"


async def test_test_clock_header_is_ignored_unless_enabled(api: httpx.AsyncClient) -> None:
    record = (await api.post("/api/v1/deals", json=deal(),
                             headers={"X-Test-Clock": "2020-01-01T00:00:00.000000Z"})).json()
    assert record["created_at"] == "2026-11-25T09:00:00.000000Z"


async def test_test_clock_header_sets_created_at_when_enabled(clocked: Clocked) -> None:
    http = clocked.http
    record = (await http.post("/api/v1/deals", json=deal(),
                              headers={"X-Test-Clock": "2026-11-25T08:59:50.000007Z"})).json()
    assert record["created_at"] == "2026-11-25T08:59:50.000007Z"
    offset = (await http.post("/api/v1/tickets", json=ticket(),
                              headers={"X-Test-Clock": "2026-11-25T10:00:00+01:00"})).json()
    assert offset["created_at"] == "2026-11-25T09:00:00.000000Z"
    assert_error(await http.post("/api/v1/deals", json=deal(), headers={"X-Test-Clock": "yesterday"}),
                 422, "validation_failed", {"X-Test-Clock"})
    assert_error(await http.post("/api/v1/deals", json=deal(), headers={"X-Test-Clock": "2026-11-25T09:00:00"}),
                 422, "validation_failed", {"X-Test-Clock"})


async def test_stats_counts_bot_and_ai_creations(api: httpx.AsyncClient, clock: FakeClock) -> None:
    await api.post("/api/v1/deals", json=deal(room_id="r", creator_flag="bot"))
    await api.post("/api/v1/deals", json=deal(creator_flag="agentic_ai"))
    await api.post("/api/v1/tickets", json=ticket(room_id="r", creator_flag="bot"))
    await api.post("/api/v1/deals", json=deal(room_id="r"))  # manual: not counted
    clock.advance(1)
    stats = (await api.get("/api/v1/stats")).json()
    assert stats["counts"] == {"bot_deal_created": 1, "ai_deal_created": 1, "bot_ticket_created": 1,
                               "actor_filtered": 1}
    assert stats["preview_display_rate"] == 0.0
    empty = (await api.get("/api/v1/stats", params={"since": "2020-01-01T00:00:00Z",
                                                    "until": "2020-02-01T00:00:00Z"})).json()
    assert empty["counts"] == {} and empty["preview_display_rate"] is None
    assert_error(await api.get("/api/v1/stats", params={"since": "2027-01-01T00:00:00Z",
                                                        "until": "2026-01-01T00:00:00Z"}),
                 422, "validation_failed", {"since"})


@pytest.mark.parametrize(
    "query",
    [
        {"since": "0001-01-01T00:00:00+01:00"},  # before year 1 in UTC
        {"until": "9999-12-31T23:59:59-05:00"},  # after year 9999 in UTC
        {"since": "1969-12-31T23:59:59Z"},
        {"until": "not-a-time"},
        {"since": "2026-01-01T00:00:00"},  # no zone
    ],
)
async def test_stats_time_parameters_out_of_range_are_422_not_500(api: httpx.AsyncClient,
                                                                  query: dict[str, str]) -> None:
    response = await api.get("/api/v1/stats", params=query)
    assert_error(response, 422, "validation_failed", set(query))


async def test_stats_until_near_the_epoch_still_answers(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/stats", params={"until": "1970-01-02T00:00:00Z"})
    assert response.status_code == 200, response.text
    assert response.json()["until"] == "1970-01-02T00:00:00.000000Z"


async def test_a_company_found_by_its_key_is_remembered_briefly_and_an_unknown_key_never(runtime: Runtime) -> None:
    """Every record-API request authenticates; the store remembers a company found by
    its key for KEY_CACHE_SECONDS (keys never change once made), without its creation
    clock, and never remembers a key it did not find."""
    tenant = await new_tenant(runtime, "acme")
    key_hash = hash_api_key(tenant.api_key)
    found = await runtime.store.company_by_key_hash(key_hash)
    assert found is not None and found["id"] == "acme"
    assert not {"last_created_at", "ticket_seq"} & set(found)
    # Gone from the database (no command does that; here only to show the read is saved).
    await runtime.store.db.write(lambda conn: conn.execute(delete(schema.companies).where(schema.companies.c.id == "acme")))
    assert (await runtime.store.company_by_key_hash(key_hash))["id"] == "acme"  # type: ignore[index]

    unknown = hash_api_key("wk_not-yet")
    assert await runtime.store.company_by_key_hash(unknown) is None
    await new_tenant_with_key_hash(runtime, "globex", unknown)
    assert (await runtime.store.company_by_key_hash(unknown))["id"] == "globex"  # type: ignore[index]


async def new_tenant_with_key_hash(runtime: Runtime, company_id: str, key_hash: str) -> None:
    await runtime.store.create_company({
        "id": company_id, "name": company_id.title(), "api_key_hash": key_hash, "frame_origins": "[]",
        "omnichannel_url": None, "omnichannel_secret": None, "last_created_at": 0, "ticket_seq": 0,
        "created_at": runtime.now()})
