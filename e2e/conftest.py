"""Playwright in the system Chromium, through the example host (RFC section 1)."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import FrameLocator, Locator, Page, Request, expect

from e2e.stack import CHROMIUM, CHROMIUM_ARGS, Stack, start_stack
from widget.broker import room_channel

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
