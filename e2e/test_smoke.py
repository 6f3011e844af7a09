from playwright.sync_api import Page, expect

from e2e.conftest import open_tab
from e2e.stack import Stack


def test_bot_deal_appears_live(page: Page, stack: Stack, room_id: str) -> None:
    frame = open_tab(page, stack, room_id)
    expect(frame.get_by_test_id("empty-state")).to_be_visible()
    deal = stack.create("deal", room_id, name="Fridge order")
    expect(frame.get_by_test_id("deal-name")).to_have_text("Fridge order")
    expect(frame.get_by_test_id("deal-id")).to_have_text(deal["id"])
    page.screenshot(path="/tmp/host1.png", full_page=True)
