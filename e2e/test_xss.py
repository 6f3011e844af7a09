"""XSS payloads in every string field a browser is shown, in real Chromium (issue 11):
the component framed by the host (first paint, server-rendered, and live updates, put
in by component.js) and the CRM record pages (record fields, contact, creator, source,
the chat preview from the Chat Panel).

Every payload would set ``window.__xss`` and open a dialog if it ran. The checks: no
dialog in any frame, ``window.__xss`` unset in every document, no element a payload
would have made, and each text shown literally. The controls: a benign update that
must appear live, and a dialog opened on purpose in the very frame, which the dialog
watcher must see."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from playwright.sync_api import Frame, Page, expect

from e2e.conftest import agent_message, chat_panel_mode, open_record_page, open_tab, root
from e2e.stack import Stack

RAN = "window.__xss=(window.__xss||0)+1;alert(document.domain)"
PAYLOADS = [
    f'"><script>{RAN}</script>',
    f'<img src=x onerror="{RAN}">',
    f"<svg/onload={RAN}>",
    f"' autofocus onfocus='{RAN}' x='",
    f"javascript:{RAN}",
    f'<iframe srcdoc="<script>parent.{RAN}</script>"></iframe>',
    f"<a href=javascript:{RAN}>click</a>",
    f"{{{{constructor.constructor('{RAN}')()}}}}",
    f"</textarea></title></style><script>{RAN}</script>",
    f"<details open ontoggle={RAN}>",
]
# What a payload parsed as markup would have made (none of it is ever ours).
INJECTED = ("script:not([src]), [onerror], [onload], [onfocus], [ontoggle], [srcdoc], iframe, details, "
            "a[href^='javascript' i], img[src='x']")


def payload(n: int) -> str:
    return PAYLOADS[n % len(PAYLOADS)] + f" #{n}"  # each field its own text


def component_frame(page: Page) -> Frame:
    frame = next((f for f in page.frames if "/embed/rooms/" in f.url), None)
    assert frame is not None, [f.url for f in page.frames]
    return frame


@pytest.fixture
def dialogs(page: Page) -> list[str]:
    """Every dialog any frame of any tab of the test's browser context opens (the CRM
    pages open in tabs of their own)."""
    seen: list[str] = []

    def on_dialog(dialog: Any) -> None:
        seen.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.context.on("dialog", on_dialog)
    return seen


def assert_nothing_ran(page: Page, frames: list[Frame], dialogs: list[str]) -> None:
    """No dialog, no ``window.__xss`` in any of ``frames``; then the controls: in each
    frame a handler that runs (assigned by script, as CSP allows) sets the flag and
    it is read back, and in each top-level frame a dialog reaches the watcher. (The
    host frames the component without ``allow-modals``: a dialog there could never
    open, so in the component the flag is the detector.)"""
    assert dialogs == []
    for frame in frames:
        assert frame.evaluate("() => window.__xss") is None, frame.url
    top = [frame for frame in frames if frame.parent_frame is None]
    for n, frame in enumerate(frames):
        frame.evaluate("""() => { const img = document.createElement('img');
            img.onerror = () => { window.__xss = 'control' }; img.src = 'data:,'; document.body.append(img) }""")
        frame.wait_for_function("() => window.__xss === 'control'", timeout=5000)
    for n, frame in enumerate(top):
        frame.evaluate(f"() => setTimeout(() => alert('control {n}'))")
        deadline = time.monotonic() + 5
        while len(dialogs) <= n and time.monotonic() < deadline:
            page.wait_for_timeout(20)  # lets the sync API dispatch the dialog event
    assert dialogs == [f"alert: control {n}" for n in range(len(top))]


def test_payloads_in_every_component_field_show_as_text_first_paint_and_live(
    page: Page, stack: Stack, room_id: str, dialogs: list[str],
) -> None:
    deal = stack.create("deal", room_id, name=payload(0), stage=payload(1), pipeline=payload(2), source=payload(3),
                        external_url="https://crm.example.com/d?q=%22%3E%3Cscript%3E" + "&x=\"><script>alert(1)</script>")
    frame = open_tab(page, stack, room_id)
    # First paint (server-rendered).
    expect(frame.get_by_test_id("deal-name")).to_have_text(payload(0))
    expect(frame.get_by_test_id("deal-stage")).to_have_text(payload(1))
    expect(frame.get_by_test_id("deal-pipeline")).to_have_text(payload(2))
    expect(frame.get_by_test_id("deal-name")).to_have_attribute("href", deal["url"])
    # Live: a ticket appears, the deal changes (component.js builds them).
    stack.create("ticket", room_id, creator_flag="agentic_ai", name=payload(4), status=payload(5))
    expect(frame.get_by_test_id("ticket-name")).to_have_text(payload(4))
    expect(frame.get_by_test_id("ticket-status")).to_have_text(payload(5))
    for n in range(6, 10):
        assert stack.api.patch(f"/deals/{deal['id']}", json={"name": payload(n), "stage": payload(n + 4),
                                                             "pipeline": payload(n + 8)}).status_code == 200
        expect(frame.get_by_test_id("deal-name")).to_have_text(payload(n))
        expect(frame.get_by_test_id("deal-stage")).to_have_text(payload(n + 4))
        expect(frame.get_by_test_id("deal-pipeline")).to_have_text(payload(n + 8))
    # The control: a benign update arrives too.
    assert stack.api.patch(f"/deals/{deal['id']}", json={"name": "Benign update"}).status_code == 200
    expect(frame.get_by_test_id("deal-name")).to_have_text("Benign update")
    expect(root(frame).locator(INJECTED)).to_have_count(0)
    assert_nothing_ran(page, [component_frame(page), page.main_frame], dialogs)


def test_payloads_in_every_crm_page_field_show_as_text(
    page: Page, stack: Stack, room_id: str, dialogs: list[str],
) -> None:
    chat_panel_mode(stack, room_id, "normal")
    agent_message(stack, room_id, payload(20))  # the chat preview's last message
    contact = stack.api.post("/contacts", json={"name": payload(11), "phone": payload(12), "email": payload(13)})
    assert contact.status_code == 201, contact.text
    stack.create("deal", room_id, name=payload(14), stage=payload(15), pipeline=payload(16), source=payload(17),
                 contact_id=contact.json()["id"])
    stack.create("ticket", room_id, creator_flag="agentic_ai", name=payload(18), status=payload(19),
                 source=payload(21))
    frame = open_tab(page, stack, room_id, wait_stream=False)

    deal_page = open_record_page(page, frame, "deal")
    for testid, n in (("crm-name", 14), ("crm-stage", 15), ("crm-pipeline", 16), ("crm-source", 17),
                      ("crm-contact", 11), ("crm-contact-phone", 12), ("crm-contact-email", 13)):
        expect(deal_page.get_by_test_id(testid)).to_contain_text(payload(n))
    entry = deal_page.get_by_test_id("timeline-entry")
    expect(entry).to_have_attribute("data-status", "ok")  # the chat preview came in (crm.js polls it)
    expect(entry.get_by_test_id("chat-message").last.locator(".msg__text")).to_have_text(
        payload(20)[:159] + ("…" if len(payload(20)) > 160 else ""))
    expect(deal_page.get_by_test_id("crm-record").locator(INJECTED)).to_have_count(0)

    ticket_page = open_record_page(page, frame, "ticket")
    for testid, n in (("crm-name", 18), ("crm-status", 19), ("crm-source", 21)):
        expect(ticket_page.get_by_test_id(testid)).to_contain_text(payload(n))
    expect(ticket_page.get_by_test_id("crm-record").locator(INJECTED)).to_have_count(0)

    for crm in (deal_page, ticket_page):
        assert crm.evaluate("() => window.__xss") is None
    assert_nothing_ran(page, [deal_page.main_frame, component_frame(page)], dialogs)


def test_a_javascript_url_is_never_taken_as_a_record_link(stack: Stack, room_id: str) -> None:
    for url in (f"javascript:{RAN}", f"JaVaScRiPt:{RAN}", "data:text/html,<script>alert(1)</script>",
                "vbscript:msgbox(1)", f" javascript:{RAN}"):
        response = stack.api.post("/deals", json={"name": "n", "stage": "s", "pipeline": "p", "room_id": room_id,
                                                  "creator_flag": "bot", "external_url": url})
        assert response.status_code == 422 and re.search("external_url", response.text), (url, response.text)
    assert stack.api.get(f"/rooms/{room_id}").json()["version"] == 0
