"""Embed-token outcomes in the browser (RFC sections 4 and 7): expiry (directly and
through the host's hand-over), a token for another room, and an invalid token."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, expect

from e2e.conftest import embed_token, expect_state, is_events, open_tab, root, until
from e2e.stack import Stack


def test_expired_token_loaded_directly_ends_in_expired(page: Page, stack: Stack, room_id: str) -> None:
    stack.create("deal", room_id, name="Deal before expiry")
    token = embed_token(stack, room_id, ttl_seconds=2)
    page.goto(token["embed_url"])
    expect_state(page, "ready")
    expect(page.get_by_test_id("deal-name")).to_have_text("Deal before expiry")

    # The stream says token-expired at exp; nobody hands over a new token.
    expect_state(page, "expired")
    expect(page.get_by_test_id("expired-state")).to_be_visible()
    expect(page.get_by_test_id("deal-name")).to_be_visible()  # last data kept, dimmed
    expect(page.get_by_test_id("error-state")).to_be_hidden()
    state = stack.api.get(f"{stack.widget.url}/embed/rooms/{room_id}/state", params={"token": token["token"]})
    assert state.status_code == 401 and state.json()["error"]["code"] == "token_expired"


def test_page_opened_with_an_already_expired_token_is_expired(page: Page, stack: Stack, room_id: str) -> None:
    stack.create("deal", room_id, name="Should not leak")
    token = embed_token(stack, room_id, ttl_seconds=1)
    state_url = f"{stack.widget.url}/embed/rooms/{room_id}/state"
    deadline = time.monotonic() + 10
    while stack.api.get(state_url, params={"token": token["token"]}).status_code != 401:  # wait for exp
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.1)

    response = page.goto(token["embed_url"])
    assert response is not None and response.status == 401
    expect_state(page, "expired")
    expect(page.get_by_test_id("expired-state")).to_be_visible()
    expect(page.get_by_test_id("deal-preview")).to_have_count(0)  # an expired token shows no data


def test_host_hands_over_a_fresh_token_after_token_expired(page: Page, stack: Stack, room_id: str) -> None:
    """Through the host with 3 s tokens (``?ttl=3``): the component reports
    token-expired, the host mints a new token and posts it, the component comes back
    to ready on the new token and stays live."""
    tokens: set[str] = set()
    page.on("request", lambda r: tokens.update(parse_qs(urlsplit(r.url).query).get("token", []))
            if is_events(r) else None)
    stack.create("deal", room_id, name="Long conversation")
    frame = open_tab(page, stack, room_id, ttl="3")
    expect(frame.get_by_test_id("deal-name")).to_have_text("Long conversation")

    # embed.js renews before expiry; the stream moves on at exp
    assert until(page, lambda: len(tokens) >= 2, 10), "the component never reconnected with a new token"
    expect(page.get_by_test_id("widget-state")).to_have_attribute("data-state", "ready")
    expect_state(frame, "ready")
    expect(frame.get_by_test_id("deal-name")).to_have_text("Long conversation")
    assert len(tokens) >= 2, "the component never reconnected with a new token"

    # Still live after the hand-over: a new record shows up without a reload.
    stack.create("ticket", room_id, name="After the new token")
    expect(frame.get_by_test_id("ticket-name")).to_have_text("After the new token")
    expect(page.get_by_test_id("deal-ticket-error")).to_have_count(0)


def test_token_for_another_room_is_forbidden(page: Page, stack: Stack, room_id: str) -> None:
    stack.create("deal", room_id, name="Room A's deal")
    other = embed_token(stack, f"{room_id}-other")

    response = page.goto(f"{stack.widget.url}/embed/rooms/{room_id}?token={other['token']}")

    assert response is not None and response.status == 403
    expect_state(page, "forbidden")
    expect(page.get_by_test_id("forbidden-state")).to_be_visible()
    expect(page.get_by_test_id("deal-preview")).to_have_count(0)
    expect(root(page)).not_to_contain_text("Room A's deal")


def test_invalid_token_is_a_401_error_page_without_data(page: Page, stack: Stack, room_id: str) -> None:
    stack.create("deal", room_id, name="Secret deal")
    valid = embed_token(stack, room_id)["token"]

    for bad in ("garbage", valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB"), ""):
        response = page.goto(f"{stack.widget.url}/embed/rooms/{room_id}?token={bad}")
        assert response is not None and response.status == 401, bad
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        expect_state(page, "error")
        expect(page.get_by_test_id("error-state")).to_be_visible()
        expect(page.get_by_test_id("deal-preview")).to_have_count(0)
        expect(root(page)).to_have_attribute("data-room-id", "")
        expect(root(page)).to_have_attribute("data-token", "")
        assert "Secret deal" not in page.content()
