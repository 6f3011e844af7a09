"""The host SDK, static/embed.js (issue 12 section 1, RFC section 7), on a page of our
own on another site: the example host's ``/embed-only`` page, which carries the markup
of docs/embedding.md and no script of its own. The tests record embed.js' events with
an init script (the test's, not the page's)."""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.sync_api import FrameLocator, Page, Request, expect

from e2e.conftest import chat_panel_mode, expect_state, root, set_host_flag, until, wait_subscribed
from e2e.stack import Stack

RECORD_EVENTS = """
window.crmEvents = [];
for (const type of ["crm:ready", "crm:state", "crm:open", "crm:error"]) {
  document.addEventListener(type, (event) => window.crmEvents.push({ type, detail: event.detail }), true);
}
"""


def open_bare(page: Page, stack: Stack, room_id: str, **query: str) -> FrameLocator:
    """The host's markup-only page on the room; the frame embed.js mounts in it."""
    set_host_flag(stack, True)
    page.add_init_script(RECORD_EVENTS)
    page.goto(f"{stack.host_url}/embed-only?" + "&".join(f"{k}={v}" for k, v in {"room": room_id, **query}.items()))
    return page.frame_locator("[data-crm-deal-ticket] > iframe")


def crm_events(page: Page, type_: str) -> list[Any]:
    return page.evaluate("(type) => crmEvents.filter((e) => e.type === type).map((e) => e.detail)", type_)


def token_requests(page: Page) -> list[str]:
    """Every GET of the host's token endpoint from now on (URLs, in order)."""
    seen: list[str] = []

    def on_request(request: Request) -> None:
        if "/embed-token" in request.url:
            seen.append(request.url)

    page.on("request", on_request)
    return seen


def test_markup_only_page_stays_live_on_four_second_tokens_and_never_expires(
    page: Page, stack: Stack, room_id: str
) -> None:
    """The bar: a bot deal appears live; with 4 s tokens the component stays live for
    15 s without ever being `expired`; a deal created at 14 s still arrives."""
    tokens = token_requests(page)
    frame = open_bare(page, stack, room_id, ttl="4")
    expect_state(frame, "empty")
    started = time.monotonic()
    wait_subscribed(stack, room_id)

    stack.create("deal", room_id, name="First bot deal")
    expect(frame.get_by_test_id("deal-name")).to_have_text("First bot deal")

    page.wait_for_timeout((started + 14 - time.monotonic()) * 1000)  # the scenario's length, not a sync
    stack.create("deal", room_id, name="Bot deal at 14 s")
    expect(frame.get_by_test_id("deal-name")).to_have_text("Bot deal at 14 s", timeout=2_000)
    page.wait_for_timeout(max(0.0, started + 15 - time.monotonic()) * 1000)

    expect_state(frame, "ready")
    states = [detail["state"] for detail in crm_events(page, "crm:state")]
    assert "expired" not in states and "error" not in states, states
    assert len(tokens) >= 5, tokens  # renewed before each token ran out, not after
    expect(page.get_by_test_id("deal-ticket-error")).to_have_count(0)


def test_ready_state_and_open_events_and_a_name_opens_a_new_tab(page: Page, stack: Stack, room_id: str) -> None:
    deal = stack.create("deal", room_id, name="Opens the CRM")
    frame = open_bare(page, stack, room_id)
    expect(frame.get_by_test_id("deal-name")).to_have_text("Opens the CRM")
    mount = page.locator("[data-crm-deal-ticket]")
    expect(mount).to_have_attribute("data-crm-status", "ready")
    iframe = mount.locator("iframe")
    expect(iframe).to_have_attribute("loading", "lazy")
    expect(iframe).to_have_attribute("title", "Deal & Ticket")
    expect(iframe).to_have_attribute("sandbox", "allow-scripts allow-same-origin allow-popups allow-popups-to-escape-sandbox")
    assert crm_events(page, "crm:ready") == [None]
    assert {"state": "ready", "version": 1} in crm_events(page, "crm:state")

    with page.context.expect_page() as opened:  # the sandbox still lets the CRM open in a new tab
        frame.get_by_test_id("deal-name").click()
    expect(opened.value.get_by_test_id("crm-record")).to_be_visible()
    page.wait_for_function("() => crmEvents.some((e) => e.type === 'crm:open')")
    assert crm_events(page, "crm:open") == [{"kind": "deal", "id": deal["id"]}]

    assert page.evaluate("() => CrmDealTicket.refresh(document.querySelector('[data-crm-deal-ticket]'))") is True
    page.wait_for_function("() => crmEvents.some((e) => e.type === 'crm:state' && e.detail.state === 'loading')")
    expect_state(frame, "ready")


def test_a_frame_that_never_reports_ready_shows_an_error_box_whose_retry_mounts_it(
    page: Page, stack: Stack, room_id: str
) -> None:
    page.route(f"**/embed/rooms/{room_id}?token=*", lambda route: route.abort())
    open_bare(page, stack, room_id, ready_timeout="1500")

    box = page.get_by_test_id("deal-ticket-error")
    expect(box).to_be_visible()
    expect(box).to_have_attribute("role", "alert")
    expect(page.get_by_test_id("deal-ticket-error-detail")).to_have_text(
        "The CRM didn't answer in time. Check your connection and try again.")
    expect(page.locator("[data-crm-deal-ticket] iframe")).to_have_count(0)  # no blank frame left behind
    assert crm_events(page, "crm:error") == [{"cause": "timeout"}]

    page.unroute(f"**/embed/rooms/{room_id}?token=*")
    page.get_by_test_id("deal-ticket-retry").click()
    frame = page.frame_locator("[data-crm-deal-ticket] > iframe")
    expect(frame.get_by_test_id("empty-state")).to_be_visible()
    expect(box).to_have_count(0)


def test_a_refused_token_says_so_at_once_in_the_pages_language(page: Page, stack: Stack, room_id: str) -> None:
    """The host's token endpoint answers 403 (its flag is off): retrying by itself can't
    help, so the box comes at once, in Bahasa Indonesia (``data-lang``); once the host
    allows it, the retry button mounts the component."""
    tokens = token_requests(page)
    set_host_flag(stack, False)
    page.add_init_script(RECORD_EVENTS)
    page.goto(f"{stack.host_url}/embed-only?room={room_id}&lang=id")

    expect(page.get_by_test_id("deal-ticket-error")).to_contain_text("Deal & Ticket tidak dapat dimuat")
    expect(page.get_by_test_id("deal-ticket-error-detail")).to_have_text(
        "Halaman ini tidak diizinkan membuka CRM. Muat ulang halaman atau masuk kembali.")
    assert crm_events(page, "crm:error") == [{"cause": "denied"}]
    assert len(tokens) == 1

    set_host_flag(stack, True)
    page.get_by_test_id("deal-ticket-retry").click()
    expect_state(page.frame_locator("[data-crm-deal-ticket] > iframe"), "empty")


ADD_ELEMENT = """
([room, theme]) => {
  const el = document.createElement("div");
  el.dataset.crmDealTicket = "";
  el.dataset.tokenUrl = "/api/rooms/" + room + "/embed-token?ttl=2";
  if (theme) el.dataset.theme = theme;
  el.style.setProperty("--crm-radius", "4px");  // the host's look, handed over with "style"
  document.querySelector("main").append(el);
}
"""


def test_elements_added_later_mount_and_destroyed_or_removed_ones_stop(page: Page, stack: Stack, room_id: str) -> None:
    later, removed = f"{room_id}-later", f"{room_id}-removed"
    for room in (later, removed):
        chat_panel_mode(stack, room, "normal")  # the host knows the room (its token endpoint's 404 otherwise)
    first = open_bare(page, stack, room_id, ttl="2")
    expect_state(first, "empty")

    page.evaluate(ADD_ELEMENT, [later, "dark"])
    page.evaluate(ADD_ELEMENT, [removed, None])
    frame = page.frame_locator(f"[data-token-url*='/{later}/'] > iframe")
    expect_state(frame, "empty")
    expect_state(page.frame_locator(f"[data-token-url*='/{removed}/'] > iframe"), "empty")
    html = frame.locator("html")
    expect(html).to_have_attribute("data-theme", "dark")
    assert html.evaluate("(el) => getComputedStyle(el).getPropertyValue('--crm-radius').trim()") == "4px"
    # The host switches its look later: handed over again, without a reload.
    page.evaluate(f"""() => {{
      const el = document.querySelector("[data-token-url*='/{later}/']");
      el.dataset.theme = "light";
      el.style.setProperty("--crm-radius", "8px");
    }}""")
    expect(html).to_have_attribute("data-theme", "light")
    expect(html).to_have_attribute("style", re.compile(r"--crm-radius:\s*8px"))

    page.evaluate(f"() => CrmDealTicket.destroy(document.querySelector(\"[data-token-url*='/{later}/']\"))")
    page.evaluate(f"() => document.querySelector(\"[data-token-url*='/{removed}/']\").remove()")
    expect(page.locator(f"[data-token-url*='/{later}/']")).to_be_empty()
    expect(page.locator(f"[data-token-url*='/{later}/']")).not_to_have_attribute("data-crm-status", "ready")

    # Their 2 s tokens would be renewed within a second; the first element's are (the control).
    tokens = token_requests(page)
    assert until(page, lambda: sum(f"/{room_id}/" in url for url in tokens) >= 2, 10), tokens
    assert [url for url in tokens if f"/{later}/" in url or f"/{removed}/" in url] == []
    expect_state(first, "empty")
    expect(root(first)).to_be_visible()
