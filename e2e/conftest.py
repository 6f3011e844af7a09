"""Playwright in the system Chromium, through the example host (RFC section 1)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import FrameLocator, Page

from e2e.stack import CHROMIUM, CHROMIUM_ARGS, Stack, start_stack

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
_rooms = itertools.count(1)


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


def open_tab(page: Page, stack: Stack, room_id: str, **query: str) -> FrameLocator:
    """Open the inbox on a room with the flag ON and the Deal & Ticket tab selected;
    returns the component's frame once it reported ready."""
    page.goto(stack.inbox(room_id, **query))
    ensure_flag(page, True)
    page.get_by_test_id("tab-deal-ticket").click()
    frame = page.frame_locator('[data-testid="deal-ticket-frame"]')
    frame.locator("#widget").wait_for(state="attached")
    return frame


def ensure_flag(page: Page, enabled: bool) -> None:
    toggle = page.get_by_test_id("flag-deal-ticket-tab")
    if toggle.is_checked() != enabled:
        page.locator('label[for="flag-deal-ticket-tab"]').click()  # the input itself is visually hidden
        page.get_by_test_id("tab-deal-ticket").wait_for(state="visible" if enabled else "hidden")


def widget_state(frame: FrameLocator) -> str:
    return frame.locator("#widget").get_attribute("data-state") or ""
