"""Issue 8 section 2 (the example host plays Omnichannel, RFC section 9): the CRM's
signed notifications reach the host's receivers, every call is shown in the
simulator's "Omnichannel events" panel (verified or not), and a verified notification
for the room on screen makes the host post ``refresh`` (RFC section 7) to its component.

These scenarios run on a stack of their own whose company notifies the host
(``start_stack(omnichannel_secret=…)``): the session stack's company sends no
notifications, so nothing refreshes the other scenarios' components.

What only a refresh causes: the component's ``restart()`` opens a new stream from
scratch, ``GET /embed/rooms/{room}/events?token=…`` without ``last_event_id`` (the
stream opened at load, and a reconnect after a lost one, resume with one), while a live
update arrives on the open stream and opens nothing. So the tests count the
component's ``/events`` requests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, Request, expect

from e2e.conftest import ARTIFACTS, chat_panel_mode, expect_state, is_events, open_tab, until
from e2e.stack import Stack, start_stack

SECRET = "e2e-omnichannel-secret"


@pytest.fixture(scope="module")
def omni_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Widget + host whose company sends its notifications to the host's receivers."""
    running = start_stack(tmp_path_factory.mktemp("omnichannel"), omnichannel_secret=SECRET)
    yield running
    running.close()


class Seen:
    """The page's requests that matter here, in order: the component's stream opens
    (``/events``) and the host's notification watch polls (``…/received?room=…&since=…``)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.streams: list[str] = []
        self.watch_polls: list[str] = []
        page.on("request", self._on_request)

    def _on_request(self, request: Request) -> None:
        if is_events(request):
            self.streams.append(request.url)
        elif "/omnichannel/received?" in request.url and "since=" in request.url:
            self.watch_polls.append(request.url)

    def wait_streams(self, count: int) -> None:
        """Until the component has opened ``count`` streams: the first one at load
        (resuming from the page's snapshot), every later one a restart (no resume)."""
        self.wait(lambda: len(self.streams) >= count, f"{count} stream opens, saw {self.streams}")
        assert len(self.streams) == count, self.streams
        assert "last_event_id=" in self.streams[0], self.streams
        assert not [url for url in self.streams[1:] if "last_event_id=" in url], "a reconnect, not a restart"

    def wait_watch_cycles(self, cycles: int = 2) -> None:
        """Until the host has started ``cycles`` more watch polls: the first of them was
        sent after whatever happened before this call, and the next one only after the
        first was answered and handled (host.js chains them)."""
        target = len(self.watch_polls) + cycles
        self.wait(lambda: len(self.watch_polls) >= target, "the host's notification watch is not polling")

    def wait(self, condition: Callable[[], bool], message: str, timeout: float = 15) -> None:
        """``wait_until`` for what the page's events tell: the sync API only delivers
        them while it runs, so this waits in the page, not in ``time.sleep``."""
        assert until(self.page, condition, timeout), message


@pytest.fixture
def seen(page: Page) -> Seen:
    return Seen(page)


def wait_until(condition: Callable[[], bool], message: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def received(stack: Stack, room_id: str) -> list[dict[str, Any]]:
    """The calls the host's receivers recorded for a room (``GET /omnichannel/received``)."""
    response = httpx.get(f"{stack.host_url}/omnichannel/received", params={"room": room_id}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["events"]


def wait_notified(stack: Stack, room_id: str, record_id: str) -> dict[str, Any]:
    """The verified notification the widget's worker delivered about a record."""
    found: list[dict[str, Any]] = []

    def arrived() -> bool:
        found[:] = [e for e in received(stack, room_id) if e["record_id"] == record_id and e["verified"]]
        return bool(found)

    wait_until(arrived, f"no verified notification about {record_id} for {room_id}")
    return found[0]


def send(stack: Stack, method: str, path: str, body: dict[str, Any], event_id: str, *,
         secret: str = SECRET, age: int = 0) -> httpx.Response:
    """A notification signed as the worker signs one (RFC section 9), by the test:
    with another ``secret`` it is a forgery, with an ``age`` it is a stale one."""
    raw = json.dumps(body).encode()
    t = int(time.time()) - age
    digest = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Widget-Signature": f"t={t},v1={digest}",
               "X-Widget-Event-Id": event_id}
    return httpx.request(method, f"{stack.host_url}/omnichannel{path}", content=raw, headers=headers, timeout=5)


def omnichannel_log(page: Page) -> Locator:
    """The host's activity log lines about notifications."""
    return page.locator('[data-testid="sim-log-entry"][data-action="omnichannel"]')


def event_entry(page: Page, **data: str) -> Locator:
    selector = "".join(f'[data-{k.replace("_", "-")}="{v}"]' for k, v in data.items())
    return page.locator(f'[data-testid="omnichannel-event"]{selector}')


def set_drawer(page: Page, open_: bool) -> None:
    sim = page.get_by_test_id("simulator")
    if (sim.get_attribute("data-open") == "true") != open_:
        page.get_by_test_id("simulator-toggle").click()
    expect(sim).to_have_attribute("data-open", "true" if open_ else "false")


def show_body(entry: Locator, body: dict[str, Any]) -> None:
    """Open an entry's body (a one-line preview until clicked): the pretty JSON, as
    ``JSON.stringify(body, null, 2)`` writes it."""
    preview = json.dumps(body, separators=(",", ":"), ensure_ascii=False)[:100]
    expect(entry.get_by_test_id("omnichannel-body-toggle")).to_contain_text(preview)
    entry.get_by_test_id("omnichannel-body-toggle").click()
    expect(entry.get_by_test_id("omnichannel-body")).to_be_visible()
    expect(entry.get_by_test_id("omnichannel-body")).to_have_text(json.dumps(body, indent=2, ensure_ascii=False))


def test_bot_deal_notification_is_shown_verified_and_refreshes_the_open_room(
    page: Page, omni_stack: Stack, room_id: str, seen: Seen,
) -> None:
    stack = omni_stack
    frame = open_tab(page, stack, room_id)
    expect_state(frame, "empty")
    seen.wait_streams(1)

    # Positive control of the probe: the host's own Refresh (the same "refresh"
    # message) shows up as exactly one more stream opened from scratch.
    page.get_by_test_id("widget-refresh").click()
    seen.wait_streams(2)
    expect_state(frame, "empty")

    # The drawer is closed: the host must hear of notifications without the panel.
    set_drawer(page, False)
    deal = stack.create("deal", room_id, name="Notified deal", stage="New", pipeline="Sales")

    expect(frame.get_by_test_id("deal-name")).to_have_text("Notified deal")
    notification = wait_notified(stack, room_id, deal["id"])
    seen.wait_streams(3)  # the notification's refresh
    log = omnichannel_log(page)
    expect(log).to_have_count(1)
    expect(log).to_have_attribute("data-refreshed", "true")
    expect(log).to_have_attribute("data-record-ids", deal["id"])
    expect(log).to_have_attribute("data-event-ids", notification["event_id"])
    expect(log).to_contain_text("Omnichannel: deal created → refreshed the component")
    expect_state(frame, "ready")
    expect(frame.get_by_test_id("deal-id")).to_have_text(deal["id"])
    expect(page.get_by_test_id("widget-state")).to_have_attribute("data-state", "ready")

    # The call, in the events panel: method, path, the JSON body, verified.
    set_drawer(page, True)
    entry = event_entry(page, record_id=deal["id"])
    expect(entry).to_have_count(1)
    expect(entry).to_have_attribute("data-verified", "true")
    expect(entry).to_have_attribute("data-kind", "deal")
    expect(entry).to_have_attribute("data-action", "created")
    expect(entry).to_have_attribute("data-room-id", room_id)
    expect(entry).to_have_attribute("data-event-id", notification["event_id"])
    expect(entry.get_by_test_id("omnichannel-verified")).to_have_attribute("data-verified", "true")
    expect(entry.get_by_test_id("omnichannel-verified")).to_have_text("Verified")
    expect(entry.get_by_test_id("omnichannel-call")).to_have_text("200POST/omnichannel/deals")
    expect(entry.get_by_test_id("omnichannel-reason")).to_have_count(0)
    body = {"external_id": deal["id"], "external_url": deal["url"], "room_id": room_id}
    assert notification["body"] == body
    show_body(entry, body)
    assert len(seen.streams) == 3


def test_without_notifications_a_live_update_opens_no_stream(
    page: Page, stack: Stack, room_id: str, seen: Seen,
) -> None:
    """The A/B control of the probe, on the session stack (its company sends no
    notifications): the same live deal arrives on the open stream and the component
    opens no new one; the host's Refresh still does."""
    frame = open_tab(page, stack, room_id)
    seen.wait_streams(1)
    stack.create("deal", room_id, name="Only on the stream")
    expect(frame.get_by_test_id("deal-name")).to_have_text("Only on the stream")
    seen.wait_watch_cycles()
    assert len(seen.streams) == 1, seen.streams
    expect(omnichannel_log(page)).to_have_count(0)

    page.get_by_test_id("widget-refresh").click()
    seen.wait_streams(2)


def test_a_notification_for_another_room_does_not_refresh_this_room(
    page: Page, omni_stack: Stack, room_id: str, seen: Seen,
) -> None:
    stack = omni_stack
    frame = open_tab(page, stack, room_id)
    seen.wait_streams(1)

    chat_panel_mode(stack, f"{room_id}-other", "normal")  # the host knows the room (its chat history)
    elsewhere = stack.create("deal", f"{room_id}-other", name="Another room's deal")
    wait_notified(stack, f"{room_id}-other", elsewhere["id"])
    seen.wait_watch_cycles()  # the host has polled since that notification arrived

    # Positive control: this room's next notification refreshes it, exactly once.
    here = stack.create("deal", room_id, name="This room's deal")
    expect(frame.get_by_test_id("deal-name")).to_have_text("This room's deal")
    wait_notified(stack, room_id, here["id"])
    seen.wait_streams(2)
    log = omnichannel_log(page)
    expect(log).to_have_count(1)
    expect(log).to_have_attribute("data-record-ids", here["id"])
    seen.wait_watch_cycles()
    assert len(seen.streams) == 2, seen.streams
    expect(log).to_have_count(1)
    expect(page.locator("#sim-log")).not_to_contain_text(elsewhere["id"])


def test_backlog_forged_stale_and_duplicate_calls_do_not_refresh(
    page: Page, omni_stack: Stack, room_id: str, seen: Seen,
) -> None:
    """Only a verified notification newer than the page refreshes its component: not
    the backlog present at page load, not a call refused for its signature (shown "not
    verified" with the reason, answered 401), not a duplicate delivery. Also the README's
    picture of the events panel."""
    stack = omni_stack
    page.set_viewport_size({"width": 1440, "height": 900})
    chat_panel_mode(stack, room_id, "normal")  # the host knows the room before the page shows it
    before = stack.create("deal", room_id, name="Before the page")
    backlog = wait_notified(stack, room_id, before["id"])  # delivered before the page opens
    frame = open_tab(page, stack, room_id)
    expect(frame.get_by_test_id("deal-name")).to_have_text("Before the page")
    seen.wait_streams(1)

    update = {"name": "Before the page", "stage": "Won", "pipeline": "Sales", "external_url": before["url"],
              "room_id": room_id}
    path = f"/deals/{before['id']}"
    forged = send(stack, "PUT", path, update, "evt_forged", secret="not-the-shared-secret")
    assert forged.status_code == 401 and forged.json()["error"]["message"] == "bad signature"
    stale = send(stack, "PUT", path, update, "evt_stale", age=3600)
    assert stale.status_code == 401 and stale.json()["error"]["message"] == "timestamp too old"
    replayed = send(stack, "POST", "/deals", backlog["body"], backlog["event_id"])  # the worker retrying
    assert replayed.status_code == 200 and replayed.json()["status"] == "duplicate"
    seen.wait_watch_cycles()
    assert len(seen.streams) == 1, seen.streams
    expect(omnichannel_log(page)).to_have_count(0)

    # Positive control: a verified notification alone (no record changed, nothing on
    # the stream) refreshes the component, once, even delivered twice.
    fresh = send(stack, "PUT", path, update, "evt_e2e_update")
    assert fresh.status_code == 200 and fresh.json()["status"] == "received"
    seen.wait_streams(2)
    expect(omnichannel_log(page)).to_have_count(1)
    expect(omnichannel_log(page)).to_contain_text("Omnichannel: deal updated → refreshed the component")
    assert send(stack, "PUT", path, update, "evt_e2e_update").json()["status"] == "duplicate"
    seen.wait_watch_cycles()
    assert len(seen.streams) == 2, seen.streams
    expect(omnichannel_log(page)).to_have_count(1)

    # The panel: each call, refused ones marked "not verified" with the reason.
    set_drawer(page, True)
    panel = page.get_by_test_id("omnichannel-events")
    rejected = event_entry(page, room_id=room_id, verified="false")
    expect(rejected).to_have_count(2)
    expect(event_entry(page, event_id="evt_forged").get_by_test_id("omnichannel-reason")).to_have_text(
        "Not verified: bad signature")
    expect(event_entry(page, event_id="evt_stale").get_by_test_id("omnichannel-reason")).to_have_text(
        "Not verified: timestamp too old")
    for badge in rejected.get_by_test_id("omnichannel-verified").all():
        expect(badge).to_have_attribute("data-verified", "false")
        expect(badge).to_have_text("Not verified")
    expect(event_entry(page, event_id="evt_forged").get_by_test_id("omnichannel-call")).to_have_text(
        f"401PUT/omnichannel{path}")
    show_body(event_entry(page, event_id="evt_forged"), update)
    accepted = event_entry(page, event_id="evt_e2e_update")
    expect(accepted).to_have_attribute("data-verified", "true")
    expect(accepted.get_by_test_id("omnichannel-deliveries")).to_have_text("×2")
    expect(event_entry(page, event_id=backlog["event_id"]).get_by_test_id("omnichannel-deliveries")).to_have_text("×2")
    expect(page.get_by_test_id("omnichannel-rejected-count")).to_be_visible()

    # The pictures: the newest calls on top (a verified one, then the refused ones).
    event_entry(page, event_id="evt_forged").get_by_test_id("omnichannel-body-toggle").click()
    expect(event_entry(page, event_id="evt_forged").get_by_test_id("omnichannel-body")).to_be_hidden()
    page.get_by_test_id("omnichannel-event-list").evaluate("list => { list.scrollTop = 0; }")
    ARTIFACTS.mkdir(exist_ok=True)  # e2e/artifacts only: these pictures are not in docs/
    panel.screenshot(path=str(ARTIFACTS / "host-omnichannel-events.png"))
    page.get_by_test_id("simulator").screenshot(path=str(ARTIFACTS / "host-omnichannel-simulator.png"))
