"""CDTC-S02: clicking a preview's name opens the CRM record in a new tab; the chat
tab stays as it was (AC-1, AC-2), deleted records and missing permissions are
handled inline (ERR-1, 403), and names do nothing when the component can't act."""

from __future__ import annotations

from playwright.sync_api import Page, Route, expect

from e2e.conftest import embed_token, expect_state, open_tab
from e2e.stack import Stack

DRAFT = "Draft reply: checking the quote for you…"


def test_ac1_ac2_deal_name_opens_the_crm_record_in_a_new_tab(page: Page, stack: Stack, room_id: str) -> None:
    deal = stack.create("deal", room_id, name="Projector lease", stage="Proposal", pipeline="Rentals")
    frame = open_tab(page, stack, room_id)
    page.get_by_test_id("composer-input").fill(DRAFT)
    host_url = page.url

    with page.context.expect_page() as opened:
        frame.get_by_test_id("deal-name").click()
    crm = opened.value
    crm.wait_for_load_state()

    # AC-1: a new tab with the record.
    assert crm is not page
    # The single-use link set a session for this record and left the address bar.
    assert crm.url == f"{stack.widget.url}/crm/deals/{deal['id']}"
    expect(crm.get_by_test_id("crm-name")).to_have_text("Projector lease")
    expect(crm.get_by_test_id("crm-id")).to_have_text(deal["id"])
    expect(crm.get_by_test_id("crm-creator")).to_have_text("Bot")
    assert crm.evaluate("window.opener === null"), "noopener: the CRM tab must not reach the chat tab"
    # AC-2: the chat tab did not move and kept its state.
    page.bring_to_front()
    assert page.url == host_url
    expect(page.get_by_test_id("composer-input")).to_have_value(DRAFT)
    expect(frame.get_by_test_id("deal-name")).to_have_text("Projector lease")
    expect_state(frame, "ready")
    expect(frame.get_by_test_id("notice")).to_be_hidden()
    # The host heard about it (postMessage "open").
    expect(page.get_by_test_id("sim-log")).to_contain_text(f"Agent opened deal {deal['id']}")


def test_ac1_ac2_ticket_name_opens_the_crm_record_in_a_new_tab(page: Page, stack: Stack, room_id: str) -> None:
    ticket = stack.create("ticket", room_id, creator_flag="agentic_ai", name="Warranty claim", status="Pending")
    frame = open_tab(page, stack, room_id)
    page.get_by_test_id("composer-input").fill(DRAFT)
    host_url = page.url

    with page.context.expect_page() as opened:
        frame.get_by_test_id("ticket-name").click()
    crm = opened.value
    crm.wait_for_load_state()

    assert crm.url == f"{stack.widget.url}/crm/tickets/{ticket['id']}"
    expect(crm.get_by_test_id("crm-name")).to_have_text("Warranty claim")
    expect(crm.get_by_test_id("crm-id")).to_have_text(ticket["unique_id"])
    expect(crm.get_by_test_id("crm-creator")).to_have_text("AI")
    page.bring_to_front()
    assert page.url == host_url
    expect(page.get_by_test_id("composer-input")).to_have_value(DRAFT)
    expect(frame.get_by_test_id("ticket-name")).to_have_text("Warranty claim")


def test_err1_click_on_a_deleted_deal_shows_a_notice_and_refreshes(
    page: Page, stack: Stack, room_id: str, new_pages: list[Page]
) -> None:
    """The stream is held back (NOTES-stack), so the preview is still showing when the
    deal is already gone: the click must find out from /open, not from the stream."""
    held: list[Route] = []

    def hold_first_stream(route: Route) -> None:
        if not held:
            held.append(route)  # never answered: that EventSource just hangs
        else:
            route.continue_()

    page.route("**/embed/rooms/**/events**", hold_first_stream)
    deal = stack.create("deal", room_id, name="Gone soon")
    frame = open_tab(page, stack, room_id, wait_stream=False)
    expect(frame.get_by_test_id("deal-name")).to_have_text("Gone soon")  # the server-rendered first paint
    assert len(held) == 1

    assert stack.api.delete(f"/deals/{deal['id']}").status_code == 204
    frame.get_by_test_id("deal-name").click()

    expect(frame.get_by_test_id("notice")).to_be_visible()
    expect(frame.get_by_test_id("notice")).to_contain_text("This deal was deleted")
    # ... and it refreshes to what the store says: nothing.
    expect(frame.get_by_test_id("deal-preview")).to_have_count(0)
    expect(frame.get_by_test_id("empty-state")).to_be_visible()
    expect_state(frame, "empty")
    assert new_pages == []


def test_403_without_ticket_permission_shows_an_access_notice(
    page: Page, stack: Stack, room_id: str, new_pages: list[Page]
) -> None:
    stack.create("deal", room_id, name="Visible deal")
    stack.create("ticket", room_id, name="Restricted ticket")
    frame = open_tab(page, stack, room_id, perms="deal:view")  # the host passes permissions through
    # Any agent with the room sees both previews (PRD section 5) ...
    expect(frame.get_by_test_id("ticket-name")).to_have_text("Restricted ticket")

    frame.get_by_test_id("ticket-name").click()

    expect(frame.get_by_test_id("notice")).to_contain_text("You don't have access to this ticket")
    expect(frame.get_by_test_id("ticket-name")).to_have_text("Restricted ticket")  # nothing else changed
    expect_state(frame, "ready")
    assert new_pages == []

    # ... and deal:view still opens the deal (the check is per kind, not a blanket refusal).
    with page.context.expect_page() as opened:
        frame.get_by_test_id("deal-name").click()
    expect(opened.value.get_by_test_id("crm-name")).to_have_text("Visible deal")


def test_names_do_nothing_once_the_token_expired(
    page: Page, stack: Stack, room_id: str, new_pages: list[Page], requests_to
) -> None:
    """Loaded directly (no host to hand over a new token): after expiry the previews
    stay on screen but the names are inert (RFC section 7)."""
    deal = stack.create("deal", room_id, name="Frozen deal")
    token = embed_token(stack, room_id, ttl_seconds=2)
    page.goto(token["embed_url"])
    expect(page.get_by_test_id("deal-name")).to_have_text("Frozen deal")
    expect_state(page, "ready")

    expect_state(page, "expired")
    expect(page.get_by_test_id("deal-name")).to_be_visible()
    # A real click can't reach it (pointer-events: none), so dispatch one on the link
    # itself to test the script's own guard as well.
    page.get_by_test_id("deal-name").dispatch_event("click")
    page.get_by_test_id("deal-name").click(force=True)
    # Positive control: a click handler fetches /open at once, so a request made after
    # the clicks, from the same page, is seen after any /open would have been.
    with page.expect_request("**/healthz?after-clicks"):
        page.evaluate("fetch('/healthz?after-clicks')")

    expect(page.get_by_test_id("notice")).to_be_hidden()
    assert requests_to("/open") == []
    assert new_pages == []
    assert page.url == token["embed_url"]
    assert stack.api.get(f"/deals/{deal['id']}").status_code == 200


def test_external_url_is_where_the_name_leads(page: Page, stack: Stack, room_id: str) -> None:
    """S02 data field external_url: when the creator gave one, the new tab opens it."""
    target = f"{stack.host_url}/healthz?deal=external"
    stack.create("deal", room_id, name="Deal with its own page", external_url=target)
    frame = open_tab(page, stack, room_id)
    expect(frame.get_by_test_id("deal-name")).to_have_attribute("href", target)

    with page.context.expect_page() as opened:
        frame.get_by_test_id("deal-name").click()
    opened.value.wait_for_load_state()
    assert opened.value.url == target
    expect(opened.value.locator("body")).to_contain_text('"ok"')
