"""CDTC-S05: from the CRM page's timeline entry back to the chat room, end to end. The
CRM page (opened from the component in the host's inbox) checks the room with the
host's fake Chat Panel (``GET {host}/chat-panel/rooms/{room}``) and opens
WIDGET_OMNICHANNEL_ROOM_URL = the host's inbox on that room in a new tab."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import chat_panel_mode, open_component, open_record_page
from e2e.stack import Stack


def crm_page_of_a_bot_deal(page: Page, stack: Stack, room_id: str, name: str) -> Page:
    """A bot deal in the room, its CRM page (a click on its name in the component's
    own page: the host's inbox is the target here, not the origin), short enough a
    viewport that the page scrolls, scrolled down to the timeline's room link."""
    chat_panel_mode(stack, room_id, "normal")
    stack.create("deal", room_id, name=name)
    component = open_component(page, stack, room_id, wait_stream=False)
    crm = open_record_page(page, component, "deal")
    crm.set_viewport_size({"width": 1280, "height": 420})
    expect(crm.get_by_test_id("timeline-entry")).to_have_attribute("data-status", "ok")
    crm.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    crm.get_by_test_id("room-deeplink").scroll_into_view_if_needed()
    crm.evaluate("document.body.dataset.marker = 'same-page'")
    assert crm.evaluate("window.scrollY") > 0, "the page must be scrolled for the position check to mean anything"
    return crm


def expect_inbox_on(tab: Page, stack: Stack, room_id: str) -> None:
    """The host's inbox opened on exactly that room: its title and its own messages."""
    tab.wait_for_load_state()
    assert tab.url == f"{stack.host_url}/inbox?room={room_id}"
    expect(tab.get_by_test_id("room-title")).to_have_text(f"QA visitor {room_id}"[:64])
    expect(tab.get_by_test_id("room-id")).to_contain_text(room_id)
    expect(tab.get_by_test_id("message").last).to_contain_text(f"Thanks! My reference is {room_id}.")
    assert tab.evaluate("window.opener === null")


def test_s05_ac1_ac2_open_chat_room_opens_the_inbox_in_a_new_tab_and_the_crm_tab_keeps_its_place(
    page: Page, stack: Stack, room_id: str
) -> None:
    crm = crm_page_of_a_bot_deal(page, stack, room_id, "Deal to trace back to its chat")
    url, scroll = crm.url, crm.evaluate("window.scrollY")
    pages_before = len(page.context.pages)

    with page.context.expect_page() as opened:
        crm.get_by_test_id("room-deeplink").click()
    expect_inbox_on(opened.value, stack, room_id)
    assert len(page.context.pages) == pages_before + 1  # a new tab, the CRM tab is still there

    crm.bring_to_front()
    assert crm.url == url
    assert crm.evaluate("window.scrollY") == scroll
    expect(crm.locator("body")).to_have_attribute("data-marker", "same-page")
    expect(crm.get_by_test_id("room-notice").get_by_role("status")).to_have_text("")


@pytest.mark.parametrize(("mode", "message"), [
    pytest.param("deleted", "This chat room is no longer available.", id="deleted"),
    pytest.param("forbidden", "You don't have access to this chat room.", id="forbidden"),
])
def test_s05_err1_deleted_or_forbidden_room_shows_an_inline_message_and_opens_no_tab(
    page: Page, stack: Stack, room_id: str, mode: str, message: str
) -> None:
    crm = crm_page_of_a_bot_deal(page, stack, room_id, f"Deal whose room is {mode}")
    url, scroll = crm.url, crm.evaluate("window.scrollY")
    opened: list[Page] = []
    page.context.on("page", lambda new: opened.append(new))

    chat_panel_mode(stack, room_id, mode)
    crm.get_by_test_id("room-deeplink").click()
    notice = crm.get_by_test_id("room-notice")
    expect(notice.get_by_role("status")).to_have_text(message)
    expect(notice).to_have_attribute("data-tone", "error")
    expect(notice.get_by_role("link", name="Open anyway")).to_be_hidden()
    assert crm.url == url
    assert crm.evaluate("window.scrollY") == scroll
    expect(crm.locator("body")).to_have_attribute("data-marker", "same-page")

    # Positive control: the same click, once the room is reachable again, opens the tab.
    chat_panel_mode(stack, room_id, "normal")
    with page.context.expect_page() as control:
        crm.get_by_test_id("room-deeplink").click()
    expect_inbox_on(control.value, stack, room_id)
    assert opened == [control.value], "the blocked click must not have opened a tab"
    expect(notice.get_by_role("status")).to_have_text("")
    assert crm.url == url and crm.evaluate("window.scrollY") == scroll


def test_s05_coverage_archived_room_still_opens(page: Page, stack: Stack, room_id: str) -> None:
    crm = crm_page_of_a_bot_deal(page, stack, room_id, "Deal whose room is archived")
    chat_panel_mode(stack, room_id, "archived")
    with page.context.expect_page() as opened:
        crm.get_by_test_id("room-deeplink").click()
    expect_inbox_on(opened.value, stack, room_id)
    expect(crm.get_by_test_id("room-notice").get_by_role("status")).to_have_text("")
