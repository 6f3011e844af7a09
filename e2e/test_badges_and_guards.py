"""CDTC-S06 (creator label), the guard rails NEG-1..3 and edge cases E1 and E3, in
the browser through the example host."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import ensure_flag, expect_state, open_tab, set_host_flag
from e2e.stack import Stack
from widget.embed_tokens import crm_link

T = datetime(2026, 1, 1, tzinfo=UTC)


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def flag_restored(stack: Stack) -> Iterator[None]:
    """The host's flag is per account (global to the session's host): turn it back ON."""
    yield
    set_host_flag(stack, True)


# -- S06: creator label -------------------------------------------------------------


def test_s06_ac1_ac2_bot_and_ai_labels_in_the_component_and_the_crm_page(
    page: Page, stack: Stack, room_id: str
) -> None:
    deal = stack.create("deal", room_id, creator_flag="bot", name="Bot's deal")
    ticket = stack.create("ticket", room_id, creator_flag="agentic_ai", name="AI's ticket")
    frame = open_tab(page, stack, room_id)
    expect(frame.get_by_test_id("deal-preview").get_by_test_id("creator-badge")).to_have_text("Bot")
    expect(frame.get_by_test_id("ticket-preview").get_by_test_id("creator-badge")).to_have_text("AI")

    for kind, record, label in (("deal", deal, "Bot"), ("ticket", ticket, "AI")):
        with page.context.expect_page() as opened:
            frame.get_by_test_id(f"{kind}-name").click()
        crm = opened.value
        expect(crm.get_by_test_id("crm-name")).to_have_text(record["name"])
        expect(crm.get_by_test_id("crm-creator")).to_have_text(label)
        # The creation timeline entry (S04) carries the same label.
        expect(crm.get_by_test_id("timeline-entry").get_by_test_id("creator-badge")).to_have_text(label)
        crm.close()

    # And the swap is live: an AI deal replacing the bot deal changes the badge.
    stack.create("deal", room_id, creator_flag="agentic_ai", name="AI's deal")
    expect(frame.get_by_test_id("deal-name")).to_have_text("AI's deal")
    expect(frame.get_by_test_id("deal-preview").get_by_test_id("creator-badge")).to_have_text("AI")


def test_s06_ac3_no_creator_flag_keeps_the_default_label_and_never_reaches_the_tab(
    page: Page, stack: Stack, room_id: str
) -> None:
    frame = open_tab(page, stack, room_id)
    plain = stack.create("deal", room_id, creator_flag=None, name="Plain API deal")
    odd = stack.create("deal", room_id, creator_flag="human", name="Unrecognised flag deal")
    plain_ticket = stack.create("ticket", room_id, creator_flag=None, name="Plain API ticket")
    # Positive control: a later bot record does arrive, so the stream is past the others.
    stack.create("ticket", room_id, creator_flag="bot", name="Bot ticket")
    expect(frame.get_by_test_id("ticket-name")).to_have_text("Bot ticket")
    expect(frame.get_by_test_id("deal-preview")).to_have_count(0)
    expect(frame.get_by_test_id("ticket-preview")).to_have_count(1)
    room = stack.api.get(f"/rooms/{room_id}").json()
    assert room["deal"] is None

    # The default ("existing") creator label, in the API and on the CRM page.
    for kind, record in (("deal", plain), ("deal", odd), ("ticket", plain_ticket)):
        got = stack.api.get(f"/{kind}s/{record['id']}").json()
        assert got["creator"] == "API", got
    runtime = stack.widget.app.state.runtime  # such records never reach /open: sign the link here
    manager = {"company": stack.tenant.id, "agent_id": "manager-1", "permissions": ["deal:view"]}
    url = crm_link(runtime, manager, "deal", plain["id"])
    crm = page.context.new_page()
    crm.goto(url)
    expect(crm.get_by_test_id("crm-name")).to_have_text("Plain API deal")
    expect(crm.get_by_test_id("crm-creator")).to_have_text("API")
    expect(crm.get_by_test_id("timeline-entry")).to_have_count(0)  # not a bot/AI creation
    crm.close()


# -- guard rails ------------------------------------------------------------------


def test_neg1_one_preview_per_kind_after_many_creations(page: Page, stack: Stack, room_id: str) -> None:
    frame = open_tab(page, stack, room_id)
    for n in range(1, 6):
        stack.create("deal", room_id, creator_flag="bot" if n % 2 else "agentic_ai", name=f"Deal {n}")
    last = stack.create("deal", room_id, name="Deal 6")
    expect(frame.get_by_test_id("deal-name")).to_have_text("Deal 6")
    expect(frame.get_by_test_id("deal-preview")).to_have_count(1)
    expect(frame.get_by_test_id("deal-id")).to_have_text(last["id"])


def manual_deal(page: Page, name: str) -> str:
    """The host's existing "Create Deal" dialog; returns the new deal's id from the toast."""
    page.get_by_test_id("create-deal-button").click()
    expect(page.get_by_test_id("manual-deal-dialog")).to_be_visible()
    page.get_by_test_id("manual-deal-name").fill(name)
    page.get_by_test_id("manual-deal-stage").select_option("Qualified")
    page.get_by_test_id("manual-deal-submit").click()
    toast = page.get_by_test_id("toast")
    expect(toast).to_contain_text(f"Deal created: {name} (")
    expect(page.get_by_test_id("manual-deal-dialog")).to_be_hidden()
    match = re.search(r"\(([^()]+)\)$", toast.text_content() or "")
    assert match, toast.text_content()
    return match.group(1)


def test_neg2_manual_create_deal_works_with_the_flag_on_and_stays_out_of_the_tab(
    page: Page, stack: Stack, room_id: str
) -> None:
    frame = open_tab(page, stack, room_id)
    deal_id = manual_deal(page, "Manual deal, flag ON")

    deal = stack.api.get(f"/deals/{deal_id}").json()
    assert (deal["name"], deal["stage"], deal["room_id"]) == ("Manual deal, flag ON", "Qualified", room_id)
    assert deal["creator_flag"] is None and deal["creator"] == "API"
    # Positive control, then: the manual deal is not in the component.
    stack.create("ticket", room_id, name="Bot ticket after the manual deal")
    expect(frame.get_by_test_id("ticket-name")).to_have_text("Bot ticket after the manual deal")
    expect(frame.get_by_test_id("deal-preview")).to_have_count(0)


def test_neg2_flag_off_no_tab_and_manual_create_deal_unchanged(
    page: Page, stack: Stack, room_id: str, flag_restored: None
) -> None:
    stack.create("deal", room_id, name="Bot deal the agent can't see without the tab")
    page.goto(stack.inbox(room_id))
    ensure_flag(page, False)
    expect(page.get_by_test_id("tab-deal-ticket")).to_have_count(0)
    expect(page.get_by_test_id("deal-ticket-frame")).to_have_count(0)
    expect(page.get_by_test_id("customer-info-panel")).to_be_visible()

    deal_id = manual_deal(page, "Manual deal, flag OFF")
    assert stack.api.get(f"/deals/{deal_id}").json()["creator"] == "API"

    page.reload()  # a fresh page load with the flag OFF: still no tab, no frame
    expect(page.get_by_test_id("flag-deal-ticket-tab")).not_to_be_checked()
    expect(page.get_by_test_id("customer-info-panel")).to_be_visible()
    expect(page.get_by_test_id("tab-deal-ticket")).to_have_count(0)
    expect(page.locator("iframe")).to_have_count(0)
    manual_deal(page, "Manual deal, flag OFF, after reload")


def test_neg3_chatbot_source_is_preserved_through_the_simulator(page: Page, stack: Stack, room_id: str) -> None:
    frame = open_tab(page, stack, room_id)
    page.get_by_test_id("sim-source").fill("chatbot-flow:promo-nov")
    page.get_by_test_id("sim-deal-name").fill("Simulated bot deal")
    page.get_by_test_id("sim-deal-bot").click()

    entry = page.locator('[data-testid="sim-log-entry"][data-action="deal-bot"]')
    expect(entry).to_have_attribute("data-ok", "true")
    deal_id = (entry.get_attribute("data-record-ids") or "").split(",")[0]
    expect(frame.get_by_test_id("deal-name")).to_have_text("Simulated bot deal")
    expect(frame.get_by_test_id("deal-id")).to_have_text(deal_id)
    deal = stack.api.get(f"/deals/{deal_id}").json()
    assert deal["source"] == "chatbot-flow:promo-nov"
    assert deal["creator"] == "Bot"


# -- edge cases -------------------------------------------------------------------


def test_e1_an_older_deal_arriving_later_does_not_replace_the_newer(page: Page, stack: Stack, room_id: str) -> None:
    frame = open_tab(page, stack, room_id)
    newer = stack.create("deal", room_id, creator_flag="agentic_ai", name="AI deal at T", test_clock=rfc3339(T))
    expect(frame.get_by_test_id("deal-name")).to_have_text("AI deal at T")

    older = stack.create("deal", room_id, creator_flag="bot", name="Bot deal at T-60s",
                         test_clock=rfc3339(T - timedelta(seconds=60)))
    assert older["created_at"] < newer["created_at"]
    # Positive control: a later change reaches the tab, so the old deal had its chance.
    stack.create("ticket", room_id, name="Ticket after the late deal")
    expect(frame.get_by_test_id("ticket-name")).to_have_text("Ticket after the late deal")
    expect(frame.get_by_test_id("deal-name")).to_have_text("AI deal at T")
    expect(frame.get_by_test_id("deal-id")).to_have_text(newer["id"])
    expect(frame.get_by_test_id("deal-preview")).to_have_count(1)
    assert stack.api.get(f"/rooms/{room_id}").json()["deal"]["id"] == newer["id"]


def test_e1_two_creations_at_once_show_exactly_the_stored_winner(page: Page, stack: Stack, room_id: str) -> None:
    frame = open_tab(page, stack, room_id)
    page.get_by_test_id("sim-two-at-once").click()

    entry = page.locator('[data-testid="sim-log-entry"][data-action="two-at-once"]')
    expect(entry).to_have_attribute("data-ok", "true")
    created = (entry.get_attribute("data-record-ids") or "").split(",")
    assert len(created) == 2, created
    room = stack.api.get(f"/rooms/{room_id}").json()
    winner = room["deal"]
    latest = max((stack.api.get(f"/deals/{i}").json() for i in created), key=lambda d: (d["created_at"], d["id"]))
    assert winner["id"] == latest["id"]
    expect(frame.get_by_test_id("deal-id")).to_have_text(winner["id"])
    expect(frame.get_by_test_id("deal-name")).to_have_text(winner["name"])
    expect(frame.get_by_test_id("deal-preview")).to_have_count(1)
    expect(frame.locator("#widget")).to_have_attribute("data-version", str(room["version"]))


def test_e3_a_deal_without_room_id_never_appears(page: Page, stack: Stack, room_id: str) -> None:
    frame = open_tab(page, stack, room_id)
    roomless = stack.create("deal", None, name="Deal without a room")
    with_room = stack.create("deal", room_id, name="Deal with the room")
    expect(frame.get_by_test_id("deal-name")).to_have_text("Deal with the room")

    later_roomless = stack.create("deal", None, name="Later deal without a room")
    stack.create("ticket", room_id, name="Control ticket")
    expect(frame.get_by_test_id("ticket-name")).to_have_text("Control ticket")
    expect(frame.get_by_test_id("deal-preview")).to_have_count(1)
    expect(frame.get_by_test_id("deal-id")).to_have_text(with_room["id"])
    expect(frame.locator("#widget")).not_to_contain_text("without a room")
    for record in (roomless, later_roomless):
        stored = stack.api.get(f"/deals/{record['id']}").json()
        assert stored["room_id"] is None and stored["creator"] == "Bot"
    expect_state(frame, "ready")


def test_e5_e6_the_open_crm_tab_keeps_its_record_and_says_when_it_was_deleted(
    page: Page, stack: Stack, room_id: str
) -> None:
    first = stack.create("deal", room_id, name="Original deal")
    frame = open_tab(page, stack, room_id)
    with page.context.expect_page() as opened:
        frame.get_by_test_id("deal-name").click()
    crm = opened.value
    expect(crm.get_by_test_id("crm-name")).to_have_text("Original deal")

    # E5: a newer deal replaces the preview; the open tab is about its own record.
    stack.create("deal", room_id, creator_flag="agentic_ai", name="Newer deal")
    expect(frame.get_by_test_id("deal-name")).to_have_text("Newer deal")
    crm.reload()
    expect(crm.get_by_test_id("crm-name")).to_have_text("Original deal")
    expect(crm.get_by_test_id("crm-id")).to_have_text(first["id"])

    # E6: the record is deleted while its tab is open: a reload says so, no broken page.
    assert stack.api.delete(f"/deals/{first['id']}").status_code == 204
    response = crm.reload()
    assert response is not None and response.status == 404
    expect(crm.get_by_test_id("crm-problem")).to_contain_text("This record was deleted")
    expect(crm.get_by_test_id("crm-record")).to_have_count(0)
    crm.close()
