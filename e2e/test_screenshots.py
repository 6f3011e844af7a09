"""Screenshots of every state of the component in both themes and both languages, and
of a CRM record page in both languages, into ``docs/screenshots/`` (the README shows a
selection). Named ``<state>-<theme>-<lang>.png`` and ``crm-deal-<lang>.png``.

One page per language (the token's locale picks it); the states are shown as the
script shows them (``data-state`` / ``data-error`` on the root, CSS does the rest), so
the whole set takes a few seconds. The records are made at a fixed time on a server of
this module's own, and the one random thing shown, a deal's opaque id, is replaced by a
fixed sample: the images only change when the look does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from e2e.test_accessibility import STATES, THEMES, show
from e2e.test_agent_experience import assert_plain
from e2e.test_crm_pages import PREVIEW, CrmStack, crm  # noqa: F401 (crm: the module's own server)

SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
SAMPLE_ID = "de_5c2b19e0a7d4f3816b9e02ac"
ROOM = "e2e-screenshots"


@pytest.fixture
def narrow(browser: Browser) -> Iterator[BrowserContext]:
    """As wide as the host's Deal & Ticket tab, sharp, in Jakarta, without motion."""
    context = browser.new_context(viewport={"width": 360, "height": 720}, device_scale_factor=2,
                                  timezone_id="Asia/Jakarta", reduced_motion="reduce")
    yield context
    context.close()


def fixed_ids(page: Page) -> None:
    """Every deal id shown (text and title) replaced by the sample."""
    page.evaluate("""(sample) => document.querySelectorAll("body *").forEach((el) => {
        if (!el.children.length && /^de_[0-9a-f]{24}$/.test(el.textContent.trim())) el.textContent = sample;
        if (/^de_[0-9a-f]{24}$/.test(el.title)) el.title = sample;
      })""", SAMPLE_ID)


def test_every_state_in_both_themes_and_languages(crm: CrmStack, narrow: BrowserContext) -> None:  # noqa: F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    crm.create("deal", ROOM, name="Annual maintenance for 12 air conditioners, Menara Sudirman tower B",
               stage="Proposal", pipeline="B2B Sales")
    crm.create("ticket", ROOM, creator_flag="agentic_ai", name="Unit 7 leaks water", status="Open")
    page = narrow.new_page()
    # The server's first paint is the picture: a stream that never delivers cannot
    # redraw a card (and its id) between the sample and the shot.
    page.add_init_script("delete window.SharedWorker")
    page.route("**/embed/rooms/*/events?*", lambda route: None)
    written = []
    for lang in ("en", "id"):
        token = crm.api.post("/api/v1/embed-tokens", json={"room_id": ROOM, "agent_id": "agent-e2e",
                                                            "locale": lang}).json()
        page.goto(token["embed_url"])
        expect(page.locator("#widget")).to_have_attribute("data-state", "ready")
        expect(page.locator("html")).to_have_attribute("lang", lang)
        fixed_ids(page)
        for theme in THEMES:
            for name in STATES:
                show(page, name, theme)
                assert_plain(page)
                path = SCREENSHOTS / f"{name}-{theme}-{lang}.png"
                page.locator("#widget").screenshot(path=str(path), animations="disabled")
                written.append(path)
    assert len(written) == 32 and all(p.stat().st_size > 2000 for p in written)


def test_crm_record_page_in_both_languages(crm: CrmStack, browser: Browser) -> None:  # noqa: F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    contact = crm.contact(name="Budi Santoso", phone="+62 812-3456-7890", email="budi@example.co.id")
    deal = crm.create("deal", f"{ROOM}-crm", name="ThinkPad X1 Carbon × 3", stage="Proposal",
                      pipeline="B2B Sales", contact_id=contact, source="whatsapp")
    crm.set_preview("deal", deal["id"], "ok", PREVIEW)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Asia/Jakarta",
                                  reduced_motion="reduce")
    try:
        for lang, created in (("en", "4:00 PM"), ("id", "16.00")):
            page = context.new_page()
            page.goto(crm.link("deal", deal, locale=lang))
            expect(page.get_by_test_id("crm-created")).to_contain_text(created)
            expect(page.get_by_test_id("crm-number")).to_have_text(deal["number"])
            expect(page.get_by_test_id("chat-message")).to_have_count(len(PREVIEW))
            fixed_ids(page)
            path = SCREENSHOTS / f"crm-deal-{lang}.png"
            page.screenshot(path=str(path), full_page=True, animations="disabled")
            assert path.stat().st_size > 10_000
            page.close()
    finally:
        context.close()
