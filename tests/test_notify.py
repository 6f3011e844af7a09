"""Omnichannel notifications (RFC section 9): the worker tells Omnichannel about bot/AI
records of a room, signed, with a stable event id, retried on transient failures, given
up (with one ``omnichannel_notify_failed``) on final ones, and in order per record even
with two worker loops. Records are made through ``widget.records`` as the API makes
them; Omnichannel is an ``httpx.MockTransport``; the signature is checked with the
example receiver's own ``verify_signature``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from examples.host_page.fakes import verify_signature
from tests.helpers import rows_of
from tests.support import FakeClock, make_settings
from tests.worker_support import drain, stored_events
from widget import companies, records
from widget.models import DealIn, TicketIn
from widget.runtime import Runtime, open_runtime
from widget.store import Row, schema
from widget.worker import run_worker

OMNI = "http://omni.test/hooks"
SECRET = "whsec-0123456789"
ORIGINS = ["http://localhost:8001"]


@dataclass
class Sent:
    method: str
    path: str
    body: dict[str, Any]
    headers: httpx.Headers
    raw: bytes
    at: float  # the runtime clock's unix seconds when it was sent
    status: int


@dataclass
class Omnichannel:
    """Answers each request (with ``only``: each whose path or body names it) with the
    next scripted status (then 200) and keeps it."""

    clock: FakeClock
    script: list[int | Exception] = field(default_factory=list)
    only: str | None = None
    sent: list[Sent] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == "omni.test", request.url  # the Chat Panel is not configured
        scripted = self.only is None or self.only in request.url.path or self.only in request.content.decode()
        outcome = self.script.pop(0) if self.script and scripted else 200
        if isinstance(outcome, Exception):
            raise outcome
        raw = request.content
        self.sent.append(Sent(request.method, request.url.raw_path.decode(), json.loads(raw), request.headers,
                              raw, self.clock.now / 1_000_000, outcome))
        return httpx.Response(outcome, json={"status": "received"})

    @property
    def delivered(self) -> list[Sent]:
        return [s for s in self.sent if s.status == 200]


@asynccontextmanager
async def runtime(tmp_path: Path, clock: FakeClock, omni: Omnichannel) -> AsyncIterator[Runtime]:
    async with open_runtime(make_settings(tmp_path), clock, upstream=httpx.MockTransport(omni)) as rt:
        yield rt


async def company(rt: Runtime, company_id: str = "acme", url: str | None = OMNI, secret: str | None = SECRET) -> Row:
    row, _ = await companies.create_company(rt, company_id, company_id.title(), ORIGINS,
                                            omnichannel_url=url, omnichannel_secret=secret)
    return row


async def deal(rt: Runtime, co: Row, room: str | None = "room-1", flag: str | None = "bot", **extra: Any) -> str:
    body = DealIn(name="Laptop order", stage="New", pipeline="Sales", room_id=room, creator_flag=flag, **extra)
    return (await records.create(rt, "deal", co, body))["id"]


async def ticket(rt: Runtime, co: Row, room: str | None = "room-1", flag: str | None = "agentic_ai") -> Row:
    body = TicketIn(name="Broken screen", status="Open", room_id=room, creator_flag=flag)
    return await records.create(rt, "ticket", co, body)


async def notify_rows(rt: Runtime) -> list[Row]:
    o = schema.outbox.c
    return await rows_of(rt, select(schema.outbox).where(o.topic.like("notify.%")).order_by(o.id))


def assert_signed(sent: Sent, event_id: str) -> None:
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-widget-event-id"] == event_id
    assert verify_signature(sent.headers["x-widget-signature"], sent.raw, SECRET, 300, sent.at) is None
    assert verify_signature(sent.headers["x-widget-signature"], sent.raw, "other", 300, sent.at) is not None
    assert verify_signature(sent.headers["x-widget-signature"], sent.raw, SECRET, 300, sent.at + 301) is not None
    t = int(sent.headers["x-widget-signature"].split(",")[0].removeprefix("t="))
    assert t == int(sent.at)


async def test_the_six_calls_of_the_rfc(tmp_path: Path, clock: FakeClock) -> None:
    omni = Omnichannel(clock)
    async with runtime(tmp_path, clock, omni) as rt:
        acme = await company(rt)
        deal_id = await deal(rt, acme)
        tck = await ticket(rt, acme)
        await records.patch(rt, "deal", acme, deal_id, {"stage": "Won"})
        await records.patch(rt, "ticket", acme, tck["id"], {"status": "Closed", "name": "Screen replaced"})
        await records.delete(rt, "deal", acme, deal_id)
        await records.delete(rt, "ticket", acme, tck["id"])
        rows = await notify_rows(rt)
        await drain(rt, clock, topic=None)
    assert [r["topic"] for r in rows] == ["notify.created", "notify.created", "notify.updated",
                                          "notify.updated", "notify.deleted", "notify.deleted"]
    crm_url = f"http://127.0.0.1:8000/crm/deals/{deal_id}"
    expected = {
        f"evt_{rows[0]['id']}": ("POST", "/hooks/deals",
                                 {"external_id": deal_id, "external_url": crm_url, "room_id": "room-1"}),
        # Every call sends the record as stored when it runs (here: after the rename).
        f"evt_{rows[1]['id']}": ("POST", "/hooks/tickets",
                                 {"room_id": "room-1", "crm_ticket_name": "Screen replaced",
                                  "crm_ticket_id": tck["id"], "crm_unique_ticket_id": tck["unique_id"]}),
        # Sent after the deletes were written: a deleted record still has its values.
        f"evt_{rows[2]['id']}": ("PUT", f"/hooks/deals/{deal_id}",
                                 {"name": "Laptop order", "stage": "Won", "pipeline": "Sales",
                                  "external_url": crm_url, "room_id": "room-1"}),
        f"evt_{rows[3]['id']}": ("PUT", f"/hooks/tickets/{tck['id']}",
                                 {"room_id": "room-1", "crm_ticket_name": "Screen replaced", "status": "Closed"}),
        f"evt_{rows[4]['id']}": ("DELETE", f"/hooks/deals/{deal_id}", {"room_id": "room-1"}),
        f"evt_{rows[5]['id']}": ("DELETE", f"/hooks/tickets/{tck['id']}", {"room_id": "room-1"}),
    }
    assert len(omni.sent) == 6
    for sent in omni.sent:
        event_id = sent.headers["x-widget-event-id"]
        assert (sent.method, sent.path, sent.body) == expected[event_id]
        assert_signed(sent, event_id)
    assert tck["unique_id"] == "TCK-000001"
    assert all(r["last_error"] is None for r in rows)


async def test_the_deal_url_is_its_external_url_when_it_has_one(tmp_path: Path, clock: FakeClock) -> None:
    omni = Omnichannel(clock)
    async with runtime(tmp_path, clock, omni) as rt:
        acme = await company(rt)
        deal_id = await deal(rt, acme, external_url="https://crm.example.com/d/1")
        await drain(rt, clock, topic=None)
    [sent] = omni.sent
    assert sent.body == {"external_id": deal_id, "external_url": "https://crm.example.com/d/1", "room_id": "room-1"}


async def test_a_retry_keeps_the_event_id_and_signs_afresh(tmp_path: Path, clock: FakeClock) -> None:
    omni = Omnichannel(clock, script=[503, httpx.ConnectError("refused"), 429])
    async with runtime(tmp_path, clock, omni) as rt:
        acme = await company(rt)
        await deal(rt, acme)
        [row] = await notify_rows(rt)
        await drain(rt, clock, topic=None)
        [row] = await notify_rows(rt)
        failed = await stored_events(rt, "omnichannel_notify_failed")
    assert [s.status for s in omni.sent] == [503, 429, 200]  # the connect error never answered
    assert {s.headers["x-widget-event-id"] for s in omni.sent} == {f"evt_{row['id']}"}
    for sent in omni.sent:
        assert_signed(sent, f"evt_{row['id']}")
    assert omni.sent[0].at < omni.sent[-1].at  # a new timestamp for the later attempt
    assert row["attempts"] == 4 and row["last_error"] is None and row["done_at"] is not None
    assert failed == []


async def test_a_4xx_gives_up_at_once_with_one_failure_event(tmp_path: Path, clock: FakeClock) -> None:
    omni = Omnichannel(clock, script=[400])
    async with runtime(tmp_path, clock, omni) as rt:
        acme = await company(rt)
        tck = await ticket(rt, acme)
        await drain(rt, clock, topic=None)
        [row] = await notify_rows(rt)
        failed = await stored_events(rt, "omnichannel_notify_failed")
    assert len(omni.sent) == 1
    assert row["attempts"] == 1 and row["last_error"] == "failed: http_400"
    [event] = failed
    timestamp = event.pop("timestamp")
    assert timestamp.endswith("Z")
    assert event == {"ticket_id": tck["id"], "room_id": "room-1", "event": "ticket_created",
                     "event_id": f"evt_{row['id']}", "error_reason": "http_400", "attempts": 1}


async def test_it_gives_up_after_eight_transient_failures(tmp_path: Path, clock: FakeClock) -> None:
    omni = Omnichannel(clock, script=[503] * 20)
    async with runtime(tmp_path, clock, omni) as rt:
        acme = await company(rt)
        await deal(rt, acme)
        await drain(rt, clock, topic=None)
        [row] = await notify_rows(rt)
        [event] = await stored_events(rt, "omnichannel_notify_failed")
    assert len(omni.sent) == 8
    assert (event["event"], event["error_reason"], event["attempts"]) == ("deal_created", "http_503", 8)
    assert row["last_error"] == "gave up after 8 attempts: http_503"


async def test_a_company_without_a_secret_fails_at_once_unsent(tmp_path: Path, clock: FakeClock) -> None:
    omni = Omnichannel(clock)
    async with runtime(tmp_path, clock, omni) as rt:
        acme = await company(rt, secret=None)
        await deal(rt, acme)
        await drain(rt, clock, topic=None)
        [event] = await stored_events(rt, "omnichannel_notify_failed")
    assert omni.sent == []
    assert event["error_reason"] == "secret_not_configured"


async def test_a_company_without_an_omnichannel_url_gets_nothing(tmp_path: Path, clock: FakeClock) -> None:
    omni = Omnichannel(clock)
    async with runtime(tmp_path, clock, omni) as rt:
        acme = await company(rt)  # the positive control
        never = await company(rt, "never", url=None)
        removed = await company(rt, "removed")
        acme_deal = await deal(rt, acme)
        await deal(rt, never)
        await deal(rt, removed)
        await rt.store.update_company("removed", {"omnichannel_url": None})  # after its row was written
        rows = await notify_rows(rt)
        await drain(rt, clock, topic=None)
        failed = await stored_events(rt, "omnichannel_notify_failed")
    assert [r["company_id"] for r in rows] == ["acme", "removed"]  # none written for "never"
    assert [s.body["external_id"] for s in omni.sent] == [acme_deal]
    assert failed == []


async def test_updates_and_deletes_never_overtake_the_create_with_two_loops(
    tmp_path: Path, clock: FakeClock
) -> None:
    omni = Omnichannel(clock, script=[503])
    async with runtime(tmp_path, clock, omni) as rt:
        acme = await company(rt)
        deal_id = omni.only = await deal(rt, acme)
        await records.patch(rt, "deal", acme, deal_id, {"stage": "Won"})
        await records.delete(rt, "deal", acme, deal_id)
        other = await deal(rt, acme, room="room-2")  # another record is not held back
        await drain(rt, clock, topic=None, loops=2)
    mine = [(s.method, s.status) for s in omni.sent
            if s.path.endswith(deal_id) or s.body.get("external_id") == deal_id]
    assert mine == [("POST", 503), ("POST", 200), ("PUT", 200), ("DELETE", 200)]
    assert [s.body.get("external_id") for s in omni.sent].index(other) < 2  # it went while the create waited


async def test_a_claim_skips_a_notification_while_an_earlier_one_of_its_record_is_unfinished(
    tmp_path: Path, clock: FakeClock
) -> None:
    omni = Omnichannel(clock)
    async with runtime(tmp_path, clock, omni) as rt:
        acme = await company(rt)
        deal_id = await deal(rt, acme)
        await records.patch(rt, "deal", acme, deal_id, {"stage": "Won"})
        create, update = await notify_rows(rt)
        topics = ["chat_history", "notify.created", "notify.updated", "notify.deleted"]
        now = clock.now
        first = await rt.store.claim_outbox(topics, now=now, lease_until=now + 30_000_000, limit=10)
        assert [r["topic"] for r in first] == ["chat_history", "notify.created"]
        # Leased by "another loop": the update still waits, even once due.
        assert await rt.store.claim_outbox(topics, now=now + 1, lease_until=now + 2, limit=10) == []
        assert await rt.store.outbox_done(create["id"], 1, now=now)
        [second] = await rt.store.claim_outbox(topics, now=now + 1, lease_until=now + 2, limit=10)
        assert second["id"] == update["id"]


async def test_only_bot_and_ai_records_in_a_room_are_notified(tmp_path: Path, clock: FakeClock) -> None:
    omni = Omnichannel(clock)
    async with runtime(tmp_path, clock, omni) as rt:
        acme = await company(rt)
        api_deal = await deal(rt, acme, flag=None)
        roomless = await deal(rt, acme, room=None)
        await records.patch(rt, "deal", acme, api_deal, {"stage": "Won"})
        await records.patch(rt, "deal", acme, roomless, {"stage": "Won"})
        await records.delete(rt, "deal", acme, api_deal)
        await records.delete(rt, "deal", acme, roomless)
        control = await deal(rt, acme, flag="agentic_ai")
        await drain(rt, clock, topic=None)
    assert [(s.method, s.body.get("external_id")) for s in omni.sent] == [("POST", control)]


async def test_retry_after_is_honoured_up_to_the_backoff_cap(tmp_path: Path, clock: FakeClock) -> None:
    """One attempt per room, the clock standing still: a 429 asking for 120 s is due in
    120 s, one asking for a day waits the 5-minute cap, and (the control) a 503 without
    the header waits only the first backoff step (0.5-1 s)."""
    answers = {"room-a": {"Retry-After": "120"}, "room-b": {"Retry-After": "86400"}, "room-c": {}}

    def omnichannel(request: httpx.Request) -> httpx.Response:
        headers = answers[json.loads(request.content)["room_id"]]
        return httpx.Response(429 if headers else 503, headers=headers)

    settings = make_settings(tmp_path)
    async with open_runtime(settings, clock, upstream=httpx.MockTransport(omnichannel)) as rt:
        acme = await company(rt)
        for room in answers:
            await deal(rt, acme, room=room)
        clock.advance(0.001)  # creation times are a µs apart: all due now
        stop = asyncio.Event()
        loop = asyncio.create_task(run_worker(rt, stop, poll_interval=0.01))
        try:
            async with asyncio.timeout(5):
                while not all(r["last_error"] for r in await notify_rows(rt)):
                    await asyncio.sleep(0.01)
        finally:
            stop.set()
            await loop
        waits = {json.loads(r["payload"])["room_id"]: (r["next_attempt_at"] - clock.now) / 1_000_000
                 for r in await notify_rows(rt)}
    assert waits["room-a"] == 120
    assert waits["room-b"] == 300
    assert 0.5 <= waits["room-c"] <= 1.0
