"""Issue 12, section 2: many rooms in one browser over plain HTTP/1.1 (the e2e stack's
uvicorn speaks nothing else). Chromium opens at most 6 connections per site, so frames
with an EventSource each would stall from the 7th; the frames share one stream through
the SharedWorker of ``static/room-worker.js`` instead (``POST /embed/streams``), and
fall back to an EventSource each where there is no SharedWorker or it cannot start.

The browser: Playwright starts Chromium with ``--disable-features=…,ThirdPartyStorage
Partitioning,…``, and without partitioned storage a cross-site frame gets no
SharedWorker at all. Every Chrome since 115 partitions (so do Firefox and Safari), so
these tests run a Chromium of their own whose (empty) ``--disable-features`` replaces
Playwright's (the last one counts).

The host pages are the test's own, on the host's origin: a real page of the host
(``/healthz``) whose content is replaced by a row of iframes at the component's embed
URLs, one per room, each with its own embed token."""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, BrowserType, FrameLocator, Page, expect

from e2e.conftest import embed_token, expect_state, is_events, subscribers, wait_subscribed
from e2e.stack import Stack
from widget.tokens import EMBED


@pytest.fixture(scope="module")
def partitioning_chromium(browser_type: BrowserType, browser_type_launch_args: dict[str, Any]) -> Iterator[Browser]:
    browser = browser_type.launch(**{
        **browser_type_launch_args, "args": [*browser_type_launch_args["args"], "--disable-features="]})
    yield browser
    browser.close()


@pytest.fixture
def agent(partitioning_chromium: Browser) -> Iterator[BrowserContext]:
    """One agent's browser: its tabs share storage, so one SharedWorker per site."""
    context = partitioning_chromium.new_context()
    yield context
    context.close()


@dataclass
class Tab:
    page: Page
    own_streams: list[str] = field(default_factory=list)  # its components' own EventSource requests

    def frame(self, room: str) -> FrameLocator:
        return self.page.frame_locator(f'iframe[name="{room}"]')


def host_tab(context: BrowserContext, stack: Stack, rooms: list[str], **token: Any) -> Tab:
    """A new tab on the host's origin framing one component per room (``token``: the
    embed tokens' fields)."""
    tab = Tab(context.new_page())
    tab.page.on("request", lambda r: tab.own_streams.append(r.url) if is_events(r) else None)
    tab.page.goto(f"{stack.host_url}/healthz")
    tab.page.set_content("".join(
        f'<iframe name="{room}" title="{room}" src="{html.escape(embed_token(stack, room, **token)["embed_url"])}"'
        ' style="width:360px;height:200px"></iframe>'
        for room in rooms
    ))
    return tab


def test_twenty_rooms_in_one_browser_all_stay_live_over_http_1_1(
    agent: BrowserContext, stack: Stack, room_id: str,
) -> None:
    rooms = [f"{room_id}-{n}" for n in range(20)]
    # 10 frames on one page, 10 more in two other tabs of the same browser.
    groups = [rooms[:10], rooms[10:15], rooms[15:]]
    tabs = [host_tab(agent, stack, group) for group in groups]
    for room in rooms:
        wait_subscribed(stack, room, 1, timeout=20)  # every room is streamed to the browser
    deals = {room: stack.create("deal", room, name=f"Deal for {room}") for room in rooms}
    for tab, group in zip(tabs, groups):
        for room in group:
            frame = tab.frame(room)
            expect(frame.get_by_test_id("deal-name")).to_have_text(deals[room]["name"])
            expect_state(frame, "ready")
    assert [tab.own_streams for tab in tabs] == [[], [], []]  # all over one shared stream


def test_frames_of_one_room_share_it_and_a_tab_that_goes_away_lets_its_rooms_go(
    agent: BrowserContext, stack: Stack, room_id: str,
) -> None:
    leaving, shared, staying = (f"{room_id}-{name}" for name in ("leaving", "shared", "staying"))
    first, second = host_tab(agent, stack, [leaving, shared]), host_tab(agent, stack, [shared, staying])
    for room in (leaving, shared, staying):
        wait_subscribed(stack, room)
    deal = stack.create("deal", shared, name="Seen twice")
    for tab in (first, second):
        expect(tab.frame(shared).get_by_test_id("deal-name")).to_have_text(deal["name"])
    first.page.close()  # pagehide: the worker lets its rooms go and re-opens the stream without them
    for _ in range(100):
        if not subscribers(stack, leaving):
            break
        second.page.wait_for_timeout(50)
    assert subscribers(stack, leaving) == 0
    assert stack.api.patch(f"/deals/{deal['id']}", json={"stage": "Won"}).status_code == 200
    later = stack.create("deal", staying, name="Still live")
    expect(second.frame(shared).get_by_test_id("deal-stage")).to_have_text("Won")
    expect(second.frame(staying).get_by_test_id("deal-name")).to_have_text(later["name"])
    assert first.own_streams == second.own_streams == []


def test_a_token_handed_over_takes_over_when_the_old_one_expires(
    agent: BrowserContext, stack: Stack, room_id: str,
) -> None:
    other = host_tab(agent, stack, [f"{room_id}-other"])  # keeps the shared stream open throughout
    tab = host_tab(agent, stack, [room_id], ttl_seconds=3)
    wait_subscribed(stack, f"{room_id}-other")
    tab.page.evaluate("""() => { window.states = [];
        addEventListener("message", (e) => e.data.type === "state" && states.push(e.data.state)); }""")
    wait_subscribed(stack, room_id)
    fresh = embed_token(stack, room_id)["token"]
    tab.page.evaluate("""([room, token]) => frames[room].postMessage(
        {source: "crm-deal-ticket-widget", version: 1, type: "token", token: token}, "*")""", [room_id, fresh])
    claims = stack.widget.app.state.runtime.signer.verify(EMBED, fresh)
    limits = stack.widget.app.state.stream_limits
    for _ in range(120):  # the old token runs out (3 s); its room goes on under the new one
        if limits.count("token", claims["jti"], claims["exp"]):
            break
        tab.page.wait_for_timeout(50)
    assert limits.count("token", claims["jti"], claims["exp"]) == 1
    deal = stack.create("deal", room_id, name="After the hand-over")
    expect(tab.frame(room_id).get_by_test_id("deal-name")).to_have_text(deal["name"])
    states = tab.page.evaluate("states")
    assert "ready" in states and "expired" not in states, states
    assert tab.own_streams == other.own_streams == []


def test_without_shared_worker_each_component_streams_on_its_own(
    agent: BrowserContext, stack: Stack, room_id: str,
) -> None:
    agent.add_init_script("delete window.SharedWorker")  # in every frame
    tab = host_tab(agent, stack, [room_id])
    wait_subscribed(stack, room_id)
    deal = stack.create("deal", room_id, name="Fallback deal")
    expect(tab.frame(room_id).get_by_test_id("deal-name")).to_have_text(deal["name"])
    assert len(tab.own_streams) == 1  # its own EventSource (the positive control of the counts above)


# A SharedWorker whose script fails (a 404, a syntax error, a proxy in the way): the
# browser reports it with an error event on the worker, after the page has used it.
FAILING_WORKER = """window.SharedWorker = function () {
  const worker = this;
  worker.port = new MessageChannel().port1;
  setTimeout(() => worker.onerror && worker.onerror(new Event("error")), 200);
};"""


def test_when_the_worker_fails_each_component_streams_on_its_own(
    agent: BrowserContext, stack: Stack, room_id: str,
) -> None:
    agent.add_init_script(FAILING_WORKER)
    tab = host_tab(agent, stack, [room_id])
    wait_subscribed(stack, room_id)  # its feed, already handed to the worker, moved to an EventSource
    deal = stack.create("deal", room_id, name="Worker-less deal")
    expect(tab.frame(room_id).get_by_test_id("deal-name")).to_have_text(deal["name"])
    expect_state(tab.frame(room_id), "ready")
    assert len(tab.own_streams) == 1
