"""Issue 11: a stream over a cap is refused with 429; the component takes that quietly.
It shows the room from ``/state`` (the agent sees the deal, no error, no banner) and
keeps retrying with its backoff until a place frees, then is live again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import embed_token, expect_state, open_tab, subscribers, until
from e2e.stack import Stack, start_stack
from widget.tokens import EMBED


@pytest.fixture
def one_stream_per_room(tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path, streams_per_room=1)
    yield running
    running.close()


def test_a_component_over_the_room_cap_shows_the_room_and_goes_live_once_a_place_frees(
    page: Page, one_stream_per_room: Stack, room_id: str,
) -> None:
    stack = one_stream_per_room
    limits = stack.widget.app.state.stream_limits
    streams: list[int] = []  # the statuses of the component's stream requests
    page.on("response", lambda r: streams.append(r.status) if f"/embed/rooms/{room_id}/events" in r.url else None)
    deal = stack.create("deal", room_id, name="Laptop order")
    token = embed_token(stack, room_id)["token"]
    claims = stack.widget.app.state.runtime.signer.verify(EMBED, token)
    with httpx.stream("GET", f"{stack.widget.url}/embed/rooms/{room_id}/events?token={token}", timeout=30) as held:
        assert held.status_code == 200  # the room's one place is taken
        frame = open_tab(page, stack, room_id, wait_stream=False)
        expect(frame.get_by_test_id("deal-name")).to_have_text("Laptop order")  # from /state
        assert until(page, lambda: streams.count(429) >= 2, 15), streams  # refused, and retried
        expect_state(frame, "ready")  # all along: no error, no stale banner
        expect(frame.get_by_test_id("stale-banner")).to_be_hidden()
    # The place frees; a later retry of the component takes it (not the held token's
    # stream, gone with its place), and a change reaches it live, with no reload.
    # (The retry subscribes before its 200 reaches the page: wait for both.)
    assert until(page, lambda: limits.count("token", claims["jti"], claims["exp"]) == 0
                 and subscribers(stack, room_id) == 1 and streams[-1] == 200, 20), streams
    assert stack.api.patch(f"/deals/{deal['id']}", json={"stage": "Won"}).status_code == 200
    expect(frame.get_by_test_id("deal-stage")).to_have_text("Won")
    expect_state(frame, "ready")
