"""CDTC-S03 (contact associated at creation), S04 AC-2 / S06 (creator on the detail
page) and the CRM page's per-record session, end to end: records created through the
record API (or the host's simulator playing Agentic AI), their CRM pages opened by
clicking the name in the component inside the host's inbox, and the widget's
``contact_association_failed`` log line captured from the server threads."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from e2e.conftest import (
    WidgetEvents,
    chat_panel_mode,
    open_component,
    open_record_page,
    open_tab,
    signed_record_page,
    visible_text,
)
from e2e.stack import Stack

FAILURE_WORDS = re.compile(r"error|fail|gagal|kesalahan", re.IGNORECASE)


def contact(stack: Stack, **fields: Any) -> dict[str, Any]:
    response = stack.api.post("/contacts", json=fields)
    assert response.status_code == 201, response.text
    return response.json()


def expect_contact(crm: Page, name: str, phone: str, email: str) -> None:
    card = crm.get_by_test_id("crm-contact-card")
    expect(card.get_by_test_id("crm-contact")).to_have_text(name)
    expect(card.get_by_test_id("crm-contact-phone")).to_have_text(phone)
    expect(card.get_by_test_id("crm-contact-email")).to_have_text(email)


def expect_no_contact(crm: Page, kind: str = "deal") -> None:
    card = crm.get_by_test_id("crm-contact-card")
    expect(card.get_by_test_id("crm-contact")).to_have_text("No contact")
    expect(card).to_contain_text(f"No contact was linked when this {kind} was created.")
    expect(card.get_by_test_id("crm-contact-phone")).to_have_count(0)


def text_without(crm: Page, room_id: str) -> str:
    return visible_text(crm).replace(room_id, "<room>")  # the room id holds the test's name


# -- S03: contact association -----------------------------------------------------------


def test_s03_ac1_chatbot_deal_and_ticket_with_a_valid_contact_id_show_the_contact(
    page: Page, stack: Stack, room_id: str, widget_events: WidgetEvents
) -> None:
    budi = contact(stack, name="Budi Santoso", phone="+62 812-3456-7890", email="budi@example.co.id")
    chat_panel_mode(stack, room_id, "normal")
    deal = stack.create("deal", room_id, name="ThinkPad quote", contact_id=budi["id"])
    ticket = stack.create("ticket", room_id, name="Delivery question", contact_id=budi["id"])
    assert deal["contact_id"] == ticket["contact_id"] == budi["id"]

    component = open_component(page, stack, room_id, wait_stream=False)
    for kind in ("deal", "ticket"):
        crm = open_record_page(page, component, kind)
        expect_contact(crm, "Budi Santoso", "+62 812-3456-7890", "budi@example.co.id")
        crm.close()
    assert widget_events.props("contact_association_failed", deal_id=deal["id"]) == []
    assert widget_events.props("contact_association_failed", ticket_id=ticket["id"]) == []


def test_s03_ac2_agentic_ai_record_gets_its_auto_identified_contact_without_agent_input(
    page: Page, stack: Stack, room_id: str
) -> None:
    """The host's simulator plays Agentic AI: it identifies the room's customer as a CRM
    contact (``POST /contacts`` once per room) and passes its id in the create payload."""
    frame = open_tab(page, stack, room_id)
    page.get_by_test_id("sim-deal-name").fill("AI-qualified deal")
    page.get_by_test_id("sim-deal-ai").click()
    entry = page.locator('[data-testid="sim-log-entry"][data-action="deal-ai"]')
    expect(entry).to_have_attribute("data-ok", "true")
    [deal_id] = (entry.get_attribute("data-record-ids") or "").split(",")
    contact_id = page.get_by_test_id("crm-contact-id").text_content()
    deal = stack.api.get(f"/deals/{deal_id}").json()
    assert (deal["creator"], deal["contact_id"]) == ("AI", contact_id)

    expect(frame.get_by_test_id("deal-name")).to_have_text("AI-qualified deal")
    crm = open_record_page(page, frame, "deal")
    expect(crm.get_by_test_id("crm-creator")).to_have_text("AI")
    expect_contact(crm, f"QA visitor {room_id}"[:64], "Not set", "qa@example.com")


def test_s03_err1_no_contact_id_no_contact_and_no_error_anywhere(
    page: Page, stack: Stack, room_id: str, widget_events: WidgetEvents
) -> None:
    chat_panel_mode(stack, room_id, "normal")
    component = open_component(page, stack, room_id)
    absent = stack.create("deal", room_id, name="Deal without contact_id")
    assert absent["contact_id"] is None and stack.api.get(f"/deals/{absent['id']}").status_code == 200
    expect(component.get_by_test_id("deal-name")).to_have_text("Deal without contact_id")
    crm = open_record_page(page, component, "deal")
    expect_no_contact(crm)
    text = text_without(crm, room_id)
    assert not FAILURE_WORDS.search(text), text

    null = stack.create("ticket", room_id, creator_flag="agentic_ai", name="Ticket with contact_id null",
                        contact_id=None)
    assert null["contact_id"] is None
    expect(component.get_by_test_id("ticket-name")).to_have_text("Ticket with contact_id null")
    crm = open_record_page(page, component, "ticket")
    expect_no_contact(crm, "ticket")
    assert not FAILURE_WORDS.search(text_without(crm, room_id))
    expect(component.locator("#widget")).to_have_attribute("data-state", "ready")

    # Positive control for "nothing logged": an unknown id in the same room is logged.
    unknown = stack.create("deal", room_id, name="Control deal", contact_id="ct_unknown_control")
    widget_events.wait_for("contact_association_failed", deal_id=unknown["id"])
    assert widget_events.props("contact_association_failed", deal_id=absent["id"]) == []
    assert widget_events.props("contact_association_failed", ticket_id=null["id"]) == []


def test_s03_err2_invalid_unknown_soft_deleted_or_0_contact_id_record_created_and_logged(
    page: Page, stack: Stack, room_id: str, widget_events: WidgetEvents
) -> None:
    gone = contact(stack, name="Deleted Customer", phone="+62 800")
    assert stack.api.delete(f"/contacts/{gone['id']}").status_code == 204
    cases: list[tuple[str, Any, str]] = [
        ("unknown id", "ct_does_not_exist", "unknown"),
        ("soft-deleted contact", gone["id"], "deleted"),
        ("integer 0", 0, "invalid_id"),
        ('string "0"', "0", "invalid_id"),
        ('string "null"', "null", "invalid_id"),
        ("empty string", "", "invalid_id"),
    ]
    chat_panel_mode(stack, room_id, "normal")
    component = open_component(page, stack, room_id)
    for label, contact_id, reason in cases:
        deal = stack.create("deal", room_id, name=f"Deal, contact {label}", contact_id=contact_id)
        assert deal["contact_id"] is None, label
        expect(component.get_by_test_id("deal-name")).to_have_text(f"Deal, contact {label}")
        crm = open_record_page(page, component, "deal")
        expect(crm.get_by_test_id("crm-name")).to_have_text(f"Deal, contact {label}")
        expect_no_contact(crm)
        expect(crm.get_by_test_id("crm-contact-card")).not_to_contain_text("Deleted Customer")
        assert not FAILURE_WORDS.search(text_without(crm, room_id)), label
        crm.close()
        event = widget_events.wait_for("contact_association_failed", deal_id=deal["id"])
        assert (event["contact_id"], event["reason"]) == (str(contact_id), reason), (label, event)


def test_s03_existing_contact_is_not_overridden_by_a_later_create_or_a_patch(
    page: Page, stack: Stack, room_id: str
) -> None:
    alice = contact(stack, name="Alice Contact A", phone="+62 811-0000-0001", email="a@example.com")
    bob = contact(stack, name="Bob Contact B", phone="+62 811-0000-0002", email="b@example.com")
    chat_panel_mode(stack, room_id, "normal")
    component = open_component(page, stack, room_id)
    first = stack.create("deal", room_id, name="Deal with contact A", contact_id=alice["id"])
    expect(component.get_by_test_id("deal-name")).to_have_text("Deal with contact A")
    first_page = open_record_page(page, component, "deal")
    expect_contact(first_page, "Alice Contact A", "+62 811-0000-0001", "a@example.com")

    # A later AI create for the same room with contact B is a new record (latest wins).
    second = stack.create("deal", room_id, creator_flag="agentic_ai", name="Deal with contact B",
                          contact_id=bob["id"])
    assert second["id"] != first["id"]
    expect(component.get_by_test_id("deal-name")).to_have_text("Deal with contact B")
    second_page = open_record_page(page, component, "deal")
    expect_contact(second_page, "Bob Contact B", "+62 811-0000-0002", "b@example.com")

    # contact_id is immutable: the whole PATCH is refused, nothing changes.
    for body in ({"contact_id": bob["id"]}, {"name": "Renamed", "contact_id": bob["id"]}):
        response = stack.api.patch(f"/deals/{first['id']}", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "validation_failed"
        assert "contact_id" in [d["field"] for d in response.json()["error"]["details"]]
    stored = stack.api.get(f"/deals/{first['id']}").json()
    assert (stored["name"], stored["contact_id"]) == ("Deal with contact A", alice["id"])

    first_page.reload()
    expect(first_page.get_by_test_id("crm-name")).to_have_text("Deal with contact A")
    expect_contact(first_page, "Alice Contact A", "+62 811-0000-0001", "a@example.com")
    expect(first_page.get_by_test_id("crm-contact-card")).not_to_contain_text("Bob")


# -- S04 AC-2 / S06: creator on the detail page -------------------------------------------


def test_s04_ac2_s06_creator_bot_ai_api_on_the_detail_page(page: Page, stack: Stack, room_id: str) -> None:
    chat_panel_mode(stack, room_id, "normal")
    stack.create("deal", room_id, creator_flag="bot", name="Bot deal")
    stack.create("ticket", room_id, creator_flag="agentic_ai", name="AI ticket")
    manual = stack.create("deal", room_id, creator_flag=None, name="Manual deal")
    component = open_component(page, stack, room_id, wait_stream=False)
    for kind, label in (("deal", "Bot"), ("ticket", "AI")):
        crm = open_record_page(page, component, kind)
        expect(crm.get_by_test_id("crm-creator")).to_have_text(label)
        expect(crm.locator(".hero__meta .badge")).to_have_text(label)
        entry = crm.get_by_test_id("timeline-entry")
        expect(entry.get_by_test_id("creator-badge")).to_have_text(label)
        expect(entry).to_contain_text(f"Created by {label}")
        crm.close()
    # No creator_flag: the default label, and it never reached the component.
    crm = signed_record_page(page, stack, "deal", manual)
    expect(crm.get_by_test_id("crm-name")).to_have_text("Manual deal")
    expect(crm.get_by_test_id("crm-creator")).to_have_text("API")
    expect(crm.get_by_test_id("timeline-entry")).to_have_count(0)


# -- the CRM page's session is per record and per permission -------------------------------


def test_session_with_only_ticket_view_refuses_the_rooms_deal_page(page: Page, stack: Stack, room_id: str) -> None:
    chat_panel_mode(stack, room_id, "normal")
    deal = stack.create("deal", room_id, name="Deal the agent may not open")
    ticket = stack.create("ticket", room_id, name="Ticket the agent may open")
    frame = open_tab(page, stack, room_id, wait_stream=False, perms="ticket:view")
    expect(frame.get_by_test_id("deal-name")).to_have_text("Deal the agent may not open")  # previews for all
    crm = open_record_page(page, frame, "ticket")
    expect(crm.get_by_test_id("crm-name")).to_have_text("Ticket the agent may open")
    ticket_url = crm.url
    assert ticket_url == f"{stack.widget.url}/crm/tickets/{ticket['id']}"

    # The same browser (the ticket's session cookie in it) goes to the room's deal page.
    response = crm.goto(f"{stack.widget.url}/crm/deals/{deal['id']}")
    assert response is not None and response.status == 401
    expect(crm.get_by_test_id("crm-problem")).to_contain_text("Open this deal from the chat room")
    expect(crm.get_by_test_id("crm-record")).to_have_count(0)
    text = visible_text(crm)
    assert "Deal the agent may not open" not in text and deal["id"] not in text, text
    assert "Deal the agent may not open" not in crm.content()

    # The ticket page itself still opens and reloads on its session.
    response = crm.goto(ticket_url)
    assert response is not None and response.status == 200
    expect(crm.get_by_test_id("crm-name")).to_have_text("Ticket the agent may open")
    response = crm.reload()
    assert response is not None and response.status == 200
    expect(crm.get_by_test_id("crm-id")).to_have_text(ticket["unique_id"])
