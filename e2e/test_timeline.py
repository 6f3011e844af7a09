"""CDTC-S04 (chat history timeline entry on the CRM page), edge case E4 and the S04
coverage rows, end to end: the record API → the widget's embedded outbox worker →
``GET {host}/chat-panel/rooms/{room}/messages?limit=5`` on the host's fake Chat Panel
(a per-room mode plays each failure) → the CRM page, opened by clicking the name in the
component inside the host's inbox. Nothing is written into the database by hand."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import (
    WidgetEvents,
    agent_message,
    chat_panel_mode,
    open_component,
    open_record_page,
    open_tab,
    signed_record_page,
    stats_counts,
    utc_now,
    visible_text,
)
from e2e.stack import Stack

# The worker gives up on a failing Chat Panel after three attempts; with the "slow"
# mode (5 s answer, 2 s timeout) that is ~8 s, plus the page's 1 s poll.
SETTLED_MS = 20_000
FAILURE_WORDS = re.compile(r"error|fail|gagal|kesalahan", re.IGNORECASE)


def room_url(stack: Stack, room_id: str) -> str:
    """WIDGET_OMNICHANNEL_ROOM_URL of the stack (the fixture's room ids need no encoding)."""
    return f"{stack.host_url}/inbox?room={room_id}"


def test_s04_ac1_bot_deal_timeline_shows_the_rooms_chat_preview_and_a_deeplink(
    page: Page, stack: Stack, room_id: str
) -> None:
    chat_panel_mode(stack, room_id, "normal")  # the room's 3 messages: customer, bot, customer
    agent_message(stack, room_id, "Hi, this is Alya. Checking stock for you.")
    agent_message(stack, room_id, "Both units are available.")
    long_text = "The quote: " + "2 × ThinkPad X1 Carbon, 32 GB, delivered to Jakarta; " * 6
    agent_message(stack, room_id, long_text)  # 6 messages now; the preview keeps the last 5

    deal = stack.create("deal", room_id, name="Quote for 2 units", stage="Proposal", pipeline="B2B")
    frame = open_tab(page, stack, room_id, wait_stream=False)
    crm = open_record_page(page, frame, "deal")
    expect(crm.get_by_test_id("crm-name")).to_have_text("Quote for 2 units")

    entry = crm.get_by_test_id("timeline-entry")
    expect(entry).to_have_count(1)
    expect(entry).to_have_attribute("data-status", "ok")
    messages = entry.get_by_test_id("chat-message")
    expect(messages).to_have_count(5)
    assert [messages.nth(i).get_attribute("data-sender") for i in range(5)] == [
        "bot", "customer", "agent", "agent", "agent"]
    expect(messages.nth(0)).to_contain_text("Qontak Bot")
    expect(messages.nth(0).locator(".msg__type")).to_have_text("Bot")
    expect(messages.nth(1).locator(".msg__name")).to_have_text(f"QA visitor {room_id}"[:64])
    expect(messages.nth(1).locator(".msg__type")).to_have_text("Customer")
    expect(messages.nth(1).locator(".msg__text")).to_have_text(f"Thanks! My reference is {room_id}.")
    expect(messages.nth(2).locator(".msg__type")).to_have_text("Agent")
    expect(messages.nth(2).locator(".msg__name")).to_have_text("Alya Putri")
    # Each text cut to 160 characters, the ellipsis included.
    expect(messages.nth(4).locator(".msg__text")).to_have_text(long_text.strip()[:159] + "…")
    # Bubbles: the customer on one side, bot and agent on the other.
    sides = [messages.nth(i).evaluate("el => getComputedStyle(el).justifySelf") for i in range(5)]
    assert sides == ["end", "start", "end", "end", "end"], sides

    expect(entry.get_by_test_id("creator-badge")).to_have_text("Bot")
    expect(entry.get_by_test_id("room-id")).to_have_text(room_id)
    link = entry.get_by_test_id("room-deeplink")
    expect(link).to_have_text(re.compile("Open chat room"))
    expect(link).to_have_attribute("href", room_url(stack, room_id))
    expect(link).to_have_attribute("target", "_blank")

    stored = stack.api.get(f"/deals/{deal['id']}/timeline").json()["entries"]
    assert [e["chat_preview_status"] for e in stored] == ["ok"]
    assert stored[0]["chat_preview"][-1]["text"] == long_text.strip()[:159] + "…"


def test_s04_err1_no_room_id_no_timeline_entry_record_created(page: Page, stack: Stack, room_id: str) -> None:
    roomless = stack.create("deal", None, name="Bot deal without a room")
    assert stack.api.get(f"/deals/{roomless['id']}").status_code == 200
    assert stack.api.get(f"/deals/{roomless['id']}/timeline").json() == {"entries": []}
    # Positive control: the same kind of deal with the room does get its entry.
    chat_panel_mode(stack, room_id, "normal")
    stack.create("deal", room_id, name="Bot deal with the room")
    component = open_component(page, stack, room_id, wait_stream=False)
    with_room = open_record_page(page, component, "deal")
    expect(with_room.get_by_test_id("timeline-entry")).to_have_count(1)
    expect(with_room.get_by_test_id("timeline-entry")).to_have_attribute("data-status", "ok")

    crm = signed_record_page(page, stack, "deal", roomless)
    expect(crm.get_by_test_id("crm-name")).to_have_text("Bot deal without a room")
    expect(crm.get_by_test_id("crm-creator")).to_have_text("Bot")
    expect(crm.get_by_test_id("timeline-body")).to_contain_text("No timeline entries.")
    expect(crm.get_by_test_id("timeline-entry")).to_have_count(0)
    expect(crm.get_by_test_id("room-deeplink")).to_have_count(0)
    text = visible_text(crm)
    assert not FAILURE_WORDS.search(text), text


EXPECTED_REASON = {"down": "http_503", "malformed": "malformed_json", "partial": "malformed_json"}


@pytest.mark.parametrize("mode", ["down", "malformed", "partial"])
def test_s04_err2_e4_chat_panel_failure_keeps_badge_and_link_without_an_error(
    page: Page, stack: Stack, room_id: str, widget_events: WidgetEvents, mode: str
) -> None:
    since = utc_now()
    chat_panel_mode(stack, room_id, mode)
    deal = stack.create("deal", room_id, creator_flag="agentic_ai", name=f"AI deal, Chat Panel {mode}")
    component = open_component(page, stack, room_id, wait_stream=False)
    crm = open_record_page(page, component, "deal")

    entry = crm.get_by_test_id("timeline-entry")
    # Positive control: the entry reached its final state (no longer pending) and is
    # there with its badge and room link ...
    expect(entry).to_have_attribute("data-status", "failed", timeout=SETTLED_MS)
    expect(entry.get_by_test_id("creator-badge")).to_have_text("AI")
    expect(entry.get_by_test_id("room-deeplink")).to_be_visible()
    expect(entry.get_by_test_id("room-deeplink")).to_have_attribute("href", room_url(stack, room_id))
    expect(entry.get_by_test_id("room-id")).to_have_text(room_id)
    # ... and without any preview, empty text or agent-facing error, in both languages.
    for lang in ("en", "id"):
        if lang == "id":
            crm.goto(f"{stack.widget.url}/crm/deals/{deal['id']}?lang=id")
            expect(entry.get_by_test_id("room-deeplink")).to_contain_text("Buka room chat")
        expect(entry.get_by_test_id("chat-preview")).to_have_count(0)
        expect(entry.get_by_test_id("chat-message")).to_have_count(0)
        expect(entry.get_by_test_id("chat-empty")).to_have_count(0)
        expect(entry.get_by_test_id("chat-pending")).to_have_count(0)
        text = visible_text(crm).replace(room_id, "<room>")  # the room id holds the test's name
        assert not FAILURE_WORDS.search(text), text

    # Counted once, with the reason (stored: /stats), and logged.
    event = widget_events.wait_for("timeline_log_creation_failed", deal_id=deal["id"])
    assert event["error_reason"] == EXPECTED_REASON[mode] and event["room_id"] == room_id
    counts = stats_counts(stack, since)
    assert counts.get("timeline_log_creation_failed") == 1, counts
    assert counts.get("ai_deal_created") == 1, counts
    [stored] = stack.api.get(f"/deals/{deal['id']}/timeline").json()["entries"]
    assert (stored["chat_preview_status"], stored["chat_preview"]) == ("failed", None)


def test_s04_coverage_room_with_0_messages_says_no_messages_yet(
    page: Page, stack: Stack, room_id: str, widget_events: WidgetEvents
) -> None:
    chat_panel_mode(stack, room_id, "empty")
    ticket = stack.create("ticket", room_id, name="Ticket from an empty room")
    component = open_component(page, stack, room_id, wait_stream=False)
    crm = open_record_page(page, component, "ticket")
    entry = crm.get_by_test_id("timeline-entry")
    expect(entry).to_have_attribute("data-status", "empty")
    expect(entry.get_by_test_id("chat-empty")).to_have_text("No messages yet")
    expect(entry.get_by_test_id("chat-message")).to_have_count(0)
    expect(entry.get_by_test_id("creator-badge")).to_have_text("Bot")
    expect(entry.get_by_test_id("room-deeplink")).to_be_visible()
    assert widget_events.props("timeline_log_creation_failed", ticket_id=ticket["id"]) == []


def test_s04_coverage_slow_chat_panel_settles_on_the_open_page_without_a_reload(
    page: Page, stack: Stack, room_id: str, widget_events: WidgetEvents
) -> None:
    chat_panel_mode(stack, room_id, "slow")  # both endpoints answer after 5 s; the worker waits 2 s
    deal = stack.create("deal", room_id, name="Deal while the Chat Panel is slow")
    component = open_component(page, stack, room_id, wait_stream=False)
    crm = open_record_page(page, component, "deal")  # well within the first attempt's 2 s + retries

    entry = crm.get_by_test_id("timeline-entry")
    expect(entry).to_have_attribute("data-status", "pending")
    expect(entry.get_by_test_id("chat-pending")).to_contain_text("Fetching chat history…")
    crm.evaluate("document.body.dataset.marker = 'same-page'")
    navigations: list[str] = []
    crm.on("framenavigated", lambda f: navigations.append(f.url) if f == crm.main_frame else None)

    # Three 2 s timeouts later the worker gives up: the entry settles in place.
    expect(entry).to_have_attribute("data-status", "failed", timeout=SETTLED_MS)
    expect(entry.get_by_test_id("chat-pending")).to_have_count(0)
    expect(entry.get_by_test_id("chat-preview")).to_have_count(0)
    expect(entry.get_by_test_id("creator-badge")).to_have_text("Bot")
    expect(entry.get_by_test_id("room-deeplink")).to_be_visible()
    expect(crm.get_by_test_id("timeline-body")).to_have_attribute("data-pending", "false")
    expect(crm.locator("body")).to_have_attribute("data-marker", "same-page")
    assert navigations == [], navigations
    assert not FAILURE_WORDS.search(visible_text(crm).replace(room_id, "<room>"))
    event = widget_events.wait_for("timeline_log_creation_failed", deal_id=deal["id"])
    assert event["error_reason"] == "timeout"


def test_s04_coverage_unrecognised_creator_flag_is_api_without_a_timeline_entry(
    page: Page, stack: Stack, room_id: str
) -> None:
    chat_panel_mode(stack, room_id, "normal")
    odd = stack.create("deal", room_id, creator_flag="chatbot_v2", name="Deal with an odd creator_flag")
    assert (odd["creator_flag"], odd["creator"]) == ("chatbot_v2", "API")
    # Positive control: a bot deal in the same room gets its entry.
    stack.create("deal", room_id, creator_flag="bot", name="Bot deal in the same room")
    component = open_component(page, stack, room_id, wait_stream=False)
    bot_page = open_record_page(page, component, "deal")
    expect(bot_page.get_by_test_id("crm-name")).to_have_text("Bot deal in the same room")
    expect(bot_page.get_by_test_id("timeline-entry")).to_have_count(1)

    crm = signed_record_page(page, stack, "deal", odd)
    expect(crm.get_by_test_id("crm-name")).to_have_text("Deal with an odd creator_flag")
    expect(crm.get_by_test_id("crm-creator")).to_have_text("API")
    expect(crm.get_by_test_id("timeline-body")).to_contain_text("No timeline entries.")
    expect(crm.get_by_test_id("timeline-entry")).to_have_count(0)
    assert stack.api.get(f"/deals/{odd['id']}/timeline").json() == {"entries": []}
