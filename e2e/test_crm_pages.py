"""The CRM record pages in the browser (RFC section 8; PRD S04, S05): single-use link
and clean address bar, times in the agent's language and time zone, the chat preview
arriving without a reload, the room deeplink's check (S05 AC-1, AC-2, ERR-1) and the
pages for a missing or used link. Screenshots of each state go to e2e/artifacts/
(``crm-*.png``; with ``E2E_UPDATE_DOCS=1`` the deal page also to
``docs/screenshot-crm-deal.png``).

Its own widget server: the Chat Panel is an ``httpx.MockTransport`` that answers by
room-id prefix (``gone-`` 404, ``forbidden-`` 403, ``down-`` 503, ``archived-``
archived, ``slow-`` after 3 s), and the chat room URL is the widget's own /healthz
(a page that exists, so a new tab has somewhere real to land)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from e2e.conftest import ARTIFACTS, DOCS
from tests.support import LiveServer, Tenant, free_port, make_settings, seed_company
from widget.app import create_app
from widget.settings import Settings

JAKARTA = "Asia/Jakarta"
CREATED_AT = "2026-11-25T09:00:00Z"


@dataclass
class CrmStack:
    server: LiveServer
    settings: Settings
    tenant: Tenant
    chat_panel_calls: list[httpx.Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.api = httpx.Client(base_url=self.server.url, headers=self.tenant.headers, timeout=10)

    def create(self, kind: str, room_id: str | None, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = (
            {"name": "Laptop order", "stage": "New", "pipeline": "Sales"} if kind == "deal"
            else {"name": "Refund request", "status": "Open"}
        )
        body.update({"creator_flag": "bot", "room_id": room_id, **fields})
        # Created at 09:00 UTC (16:00 in Jakarta), so times on the page are known.
        response = self.api.post(f"/api/v1/{kind}s", json=body, headers={"X-Test-Clock": CREATED_AT})
        assert response.status_code == 201, response.text
        return response.json()

    def contact(self, **fields: Any) -> str:
        response = self.api.post("/api/v1/contacts", json=fields)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def link(self, kind: str, record: dict[str, Any], tz: str | None = JAKARTA, locale: str = "en",
             permissions: list[str] | None = None) -> str:
        """What a click on the name in the component gets from ``/open``."""
        token = self.api.post("/api/v1/embed-tokens", json={
            "room_id": record["room_id"], "agent_id": "agent-e2e", "locale": locale,
            **({"permissions": permissions} if permissions is not None else {}),
        }).json()["token"]
        response = self.api.post(f"/embed/rooms/{record['room_id']}/open?token={token}",
                                 json={"kind": kind, "id": record["id"], "tz": tz})
        assert response.status_code == 200, response.text
        return response.json()["url"]

    def set_preview(self, kind: str, record_id: str, status: str, messages: list[dict] | None = None) -> None:
        """What the worker does once it has the chat history (straight into the DB)."""
        path = self.settings.db_url.split(":///", 1)[1]
        with sqlite3.connect(path, timeout=10) as db:
            db.execute(
                "UPDATE timeline_entries SET chat_preview = ?, chat_preview_status = ? "
                "WHERE record_kind = ? AND record_id = ?",
                (json.dumps(messages) if messages is not None else None, status, kind, record_id),
            )

    def events(self, name: str) -> list[dict[str, Any]]:
        path = self.settings.db_url.split(":///", 1)[1]
        with sqlite3.connect(path, timeout=10) as db:
            rows = db.execute("SELECT props FROM analytics_events WHERE name = ?", (name,)).fetchall()
        return [json.loads(r[0]) for r in rows]


async def _chat_panel(stack_calls: list[httpx.Request], request: httpx.Request) -> httpx.Response:
    stack_calls.append(request)
    room = request.url.path.rsplit("/", 1)[1]
    if room.startswith("slow-"):
        await asyncio.sleep(3)
    for prefix, status in (("gone-", 404), ("forbidden-", 403), ("down-", 503)):
        if room.startswith(prefix):
            return httpx.Response(status, json={"error": prefix.rstrip("-")})
    state = "archived" if room.startswith("archived-") else "open"
    return httpx.Response(200, json={"room_id": room, "status": state})


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrmStack]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = make_settings(
        tmp_path_factory.mktemp("crm"), public_url=url, test_clock=True,
        chat_panel_url="http://chat-panel.test/api", omnichannel_room_url=url + "/healthz?room={room_id}",
    )
    tenant = seed_company(settings, frame_origins=["http://localhost:9"])
    calls: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        return await _chat_panel(calls, request)

    with LiveServer(create_app(settings, upstream=httpx.MockTransport(handler)), port=port) as server:
        stack = CrmStack(server, settings, tenant, calls)
        yield stack
        stack.api.close()


@pytest.fixture
def agent(browser: Browser) -> Iterator[BrowserContext]:
    """A browser whose clock is in Jakarta (the agent's time zone)."""
    context = browser.new_context(timezone_id=JAKARTA, viewport={"width": 1280, "height": 900})
    yield context
    context.close()


def shot(page: Page, name: str, docs_name: str | None = None) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    if docs_name and os.environ.get("E2E_UPDATE_DOCS") == "1":
        shutil.copyfile(ARTIFACTS / name, DOCS / docs_name)


PREVIEW = [
    {"sender_type": "customer", "sender_name": "Budi Santoso", "text": "Hi, I need 3 ThinkPad X1 Carbon for my team. Can I get a quote?",
     "sent_at": "2026-11-25T08:58:10Z"},
    {"sender_type": "bot", "text": "Sure! Which configuration do you need: i5 / 16 GB or i7 / 32 GB?",
     "sent_at": "2026-11-25T08:58:14Z"},
    {"sender_type": "customer", "sender_name": "Budi Santoso", "text": "i7 / 32 GB please, delivered to Jakarta before December 5.",
     "sent_at": "2026-11-25T08:59:02Z"},
    {"sender_type": "agentic_ai", "sender_name": "Sales assistant", "text": "Noted. I've created a deal and our sales team will send the quote today.",
     "sent_at": "2026-11-25T08:59:40Z"},
]


# -- from the component to the page ---------------------------------------------------


def test_name_click_opens_the_page_once_with_a_clean_url_in_the_agents_time_zone(
    crm: CrmStack, agent: BrowserContext
) -> None:
    """Through the real component (loaded directly): component.js sends the browser's
    zone with /open, the link is used once and leaves the address bar."""
    room = "e2e-crm-component"
    contact = crm.contact(name="Budi Santoso", phone="+62 812-3456-7890", email="budi@example.co.id")
    deal = crm.create("deal", room, name="ThinkPad X1 Carbon × 3", stage="Proposal", pipeline="B2B Sales",
                      contact_id=contact, source="whatsapp")
    crm.set_preview("deal", deal["id"], "ok", PREVIEW)
    token = crm.api.post("/api/v1/embed-tokens", json={"room_id": room, "agent_id": "agent-e2e"}).json()
    page = agent.new_page()
    page.goto(token["embed_url"])
    opened_links: list[str] = []
    agent.on("request", lambda r: opened_links.append(r.url) if "link=" in r.url else None)
    with agent.expect_page() as new_tab:
        page.get_by_test_id("deal-name").click()
    tab = new_tab.value
    expect(tab.get_by_test_id("crm-name")).to_have_text("ThinkPad X1 Carbon × 3")
    assert tab.url == f"{crm.server.url}/crm/deals/{deal['id']}", "the link must leave the address bar"
    created = tab.get_by_test_id("crm-created")
    expect(created).to_have_attribute("datetime", deal["created_at"])
    expect(created).to_have_attribute("title", f"{created.text_content()} · Western Indonesia Time (Asia/Jakarta)")

    tab.reload()  # the session keeps the page
    expect(tab.get_by_test_id("crm-name")).to_have_text("ThinkPad X1 Carbon × 3")

    [link] = opened_links[:1]
    other = agent.new_page()  # the same link again, where no session exists for it: its path
    agent.clear_cookies()
    other.goto(link)
    expect(other.get_by_test_id("crm-problem")).to_contain_text("This link was already used")
    expect(other.get_by_test_id("crm-how-to")).to_be_visible()
    expect(other.get_by_test_id("crm-name")).to_have_count(0)
    shot(other, "crm-link-used-en.png")


# -- the page's states, in en and id ---------------------------------------------------


def test_deal_with_contact_and_chat_preview(crm: CrmStack, agent: BrowserContext) -> None:
    contact = crm.contact(name="Budi Santoso", phone="+62 812-3456-7890", email="budi@example.co.id")
    deal = crm.create("deal", "e2e-crm-deal", name="ThinkPad X1 Carbon × 3", stage="Proposal",
                      pipeline="B2B Sales", contact_id=contact, source="whatsapp")
    crm.set_preview("deal", deal["id"], "ok", PREVIEW)
    for lang in ("en", "id"):
        page = agent.new_page()
        page.goto(crm.link("deal", deal, locale=lang))
        expect(page.get_by_test_id("crm-contact")).to_have_text("Budi Santoso")
        messages = page.get_by_test_id("chat-message")
        expect(messages).to_have_count(4)
        expect(messages.nth(0)).to_contain_text("Budi Santoso")
        expect(messages.nth(0)).to_contain_text("Customer" if lang == "en" else "Pelanggan")
        expect(messages.nth(0).locator("time")).to_have_text("3:58 PM" if lang == "en" else "15.58")
        expect(page.get_by_test_id("crm-created")).to_contain_text("4:00 PM" if lang == "en" else "16.00")
        side = [messages.nth(i).evaluate("el => getComputedStyle(el).justifySelf") for i in range(4)]
        assert side == ["start", "end", "start", "end"], side
        shot(page, f"crm-deal-{lang}.png", "screenshot-crm-deal.png" if lang == "en" else None)
        if lang == "en":  # a phone: one column, contact first, nothing wider than the screen
            page.set_viewport_size({"width": 390, "height": 844})
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            shot(page, "crm-deal-mobile-en.png")
        page.close()


def test_ticket_with_failed_preview_and_no_contact(crm: CrmStack, agent: BrowserContext) -> None:
    ticket = crm.create("ticket", "e2e-crm-ticket", creator_flag="agentic_ai", name="Warranty claim: cracked screen",
                        status="Pending")
    crm.set_preview("ticket", ticket["id"], "failed")
    for lang in ("en", "id"):
        page = agent.new_page()
        page.goto(crm.link("ticket", ticket, locale=lang))
        expect(page.get_by_test_id("crm-id")).to_have_text(ticket["unique_id"])
        expect(page.get_by_test_id("crm-creator")).to_have_text("AI")
        expect(page.get_by_test_id("crm-contact")).to_have_text("No contact" if lang == "en" else "Tanpa kontak")
        entry = page.get_by_test_id("timeline-entry")
        expect(entry.get_by_test_id("creator-badge")).to_have_text("AI")
        expect(entry.get_by_test_id("room-deeplink")).to_be_visible()
        # PRD S04 ERR-2: no agent-facing error, no preview.
        expect(entry.get_by_test_id("chat-preview")).to_have_count(0)
        expect(entry.get_by_test_id("chat-empty")).to_have_count(0)
        expect(entry.get_by_test_id("chat-pending")).to_have_count(0)
        shot(page, f"crm-ticket-failed-{lang}.png")
        page.close()


def test_pending_preview_arrives_without_a_reload(crm: CrmStack, agent: BrowserContext) -> None:
    deal = crm.create("deal", "e2e-crm-pending", name="Projector lease", stage="Qualified", pipeline="Rentals")
    page = agent.new_page()
    page.goto(crm.link("deal", deal))
    expect(page.get_by_test_id("chat-pending")).to_contain_text("Fetching chat history…")
    shot(page, "crm-pending-en.png")
    page.evaluate("document.body.dataset.marker = 'same-page'")
    page.get_by_test_id("room-deeplink").focus()

    crm.set_preview("deal", deal["id"], "ok", PREVIEW[:2])
    expect(page.get_by_test_id("chat-message")).to_have_count(2)
    expect(page.get_by_test_id("chat-pending")).to_have_count(0)
    expect(page.locator("body")).to_have_attribute("data-marker", "same-page")
    expect(page.get_by_test_id("room-deeplink")).to_be_focused()

    empty = crm.create("deal", "e2e-crm-pending-empty", name="Empty chat deal")
    page.goto(crm.link("deal", empty, locale="id"))
    crm.set_preview("deal", empty["id"], "empty", [])
    expect(page.get_by_test_id("chat-empty")).to_have_text("Belum ada pesan")
    page.close()


# -- S05: the room deeplink ---------------------------------------------------------------


def test_s05_ac1_ac2_room_opens_in_a_new_tab_and_the_page_keeps_its_place(
    crm: CrmStack, agent: BrowserContext
) -> None:
    room = "e2e:crm.room@x_1-2"  # every character the RFC allows
    deal = crm.create("deal", room, name="Deal with a tricky room id")
    crm.set_preview("deal", deal["id"], "ok", PREVIEW)
    page = agent.new_page()
    page.set_viewport_size({"width": 1280, "height": 420})
    page.goto(crm.link("deal", deal))
    link = page.get_by_test_id("room-deeplink")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(link).to_have_attribute("href", f"{crm.server.url}/healthz?room=e2e%3Acrm.room%40x_1-2")
    link.scroll_into_view_if_needed()
    page.evaluate("document.body.dataset.marker = 'same-page'")
    scroll = page.evaluate("window.scrollY")
    with agent.expect_page() as new_tab:
        link.click()
    room_tab = new_tab.value
    room_tab.wait_for_load_state()
    assert room_tab.url == f"{crm.server.url}/healthz?room=e2e%3Acrm.room%40x_1-2"
    assert room_tab.evaluate("window.opener === null")
    assert crm.chat_panel_calls[-1].url.raw_path == b"/api/rooms/e2e%3Acrm.room%40x_1-2"
    page.bring_to_front()
    assert page.evaluate("window.scrollY") == scroll
    expect(page.locator("body")).to_have_attribute("data-marker", "same-page")
    assert any(e["deal_id"] == deal["id"] for e in crm.events("deal_timeline_chatroom_clicked"))


@pytest.mark.parametrize("lang", ["en", "id"])
def test_s05_err1_deleted_room_shows_an_error_and_does_not_navigate(
    crm: CrmStack, agent: BrowserContext, lang: str
) -> None:
    deal = crm.create("deal", f"gone-e2e-{lang}", name="Deal whose chat was deleted")
    crm.set_preview("deal", deal["id"], "ok", PREVIEW[:2])
    page = agent.new_page()
    page.goto(crm.link("deal", deal, locale=lang))
    opened: list[Page] = []
    agent.on("page", lambda p: opened.append(p))
    page.get_by_test_id("room-deeplink").click()
    notice = page.get_by_test_id("room-notice")
    expect(notice).to_contain_text(
        "This chat room is no longer available" if lang == "en" else "Room chat ini sudah tidak tersedia")
    expect(notice.get_by_role("link", name="Open anyway" if lang == "en" else "Tetap buka")).to_be_hidden()
    shot(page, f"crm-room-error-{lang}.png")
    page.wait_for_timeout(300)
    assert opened == []


def test_s05_chat_panel_down_offers_try_again_and_open_anyway(crm: CrmStack, agent: BrowserContext) -> None:
    deal = crm.create("deal", "down-e2e", name="Deal while the Chat Panel is down")
    page = agent.new_page()
    page.goto(crm.link("deal", deal))
    page.get_by_test_id("room-deeplink").click()
    notice = page.get_by_test_id("room-notice")
    expect(notice).to_contain_text("Couldn't check the chat room right now")
    expect(notice.get_by_role("button", name="Try again")).to_be_visible()
    shot(page, "crm-room-unavailable-en.png")
    clicks = len(crm.events("deal_timeline_chatroom_clicked"))
    with agent.expect_page() as new_tab:
        notice.get_by_role("link", name="Open anyway").click()
    new_tab.value.wait_for_load_state()
    assert urlsplit(new_tab.value.url).path == "/healthz"
    expect(notice).not_to_contain_text("Couldn't check")
    page.wait_for_timeout(300)
    assert len(crm.events("deal_timeline_chatroom_clicked")) == clicks + 1


def test_s05_slow_chat_panel_gives_up_after_2_s(crm: CrmStack, agent: BrowserContext) -> None:
    deal = crm.create("deal", "slow-e2e", name="Deal while the Chat Panel is slow")
    page = agent.new_page()
    page.goto(crm.link("deal", deal))
    page.get_by_test_id("room-deeplink").click()
    notice = page.get_by_test_id("room-notice")
    expect(notice).to_contain_text("Checking the chat room…")
    expect(notice).to_contain_text("Couldn't check the chat room right now", timeout=4000)


# -- pages without the record -----------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "id"])
def test_record_url_without_a_link_says_how_to_get_there(crm: CrmStack, agent: BrowserContext, lang: str) -> None:
    deal = crm.create("deal", "e2e-crm-nolink", name="Secret deal")
    page = agent.new_page()
    response = page.goto(f"{deal['url']}?lang={lang}")
    assert response is not None and response.status == 401
    problem = page.get_by_test_id("crm-problem")
    expect(problem).to_contain_text("Open this deal from the chat room" if lang == "en" else "Buka deal ini dari room chat")
    expect(page.locator("body")).not_to_contain_text("Secret deal")
    shot(page, f"crm-no-link-{lang}.png")
