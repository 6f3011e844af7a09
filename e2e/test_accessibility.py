"""Access (issue 12 section 4): axe-core finds no serious or critical violation in any
state of the component, in both themes; keyboard only: Tab reaches the names, Enter
opens the record's tab, names that cannot open anything leave the tab order.

axe-core comes from npm (``e2e/package.json``; ``make test`` installs it). Playwright
injects it as an inline script, which the component's CSP (``script-src 'self'``)
refuses, so the axe runs use a context that bypasses CSP; nothing else does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from e2e.conftest import embed_token, expect_state, open_component
from e2e.stack import Stack

AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
THEMES = ("light", "dark")

# Every state with what distinguishes it in the page (set as the script sets it: the
# attributes on the root; CSS does the rest). The real transitions are tested in
# test_agent_experience.py, test_resilience.py and test_tokens.py.
STATES: dict[str, dict[str, str]] = {
    "ready": {"state": "ready", "error": ""},
    "empty": {"state": "empty", "error": ""},
    "loading": {"state": "loading", "error": ""},
    "reconnecting": {"state": "reconnecting", "error": ""},
    "error": {"state": "error", "error": "unreachable"},
    "error-invalid": {"state": "error", "error": "invalid"},
    "forbidden": {"state": "forbidden", "error": ""},
    "expired": {"state": "expired", "error": ""},
}

SHOW_STATE = """([state, error, theme]) => {
  document.documentElement.dataset.theme = theme;
  const widget = document.getElementById("widget");
  widget.dataset.state = state;
  widget.dataset.error = error;
}"""


def show(page: Page, name: str, theme: str) -> None:
    """The page in a state and theme, as the component puts it there, once the cards'
    entrance (a fade, 180 ms) is over; endless ones (spinners) run on."""
    page.evaluate(SHOW_STATE, [STATES[name]["state"], STATES[name]["error"], theme])
    page.wait_for_function("""() => document.getAnimations().every(
        (a) => a.playState !== "running" || a.effect.getTiming().iterations === Infinity)""")


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations (WCAG 2.x A and AA, best practices)."""
    result = page.evaluate("""async () => {
      const run = await axe.run(document, {resultTypes: ["violations"]});
      return run.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map(n => n.target.join(" ") + ": " + n.failureSummary)}));
    }""")
    return [v for v in result if v["impact"] in ("serious", "critical")]


@pytest.fixture
def axe_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(bypass_csp=True, viewport={"width": 360, "height": 640})
    yield context.new_page()
    context.close()


def test_axe_finds_nothing_serious_in_any_state_or_theme(axe_page: Page, stack: Stack, room_id: str) -> None:
    page = axe_page
    deal = stack.create("deal", room_id, name="Annual maintenance contract for 12 air conditioners, Menara Sudirman")
    stack.create("ticket", room_id, creator_flag="agentic_ai", name="Unit 7 leaks water")
    open_component(page, stack, room_id)
    assert stack.api.patch(f"/deals/{deal['id']}", json={"stage": "Proposal"}).status_code == 200
    expect(page.get_by_test_id("deal-preview").get_by_test_id("change-tag")).to_be_visible()  # its mark too
    page.add_script_tag(path=str(AXE))
    page.evaluate("""() => {  // the notice as a blocked pop-up shows it
      const notice = document.querySelector(".notice");
      notice.querySelector(".notice__text").textContent = "Allow pop-ups for this site.";
      notice.hidden = false;
    }""")

    found = {}
    for theme in THEMES:
        for name in STATES:
            show(page, name, theme)
            found[f"{name}/{theme}"] = serious_violations(page)
    assert found == {key: [] for key in found}, found
    assert len(found) == 16


def test_keyboard_tab_reaches_the_names_enter_opens_disabled_names_are_skipped(
    page: Page, stack: Stack, room_id: str
) -> None:
    stack.create("deal", room_id, name="Keyboard deal")
    stack.create("ticket", room_id, name="Keyboard ticket")
    token = embed_token(stack, room_id, ttl_seconds=3)  # no host to renew it: expired at exp
    page.goto(token["embed_url"])
    expect_state(page, "ready")

    expect(page.get_by_test_id("deal-name")).to_have_attribute("title", "Keyboard deal")  # in full when clamped
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("deal-name")).to_be_focused()
    outline = page.get_by_test_id("deal-name").evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline == "solid"  # a visible focus ring
    page.keyboard.press("Tab")  # the deal's opaque id, cut short: whole while focused
    deal_id = page.get_by_test_id("deal-id")
    expect(deal_id).to_be_focused()
    assert deal_id.evaluate("el => el.scrollWidth <= el.clientWidth"), "the focused id is still cut"
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("ticket-name")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_test_id("deal-name")).to_be_focused()
    with page.context.expect_page() as opened:
        page.keyboard.press("Enter")
    expect(opened.value.get_by_test_id("crm-name")).to_have_text("Keyboard deal")
    opened.value.close()

    expect_state(page, "expired")  # names now open nothing
    for name in ("deal-name", "ticket-name"):
        expect(page.get_by_test_id(name)).to_have_attribute("aria-disabled", "true")
        expect(page.get_by_test_id(name)).to_have_attribute("tabindex", "-1")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.dataset.testid || document.activeElement.tagName")
    assert focused not in ("deal-name", "ticket-name"), focused
