"""The example host (examples/host_page): the real host app over httpx.ASGITransport,
with the widget's API faked by httpx.MockTransport."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from examples.host_page.app import create_host_app

API_KEY = "wk_test_secret_api_key_0123456789"
WIDGET = "http://127.0.0.1:8000"
HOST = "http://localhost:8001"
SECRET = "demo-omnichannel-secret"
SLOW = 0.3  # the Chat Panel's "slow" delay in these tests (5 s by default)


class FakeWidget:
    """Just enough of the record API to drive the host, recording every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.seq = 0
        self.room: dict[str, Any] = {"deal": None, "ticket": None, "version": 0}
        self.fail: dict[str, httpx.Response] = {}
        self.unreachable = False

    def bodies(self, method: str, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.method == method and r.url.path == path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.unreachable:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if path in self.fail:
            return self.fail[path]
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        body = json.loads(request.content) if request.content else {}
        self.seq += 1
        if path == "/api/v1/embed-tokens":
            token = f"tok-{self.seq}"
            return httpx.Response(201, json={
                "token": token,
                "embed_url": f"{WIDGET}/embed/rooms/{body['room_id']}?token={token}",
                "expires_at": "2026-11-25T10:00:00.000000Z",
            })
        if path == "/api/v1/contacts":
            return httpx.Response(201, json={"id": f"ct_{self.seq}", **body})
        if request.method == "POST" and path in ("/api/v1/deals", "/api/v1/tickets"):
            kind = path.rsplit("/", 1)[1][:-1]
            flag = body.get("creator_flag")
            record = {"id": f"{kind[:2]}_{self.seq}", "creator": {"bot": "Bot", "agentic_ai": "AI"}.get(flag, "API"),
                      "url": f"{WIDGET}/crm/{kind}s/x", "contact_id": None, "source": None, "room_id": None, **body}
            if flag in ("bot", "agentic_ai") and body.get("room_id"):
                self.room[kind] = record
                self.room["version"] += 1
            return httpx.Response(201, json=record)
        if path.startswith("/api/v1/rooms/"):
            return httpx.Response(200, json={"room_id": path.rsplit("/", 1)[1], **self.room})
        if request.method == "PATCH":
            kind = "deal" if "/deals/" in path else "ticket"
            record = {**self.room[kind], **body}
            self.room[kind] = record
            return httpx.Response(200, json=record)
        if request.method == "DELETE":
            kind = "deal" if "/deals/" in path else "ticket"
            self.room[kind] = None
            return httpx.Response(204)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such resource", "details": None}})


@pytest.fixture
def widget() -> FakeWidget:
    return FakeWidget()


@pytest.fixture
async def host(widget: FakeWidget) -> AsyncIterator[httpx.AsyncClient]:
    app = create_host_app(WIDGET, API_KEY, "demo", transport=httpx.MockTransport(widget),
                          omnichannel_secret=SECRET, chat_panel_slow_seconds=SLOW)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=HOST) as client:
            yield client


async def set_flag(host: httpx.AsyncClient, enabled: bool) -> None:
    response = await host.post("/api/flags/deal_ticket_tab", json={"enabled": enabled})
    assert response.status_code == 200, response.text
    assert response.json()["enabled"] is enabled


def mount_tag(html: str) -> str:
    """The element embed.js mounts the component in (docs/embedding.md)."""
    match = re.search(r"<div\b[^>]*data-crm-deal-ticket[^>]*>", html)
    assert match, "no [data-crm-deal-ticket] element in the page"
    return match.group(0)


# -- the inbox and the feature flag ---------------------------------------------------


async def test_root_redirects_to_inbox(host: httpx.AsyncClient) -> None:
    response = await host.get("/")
    assert response.status_code in (302, 307) and response.headers["location"] == "/inbox"


async def test_flag_is_off_by_default_and_hides_the_tab(host: httpx.AsyncClient, widget: FakeWidget) -> None:
    assert (await host.get("/api/flags")).json()["flags"] == {"deal_ticket_tab": False}
    response = await host.get("/inbox", params={"room": "room-budi"})
    assert response.status_code == 200
    html = response.text
    assert 'data-testid="tab-customer-info"' in html
    assert 'data-testid="tab-deal-ticket"' not in html
    assert "<iframe" not in html and "data-crm-deal-ticket" not in html
    assert 'data-testid="create-deal-button"' in html  # NEG-2: the manual button stays
    assert 'data-testid="flag-deal-ticket-tab"' in html
    assert widget.requests == []  # no token minted while the flag is off


async def test_flag_on_shows_the_embed_markup_whose_token_url_mints(host: httpx.AsyncClient, widget: FakeWidget) -> None:
    await set_flag(host, True)
    html = (await host.get("/inbox", params={"room": "room-sari"})).text
    assert 'data-token-url="/api/rooms/room-sari/embed-token"' in mount_tag(html)
    assert f'<script src="{WIDGET}/static/embed.js" async></script>' in html
    assert 'data-testid="tab-deal-ticket"' in html and 'data-testid="tab-loader"' in html
    assert widget.requests == []  # embed.js asks for the token, not the page
    token = await host.get("/api/rooms/room-sari/embed-token")
    assert token.status_code == 200 and token.json()["token"] == "tok-1"
    assert widget.bodies("POST", "/api/v1/embed-tokens") == [
        {"room_id": "room-sari", "agent_id": "agent-1", "parent_origin": HOST}]

    # the info bar alone (what the toggle swaps in) has the markup too; OFF again hides it
    assert "data-crm-deal-ticket" in (await host.get("/inbox/infobar", params={"room": "room-sari"})).text
    await set_flag(host, False)
    assert "data-crm-deal-ticket" not in (await host.get("/inbox", params={"room": "room-sari"})).text


async def test_agent_and_permissions_pass_through_to_the_token(host: httpx.AsyncClient, widget: FakeWidget) -> None:
    await set_flag(host, True)
    html = (await host.get("/inbox", params={"room": "room-budi", "agent": "qa-7", "perms": "deal:view"})).text
    assert 'data-token-url="/api/rooms/room-budi/embed-token?agent=qa-7&amp;perms=deal%3Aview"' in mount_tag(html)
    token = await host.get("/api/rooms/room-budi/embed-token", params={"agent": "qa-7", "perms": "deal:view"})
    assert token.status_code == 200 and token.json()["token"] == "tok-1"
    expected = {"room_id": "room-budi", "agent_id": "qa-7", "parent_origin": HOST, "permissions": ["deal:view"]}
    assert widget.bodies("POST", "/api/v1/embed-tokens") == [expected]


async def test_token_failure_keeps_the_page_and_says_why(host: httpx.AsyncClient, widget: FakeWidget) -> None:
    await set_flag(host, True)
    widget.unreachable = True
    response = await host.get("/inbox", params={"room": "room-budi"})
    assert response.status_code == 200
    assert 'data-testid="messages"' in response.text
    token = await host.get("/api/rooms/room-budi/embed-token")
    assert token.status_code == 502 and token.json()["error"]["message"] == "the CRM is unreachable"


async def test_api_key_never_reaches_the_browser(host: httpx.AsyncClient) -> None:
    pages = [await host.get("/inbox", params={"room": "room-budi"})]
    await set_flag(host, True)
    pages += [
        await host.get("/inbox", params={"room": "room-andi"}),
        await host.get("/inbox/infobar", params={"room": "room-andi"}),
        await host.get("/api/rooms/room-andi/embed-token"),
        await host.post("/api/sim/deal-bot", json={"room_id": "room-andi"}),
        await host.post("/api/rooms/room-andi/deals", json={"name": "Manual", "stage": "New", "pipeline": "Sales"}),
        await host.get("/static/inbox.js"),
    ]
    for page in pages:
        assert page.status_code < 300, page.text
        assert API_KEY not in page.text


async def test_page_escapes_text_and_sends_security_headers(host: httpx.AsyncClient) -> None:
    response = await host.get("/inbox", params={"room": "room-andi"})
    assert "&lt;before Friday&gt;" in response.text and "<before Friday>" not in response.text
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and f"frame-src {WIDGET}" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    assert not re.search(r"\son[a-z]+=", response.text)  # no inline event handlers
    assert "<script>" not in response.text and "style=" not in response.text


async def test_adhoc_and_invalid_rooms(host: httpx.AsyncClient) -> None:
    adhoc = await host.get("/inbox", params={"room": "qa-room-42"})
    assert adhoc.status_code == 200 and "QA room" in adhoc.text
    bad = await host.get("/inbox", params={"room": "no/such room"})
    assert bad.status_code == 404 and 'data-testid="room-not-found"' in bad.text


# -- the simulator and the manual Create Deal -------------------------------------------


async def test_simulator_bot_deal_sends_the_extended_payload(host: httpx.AsyncClient, widget: FakeWidget) -> None:
    response = await host.post("/api/sim/deal-bot", json={"room_id": "room-budi"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["ok"] is True
    assert [(c["method"], c["path"], c["status"]) for c in result["calls"]] == [
        ("POST", "/api/v1/contacts", 201), ("POST", "/api/v1/deals", 201)]
    contact = widget.bodies("POST", "/api/v1/contacts")[0]
    assert contact["name"] == "Budi Santoso"
    deal = widget.bodies("POST", "/api/v1/deals")[0]
    contact_id = result["calls"][0]["summary"]["id"]
    assert deal["creator_flag"] == "bot" and deal["room_id"] == "room-budi"
    assert deal["contact_id"] == contact_id and deal["source"] == "whatsapp"
    assert {"name", "stage", "pipeline"} <= deal.keys()
    assert all("idempotency-key" in r.headers for r in widget.requests if r.method == "POST")

    # the room's contact is created once and reused; AI tickets, no room, no contact
    await host.post("/api/sim/deal-ai", json={"room_id": "room-budi", "source": "instagram"})
    assert len(widget.bodies("POST", "/api/v1/contacts")) == 1
    ai = widget.bodies("POST", "/api/v1/deals")[1]
    assert ai["creator_flag"] == "agentic_ai" and ai["contact_id"] == contact_id and ai["source"] == "instagram"
    await host.post("/api/sim/ticket-ai", json={"room_id": "room-budi", "use_room": False, "with_contact": False})
    ticket = widget.bodies("POST", "/api/v1/tickets")[0]
    assert ticket["creator_flag"] == "agentic_ai" and "room_id" not in ticket and "contact_id" not in ticket


async def test_simulator_updates_and_deletes_the_shown_records(host: httpx.AsyncClient, widget: FakeWidget) -> None:
    nothing = await host.post("/api/sim/update-deal", json={"room_id": "room-sari"})
    assert nothing.status_code == 409 and "No deal is shown" in nothing.json()["message"]
    await host.post("/api/sim/deal-bot", json={"room_id": "room-sari", "deal_stage": "New"})
    deal_id = widget.room["deal"]["id"]
    updated = await host.post("/api/sim/update-deal", json={"room_id": "room-sari"})
    assert updated.json()["ok"] is True
    assert widget.bodies("PATCH", f"/api/v1/deals/{deal_id}") == [{"stage": "Qualified"}]
    deleted = await host.post("/api/sim/delete-deal", json={"room_id": "room-sari"})
    assert [c["status"] for c in deleted.json()["calls"]] == [200, 204]
    assert any(r.method == "DELETE" and r.url.path == f"/api/v1/deals/{deal_id}" for r in widget.requests)


async def test_two_at_once_and_manual_deals(host: httpx.AsyncClient, widget: FakeWidget) -> None:
    both = await host.post("/api/sim/two-at-once", json={"room_id": "room-andi"})
    assert both.status_code == 200 and both.json()["ok"] is True
    flags = sorted(d["creator_flag"] for d in widget.bodies("POST", "/api/v1/deals"))
    assert flags == ["agentic_ai", "bot"]
    assert len(widget.bodies("POST", "/api/v1/contacts")) == 1

    await host.post("/api/sim/deal-manual", json={"room_id": "room-andi"})
    manual = await host.post("/api/rooms/room-andi/deals", json={"name": "Manual", "stage": "New", "pipeline": "Sales"})
    assert manual.status_code == 201 and manual.json()["deal"]["creator"] == "API"
    sim_manual, info_bar_manual = widget.bodies("POST", "/api/v1/deals")[2:]
    assert "creator_flag" not in sim_manual and sim_manual["room_id"] == "room-andi"
    assert info_bar_manual == {"name": "Manual", "stage": "New", "pipeline": "Sales", "room_id": "room-andi"}


async def test_widget_errors_are_shown_not_swallowed(host: httpx.AsyncClient, widget: FakeWidget) -> None:
    widget.fail["/api/v1/deals"] = httpx.Response(422, json={"error": {
        "code": "validation_failed", "message": "invalid body",
        "details": [{"field": "name", "message": "must not be blank"}]}})
    response = await host.post("/api/sim/deal-bot", json={"room_id": "room-budi", "with_contact": False, "deal_name": " "})
    assert response.status_code == 502
    body = response.json()
    assert body["ok"] is False and body["calls"][0]["status"] == 422
    assert "validation_failed" in body["message"] and "name: must not be blank" in body["message"]

    widget.unreachable = True
    down = await host.post("/api/sim/ticket-bot", json={"room_id": "room-budi", "with_contact": False})
    assert down.status_code == 502 and "unreachable" in down.json()["message"]


# -- the fake Chat Panel API ------------------------------------------------------------


async def test_chat_panel_rooms_and_messages(host: httpx.AsyncClient) -> None:
    headers = {"X-Company-Id": "demo"}
    room = await host.get("/chat-panel/rooms/room-budi", headers=headers)
    assert room.json() == {"room_id": "room-budi", "status": "open"}
    assert (await host.get("/chat-panel/rooms/no-such-room", headers=headers)).status_code == 404
    assert (await host.get("/chat-panel/rooms/room-rina", headers=headers)).status_code == 403
    assert (await host.get("/chat-panel/rooms/room-budi")).status_code == 400
    assert (await host.get("/chat-panel/rooms/room-budi", headers={"X-Company-Id": "other"})).status_code == 404

    messages = (await host.get("/chat-panel/rooms/room-budi/messages", params={"limit": 5}, headers=headers)).json()
    assert len(messages["messages"]) == 5
    last = messages["messages"][-1]
    assert set(last) == {"sender_type", "sender_name", "text", "sent_at"}
    assert last["text"] == "Thanks! Can you include three docking stations too?"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", last["sent_at"])
    assert {m["sender_type"] for m in messages["messages"]} <= {"customer", "bot", "agentic_ai", "agent"}
    empty = await host.get("/chat-panel/rooms/room-dewi/messages", headers=headers)
    assert empty.json() == {"messages": []}
    assert (await host.get("/chat-panel/rooms/room-rina/messages", headers=headers)).status_code == 403

    # an agent message typed in the composer is part of the history
    await host.post("/api/rooms/room-dewi/messages", json={"text": "Hello Dewi!"})
    history = (await host.get("/chat-panel/rooms/room-dewi/messages", headers=headers)).json()["messages"]
    assert [(m["sender_type"], m["text"]) for m in history] == [("agent", "Hello Dewi!")]


CHAT_PANEL = {"X-Company-Id": "demo"}


async def chat_panel(host: httpx.AsyncClient, room_id: str) -> tuple[httpx.Response, httpx.Response]:
    """The room check and the last 5 messages, as the CRM asks for them."""
    room = await host.get(f"/chat-panel/rooms/{room_id}", headers=CHAT_PANEL)
    messages = await host.get(f"/chat-panel/rooms/{room_id}/messages", params={"limit": 5}, headers=CHAT_PANEL)
    return room, messages


async def set_mode(host: httpx.AsyncClient, room_id: str, mode: str) -> None:
    response = await host.put(f"/chat-panel/rooms/{room_id}/mode", json={"mode": mode})
    assert response.status_code == 200, response.text
    assert response.json() == {"room_id": room_id, "mode": mode}


def not_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:  # UnicodeDecodeError included: a cut may split a character
        return True
    return False


async def test_adhoc_rooms_serve_their_own_messages(host: httpx.AsyncClient) -> None:
    await host.get("/inbox", params={"room": "qa-a"})
    await set_mode(host, "qa-b", "normal")  # never viewed: setting a mode makes the room
    for room_id in ("qa-a", "qa-b"):
        room, messages = await chat_panel(host, room_id)
        assert room.json() == {"room_id": room_id, "status": "open"}
        history = messages.json()["messages"]
        assert [m["sender_type"] for m in history] == ["customer", "bot", "customer"]
        assert history[-1]["text"] == f"Thanks! My reference is {room_id}."
        assert [m["sent_at"] for m in history] == sorted(m["sent_at"] for m in history)  # oldest first
    last_two = await host.get("/chat-panel/rooms/qa-a/messages", params={"limit": 2}, headers=CHAT_PANEL)
    assert [m["sender_type"] for m in last_two.json()["messages"]] == ["bot", "customer"]
    assert "My reference is qa-b" in (await host.get("/inbox", params={"room": "qa-b"})).text

    # a room nothing showed or set up is unknown to the Chat Panel: no side effect
    room, messages = await chat_panel(host, "qa-never-seen")
    assert (room.status_code, messages.status_code) == (404, 404)
    assert (await host.get("/chat-panel/rooms/qa-never-seen/mode")).status_code == 404


# mode -> (room status, room body, messages status, what the messages body is)
MODES: dict[str, tuple[int, dict[str, str] | None, int, str]] = {
    "normal": (200, {"status": "open"}, 200, "history"),
    "slow": (200, {"status": "open"}, 200, "history"),
    "down": (503, None, 503, "error"),
    "malformed": (200, {"status": "open"}, 200, "not json"),
    "partial": (200, {"status": "open"}, 200, "cut"),
    "empty": (200, {"status": "open"}, 200, "empty"),
    "deleted": (404, None, 404, "error"),
    "forbidden": (403, None, 403, "error"),
    "archived": (200, {"status": "archived"}, 200, "history"),
}


@pytest.mark.parametrize("room_id", ["room-budi", "qa-modes"])
@pytest.mark.parametrize("mode", MODES)
async def test_chat_panel_modes_on_both_endpoints(host: httpx.AsyncClient, mode: str, room_id: str) -> None:
    await set_mode(host, room_id, "normal")
    normal = (await chat_panel(host, room_id))[1]
    await set_mode(host, room_id, mode)
    started = time.monotonic()
    room, messages = await chat_panel(host, room_id)
    elapsed = time.monotonic() - started

    room_status, room_body, messages_status, body = MODES[mode]
    assert room.status_code == room_status
    if room_body is None:
        assert room.json()["error"]["code"] == str(room_status)
    else:
        assert room.json() == {"room_id": room_id, **room_body}
    assert messages.status_code == messages_status
    if body == "history":
        assert messages.json() == normal.json() and len(messages.json()["messages"]) >= 3
    elif body == "empty":
        assert messages.json() == {"messages": []}
    elif body == "error":
        assert messages.json()["error"]["code"] == str(messages_status)
    else:  # a 200 "JSON" reply the CRM cannot parse
        assert messages.headers["content-type"] == "application/json"
        assert not_json(messages.content)
    if body == "not json":
        assert messages.content.startswith(b"<html>")
    if body == "cut":
        assert normal.content.startswith(messages.content) and 0 < len(messages.content) < len(normal.content)
    assert (elapsed >= 2 * SLOW) is (mode == "slow")  # both endpoints waited, the others did not


async def test_chat_panel_slow_waits_the_configured_delay(host: httpx.AsyncClient) -> None:
    await set_mode(host, "room-sari", "slow")
    for path in ("/chat-panel/rooms/room-sari", "/chat-panel/rooms/room-sari/messages"):
        started = time.monotonic()
        response = await host.get(path, headers=CHAT_PANEL)
        assert response.status_code == 200 and time.monotonic() - started >= SLOW
    app = create_host_app(WIDGET, API_KEY, "demo")
    assert app.state.config.chat_panel_slow_seconds == 5.0  # longer than the CRM's 2 s timeout


async def test_chat_panel_slow_stops_waiting_when_the_caller_hangs_up() -> None:
    """The CRM gives up after 2 s; the abandoned reply must not keep sleeping (it would
    hold up a server's graceful shutdown)."""
    app = create_host_app(WIDGET, API_KEY, "demo", chat_panel_slow_seconds=60)
    app.state.host.rooms["room-budi"].chat_panel_mode = "slow"
    incoming = iter([{"type": "http.request", "body": b"", "more_body": False}, {"type": "http.disconnect"}])
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/chat-panel/rooms/room-budi", "raw_path": b"/chat-panel/rooms/room-budi", "query_string": b"",
        "root_path": "", "headers": [(b"host", b"localhost"), (b"x-company-id", b"demo")],
        "client": ("127.0.0.1", 50000), "server": ("localhost", 8001),
    }

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        pass

    await asyncio.wait_for(app(scope, receive, send), timeout=5)


async def test_chat_panel_mode_is_per_room(host: httpx.AsyncClient) -> None:
    await set_mode(host, "room-budi", "down")
    await set_mode(host, "qa-a", "forbidden")
    await set_mode(host, "qa-b", "normal")
    assert [r.status_code for r in await chat_panel(host, "room-budi")] == [503, 503]
    assert [r.status_code for r in await chat_panel(host, "qa-a")] == [403, 403]
    for room_id in ("room-sari", "room-andi", "qa-b"):
        assert [r.status_code for r in await chat_panel(host, room_id)] == [200, 200], room_id
    assert (await host.get("/chat-panel/rooms/room-sari/mode")).json() == {"room_id": "room-sari", "mode": "normal"}

    # the restricted demo room is just a room that starts in "forbidden"
    assert (await host.get("/chat-panel/rooms/room-rina/mode")).json()["mode"] == "forbidden"
    await set_mode(host, "room-rina", "normal")
    assert [r.status_code for r in await chat_panel(host, "room-rina")] == [200, 200]


async def test_chat_panel_mode_endpoint_errors(host: httpx.AsyncClient) -> None:
    path = "/chat-panel/rooms/room-budi/mode"
    for body in ({"mode": "sideways"}, {"mode": ["down"]}, {"mode": None}, {}):
        response = await host.put(path, json=body)
        assert response.status_code == 422, body
        assert response.json() == {"error": {"code": "422", "message": "mode must be one of: normal, down, slow, "
                                              "malformed, partial, empty, deleted, forbidden, archived"}}
    assert (await host.put("/chat-panel/rooms/qa-bad-mode/mode", json={"mode": "nope"})).status_code == 422
    assert (await host.get("/chat-panel/rooms/qa-bad-mode/mode")).status_code == 404  # not created
    assert (await host.put(path, content=b"mode=down")).status_code == 415
    malformed = await host.put(path, content=b"{", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["message"] == "malformed JSON"
    too_big = await host.put(path, json={"mode": "down", "pad": "x" * 70_000})
    assert too_big.status_code == 413
    assert (await host.put("/chat-panel/rooms/no%20such/mode", json={"mode": "down"})).status_code == 404
    assert (await host.delete(path)).status_code == 405
    assert (await host.get(path)).json() == {"room_id": "room-budi", "mode": "normal"}  # nothing changed


async def test_inbox_has_the_chat_panel_mode_control(host: httpx.AsyncClient) -> None:
    await set_mode(host, "room-andi", "partial")
    html = (await host.get("/inbox", params={"room": "room-andi"})).text
    control = re.search(r'<select id="chat-panel-mode"[^>]*>(.*?)</select>', html, re.S)
    assert control and 'data-testid="chat-panel-mode"' in control.group(0)
    options = re.findall(r'<option value="([a-z]+)"[^>]*?( selected)?>([^<]+)</option>', control.group(1))
    assert [(value, label) for value, _, label in options] == [
        ("normal", "Normal"), ("down", "Down"), ("slow", f"Slow ({SLOW:g} s)"), ("malformed", "Malformed reply"),
        ("partial", "Partial reply"), ("empty", "No messages"), ("deleted", "Room deleted"),
        ("forbidden", "No access"), ("archived", "Archived"),
    ]
    assert [value for value, selected, _ in options if selected] == ["partial"]
    badges = re.findall(r'data-testid="room-chat-panel-mode"[^>]*>([^<]+)<', html)
    assert badges == ["Chat Panel: Partial reply", "Chat Panel: No access"]  # room-andi, room-rina


# -- Omnichannel notification receivers ---------------------------------------------------


def signed(body: dict[str, Any], secret: str = SECRET, t: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    t = int(time.time()) if t is None else t
    digest = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return raw, {"X-Widget-Signature": f"t={t},v1={digest}", "Content-Type": "application/json"}


async def test_omnichannel_receiver_checks_the_signature(host: httpx.AsyncClient) -> None:
    body = {"external_id": "de_1", "external_url": f"{WIDGET}/crm/deals/de_1", "room_id": "room-budi"}
    raw, headers = signed(body, secret="wrong-secret")
    bad = await host.post("/omnichannel/deals", content=raw, headers={**headers, "X-Widget-Event-Id": "ev-1"})
    assert bad.status_code == 401
    unsigned = await host.post("/omnichannel/deals", content=raw, headers={"X-Widget-Event-Id": "ev-1"})
    assert unsigned.status_code == 401
    raw, headers = signed(body, t=int(time.time()) - 3600)
    stale = await host.post("/omnichannel/deals", content=raw, headers={**headers, "X-Widget-Event-Id": "ev-1"})
    assert stale.status_code == 401
    raw, headers = signed(body)
    tampered = await host.post("/omnichannel/deals", content=raw + b" ", headers={**headers, "X-Widget-Event-Id": "ev-1"})
    assert tampered.status_code == 401
    refused = (await host.get("/omnichannel/received")).json()["events"]
    assert [(e["verified"], e["status"]) for e in refused] == [(False, 401)] * 4
    assert (await host.delete("/omnichannel/received")).status_code == 204

    good = await host.post("/omnichannel/deals", content=raw, headers={**headers, "X-Widget-Event-Id": "ev-1"})
    assert good.status_code == 200 and good.json()["status"] == "received"
    again = await host.post("/omnichannel/deals", content=raw, headers={**headers, "X-Widget-Event-Id": "ev-1"})
    assert again.status_code == 200 and again.json()["status"] == "duplicate"

    raw, headers = signed({"room_id": "room-budi", "crm_ticket_name": "Refund", "status": "Open"})
    put = await host.put("/omnichannel/tickets/tk_9", content=raw, headers={**headers, "X-Widget-Event-Id": "ev-2"})
    assert put.status_code == 200
    raw, headers = signed({"room_id": "room-budi"})
    gone = await host.request("DELETE", "/omnichannel/deals/de_1", content=raw,
                              headers={**headers, "X-Widget-Event-Id": "ev-3"})
    assert gone.status_code == 200

    events = (await host.get("/omnichannel/received")).json()["events"]
    assert [(e["event_id"], e["kind"], e["action"], e["record_id"], e["deliveries"]) for e in events] == [
        ("ev-1", "deal", "created", "de_1", 2),
        ("ev-2", "ticket", "updated", "tk_9", 1),
        ("ev-3", "deal", "deleted", "de_1", 1),
    ]
    assert events[0]["body"] == body and events[0]["room_id"] == "room-budi"
    assert (await host.delete("/omnichannel/received")).status_code == 204
    assert (await host.get("/omnichannel/received")).json()["count"] == 0


async def deliver(host: httpx.AsyncClient, method: str, path: str, body: dict[str, Any], event_id: str) -> int:
    """A correctly signed call, as the widget's worker makes it; its status."""
    raw, headers = signed(body)
    response = await host.request(method, path, content=raw, headers={**headers, "X-Widget-Event-Id": event_id})
    return response.status_code


async def received(host: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await host.get("/omnichannel/received", params=params)
    assert response.status_code == 200, response.text
    return response.json()


DEAL_CREATED = {"external_id": "de_7", "external_url": f"{WIDGET}/crm/deals/de_7", "room_id": "room-sari"}


async def test_omnichannel_bad_signature_is_answered_401_and_shown_not_verified(host: httpx.AsyncClient) -> None:
    raw, headers = signed(DEAL_CREATED, secret="wrong-secret")
    response = await host.post("/omnichannel/deals", content=raw, headers={**headers, "X-Widget-Event-Id": "ev-9"})
    assert response.status_code == 401
    assert response.json()["error"] == {"code": "unauthorized", "message": "bad signature"}

    [entry] = (await received(host))["events"]
    assert entry["verified"] is False and entry["status"] == 401 and entry["reason"] == "bad signature"
    # Shown as it came: method, path, the body, the room and record it claims.
    assert (entry["method"], entry["path"], entry["body"]) == ("POST", "/omnichannel/deals", DEAL_CREATED)
    assert (entry["event_id"], entry["room_id"], entry["record_id"]) == ("ev-9", "room-sari", "de_7")
    assert (entry["kind"], entry["action"], entry["deliveries"]) == ("deal", "created", 1)


async def test_omnichannel_old_timestamp_is_answered_401_and_shown_not_verified(host: httpx.AsyncClient) -> None:
    raw, headers = signed(DEAL_CREATED, t=int(time.time()) - 301)  # the right secret, 1 s past the tolerance
    response = await host.post("/omnichannel/deals", content=raw, headers={**headers, "X-Widget-Event-Id": "ev-9"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "timestamp too old"
    raw, headers = signed(DEAL_CREATED, t=int(time.time()) + 3600)
    future = await host.post("/omnichannel/deals", content=raw, headers={**headers, "X-Widget-Event-Id": "ev-9"})
    assert future.status_code == 401

    events = (await received(host))["events"]
    assert [(e["verified"], e["status"], e["reason"]) for e in events] == [
        (False, 401, "timestamp too old"), (False, 401, "timestamp in the future"),
    ]
    assert events[0]["body"] == DEAL_CREATED


async def test_omnichannel_unsigned_and_unreadable_calls_are_shown_with_their_reason(host: httpx.AsyncClient) -> None:
    unsigned = await host.post("/omnichannel/tickets", content=b"not json <b>", headers={"X-Widget-Event-Id": "ev-1"})
    assert unsigned.status_code == 401
    malformed = await host.put("/omnichannel/tickets/tk_1", content=b"{}",
                               headers={"X-Widget-Signature": "v1=abc", "X-Widget-Event-Id": "ev-2"})
    assert malformed.status_code == 401
    raw, headers = signed(DEAL_CREATED)
    no_id = await host.post("/omnichannel/deals", content=raw, headers=headers)  # signed, but no event id
    assert no_id.status_code == 400

    events = (await received(host))["events"]
    assert [(e["verified"], e["status"], e["reason"]) for e in events] == [
        (False, 401, "missing signature"),
        (False, 401, "malformed signature header"),
        (True, 400, "missing X-Widget-Event-Id"),
    ]
    assert events[0]["body"] == "not json <b>"  # a body that is not JSON is kept as text
    assert (events[1]["kind"], events[1]["action"], events[1]["record_id"]) == ("ticket", "updated", "tk_1")


async def test_omnichannel_good_signature_is_verified(host: httpx.AsyncClient) -> None:
    raw, headers = signed(DEAL_CREATED)
    response = await host.post("/omnichannel/deals", content=raw, headers={**headers, "X-Widget-Event-Id": "ev-9"})
    assert response.status_code == 200 and response.json() == {"status": "received", "event_id": "ev-9"}

    [entry] = (await received(host))["events"]
    assert entry["verified"] is True and entry["status"] == 200 and entry["reason"] is None
    assert entry["body"] == DEAL_CREATED and entry["deliveries"] == 1


async def test_omnichannel_rejected_call_does_not_take_the_event_id(host: httpx.AsyncClient) -> None:
    """A forged call with a real event id must not make the real one a "duplicate"."""
    raw, headers = signed(DEAL_CREATED, secret="wrong-secret")
    forged = await host.post("/omnichannel/deals", content=raw, headers={**headers, "X-Widget-Event-Id": "ev-9"})
    assert forged.status_code == 401
    raw, headers = signed(DEAL_CREATED)
    real = await host.post("/omnichannel/deals", content=raw, headers={**headers, "X-Widget-Event-Id": "ev-9"})
    assert real.status_code == 200 and real.json()["status"] == "received"

    events = (await received(host))["events"]
    assert [(e["event_id"], e["verified"], e["deliveries"]) for e in events] == [("ev-9", False, 1), ("ev-9", True, 1)]


async def test_omnichannel_duplicate_event_id_counts_a_delivery_and_adds_no_entry(host: httpx.AsyncClient) -> None:
    raw, headers = signed(DEAL_CREATED)
    for _ in range(3):
        response = await host.post("/omnichannel/deals", content=raw, headers={**headers, "X-Widget-Event-Id": "ev-9"})
        assert response.status_code == 200
    assert response.json() == {"status": "duplicate", "event_id": "ev-9"}

    listing = await received(host)
    assert listing["count"] == 1
    [entry] = listing["events"]
    assert (entry["event_id"], entry["deliveries"], entry["verified"]) == ("ev-9", 3, True)


async def test_omnichannel_since_cursor_gives_the_later_calls_of_a_room(host: httpx.AsyncClient) -> None:
    """What the inbox polls to refresh its component: the page starts at the cursor it
    was rendered with, and a call before that (the backlog) is never returned again."""
    assert await deliver(host, "POST", "/omnichannel/deals", DEAL_CREATED, "ev-1") == 200  # room-sari
    page = await host.get("/inbox", params={"room": "room-sari"})
    cursor = int(re.search(r'data-omni-cursor="(\d+)"', page.text).group(1))
    assert cursor == (await received(host))["cursor"] > 0
    assert (await received(host, room="room-sari", since=str(cursor)))["events"] == []

    other = {**DEAL_CREATED, "external_id": "de_8", "room_id": "room-budi"}
    assert await deliver(host, "POST", "/omnichannel/deals", other, "ev-2") == 200
    ticket = {"room_id": "room-sari", "crm_ticket_name": "Refund", "status": "Closed"}
    for _ in range(2):  # a retried delivery: the same event
        assert await deliver(host, "PUT", "/omnichannel/tickets/tk_3", ticket, "ev-3") == 200

    later = await received(host, room="room-sari", since=str(cursor))
    assert [(e["event_id"], e["deliveries"]) for e in later["events"]] == [("ev-3", 2)]
    assert later["cursor"] > cursor
    assert (await received(host, room="room-sari", since=str(later["cursor"])))["events"] == []
    assert [e["event_id"] for e in (await received(host, since=str(cursor)))["events"]] == ["ev-2", "ev-3"]
    assert (await host.get("/omnichannel/received", params={"since": "x"})).status_code == 400
