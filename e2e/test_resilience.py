"""CDTC-S01 ERR-2: the CRM (widget server) becomes unreachable while the agent has the
room open. The component keeps the last data marked stale while it reconnects, then
shows its error state; the host page is unaffected."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from e2e.conftest import ERROR_TIMEOUT_MS, expect_state, open_tab, save_screenshot
from e2e.stack import Stack


def test_err2_server_unreachable_reconnecting_then_error_host_unaffected(
    page: Page, own_stack: Stack, room_id: str, new_pages: list[Page], requests_to
) -> None:
    stack = own_stack
    page.set_viewport_size({"width": 1440, "height": 900})
    deal = stack.create("deal", room_id, name="Cached deal")
    stack.create("ticket", room_id, creator_flag="agentic_ai", name="Cached ticket")
    frame = open_tab(page, stack, room_id)
    expect(frame.get_by_test_id("deal-name")).to_have_text("Cached deal")
    expect(frame.get_by_test_id("stale-banner")).to_be_hidden()

    stack.widget.__exit__()  # the CRM goes away

    # reconnecting: the last data stays, marked stale.
    expect_state(frame, "reconnecting", timeout=ERROR_TIMEOUT_MS)
    expect(frame.get_by_test_id("stale-banner")).to_be_visible()
    expect(frame.get_by_test_id("deal-name")).to_have_text("Cached deal")
    expect(frame.get_by_test_id("deal-id")).to_have_text(deal["id"])
    expect(frame.get_by_test_id("ticket-name")).to_have_text("Cached ticket")
    expect(page.get_by_test_id("widget-state")).to_have_attribute("data-state", "reconnecting")

    # error: after the reconnects fail, the error state with its retry button.
    expect_state(frame, "error", timeout=ERROR_TIMEOUT_MS)
    expect(frame.get_by_test_id("error-state")).to_be_visible()
    expect(frame.get_by_test_id("retry")).to_be_visible()
    expect(frame.get_by_test_id("stale-banner")).to_be_hidden()
    expect(frame.get_by_test_id("deal-preview")).to_be_hidden()
    expect(page.get_by_test_id("widget-state")).to_have_attribute("data-state", "error")
    save_screenshot(page.get_by_test_id("deal-ticket-frame"), "screenshot-component-error.png")

    # S02 coverage: a name does nothing in the error state (not even a call to /open).
    frame.get_by_test_id("deal-name").dispatch_event("click")
    expect(frame.get_by_test_id("notice")).to_be_hidden()
    assert requests_to("/open") == []
    assert new_pages == []

    # Retry while the server is still down: back to error, not stuck in loading.
    frame.get_by_test_id("retry").click()
    expect_state(frame, "error", timeout=ERROR_TIMEOUT_MS)

    # The host page is unaffected: the composer sends, the other tab works, rooms switch.
    page.get_by_test_id("composer-input").fill("Still here while the CRM is down")
    page.get_by_test_id("composer-send").click()
    expect(page.get_by_test_id("message").last).to_contain_text("Still here while the CRM is down")
    expect(page.get_by_test_id("composer-input")).to_have_value("")
    page.get_by_test_id("tab-customer-info").click()
    expect(page.get_by_test_id("customer-info-panel")).to_be_visible()
    expect(page.get_by_test_id("deal-ticket-panel")).to_be_hidden()
    page.get_by_test_id("tab-deal-ticket").click()
    expect(frame.get_by_test_id("error-state")).to_be_visible()
    page.locator('[data-testid="room-item"][data-room-id="room-sari"]').click()
    expect(page.get_by_test_id("room-title")).to_have_text("Sari Wulandari")
    expect(page.get_by_test_id("messages")).to_be_visible()
    expect(page.get_by_test_id("tab-error")).to_be_visible()  # the host's own "couldn't load", in its tab only
    page.get_by_test_id("composer-input").fill("Hello Sari")
    expect(page.get_by_test_id("composer-input")).to_have_value("Hello Sari")
