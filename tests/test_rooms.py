"""Rooms, latest wins (RFC section 5 rules, PRD NEG-1, E1, E3): which record a room
shows, when its version moves, the actor filter, and what is published on the broker."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.support import Clocked, Tenant, WidgetLog, new_tenant
from tests.helpers import (
    DEAL_PREVIEW_KEYS,
    TICKET_PREVIEW_KEYS,
    assert_error,
    body_for,
    deal,
    next_after_quiet,
    next_message,
    scalar_of,
    snapshot_of,
)
from widget.broker import room_channel
from widget.runtime import Runtime
from widget.store import schema

EMPTY = {"room_id": "r-1", "version": 0, "deal": None, "ticket": None}


async def room(http: httpx.AsyncClient, room_id: str = "r-1") -> dict[str, Any]:
    response = await http.get(f"/api/v1/rooms/{room_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def create(http: httpx.AsyncClient, kind: str = "deal", **extra: Any) -> dict[str, Any]:
    extra.setdefault("room_id", "r-1")
    extra.setdefault("creator_flag", "bot")
    headers = {}
    if "clock" in extra:
        headers["X-Test-Clock"] = extra.pop("clock")
    response = await http.post(f"/api/v1/{kind}s", json=body_for(kind, **extra), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def preview(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    keys = DEAL_PREVIEW_KEYS if kind == "deal" else TICKET_PREVIEW_KEYS
    return {k: record[k] for k in keys}


async def test_unknown_room_is_version_0_and_empty(api: httpx.AsyncClient) -> None:
    assert await room(api) == EMPTY
    assert await room(api, "never-used") == {**EMPTY, "room_id": "never-used"}


@pytest.mark.parametrize("kind", ["deal", "ticket"])
@pytest.mark.parametrize(("flag", "creator"), [("bot", "Bot"), ("agentic_ai", "AI")])
async def test_bot_or_ai_record_with_room_becomes_the_rooms_record(
    api: httpx.AsyncClient, kind: str, flag: str, creator: str
) -> None:
    record = await create(api, kind, creator_flag=flag)
    snapshot = await room(api)
    assert snapshot["version"] == 1
    assert snapshot[kind] == preview(kind, record)
    assert snapshot[kind]["creator"] == creator
    assert set(snapshot[kind]) == (DEAL_PREVIEW_KEYS if kind == "deal" else TICKET_PREVIEW_KEYS)
    other = "ticket" if kind == "deal" else "deal"
    assert snapshot[other] is None


async def test_snapshot_exact_shape(api: httpx.AsyncClient) -> None:
    d = await create(api, "deal", external_url="https://crm.example.com/d/1")
    t = await create(api, "ticket", creator_flag="agentic_ai")
    assert await room(api) == {
        "room_id": "r-1",
        "version": 2,
        "deal": {"id": d["id"], "number": "DEAL-000001", "name": "Laptop order", "stage": "New", "pipeline": "Sales",
                 "url": "https://crm.example.com/d/1", "creator": "Bot", "created_at": d["created_at"]},
        "ticket": {"id": t["id"], "unique_id": "TCK-000001", "name": "Refund request", "status": "Open",
                   "url": f"http://127.0.0.1:8000/crm/tickets/{t['id']}", "creator": "AI",
                   "created_at": t["created_at"]},
    }


@pytest.mark.parametrize("kind", ["deal", "ticket"])
async def test_newer_record_replaces_the_shown_one(api: httpx.AsyncClient, kind: str) -> None:
    first = await create(api, kind, creator_flag="bot")
    second = await create(api, kind, creator_flag="agentic_ai", name="Second")
    third = await create(api, kind, creator_flag="bot", name="Third")
    snapshot = await room(api)
    assert snapshot[kind]["id"] == third["id"]
    assert snapshot["version"] == 3
    assert first["id"] != second["id"] != third["id"]
    # The replaced records are still served by the API (replaced, not deleted).
    assert (await api.get(f"/api/v1/{kind}s/{first['id']}")).status_code == 200


async def test_deal_and_ticket_slots_are_independent(api: httpx.AsyncClient) -> None:
    d1 = await create(api, "deal")
    t1 = await create(api, "ticket")
    d2 = await create(api, "deal", name="Newer deal")
    snapshot = await room(api)
    assert snapshot["deal"]["id"] == d2["id"] and snapshot["ticket"]["id"] == t1["id"]
    assert snapshot["version"] == 3
    assert (await api.delete(f"/api/v1/tickets/{t1['id']}")).status_code == 204
    snapshot = await room(api)
    assert snapshot["deal"]["id"] == d2["id"] and snapshot["ticket"] is None and snapshot["version"] == 4
    assert d1["id"] != d2["id"]


async def test_rooms_are_independent_and_per_company(
    api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    a = await create(api, room_id="r-1")
    b = await create(api, room_id="r-2")
    other = await new_tenant(runtime, "globex")
    response = await client.post("/api/v1/deals", json=deal(room_id="r-1", creator_flag="bot"),
                                 headers=other.headers)
    theirs = response.json()
    assert (await room(api, "r-1"))["deal"]["id"] == a["id"]
    assert (await room(api, "r-2"))["deal"]["id"] == b["id"]
    mine = await room(api, "r-1")
    assert mine["version"] == 1
    their_room = (await client.get("/api/v1/rooms/r-1", headers=other.headers)).json()
    assert their_room["deal"]["id"] == theirs["id"] and their_room["version"] == 1


async def test_room_versions_reads_many_rooms_of_several_companies_at_once(
    api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant
) -> None:
    """The streams' timed re-check (widget/recheck.py) reads every open room's version
    in one call: more than one statement's 500 rooms, rooms never written left out."""
    await create(api, room_id="r-1")
    await create(api, room_id="r-1")
    await create(api, "ticket", room_id="r-700")
    other = await new_tenant(runtime, "globex")
    await client.post("/api/v1/deals", json=deal(room_id="r-1", creator_flag="bot"), headers=other.headers)
    asked = [(tenant.id, f"r-{n}") for n in range(1200)] + [(other.id, "r-1"), (other.id, "r-2")]
    assert await runtime.store.room_versions(asked) == {
        (tenant.id, "r-1"): 2, (tenant.id, "r-700"): 1, (other.id, "r-1"): 1}
    assert await runtime.store.room_versions([]) == {}


@pytest.mark.parametrize("kind", ["deal", "ticket"])
@pytest.mark.parametrize("flag", [None, "robot", "", "BOT", "human"])
async def test_actor_filter_keeps_unrecognised_creators_out_of_the_room(
    api: httpx.AsyncClient, widget_log: WidgetLog, kind: str, flag: str | None
) -> None:
    shown = await create(api, kind)
    widget_log.clear()
    extra: dict[str, Any] = {"creator_flag": flag} if flag is not None else {}
    body = body_for(kind, room_id="r-1", **extra)
    response = await api.post(f"/api/v1/{kind}s", json=body)
    assert response.status_code == 201
    manual = response.json()
    assert manual["room_id"] == "r-1" and manual["creator"] == "API"
    snapshot = await room(api)
    assert snapshot[kind]["id"] == shown["id"] and snapshot["version"] == 1
    [props] = widget_log.props("actor_filtered")
    assert props["record_id"] == manual["id"] and props["action"] == "create"
    assert props["creator_flag"] == flag
    # Updating or deleting the manual record does not touch the room either, and is logged.
    widget_log.clear()
    assert (await api.patch(f"/api/v1/{kind}s/{manual['id']}", json={"name": "x"})).status_code == 200
    assert (await api.delete(f"/api/v1/{kind}s/{manual['id']}")).status_code == 204
    assert [p["action"] for p in widget_log.props("actor_filtered")] == ["update", "delete"]
    assert await room(api) == snapshot
    # The creation events are only for bot/AI records.
    assert widget_log.events(f"bot_{kind}_created") == []


async def test_manual_record_alone_never_creates_a_room(api: httpx.AsyncClient, runtime: Runtime) -> None:
    await create(api, creator_flag=None, room_id="manual-room")
    assert await room(api, "manual-room") == {**EMPTY, "room_id": "manual-room"}


async def test_record_without_room_id_touches_no_room(api: httpx.AsyncClient, runtime: Runtime,
                                                      widget_log: WidgetLog) -> None:
    for kind in ("deal", "ticket"):
        for flag in ("bot", "agentic_ai"):
            record = await create(api, kind, creator_flag=flag, room_id=None)
            assert record["room_id"] is None
    rooms = await scalar_of(runtime, select(func.count()).select_from(schema.rooms))
    entries = await scalar_of(runtime, select(func.count()).select_from(schema.timeline_entries))
    assert rooms == 0 and entries == 0
    # The creation is still an analytics event, with a null room.
    assert [p["room_id"] for p in widget_log.props("bot_deal_created")] == [None]


async def test_deleting_the_shown_record_empties_the_slot(api: httpx.AsyncClient) -> None:
    d = await create(api, "deal")
    t = await create(api, "ticket")
    assert (await api.delete(f"/api/v1/deals/{d['id']}")).status_code == 204
    snapshot = await room(api)
    assert snapshot["deal"] is None and snapshot["ticket"]["id"] == t["id"] and snapshot["version"] == 3
    assert (await api.delete(f"/api/v1/tickets/{t['id']}")).status_code == 204
    assert await room(api) == {**EMPTY, "version": 4}
    # Deleting again is 404 and changes nothing.
    assert_error(await api.delete(f"/api/v1/deals/{d['id']}"), 404, "not_found")
    assert (await room(api))["version"] == 4


async def test_deleting_a_replaced_record_does_not_bump(api: httpx.AsyncClient) -> None:
    old = await create(api, "deal", name="old")
    new = await create(api, "deal", name="new")
    assert (await room(api))["version"] == 2
    assert (await api.delete(f"/api/v1/deals/{old['id']}")).status_code == 204
    snapshot = await room(api)
    assert snapshot["version"] == 2 and snapshot["deal"]["id"] == new["id"]


async def test_slot_never_refills_with_an_older_record(api: httpx.AsyncClient) -> None:
    older = await create(api, "deal", name="older")
    newer = await create(api, "deal", name="newer")
    assert (await api.delete(f"/api/v1/deals/{newer['id']}")).status_code == 204
    snapshot = await room(api)
    assert snapshot["deal"] is None and snapshot["version"] == 3
    # The older record is still alive but does not come back; a new one does win.
    assert (await api.get(f"/api/v1/deals/{older['id']}")).status_code == 200
    newest = await create(api, "deal", name="newest")
    snapshot = await room(api)
    assert snapshot["deal"]["id"] == newest["id"] and snapshot["version"] == 4


async def test_e1_older_record_arriving_later_does_not_replace(clocked: Clocked) -> None:
    http = clocked.http
    a = await create(http, "deal", name="A", clock="2026-11-25T09:00:00.000000Z")
    b = await create(http, "deal", name="B", creator_flag="agentic_ai", clock="2026-11-25T08:59:50.000000Z")
    assert b["created_at"] == "2026-11-25T08:59:50.000000Z"
    snapshot = await room(http)
    assert snapshot["deal"]["id"] == a["id"] and snapshot["version"] == 1
    # After deleting A, B (older than the mark) does not come back.
    assert (await http.delete(f"/api/v1/deals/{a['id']}")).status_code == 204
    snapshot = await room(http)
    assert snapshot["deal"] is None and snapshot["version"] == 2
    c = await create(http, "deal", name="C", clock="2026-11-25T08:59:59.999999Z")
    assert (await room(http))["deal"] is None  # still older than A's mark
    d = await create(http, "deal", name="D", clock="2026-11-25T09:00:00.000001Z")
    snapshot = await room(http)
    assert snapshot["deal"]["id"] == d["id"] and snapshot["version"] == 3
    assert c["id"] != d["id"]


async def test_e1_same_created_at_is_ordered_by_id(clocked: Clocked) -> None:
    http = clocked.http
    at = "2026-11-25T09:00:00.000000Z"
    first = await create(http, "ticket", clock=at)
    second = await create(http, "ticket", clock=at)
    assert first["created_at"] == second["created_at"]
    winner = max(first, second, key=lambda r: r["id"])
    snapshot = await room(http)
    assert snapshot["ticket"]["id"] == winner["id"]
    assert snapshot["version"] == (2 if winner is second else 1)


async def test_server_clock_stays_after_a_late_stamped_record(clocked: Clocked) -> None:
    http = clocked.http
    future = await create(http, "deal", name="future", clock="2026-11-25T10:00:00.000000Z")
    # The server clock (09:00) is behind: the store assigns max(now, last + 1 µs).
    normal = await create(http, "deal", name="normal")
    assert normal["created_at"] == "2026-11-25T10:00:00.000001Z"
    snapshot = await room(http)
    assert snapshot["deal"]["id"] == normal["id"] and snapshot["version"] == 2
    assert future["id"] != normal["id"]


@pytest.mark.parametrize("kind", ["deal", "ticket"])
async def test_patch_of_the_shown_record_bumps_once(api: httpx.AsyncClient, kind: str) -> None:
    record = await create(api, kind)
    path = f"/api/v1/{kind}s/{record['id']}"
    fields = ["name", "stage", "pipeline"] if kind == "deal" else ["name", "status"]
    version = 1
    for field in fields:
        assert (await api.patch(path, json={field: f"new {field}"})).status_code == 200
        version += 1
        snapshot = await room(api)
        assert snapshot["version"] == version and snapshot[kind][field] == f"new {field}"
    # Several shown fields in one PATCH: one bump.
    assert (await api.patch(path, json={f: f"v2 {f}" for f in fields})).status_code == 200
    version += 1
    assert (await room(api))["version"] == version
    # Identical values: no bump.
    assert (await api.patch(path, json={f: f"v2 {f}" for f in fields})).status_code == 200
    assert (await api.patch(path, json={"name": "v2 name"})).status_code == 200
    assert (await room(api))["version"] == version


async def test_patch_of_a_record_that_is_not_shown_does_not_bump(api: httpx.AsyncClient) -> None:
    old = await create(api, "deal", name="old")
    await create(api, "deal", name="new")
    assert (await api.patch(f"/api/v1/deals/{old['id']}", json={"name": "old renamed"})).status_code == 200
    snapshot = await room(api)
    assert snapshot["version"] == 2 and snapshot["deal"]["name"] == "new"


async def test_the_room_is_per_company_even_with_the_same_room_id(
    api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    other = await new_tenant(runtime, "globex")
    mine = await create(api, "deal")
    response = await client.delete(f"/api/v1/deals/{mine['id']}", headers=other.headers)
    assert_error(response, 404, "not_found")
    assert (await room(api))["deal"]["id"] == mine["id"]


# -- broker: one publication per change, after commit --------------------------------


async def test_each_room_change_is_published_once_with_the_new_snapshot(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    async with runtime.broker.subscribe(room_channel("acme", "r-1")) as sub:
        d = await create(api, "deal")
        message = await next_message(sub)
        assert snapshot_of(message) == await room(api)  # the committed state
        assert message["version"] == 1 and message["deal"] == preview("deal", d)

        t = await create(api, "ticket", creator_flag="agentic_ai")
        message = await next_message(sub)
        assert message["version"] == 2 and message["ticket"] == preview("ticket", t)
        assert message["deal"] == preview("deal", d)

        await api.patch(f"/api/v1/deals/{d['id']}", json={"stage": "Won"})
        message = await next_message(sub)
        assert message["version"] == 3 and message["deal"]["stage"] == "Won"

        d2 = await create(api, "deal", name="Replacement")
        message = await next_message(sub)
        assert message["version"] == 4 and message["deal"]["id"] == d2["id"]

        await api.delete(f"/api/v1/tickets/{t['id']}")
        message = await next_message(sub)
        assert snapshot_of(message) == {"room_id": "r-1", "version": 5, "deal": preview("deal", d2), "ticket": None}
        assert snapshot_of(message) == await room(api)
        # Once per change: the next message is the next change's, version 6.
        message = await next_after_quiet(sub, create(api, "deal", name="Control"))
        assert message["version"] == 6 and message["deal"]["name"] == "Control"


async def test_non_changes_publish_nothing(api: httpx.AsyncClient, runtime: Runtime,
                                           client: httpx.AsyncClient) -> None:
    replaced = await create(api, "deal", name="replaced")
    shown = await create(api, "deal", name="shown")  # newer: replaces the first
    async with runtime.broker.subscribe(room_channel("acme", "r-1")) as sub:
        # Not changes of the snapshot:
        await api.delete(f"/api/v1/deals/{replaced['id']}")  # not shown any more
        await api.patch(f"/api/v1/deals/{shown['id']}", json={"name": "shown"})  # identical value
        await api.patch(f"/api/v1/deals/{replaced['id']}", json={"name": "x"})  # deleted: 404
        await create(api, "deal", creator_flag=None)  # actor filter
        await create(api, "deal", creator_flag="robot")
        await create(api, "deal", room_id=None)  # no room
        await create(api, "deal", room_id="r-2")  # another room
        other = await new_tenant(runtime, "globex")
        await client.post("/api/v1/deals", json=deal(room_id="r-1", creator_flag="bot"), headers=other.headers)
        await api.post("/api/v1/deals", json={"name": 1})  # invalid
        assert_error(await api.delete(f"/api/v1/deals/{replaced['id']}"), 404, "not_found")
        # None of that published: the next real change is the very next message, with
        # the next version.
        rename = api.patch(f"/api/v1/deals/{shown['id']}", json={"name": "renamed"})
        message = await next_after_quiet(sub, rename)
        assert message["version"] == 3 and message["deal"]["name"] == "renamed"


async def test_late_older_record_publishes_nothing(clocked: Clocked) -> None:
    http, runtime = clocked.http, clocked.runtime
    await create(http, "deal", clock="2026-11-25T09:00:00.000000Z")
    async with runtime.broker.subscribe(room_channel("acme", "r-1")) as sub:
        await create(http, "deal", clock="2026-11-25T08:00:00.000000Z")
        newer = create(http, "deal", name="Newer", clock="2026-11-25T10:00:00.000000Z")
        message = await next_after_quiet(sub, newer)
        assert message["version"] == 2 and message["deal"]["name"] == "Newer"


async def test_messages_are_published_only_after_the_commit(api: httpx.AsyncClient, runtime: Runtime) -> None:
    """A listener that reads the store (its own connection) as soon as a message arrives
    always finds that version committed already."""
    seen: list[tuple[int, int]] = []
    ready = asyncio.Event()

    async def listener() -> None:
        async with runtime.broker.subscribe(room_channel("acme", "r-1")) as sub:
            ready.set()
            while len(seen) < 6:
                message = await next_message(sub, 5)
                state = await runtime.store.room_state("acme", "r-1")
                seen.append((message["version"], state.version))

    task = asyncio.create_task(listener())
    await ready.wait()
    d = await create(api, "deal")
    t = await create(api, "ticket")
    await api.patch(f"/api/v1/deals/{d['id']}", json={"name": "x"})
    await create(api, "deal", name="newer")
    await api.delete(f"/api/v1/tickets/{t['id']}")
    await api.patch(f"/api/v1/deals/{d['id']}", json={"name": "not shown any more"})  # no message
    await create(api, "ticket", creator_flag="agentic_ai")
    await asyncio.wait_for(task, 5)
    assert [v for v, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert all(committed >= published for published, committed in seen), seen
