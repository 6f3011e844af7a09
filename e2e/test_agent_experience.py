"""The component an agent never has to think about (issue 12 section 3): it leaves
``error`` by itself, asks the store again when the tab is shown or the network is
back, says what a change was (once), tells an invalid token from an unreachable CRM,
adopts a new token without a flicker, says when a pop-up was blocked, and shows no
debug text anywhere."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import Frame, Page, Route, expect

from e2e.conftest import ERROR_TIMEOUT_MS, embed_token, expect_state, open_component, open_tab, root, until
from e2e.stack import Stack
from widget.i18n import CATALOGUES

EN = CATALOGUES["en"]
# What an agent must never read: versions, debug chips, exception or error class names.
DEBUG_TEXT = re.compile(r"\bv\d+\b|·|\b\w+(Error|Exception)\b|\bundefined\b|\bnull\b|\bNaN\b|\[object")

# Every change the announcer (the one live region) is given, in order.
RECORD_ANNOUNCEMENTS = """() => {
  const region = document.getElementById("announcer");
  window.announced = [];
  new MutationObserver(() => window.announced.push(region.textContent))
    .observe(region, { childList: true, characterData: true, subtree: true });
}"""


def assert_plain(page: Page | Frame) -> None:
    """No debug text in what the agent reads or hovers (text, titles, labels)."""
    seen = page.evaluate("""() => [document.getElementById("widget").innerText,
        ...[...document.querySelectorAll("[title], [aria-label]")].map(e => e.title + " " + (e.getAttribute("aria-label") || ""))
    ].join("\\n")""")
    assert not DEBUG_TEXT.search(seen), seen


class Held:
    """A route handler that leaves each request unanswered (a stream that never
    delivers) and counts them (a held request fires no page "request" event)."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def __call__(self, route: Route) -> None:
        self.routes.append(route)

    def wait_for(self, count: int, page: Page, timeout_ms: int = 10_000) -> None:
        for _ in range(timeout_ms // 50):  # Playwright calls handlers only while it runs
            if len(self.routes) >= count:
                return
            page.wait_for_timeout(50)
        raise AssertionError(f"{len(self.routes)} held requests, not {count}")


def test_error_is_left_by_itself_once_the_crm_is_back_and_says_why(
    page: Page, own_stack: Stack, room_id: str
) -> None:
    stack = own_stack
    open_component(page, stack, room_id)
    expect_state(page, "empty")

    stack.stop_widget()
    expect_state(page, "error", timeout=ERROR_TIMEOUT_MS)
    panel = page.get_by_test_id("error-state")
    expect(panel).to_contain_text(EN["error_unreachable_title"])
    expect(panel).to_contain_text(EN["error_unreachable_body"])
    expect(page.get_by_test_id("retry")).to_be_visible()
    assert_plain(page)
    unreachable_text = panel.inner_text()

    stack.restart_widget()
    ticket = stack.create("ticket", room_id, name="Created during the outage")
    # Nobody presses "Try again": the component's own back-off finds the CRM.
    expect_state(page, "ready", timeout=ERROR_TIMEOUT_MS)
    expect(page.get_by_test_id("ticket-id")).to_have_text(ticket["unique_id"])
    expect(page.get_by_test_id("error-state")).to_be_hidden()
    stack.create("deal", room_id, name="Live after the outage")  # and live again
    expect(page.get_by_test_id("deal-name")).to_have_text("Live after the outage")

    # A token that is not valid: another cause, another text, and no useless retry.
    page.goto(f"{stack.widget.url}/embed/rooms/{room_id}?token=garbage")
    expect_state(page, "error")
    expect(root(page)).to_have_attribute("data-error", "invalid")
    invalid = page.get_by_test_id("error-state")
    expect(invalid).to_contain_text(EN["error_invalid_title"])
    expect(invalid).to_contain_text("Reload the conversation")
    expect(page.get_by_test_id("retry")).to_be_hidden()
    assert invalid.inner_text() != unreachable_text
    assert EN["error_unreachable_title"] not in invalid.inner_text()
    assert_plain(page)


def test_the_store_is_asked_again_when_the_tab_is_shown_and_when_back_online(
    page: Page, stack: Stack, room_id: str, requests_to: Any
) -> None:
    deal = stack.create("deal", room_id, name="Before the laptop slept")
    streams = Held()
    page.add_init_script("delete window.SharedWorker")  # the page's own EventSource, so the route holds it
    page.route("**/embed/rooms/*/events?*", streams)  # the stream delivers nothing here
    open_component(page, stack, room_id, wait_stream=False)
    streams.wait_for(1, page)
    expect(page.get_by_test_id("deal-name")).to_have_text("Before the laptop slept")

    assert stack.api.patch(f"/deals/{deal['id']}", json={"name": "Renamed while hidden"}).status_code == 200
    assert requests_to("/state?") == []
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(page.get_by_test_id("deal-name")).to_have_text("Renamed while hidden")
    assert len(requests_to("/state?")) == 1

    assert stack.api.patch(f"/deals/{deal['id']}", json={"stage": "Won"}).status_code == 200
    page.evaluate("window.dispatchEvent(new Event('online'))")  # what Chromium fires when the network is back
    expect(page.get_by_test_id("deal-stage")).to_have_text("Won")
    streams.wait_for(2, page)  # a new stream too: the old one may have died with the network
    assert len(requests_to("/state?")) == 2
    expect_state(page, "ready")


def test_a_live_change_is_tagged_and_announced_once(page: Page, stack: Stack, room_id: str) -> None:
    deal = stack.create("deal", room_id, name="Fridge order")
    open_component(page, stack, room_id)
    widget = root(page)
    assert widget.get_attribute("aria-live") is None  # the whole component is not re-read
    assert page.locator("[aria-live]").count() == 0
    expect(page.get_by_test_id("change-tag")).to_be_hidden()  # nothing is new on the first paint
    page.evaluate(RECORD_ANNOUNCEMENTS)

    assert stack.api.patch(f"/deals/{deal['id']}", json={"stage": "Won"}).status_code == 200
    card = page.get_by_test_id("deal-preview")
    expect(card.get_by_test_id("change-tag")).to_have_text("Updated")
    expect(card).to_have_class(re.compile(r"\bcard--changed\b"))
    expect(page.get_by_test_id("announcer")).to_have_text("Deal updated: Fridge order")

    stack.create("ticket", room_id, name="Broken hinge")
    ticket = page.get_by_test_id("ticket-preview")
    expect(ticket.get_by_test_id("change-tag")).to_have_text("New")
    expect(page.get_by_test_id("announcer")).to_have_text("New ticket: Broken hinge")
    # Each change was said exactly once (the second one arriving is the control).
    assert page.evaluate("window.announced") == ["Deal updated: Fridge order", "New ticket: Broken hinge"]

    # The mark goes away by itself ...
    expect(card.get_by_test_id("change-tag")).to_be_hidden(timeout=8000)
    expect(card).not_to_have_class(re.compile(r"\bcard--changed\b"))
    # ... and without motion when the agent asked for less.
    page.emulate_media(reduced_motion="reduce")
    assert stack.api.patch(f"/deals/{deal['id']}", json={"stage": "Lost"}).status_code == 200
    expect(card.get_by_test_id("change-tag")).to_be_visible()
    assert card.evaluate("el => getComputedStyle(el).animationName") == "none"
    assert_plain(page)


def test_a_new_token_is_adopted_silently_and_the_stream_goes_on(
    page: Page, stack: Stack, room_id: str
) -> None:
    """Through the host with 6-second tokens: the host hands a fresh token over before
    the first one ends. The component keeps its stream, reconnects with the new token
    the moment the old one ends (without asking the host), never shows loading or
    expired, and a later change arrives live."""
    stack.create("deal", room_id, name="All-day conversation")
    frame_locator = open_tab(page, stack, room_id, ttl="6")
    expect(frame_locator.get_by_test_id("deal-name")).to_have_text("All-day conversation")
    frame = next(f for f in page.frames if f"/embed/rooms/{room_id}?" in f.url)
    frame.evaluate("""() => {
      window.states = [];
      const widget = document.getElementById("widget");
      new MutationObserver(() => window.states.push(widget.dataset.state))
        .observe(widget, { attributes: true, attributeFilter: ["data-state"] });
    }""")
    first = frame_locator.locator("#widget").get_attribute("data-token")
    fresh = embed_token(stack, room_id, ttl_seconds=120)["token"]
    page.evaluate(
        """([origin, token]) => document.querySelector('[data-testid="deal-ticket-frame"]').contentWindow
             .postMessage({source: "crm-deal-ticket-widget", version: 1, type: "token", token}, origin)""",
        [stack.widget.url, fresh],
    )
    # The first token ends (6 s): its stream ends with token-expired, and the component
    # goes straight on with the one it was handed.
    state_url = f"{stack.widget.url}/embed/rooms/{room_id}/state"
    assert until(page, lambda: stack.api.get(state_url, params={"token": first}).status_code == 401, 10), \
        "the first token never expired"

    stack.create("ticket", room_id, name="After the old token ended")
    expect(frame_locator.get_by_test_id("ticket-name")).to_have_text("After the old token ended")
    states = frame.evaluate("window.states")
    assert "expired" not in states and "loading" not in states and "error" not in states, states
    expect(page.get_by_test_id("sim-log")).not_to_contain_text("Token expired")  # the host was never asked
    expect_state(frame_locator, "ready")


def test_a_blocked_popup_tells_the_agent_to_allow_it(
    page: Page, stack: Stack, room_id: str, new_pages: list[Page], requests_to: Any
) -> None:
    stack.create("deal", room_id, name="Popup deal")
    open_component(page, stack, room_id)
    page.evaluate("window.open = () => null")  # what a pop-up blocker answers

    page.get_by_test_id("deal-name").click()

    notice = page.get_by_test_id("notice")
    expect(notice).to_contain_text("Allow pop-ups for this site")
    assert len(requests_to("/open?")) == 1  # the record was found: only the tab was refused
    assert new_pages == []
    assert_plain(page)


def test_no_debug_text_in_any_state(page: Page, stack: Stack, room_id: str) -> None:
    """ready and forbidden, and every string the script may show (error: above; every
    state in test_screenshots.py)."""
    stack.create("deal", room_id, name="Plain deal")
    open_component(page, stack, room_id)
    assert_plain(page)
    strings = json.loads(page.locator("#widget-strings").text_content() or "{}")
    assert not [text for text in strings.values() if DEBUG_TEXT.search(text)]

    other = embed_token(stack, f"{room_id}-other")["token"]
    page.goto(f"{stack.widget.url}/embed/rooms/{room_id}?token={other}")
    expect_state(page, "forbidden")
    assert_plain(page)
