"""CDTC-S01: the deal/ticket preview in the chat room's Deal & Ticket tab, live over
SSE (AC-1..4, NEG-1, ERR-1, E2 and the story's test-coverage rows)."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from e2e.conftest import expect_state, open_tab, root, save_screenshot
from e2e.stack import Stack

NO_RELOAD = "e2e-marker"


def mark(frame) -> None:  # noqa: ANN001 - FrameLocator
    """Tag the component's DOM: the tag survives only if the frame never reloads."""
    root(frame).evaluate(f"el => el.dataset.marker = '{NO_RELOAD}'")


def expect_not_reloaded(frame) -> None:  # noqa: ANN001
    expect(root(frame)).to_have_attribute("data-marker", NO_RELOAD)


def test_ac1_bot_deal_appears_live_with_all_fields(page: Page, stack: Stack, room_id: str) -> None:
    frame = open_tab(page, stack, room_id)
    expect(frame.get_by_test_id("empty-state")).to_be_visible()
    expect_state(frame, "empty")
    save_screenshot(page.get_by_test_id("deal-ticket-frame"), "screenshot-component-empty.png")
    mark(frame)

    deal = stack.create("deal", room_id, name="Fridge order", stage="Qualified", pipeline="Retail")

    card = frame.get_by_test_id("deal-preview")
    expect(card.get_by_test_id("deal-name")).to_have_text("Fridge order")
    expect(card.get_by_test_id("deal-id")).to_have_text(deal["id"])
    expect(card.get_by_test_id("deal-stage")).to_have_text("Qualified")
    expect(card.get_by_test_id("deal-pipeline")).to_have_text("Retail")
    expect(card.get_by_test_id("creator-badge")).to_have_text("Bot")
    expect(frame.get_by_test_id("empty-state")).to_be_hidden()
    expect(frame.get_by_test_id("ticket-preview")).to_have_count(0)
    expect_state(frame, "ready")
    expect(page.get_by_test_id("widget-state")).to_have_attribute("data-state", "ready")
    expect_not_reloaded(frame)


def test_ac2_ai_ticket_appears_live_without_pipeline(page: Page, stack: Stack, room_id: str) -> None:
    frame = open_tab(page, stack, room_id)
    mark(frame)

    ticket = stack.create("ticket", room_id, creator_flag="agentic_ai", name="Broken hinge", status="Open")

    card = frame.get_by_test_id("ticket-preview")
    expect(card.get_by_test_id("ticket-name")).to_have_text("Broken hinge")
    expect(card.get_by_test_id("ticket-id")).to_have_text(ticket["unique_id"])
    expect(card.get_by_test_id("ticket-id")).to_have_text(re.compile(r"^TCK-\d{6,}$"))
    expect(card.get_by_test_id("ticket-status")).to_have_text("Open")
    expect(card.get_by_test_id("creator-badge")).to_have_text("AI")
    # A ticket has no pipeline (S01 coverage: "ticket preview without pipeline field").
    expect(card.get_by_test_id("deal-pipeline")).to_have_count(0)
    expect(card).not_to_contain_text("Pipeline")
    expect(frame.get_by_test_id("deal-preview")).to_have_count(0)
    expect_state(frame, "ready")
    expect_not_reloaded(frame)


def test_ac3_neg1_second_creation_replaces_the_first(page: Page, stack: Stack, room_id: str) -> None:
    frame = open_tab(page, stack, room_id)
    first = stack.create("deal", room_id, name="First deal")
    first_ticket = stack.create("ticket", room_id, name="First ticket")
    expect(frame.get_by_test_id("deal-name")).to_have_text("First deal")
    expect(frame.get_by_test_id("ticket-name")).to_have_text("First ticket")

    second = stack.create("deal", room_id, creator_flag="agentic_ai", name="Second deal")
    second_ticket = stack.create("ticket", room_id, creator_flag="agentic_ai", name="Second ticket")

    deals, tickets = frame.get_by_test_id("deal-preview"), frame.get_by_test_id("ticket-preview")
    expect(deals.get_by_test_id("deal-name")).to_have_text("Second deal")
    expect(deals).to_have_count(1)
    expect(deals.get_by_test_id("deal-id")).to_have_text(second["id"])
    expect(deals.get_by_test_id("creator-badge")).to_have_text("AI")
    expect(tickets.get_by_test_id("ticket-name")).to_have_text("Second ticket")
    expect(tickets).to_have_count(1)
    expect(tickets.get_by_test_id("ticket-id")).to_have_text(second_ticket["unique_id"])
    expect(frame.locator("#widget")).not_to_contain_text(first["id"])
    expect(frame.locator("#widget")).not_to_contain_text(first_ticket["unique_id"])


def test_ac4_updates_of_shown_fields_rerender_live(page: Page, stack: Stack, room_id: str) -> None:
    deal = stack.create("deal", room_id, name="Old name", stage="New", pipeline="Sales")
    ticket = stack.create("ticket", room_id, name="Old ticket", status="Open")
    frame = open_tab(page, stack, room_id)
    expect(frame.get_by_test_id("deal-stage")).to_have_text("New")
    mark(frame)

    assert stack.api.patch(f"/deals/{deal['id']}", json={"stage": "Won"}).status_code == 200
    expect(frame.get_by_test_id("deal-stage")).to_have_text("Won")
    assert stack.api.patch(f"/deals/{deal['id']}", json={"pipeline": "Enterprise"}).status_code == 200
    expect(frame.get_by_test_id("deal-pipeline")).to_have_text("Enterprise")
    assert stack.api.patch(f"/deals/{deal['id']}", json={"name": "New name"}).status_code == 200
    expect(frame.get_by_test_id("deal-name")).to_have_text("New name")
    assert stack.api.patch(f"/tickets/{ticket['id']}", json={"status": "Resolved"}).status_code == 200
    expect(frame.get_by_test_id("ticket-status")).to_have_text("Resolved")
    assert stack.api.patch(f"/tickets/{ticket['id']}", json={"name": "Renamed ticket"}).status_code == 200
    expect(frame.get_by_test_id("ticket-name")).to_have_text("Renamed ticket")

    # Still the same records, re-rendered in place.
    expect(frame.get_by_test_id("deal-id")).to_have_text(deal["id"])
    expect(frame.get_by_test_id("ticket-id")).to_have_text(ticket["unique_id"])
    expect(frame.get_by_test_id("deal-preview")).to_have_count(1)
    expect_not_reloaded(frame)


def test_err1_e2_deleting_the_shown_records_empties_the_tab(page: Page, stack: Stack, room_id: str) -> None:
    deal = stack.create("deal", room_id, name="Doomed deal")
    ticket = stack.create("ticket", room_id, name="Doomed ticket")
    frame = open_tab(page, stack, room_id)  # the agent has the room open (E2)
    expect(frame.get_by_test_id("deal-name")).to_have_text("Doomed deal")
    mark(frame)

    assert stack.api.delete(f"/deals/{deal['id']}").status_code == 204
    expect(frame.get_by_test_id("deal-preview")).to_have_count(0)
    # The ticket slot is independent: it stays, and the tab is still "ready".
    expect(frame.get_by_test_id("ticket-name")).to_have_text("Doomed ticket")
    expect_state(frame, "ready")
    expect(frame.get_by_test_id("empty-state")).to_be_hidden()

    assert stack.api.delete(f"/tickets/{ticket['id']}").status_code == 204
    expect(frame.get_by_test_id("ticket-preview")).to_have_count(0)
    expect(frame.get_by_test_id("empty-state")).to_be_visible()
    expect_state(frame, "empty")
    expect(page.get_by_test_id("widget-state")).to_have_attribute("data-state", "empty")
    expect_not_reloaded(frame)


def test_err1_only_deal_deleted_shows_empty_state(page: Page, stack: Stack, room_id: str) -> None:
    frame = open_tab(page, stack, room_id)
    deal = stack.create("deal", room_id, name="Short-lived")
    expect(frame.get_by_test_id("deal-name")).to_have_text("Short-lived")

    assert stack.api.delete(f"/deals/{deal['id']}").status_code == 204

    expect(frame.get_by_test_id("deal-preview")).to_have_count(0)
    expect(frame.get_by_test_id("empty-state")).to_be_visible()
    expect_state(frame, "empty")


def test_deletion_right_after_creation_ends_empty(page: Page, stack: Stack, room_id: str) -> None:
    frame = open_tab(page, stack, room_id)
    expect_state(frame, "empty")

    deal = stack.create("deal", room_id, name="Blink")
    assert stack.api.delete(f"/deals/{deal['id']}").status_code == 204

    # The component has seen the last version (create + delete = 2), whether or not
    # it rendered the deal in between, and shows nothing.
    room = stack.api.get(f"/rooms/{room_id}").json()
    assert room["version"] == 2 and room["deal"] is None
    expect(root(frame)).to_have_attribute("data-version", "2")
    expect_state(frame, "empty")
    expect(frame.get_by_test_id("deal-preview")).to_have_count(0)
    expect(frame.get_by_test_id("empty-state")).to_be_visible()


SPECIAL = {
    "script": "<script>alert(1)</script>",
    "img": '<img src=x onerror="alert(2)">',
    "quotes": "He said \"hi\" & it's <b>bold</b>",
    "emoji": "Deal 🚀🔥 café ñ 中文",
    "rtl": "صفقة جديدة للعميل",
}


def test_special_characters_render_as_text(page: Page, stack: Stack, room_id: str, dialogs: list[str]) -> None:
    # First paint (server-rendered, Jinja autoescape) ...
    stack.create("deal", room_id, name=SPECIAL["script"], stage=SPECIAL["quotes"], pipeline=SPECIAL["rtl"])
    frame = open_tab(page, stack, room_id)
    expect(frame.get_by_test_id("deal-name")).to_have_text(SPECIAL["script"])
    expect(frame.get_by_test_id("deal-stage")).to_have_text(SPECIAL["quotes"])
    expect(frame.get_by_test_id("deal-pipeline")).to_have_text(SPECIAL["rtl"])

    # ... and live updates (the script's textContent).
    stack.create("ticket", room_id, name=SPECIAL["img"], status=SPECIAL["emoji"])
    expect(frame.get_by_test_id("ticket-name")).to_have_text(SPECIAL["img"])
    expect(frame.get_by_test_id("ticket-status")).to_have_text(SPECIAL["emoji"])
    deal = stack.api.get(f"/rooms/{room_id}").json()["deal"]
    for name in (SPECIAL["rtl"], SPECIAL["emoji"], SPECIAL["quotes"]):
        assert stack.api.patch(f"/deals/{deal['id']}", json={"name": name}).status_code == 200
        expect(frame.get_by_test_id("deal-name")).to_have_text(name)

    widget = root(frame)
    expect(widget.locator("script")).to_have_count(0)
    expect(widget.locator("img")).to_have_count(0)
    expect(widget.locator("b")).to_have_count(0)
    assert dialogs == []


def test_host_screenshot_with_deal_and_ticket(page: Page, stack: Stack) -> None:
    """The README's pictures: the host inbox (a demo room with its chat) with the tab
    showing a bot deal and an AI ticket, and the component alone in the dark theme.
    The demo room is fresh in the session's database and no other test uses it."""
    room_id = "room-budi"
    page.set_viewport_size({"width": 1440, "height": 900})
    stack.create("deal", room_id, name="ThinkPad X1 Carbon × 3", stage="Proposal", pipeline="B2B Sales")
    stack.create("ticket", room_id, creator_flag="agentic_ai", name="Quote for docking stations", status="Open")
    frame = open_tab(page, stack, room_id)
    expect(frame.get_by_test_id("deal-name")).to_have_text("ThinkPad X1 Carbon × 3")
    expect(frame.get_by_test_id("ticket-name")).to_have_text("Quote for docking stations")
    expect(page.get_by_test_id("widget-state")).to_have_attribute("data-state", "ready")
    save_screenshot(page, "screenshot-host.png")

    dark = page.context.new_page()
    dark.set_viewport_size({"width": 1440, "height": 900})
    frame = open_tab(dark, stack, room_id, theme="dark")
    expect(frame.locator("html")).to_have_attribute("data-theme", "dark")
    expect(frame.get_by_test_id("ticket-name")).to_be_visible()
    save_screenshot(dark.get_by_test_id("deal-ticket-frame"), "screenshot-component-dark.png")
    dark.close()


def test_tab_grows_and_shrinks_with_its_content(page: Page, stack: Stack, room_id: str) -> None:
    """The component reports its height (postMessage "resize") and the host sizes the
    frame: the previews are never cut off or scrolled inside the tab."""
    frame = open_tab(page, stack, room_id)
    iframe = page.get_by_test_id("deal-ticket-frame")
    expect(frame.get_by_test_id("empty-state")).to_be_visible()
    empty_height = iframe.evaluate("el => el.getBoundingClientRect().height")
    fits = "() => document.documentElement.scrollHeight <= window.innerHeight"

    deal = stack.create("deal", room_id, name="Tall content")
    stack.create("ticket", room_id, name="More tall content")
    expect(frame.get_by_test_id("ticket-name")).to_be_visible()
    page.wait_for_function(
        "([el, h]) => el.getBoundingClientRect().height > h", arg=[iframe.element_handle(), empty_height]
    )
    content = iframe.element_handle().content_frame()
    content.wait_for_function(fits)
    full_height = iframe.evaluate("el => el.getBoundingClientRect().height")

    assert stack.api.delete(f"/deals/{deal['id']}").status_code == 204
    expect(frame.get_by_test_id("deal-preview")).to_have_count(0)
    page.wait_for_function(
        "([el, h]) => el.getBoundingClientRect().height < h", arg=[iframe.element_handle(), full_height]
    )
    content.wait_for_function(fits)
