"""The example host holds together from 1,024 px wide up (issue 12 section 4): no button
cut off, the room title at most two lines, the simulator drawer beside, never over, the
info bar. On a QA room (a long customer name and room id) with the drawer open, the
Deal & Ticket tab showing a deal and the QA details on (the widest header)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import open_tab
from e2e.stack import Stack

# Every visible button of the host (the component's frame is a document of its own):
# scrolled into view, its box must lie inside the viewport and inside every ancestor
# that clips (overflow other than visible), and its label must fit (no scroll width).
CLIPPED_BUTTONS = """
() => {
  const cut = [];
  const inside = (r, box) => r.left >= box.left - 0.5 && r.right <= box.right + 0.5
    && r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5;
  const viewport = { left: 0, top: 0, right: innerWidth, bottom: innerHeight };
  for (const button of document.querySelectorAll("button, a.btn, [role='tab'], select")) {
    if (!button.checkVisibility({ visibilityProperty: true })) continue;
    button.scrollIntoView({ block: "nearest", inline: "nearest" });
    const r = button.getBoundingClientRect();
    const name = (button.dataset.testid || button.id || button.textContent.trim()).slice(0, 40);
    if (!inside(r, viewport)) cut.push(name + ": outside the viewport");
    if (button.scrollWidth > button.clientWidth + 1) cut.push(name + ": label cut");
    for (let box = button.parentElement; box && box !== document.body; box = box.parentElement) {
      const style = getComputedStyle(box);
      if ((style.overflowX !== "visible" || style.overflowY !== "visible") && !inside(r, box.getBoundingClientRect())) {
        cut.push(name + ": clipped by ." + box.className.split(" ")[0]);
      }
    }
  }
  return cut;
}
"""


@pytest.mark.parametrize("width,height", [(1024, 768), (1440, 900)])
def test_host_holds_together(page: Page, stack: Stack, room_id: str, width: int, height: int) -> None:
    page.set_viewport_size({"width": width, "height": height})
    room = f"{room_id}-with-a-long-room-identifier-{width}"
    stack.create("deal", room, name="A deal whose name is long enough to wrap in the info bar")
    frame = open_tab(page, stack, room, wait_stream=False)
    expect(frame.get_by_test_id("deal-name")).to_be_visible()
    page.get_by_test_id("qa-details").check()
    expect(page.get_by_test_id("widget-state")).to_be_visible()
    expect(page.get_by_test_id("simulator")).to_have_attribute("data-open", "true")

    cut = page.evaluate(CLIPPED_BUTTONS)
    assert cut == [], "\n".join(cut)

    title = page.get_by_test_id("room-title")
    expect(title).to_contain_text("QA visitor")
    lines = title.evaluate("(h) => h.getBoundingClientRect().height / parseFloat(getComputedStyle(h).lineHeight)")
    assert round(lines) <= 2, lines

    drawer = page.get_by_test_id("simulator").bounding_box()
    infobar = page.get_by_test_id("infobar").bounding_box()
    assert drawer and infobar
    overlap_x = min(drawer["x"] + drawer["width"], infobar["x"] + infobar["width"]) - max(drawer["x"], infobar["x"])
    overlap_y = min(drawer["y"] + drawer["height"], infobar["y"] + infobar["height"]) - max(drawer["y"], infobar["y"])
    assert overlap_x <= 0 or overlap_y <= 0, (drawer, infobar)
