"""Playwright in the system Chromium, through the example host (RFC section 1)."""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import FrameLocator, Locator, Page, Request, expect

from e2e.stack import CHROMIUM, CHROMIUM_ARGS, Stack, start_stack
from widget.broker import room_channel
from widget.embed_tokens import crm_link

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DOCS = Path(__file__).resolve().parents[1] / "docs"
_rooms = itertools.count(1)

# How long the component may take to give up on a lost server: three reconnects
# (1 s + 2 s + 4 s back-off) after uvicorn's 2 s graceful shutdown, plus slack.
ERROR_TIMEOUT_MS = 25_000

expect.set_options(timeout=10_000)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One widget server and one host for the session; tests use their own rooms."""
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    running.close()


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of the test's own, for scenarios that stop the widget server."""
    running = start_stack(tmp_path)
    yield running
    running.close()


@pytest.fixture
def room_id(request: pytest.FixtureRequest) -> str:
    """A fresh room per test, so tests never see each other's records."""
    return f"e2e-{next(_rooms)}-{request.node.name[:40].replace('[', '-').replace(']', '')}"


@pytest.fixture
def dialogs(page: Page) -> list[str]:
    """Every JavaScript dialog (alert/confirm/prompt) any frame of the page opens."""
    seen: list[str] = []

    def on_dialog(dialog: Any) -> None:
        seen.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return seen


@pytest.fixture
def requests_to(page: Page) -> Iterator[Any]:
    """``requests_to("/open")``: the URLs of requests so far whose path contains it."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    yield lambda fragment: [u for u in seen if fragment in u]


@pytest.fixture
def new_pages(page: Page) -> list[Page]:
    """Every page (tab) opened in the test's browser context after the fixture ran."""
    opened: list[Page] = []
    page.context.on("page", lambda new: opened.append(new))
    return opened


def is_events(request: Request) -> bool:
    return "/embed/rooms/" in request.url and "/events?" in request.url


def open_tab(page: Page, stack: Stack, room_id: str, *, wait_stream: bool = True, **query: str) -> FrameLocator:
    """Open the inbox on a room with the flag ON and the Deal & Ticket tab selected;
    returns the component's frame once it reported ready to the host and (unless
    ``wait_stream`` is False) once its stream is subscribed to the room on the server,
    so that whatever a test changes afterwards can only reach it live."""
    before = subscribers(stack, room_id)
    _open(page, stack, room_id, **query)
    frame = page.frame_locator('[data-testid="deal-ticket-frame"]')
    frame.locator("#widget").wait_for(state="attached")
    expect(page.get_by_test_id("tab-loader")).to_be_hidden()
    if wait_stream:
        wait_subscribed(stack, room_id, before + 1)
    return frame


def subscribers(stack: Stack, room_id: str) -> int:
    """Open streams of the room on the widget server (its in-process broker)."""
    return stack.widget.app.state.runtime.broker.subscriber_count(room_channel(stack.tenant.id, room_id))


def until(page: Page, condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` while Playwright runs (its event handlers run only inside its
    own calls, so a plain sleep loop would never see a response)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        page.wait_for_timeout(100)
    return True


def wait_subscribed(stack: Stack, room_id: str, count: int = 1, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while subscribers(stack, room_id) < count:
        assert time.monotonic() < deadline, f"no stream subscribed to room {room_id}"
        time.sleep(0.02)


def _open(page: Page, stack: Stack, room_id: str, **query: str) -> None:
    page.goto(stack.inbox(room_id, **query))
    ensure_flag(page, True)
    page.get_by_test_id("tab-deal-ticket").click()


def ensure_flag(page: Page, enabled: bool) -> None:
    toggle = page.get_by_test_id("flag-deal-ticket-tab")
    if toggle.is_checked() != enabled:
        page.locator('label[for="flag-deal-ticket-tab"]').click()  # the input itself is visually hidden
        page.get_by_test_id("tab-deal-ticket").wait_for(state="visible" if enabled else "detached")
        expect(page.get_by_test_id("toast")).to_contain_text("ON" if enabled else "OFF")


def widget_state(frame: FrameLocator) -> str:
    return frame.locator("#widget").get_attribute("data-state") or ""


def root(frame: FrameLocator | Page) -> Locator:
    """The component's root element (``#widget``, carries ``data-state``)."""
    return frame.locator("#widget")


def expect_state(frame: FrameLocator | Page, state: str, timeout: float | None = None) -> None:
    expect(root(frame)).to_have_attribute("data-state", state, timeout=timeout)


def embed_token(stack: Stack, room_id: str, **fields: Any) -> dict[str, Any]:
    """``POST /embed-tokens`` for a page loaded directly (not framed by the host)."""
    body = {"room_id": room_id, "agent_id": "agent-e2e", "parent_origin": stack.host_url, **fields}
    response = stack.api.post("/embed-tokens", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def save_screenshot(target: Page | Locator, name: str) -> Path:
    """Screenshot into e2e/artifacts/; with ``E2E_UPDATE_DOCS=1`` also into docs/
    (off by default: every run has new ids, so a plain run never dirties the tree)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    target.screenshot(path=str(path))
    if os.environ.get("E2E_UPDATE_DOCS") == "1":
        shutil.copyfile(path, DOCS / name)
    return path


# -- CRM record pages through the real stack (S03-S05, retention) ---------------------
#
# The widget's embedded worker fetches chat history from the host's fake Chat Panel
# (``stack.py``); these helpers rig a room's Chat Panel mode, open a record's CRM page
# the way an agent does, and watch the widget's structured log lines.


def chat_panel_mode(stack: Stack, room_id: str, mode: str) -> None:
    """``PUT {host}/chat-panel/rooms/{room_id}/mode``; also creates the ad-hoc room (three
    messages, the last "Thanks! My reference is {room_id}.") so the Chat Panel knows it."""
    response = httpx.put(f"{stack.host_url}/chat-panel/rooms/{room_id}/mode", json={"mode": mode}, timeout=5)
    assert response.status_code == 200, response.text


def set_host_flag(stack: Stack, enabled: bool) -> None:
    """The host's per-account ``deal_ticket_tab`` flag, through its API (global to the
    session's host): its token endpoint refuses (403) while it is off."""
    response = httpx.post(f"{stack.host_url}/api/flags/deal_ticket_tab", json={"enabled": enabled}, timeout=5)
    assert response.status_code == 200, response.text


def agent_message(stack: Stack, room_id: str, text: str) -> None:
    """An agent message in the host's room (the composer's endpoint); the Chat Panel serves it."""
    response = httpx.post(f"{stack.host_url}/api/rooms/{room_id}/messages", json={"text": text}, timeout=5)
    assert response.status_code == 201, response.text


def open_component(page: Page, stack: Stack, room_id: str, *, wait_stream: bool = True, **token: Any) -> Page:
    """The component's page loaded directly with a fresh embed token (no host around it:
    quicker where the host's inbox is not what a test is about), once it is ``ready``
    (or ``empty``) and (unless ``wait_stream`` is False) its stream is subscribed to the room."""
    before = subscribers(stack, room_id)
    page.goto(embed_token(stack, room_id, **token)["embed_url"])
    expect(root(page)).to_have_attribute("data-state", re.compile(r"^(ready|empty)$"))
    if wait_stream:
        wait_subscribed(stack, room_id, before + 1)
    return page


def open_record_page(page: Page, frame: FrameLocator | Page, kind: str) -> Page:
    """Click the deal/ticket name in the component (``frame``: in the host's inbox, or
    the component's own page): the record's CRM page, in a new tab."""
    page.bring_to_front()  # the agent is back on the chat tab (an earlier CRM tab may be in front)
    with page.context.expect_page(timeout=10_000) as opened:
        frame.get_by_test_id(f"{kind}-name").click()
    crm = opened.value
    expect(crm.get_by_test_id("crm-record")).to_be_visible()
    return crm


def signed_record_page(page: Page, stack: Stack, kind: str, record: dict[str, Any]) -> Page:
    """The CRM page of a record the component never shows (no room, no recognised
    creator_flag), from a single-use link signed like ``/open`` signs one."""
    runtime = stack.widget.app.state.runtime
    claims = {"company": stack.tenant.id, "agent_id": "manager-e2e", "permissions": [f"{kind}:view"]}
    crm = page.context.new_page()
    crm.goto(crm_link(runtime, claims, kind, record["id"]))
    return crm


def visible_text(target: Page) -> str:
    """What the agent can read on the page (``innerText``: no markup, no hidden nodes)."""
    return target.locator("body").inner_text()


def stats_counts(stack: Stack, since: str) -> dict[str, int]:
    """``GET /api/v1/stats?since=`` (stored PRD events of the company since then)."""
    response = stack.api.get("/stats", params={"since": since})
    assert response.status_code == 200, response.text
    return response.json()["counts"]


def utc_now() -> str:
    """Now as RFC 3339 UTC with microseconds (``since=`` / ``X-Test-Clock``)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class WidgetEvents(logging.Handler):
    """The structured events (``logs.event``: ``record.event`` / ``record.props``) the
    widget server logs while attached. The servers run in threads of this process."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None):
            self.records.append(record)

    def props(self, name: str, **match: Any) -> list[dict[str, Any]]:
        """Props of the ``name`` events whose props contain every ``match`` item."""
        found = []
        for record in list(self.records):
            props = dict(getattr(record, "props", {}))
            if record.event == name and all(props.get(k) == v for k, v in match.items()):  # type: ignore[attr-defined]
                found.append(props)
        return found

    def wait_for(self, name: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        """The first matching event, waiting for it (the worker logs off the request path)."""
        deadline = time.monotonic() + timeout
        while not (found := self.props(name, **match)):
            assert time.monotonic() < deadline, f"no {name} event with {match}"
            time.sleep(0.05)
        return found[0]


@pytest.fixture
def widget_events(stack: Stack) -> Iterator[WidgetEvents]:
    """Capture the widget's events during the test. Attached after the stack is up:
    ``logs.configure`` (run at the app's start) replaces the ``widget`` logger's handlers."""
    handler = WidgetEvents()
    logger = logging.getLogger("widget")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
