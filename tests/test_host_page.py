"""The example host (examples/host_page): the real host app over httpx.ASGITransport,
with the widget's API faked by httpx.MockTransport."""

from __future__ import annotations

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
                          omnichannel_secret=SECRET)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=HOST) as client:
            yield client


async def set_flag(host: httpx.AsyncClient, enabled: bool) -> None:
    response = await host.post("/api/flags/deal_ticket_tab", json={"enabled": enabled})
    assert response.status_code == 200, response.text
    assert response.json()["enabled"] is enabled


def iframe_tag(html: str) -> str:
    match = re.search(r"<iframe\b[^>]*>", html)
    assert match, "no iframe in the page"
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
    assert "<iframe" not in html and "deal-ticket-frame" not in html
    assert 'data-testid="create-deal-button"' in html  # NEG-2: the manual button stays
    assert 'data-testid="flag-deal-ticket-tab"' in html
    assert widget.requests == []  # no token minted while the flag is off


async def test_flag_on_shows_the_iframe_with_a_backend_minted_token(host: httpx.AsyncClient, widget: FakeWidget) -> None:
    await set_flag(host, True)
    html = (await host.get("/inbox", params={"room": "room-sari"})).text
    tag = iframe_tag(html)
    assert 'id="deal-ticket-frame"' in tag and 'data-testid="deal-ticket-frame"' in tag
    assert f'src="{WIDGET}/embed/rooms/room-sari?token=tok-1"' in tag
    assert 'sandbox="allow-scripts allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in tag
    assert 'title="Deal &amp; Ticket"' in tag
    assert 'data-testid="tab-deal-ticket"' in html and 'data-testid="tab-loader"' in html
    assert f'data-widget-origin="{WIDGET}"' in html
    assert widget.bodies("POST", "/api/v1/embed-tokens") == [
        {"room_id": "room-sari", "agent_id": "agent-1", "parent_origin": HOST}]

    # the info bar alone (what the toggle swaps in) has the frame too; OFF again hides it
    assert "deal-ticket-frame" in (await host.get("/inbox/infobar", params={"room": "room-sari"})).text
    await set_flag(host, False)
    assert "<iframe" not in (await host.get("/inbox", params={"room": "room-sari"})).text


async def test_agent_and_permissions_pass_through_to_the_token(host: httpx.AsyncClient, widget: FakeWidget) -> None:
    await set_flag(host, True)
    await host.get("/inbox", params={"room": "room-budi", "agent": "qa-7", "perms": "deal:view"})
    token = await host.get("/api/rooms/room-budi/embed-token", params={"agent": "qa-7", "perms": "deal:view"})
    assert token.status_code == 200 and token.json()["token"] == "tok-2"
    expected = {"room_id": "room-budi", "agent_id": "qa-7", "parent_origin": HOST, "permissions": ["deal:view"]}
    assert widget.bodies("POST", "/api/v1/embed-tokens") == [expected, expected]


async def test_token_failure_shows_the_tab_error_and_keeps_the_page(host: httpx.AsyncClient, widget: FakeWidget) -> None:
    await set_flag(host, True)
    widget.unreachable = True
    response = await host.get("/inbox", params={"room": "room-budi"})
    assert response.status_code == 200
    assert 'data-mint-error="widget API unreachable (ConnectError)"' in response.text
    assert 'data-testid="messages"' in response.text


async def test_api_key_never_reaches_the_browser(host: httpx.AsyncClient) -> None:
    pages = [await host.get("/inbox", params={"room": "room-budi"})]
    await set_flag(host, True)
    pages += [
        await host.get("/inbox", params={"room": "room-andi"}),
        await host.get("/inbox/infobar", params={"room": "room-andi"}),
        await host.get("/api/rooms/room-andi/embed-token"),
        await host.post("/api/sim/deal-bot", json={"room_id": "room-andi"}),
        await host.post("/api/rooms/room-andi/deals", json={"name": "Manual", "stage": "New", "pipeline": "Sales"}),
        await host.get("/static/host.js"),
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
    assert (await host.get("/chat-panel/rooms/room-budi", headers=headers)).json() == {"room_id": "room-budi"}
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
    assert (await host.get("/omnichannel/received")).json()["events"] == []

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
