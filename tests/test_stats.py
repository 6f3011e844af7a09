"""``GET /api/v1/stats`` on a seeded data set whose every number is worked out by hand
below (PRD section 12). Records, displays and clicks go through the real endpoints;
the timeline outcomes are written the way the worker writes them."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers import PRD_EVENT_PROPERTIES, assert_prd_properties, deal, ticket
from tests.support import T0, FakeClock, WidgetLog, mint_token, new_tenant
from tests.worker_support import stored_events
from widget import analytics, events
from widget.models import rfc3339
from widget.runtime import Runtime
from widget.worker import chat_history
from widget.worker.jobs import Job

HOUR = 3600


async def _create(api: httpx.AsyncClient, kind: str, **fields: Any) -> str:
    response = await api.post(f"/api/v1/{kind}s", json=(deal if kind == "deal" else ticket)(**fields))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _display(api: httpx.AsyncClient, room: str, agent: str, kind: str, record_id: str) -> None:
    token = await mint_token(api, room, agent_id=agent)
    response = await api.post(f"/embed/rooms/{room}/telemetry?token={token}",
                              json={"event": "displayed", "kind": kind, "id": record_id})
    assert response.status_code == 204, response.text


async def _click(api: httpx.AsyncClient, room: str, agent: str, kind: str, record_id: str) -> None:
    token = await mint_token(api, room, agent_id=agent)
    response = await api.post(f"/embed/rooms/{room}/open?token={token}", json={"kind": kind, "id": record_id})
    assert response.status_code == 200, response.text


async def test_every_prd_metric_matches_the_hand_computed_value(
    api: httpx.AsyncClient, runtime: Runtime, clock: FakeClock, widget_log: WidgetLog
) -> None:
    contact = (await api.post("/api/v1/contacts", json={"name": "Ana"})).json()["id"]

    # A day before the window: a bot deal (its creation is outside, its display inside).
    clock.now = T0 - 24 * HOUR * 1_000_000
    d4 = await _create(api, "deal", room_id="r5", creator_flag="bot")

    clock.now = T0 + 60 * 1_000_000
    d1 = await _create(api, "deal", room_id="r1", creator_flag="bot", contact_id=contact)
    d2 = await _create(api, "deal", room_id="r2", creator_flag="agentic_ai")
    await _create(api, "deal", creator_flag="bot", contact_id=contact)  # d3: no room
    await _create(api, "deal", room_id="r4", creator_flag="bot", contact_id=contact)  # d5
    k1 = await _create(api, "ticket", room_id="r1", creator_flag="bot", contact_id=contact)
    k2 = await _create(api, "ticket", room_id="r3", creator_flag="agentic_ai", contact_id="0")  # invalid
    await _create(api, "deal", room_id="r1")  # manual: actor_filtered, in no rate
    other = await new_tenant(runtime, "globex")
    response = await api.post("/api/v1/deals", json=deal(room_id="r1", creator_flag="bot"), headers=other.headers)
    assert response.status_code == 201  # another company's: in none of acme's numbers

    # The worker's outcomes: d1, d2 ok; k2 empty; k1 failed; d5 still pending.
    for kind, record_id, status in (("deal", d1, "ok"), ("deal", d2, "ok"), ("ticket", k2, "empty")):
        await runtime.store.set_chat_preview("acme", kind, record_id, status, None)
    await chat_history.record_failure(
        runtime, Job(0, "acme", "chat_history", {"kind": "ticket", "record_id": k1, "room_id": "r1"}, 3), "http_503")

    await _display(api, "r1", "a1", "deal", d1)
    await _display(api, "r1", "a2", "deal", d1)
    await _display(api, "r1", "a1", "deal", d1)  # the same agent again: not counted
    await _display(api, "r2", "a1", "deal", d2)
    await _display(api, "r5", "a1", "deal", d4)
    await _display(api, "r3", "a1", "ticket", k2)
    await _display(api, "r1", "a2", "ticket", k1)
    await _click(api, "r1", "a1", "deal", d1)
    await _click(api, "r3", "a1", "ticket", k2)
    for kind, record_id, room in (("deal", d1, "r1"), ("ticket", k2, "r3")):  # as crm.room_check does
        await analytics.track(runtime, "acme", events.about(
            f"{kind}_timeline_chatroom_clicked", kind, record_id, room_id=room, agent_id="a1",
            timestamp=rfc3339(runtime.now())))
    assert (await api.delete(f"/api/v1/deals/{d2}")).status_code == 204  # still created in the window

    clock.now = T0 + 2 * HOUR * 1_000_000  # after the window
    await _display(api, "r1", "a3", "deal", d1)

    stats = (await api.get("/api/v1/stats", params={
        "since": rfc3339(T0), "until": rfc3339(T0 + HOUR * 1_000_000)})).json()

    assert stats["counts"] == {
        "bot_deal_created": 3,  # d1, d3, d5 (d4 is before the window)
        "ai_deal_created": 1,  # d2
        "bot_ticket_created": 1,  # k1
        "ai_ticket_created": 1,  # k2
        "deal_preview_displayed": 4,  # d1 by a1 and a2, d2, d4
        "ticket_preview_displayed": 2,  # k2, k1
        "deal_preview_clicked": 1,
        "ticket_preview_clicked": 1,
        "deal_timeline_chatroom_clicked": 1,
        "ticket_timeline_chatroom_clicked": 1,
        "timeline_log_creation_failed": 1,  # k1
        "contact_association_failed": 1,  # k2
        "actor_filtered": 1,  # the manual deal
    }
    # Created in the window: deals d1 d2 d3 d5, tickets k1 k2.
    # Displayed: d1 d2 (not d3, d5), k1 k2. Timeline log: d1 d2 (ok), k2 (empty); k1
    # failed, d5 pending, d3 has no room. Full context (contact, room, log): d1 only.
    assert stats["records"] == {"created": 6, "displayed": 4, "with_timeline_log": 3, "with_full_context": 1}
    assert stats["preview_display_rate"] == round(4 / 6, 4)
    assert stats["deal_preview_display_rate"] == 0.5  # 2 of 4
    assert stats["ticket_preview_display_rate"] == 1.0  # 2 of 2
    assert stats["room_to_record_navigation_rate"] == round(2 / 6, 4)  # clicks / displays
    assert stats["record_to_room_navigation_rate"] == round(2 / 3, 4)  # clicks / records with a log
    assert stats["full_context_rate"] == round(1 / 6, 4)
    assert stats["timeline_log_creation_failure_rate"] == round(1 / 6, 4)

    # Each event was one log line and one stored row, with the PRD's properties.
    for name in set(PRD_EVENT_PROPERTIES) - {"omnichannel_notify_failed"}:  # tests/test_notify.py
        logged = [{k: v for k, v in props.items() if k != "company_id"} for props in widget_log.props(name)]
        assert logged, name
        assert logged == (await stored_events(runtime, name))[-len(logged):], name
        for props in logged:
            assert_prd_properties(name, props)


async def test_rates_without_a_denominator_are_null(api: httpx.AsyncClient) -> None:
    stats = (await api.get("/api/v1/stats")).json()
    assert stats["records"] == {"created": 0, "displayed": 0, "with_timeline_log": 0, "with_full_context": 0}
    assert {name: value for name, value in stats.items() if name.endswith("_rate")} == {
        name: None for name in stats if name.endswith("_rate")}
    assert len([name for name in stats if name.endswith("_rate")]) == 7
