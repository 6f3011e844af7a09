"""PRD 5.1 / S04 Permission Model: a bot/AI record's chat history timeline entry is kept
for a year (``WIDGET_TIMELINE_RETENTION_DAYS`` = 365), then purged; the record stays.
Records are back-dated with ``X-Test-Clock`` on create; the purge is
``widget.worker.purge`` on a runtime opened on the stack's own SQLite file with the
real clock, as `widget purge` (and the worker's daily run) does it. Only entries older
than a year go, so the other tests' records in the shared database are untouched."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from e2e.conftest import chat_panel_mode, open_component, open_record_page
from e2e.stack import Stack
from widget.runtime import open_runtime
from widget.settings import Settings
from widget.worker import purge


def days_ago(days: int) -> str:
    moment = datetime.now(UTC) - timedelta(days=days)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def run_purge(settings: Settings) -> dict[str, int]:
    """`widget purge` in-process. Its own thread for its own event loop: Playwright's
    sync API keeps a loop running in the test thread, so ``asyncio.run`` is refused there."""
    async def work() -> dict[str, int]:
        async with open_runtime(settings, migrate=False) as rt:
            return await purge(rt, dry_run=False)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work()).result()


def test_retention_entry_older_than_365_days_is_purged_the_record_stays(
    page: Page, stack: Stack, room_id: str
) -> None:
    settings = stack.widget.app.state.runtime.settings
    assert settings.timeline_retention_days == 365
    chat_panel_mode(stack, room_id, "normal")
    old = stack.create("deal", room_id, name="Deal from 366 days ago", test_clock=days_ago(366))
    kept = stack.create("ticket", room_id, creator_flag="agentic_ai", name="Ticket from 364 days ago",
                        test_clock=days_ago(364))

    component = open_component(page, stack, room_id, wait_stream=False)
    pages = {kind: open_record_page(page, component, kind) for kind in ("deal", "ticket")}
    for kind, crm in pages.items():  # both entries are there, with their chat preview, before the purge
        entry = crm.get_by_test_id("timeline-entry")
        expect(entry).to_have_count(1)
        expect(entry).to_have_attribute("data-status", "ok")
        expect(entry.get_by_test_id("chat-message").last).to_contain_text(f"Thanks! My reference is {room_id}.")

    counts = run_purge(settings)
    assert counts["timeline_entries"] >= 1, counts

    deal_page, ticket_page = pages["deal"], pages["ticket"]
    deal_page.reload()
    expect(deal_page.get_by_test_id("crm-name")).to_have_text("Deal from 366 days ago")
    expect(deal_page.get_by_test_id("crm-creator")).to_have_text("Bot")
    expect(deal_page.get_by_test_id("timeline-body")).to_contain_text("No timeline entries.")
    expect(deal_page.get_by_test_id("timeline-entry")).to_have_count(0)
    expect(deal_page.get_by_test_id("chat-message")).to_have_count(0)
    assert stack.api.get(f"/deals/{old['id']}/timeline").json() == {"entries": []}
    assert stack.api.get(f"/deals/{old['id']}").status_code == 200

    # Positive control: the 364-day-old entry stays, preview and room link included.
    ticket_page.reload()
    expect(ticket_page.get_by_test_id("crm-name")).to_have_text("Ticket from 364 days ago")
    entry = ticket_page.get_by_test_id("timeline-entry")
    expect(entry).to_have_count(1)
    expect(entry.get_by_test_id("creator-badge")).to_have_text("AI")
    expect(entry.get_by_test_id("chat-message")).to_have_count(3)
    expect(entry.get_by_test_id("room-deeplink")).to_be_visible()
    [stored] = stack.api.get(f"/tickets/{kept['id']}/timeline").json()["entries"]
    assert stored["chat_preview_status"] == "ok"

    # The room still shows both records: retention only removes the timeline entry.
    room = stack.api.get(f"/rooms/{room_id}").json()
    assert (room["deal"]["id"], room["ticket"]["id"]) == (old["id"], kept["id"])
