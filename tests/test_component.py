"""The component page and its JSON endpoints (/state, /open, /telemetry), the token
outcomes of RFC section 4, the security headers, and the CRM record page."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.helpers import audit, hold_the_write_lock
from tests.support import FakeClock, Tenant, mint_token, new_tenant
from widget.runtime import Runtime

DEAL = {"name": "Laptop order", "stage": "New", "pipeline": "Sales", "creator_flag": "bot", "room_id": "room-1"}
TICKET = {"name": "Refund", "status": "Open", "creator_flag": "agentic_ai", "room_id": "room-1"}




def state_of(html: str) -> str:
    match = re.search(r'id="widget"[^>]*data-state="([a-z]+)"', html)
    assert match, html[:500]
    return match.group(1)


def frame_ancestors(response: httpx.Response) -> str:
    csp = response.headers["content-security-policy"]
    return csp.split("frame-ancestors", 1)[1].split(";")[0].strip()


async def test_empty_room_page_is_safe_and_framed_by_the_company_only(api: httpx.AsyncClient) -> None:
    token = await mint_token(api)
    response = await api.get(f"/embed/rooms/room-1?token={token}")
    assert response.status_code == 200
    assert state_of(response.text) == "empty"
    assert frame_ancestors(response) == "http://localhost:8001 https://inbox.example.com"
    csp = response.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                      "base-uri 'none'", "form-action 'none'", "img-src 'self' data:"):
        assert directive in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    page = audit(response.text)
    assert page.inline_scripts == 0 and page.bad_attributes == []
    assert {"empty-state", "error-state", "notice"} <= page.testids
    assert "deal-preview" in page.testids  # only inside the <template>, not in the live list
    assert response.text.count('data-testid="deal-preview"') == 1


async def test_ready_page_renders_both_previews_escaped(api: httpx.AsyncClient) -> None:
    deal = (await api.post("/api/v1/deals", json={**DEAL, "name": "<script>alert(1)</script> \"q\" 🚀"})).json()
    ticket = (await api.post("/api/v1/tickets", json=TICKET)).json()
    response = await api.get(f"/embed/rooms/room-1?token={await mint_token(api)}")
    html = response.text
    assert state_of(html) == "ready"
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &#34;q&#34; 🚀" in html
    assert f'data-testid="deal-id" data-field="id">{deal["id"]}<' in html
    assert f'data-testid="ticket-id" data-field="unique_id">{ticket["unique_id"]}<' in html
    assert re.search(r'data-testid="creator-badge"[^>]*>Bot<', html)
    assert re.search(r'data-testid="creator-badge"[^>]*>AI<', html)
    assert 'target="_blank" rel="noopener noreferrer"' in html
    assert 'data-version="2"' in html


async def test_lang_and_theme(api: httpx.AsyncClient) -> None:
    token = await mint_token(api, locale="id")
    html = (await api.get(f"/embed/rooms/room-1?token={token}")).text
    assert 'lang="id"' in html and "Belum ada deal atau tiket" in html
    html = (await api.get(f"/embed/rooms/room-1?token={token}&lang=en&theme=dark")).text
    assert 'data-theme="dark"' in html and "Belum ada deal atau tiket" in html  # the token's locale wins (issue 12)


async def test_invalid_token_page_carries_no_data_and_cannot_be_framed(api: httpx.AsyncClient) -> None:
    await api.post("/api/v1/deals", json=DEAL)
    for token in ("", "garbage", (await mint_token(api)) + "x"):
        response = await api.get(f"/embed/rooms/room-1?token={token}")
        assert response.status_code == 401
        assert state_of(response.text) == "error"
        assert frame_ancestors(response) == "'none'"
        assert "Laptop order" not in response.text and 'data-room-id=""' in response.text


async def test_expired_token_page_is_framed_normally(api: httpx.AsyncClient, clock: FakeClock) -> None:
    token = await mint_token(api, ttl_seconds=60)
    clock.advance(61)
    response = await api.get(f"/embed/rooms/room-1?token={token}")
    assert response.status_code == 401
    assert state_of(response.text) == "expired"
    assert frame_ancestors(response) == "http://localhost:8001 https://inbox.example.com"
    state = await api.get(f"/embed/rooms/room-1/state?token={token}")
    assert state.status_code == 401 and state.json()["error"]["code"] == "token_expired"


async def test_token_for_another_room_is_forbidden_everywhere(api: httpx.AsyncClient) -> None:
    token = await mint_token(api, "room-2")
    page = await api.get(f"/embed/rooms/room-1?token={token}")
    assert page.status_code == 403 and state_of(page.text) == "forbidden"
    for method, path, body in (("GET", "state", None), ("POST", "open", {"kind": "deal", "id": "x"}),
                               ("POST", "telemetry", {"event": "displayed", "kind": "deal", "id": "x"})):
        response = await api.request(method, f"/embed/rooms/room-1/{path}?token={token}", json=body)
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


async def test_state_returns_the_snapshot(api: httpx.AsyncClient) -> None:
    deal = (await api.post("/api/v1/deals", json=DEAL)).json()
    state = (await api.get(f"/embed/rooms/room-1/state?token={await mint_token(api)}")).json()
    assert state["version"] == 1 and state["deal"]["id"] == deal["id"] and state["ticket"] is None


async def test_open_gives_a_signed_crm_link_that_opens_the_record(
    api: httpx.AsyncClient, widget_log: Any
) -> None:
    deal = (await api.post("/api/v1/deals", json={**DEAL, "contact_id": None})).json()
    token = await mint_token(api)
    response = await api.post(f"/embed/rooms/room-1/open?token={token}", json={"kind": "deal", "id": deal["id"]})
    assert response.status_code == 200
    url = response.json()["url"]
    assert url.startswith(f"http://127.0.0.1:8000/crm/deals/{deal['id']}?link=")
    assert [p["agent_id"] for p in widget_log.props("deal_preview_clicked")] == ["agent-7"]

    api.headers.pop("Authorization")
    # The link is used once: it sets a session for this record and leaves the address bar.
    entered = await api.get(urlsplit(url).path + "?" + urlsplit(url).query)
    assert entered.status_code == 303 and entered.headers["location"] == f"/crm/deals/{deal['id']}"
    cookie = entered.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and f"Path=/crm/deals/{deal['id']}" in cookie
    page = await api.get(entered.headers["location"])
    assert page.status_code == 200
    assert 'data-testid="crm-creator">Bot<' in page.text
    assert frame_ancestors(page) == "'none'"
    # The session cookie lets the agent reload the page without the link.
    again = await api.get(f"/crm/deals/{deal['id']}")
    assert again.status_code == 200
    link = parse_qs(urlsplit(url).query)["link"][0]
    api.cookies.clear()
    assert (await api.get(f"/crm/tickets/{deal['id']}?link={link}")).status_code == 401
    assert (await api.get(f"/crm/deals/{deal['id']}?link={link}")).status_code == 401  # used


async def test_open_uses_the_external_url_when_given(api: httpx.AsyncClient) -> None:
    deal = (await api.post("/api/v1/deals", json={**DEAL, "external_url": "https://crm.example.com/d/1"})).json()
    response = await api.post(f"/embed/rooms/room-1/open?token={await mint_token(api)}", json={"kind": "deal", "id": deal["id"]})
    assert response.json() == {"url": "https://crm.example.com/d/1"}


async def test_open_checks_permission_first_then_the_room(api: httpx.AsyncClient) -> None:
    first = (await api.post("/api/v1/deals", json=DEAL)).json()
    deals_only = await mint_token(api, permissions=["deal:view"])
    ticket = (await api.post("/api/v1/tickets", json=TICKET)).json()
    no_ticket = await api.post(f"/embed/rooms/room-1/open?token={deals_only}", json={"kind": "ticket", "id": ticket["id"]})
    assert no_ticket.status_code == 403 and no_ticket.json()["error"]["code"] == "forbidden"
    missing = await api.post(f"/embed/rooms/room-1/open?token={deals_only}", json={"kind": "ticket", "id": "nope"})
    assert missing.status_code == 403  # 403 before 404

    second = (await api.post("/api/v1/deals", json=DEAL)).json()
    replaced = await api.post(f"/embed/rooms/room-1/open?token={deals_only}", json={"kind": "deal", "id": first["id"]})
    assert replaced.status_code == 404  # no longer the room's deal
    await api.delete(f"/api/v1/deals/{second['id']}")
    deleted = await api.post(f"/embed/rooms/room-1/open?token={deals_only}", json={"kind": "deal", "id": second["id"]})
    assert deleted.status_code == 404 and deleted.json()["error"]["code"] == "not_found"


async def test_open_validates_its_body(api: httpx.AsyncClient) -> None:
    token = await mint_token(api)
    bad = await api.post(f"/embed/rooms/room-1/open?token={token}", json={"kind": "contact", "id": 5})
    assert bad.status_code == 422
    assert {d["field"] for d in bad.json()["error"]["details"]} == {"kind", "id"}
    malformed = await api.post(f"/embed/rooms/room-1/open?token={token}", content=b"{",
                               headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400


async def test_telemetry_counts_a_display_once_per_record_and_agent(
    api: httpx.AsyncClient, runtime: Runtime, tenant: Tenant
) -> None:
    deal = (await api.post("/api/v1/deals", json=DEAL)).json()
    beacon = '{"event": "displayed", "kind": "deal", "id": "%s"}' % deal["id"]
    for token in (await mint_token(api), await mint_token(api)):
        response = await api.post(f"/embed/rooms/room-1/telemetry?token={token}", content=beacon,
                                  headers={"Content-Type": "text/plain;charset=UTF-8"})
        assert response.status_code == 204
    other_agent = await mint_token(api, agent_id="agent-8")
    await api.post(f"/embed/rooms/room-1/telemetry?token={other_agent}", content=beacon,
                   headers={"Content-Type": "text/plain"})
    counts = await runtime.store.event_counts(tenant.id, 0, runtime.now() + 1)
    assert counts["deal_preview_displayed"] == 2
    assert counts["bot_deal_created"] == 1
    stats = (await api.get("/api/v1/stats")).json()
    assert stats["deal_preview_display_rate"] == 1.0  # one deal, seen by two agents
    assert stats["records"]["displayed"] == 1


async def test_telemetry_for_a_record_outside_the_room_is_not_counted(api: httpx.AsyncClient) -> None:
    elsewhere = (await api.post("/api/v1/deals", json={**DEAL, "room_id": "room-2"})).json()
    response = await api.post(f"/embed/rooms/room-1/telemetry?token={await mint_token(api)}",
                              json={"event": "displayed", "kind": "deal", "id": elsewhere["id"]})
    assert response.status_code == 404


async def test_crm_page_for_a_deleted_record_says_so(api: httpx.AsyncClient) -> None:
    deal = (await api.post("/api/v1/deals", json=DEAL)).json()
    url = (await api.post(f"/embed/rooms/room-1/open?token={await mint_token(api)}",
                          json={"kind": "deal", "id": deal["id"]})).json()["url"]
    await api.delete(f"/api/v1/deals/{deal['id']}")
    entered = await api.get(url.removeprefix("http://127.0.0.1:8000"))
    assert entered.status_code == 303
    page = await api.get(entered.headers["location"])
    assert page.status_code == 404 and "This record was deleted" in page.text


async def test_crm_link_of_another_company_does_not_open_its_records(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    other = await new_tenant(runtime, "globex")
    theirs = (await api.post("/api/v1/deals", json=DEAL, headers=other.headers)).json()
    mine = (await api.post("/api/v1/deals", json=DEAL)).json()
    url = (await api.post(f"/embed/rooms/room-1/open?token={await mint_token(api)}",
                          json={"kind": "deal", "id": mine["id"]})).json()["url"]
    link = parse_qs(urlsplit(url).query)["link"][0]
    response = await api.get(f"/crm/deals/{theirs['id']}?link={link}")
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/rooms/x"])
async def test_non_embed_responses_cannot_be_framed(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path)
    assert frame_ancestors(response) == "'none'"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert re.fullmatch(r"app;dur=\d+\.\d\d", response.headers["server-timing"])


@pytest.mark.sqlite_only("holds SQLite's single writer; PostgreSQL has none to hold (writes of other rows never wait)")
async def test_a_repeated_beacon_costs_no_write(api: httpx.AsyncClient, runtime: Runtime) -> None:
    """While another transaction holds the store's writer, a repeated ``displayed``
    beacon still answers (it is found by a read); a first one waits for the writer."""
    import asyncio

    deal = (await api.post("/api/v1/deals", json=DEAL)).json()
    token = await mint_token(api)
    beacon = {"event": "displayed", "kind": "deal", "id": deal["id"]}
    url = f"/embed/rooms/room-1/telemetry?token={token}"
    assert (await api.post(url, json=beacon)).status_code == 204
    release, holder = await hold_the_write_lock(runtime.store.db)
    try:
        repeat = await asyncio.wait_for(api.post(url, json=beacon), 2)
        assert repeat.status_code == 204
        first = asyncio.create_task(api.post(f"/embed/rooms/room-1/telemetry?token={await mint_token(api, agent_id='a-9')}",
                                             json=beacon))
        await asyncio.sleep(0.3)
        assert not first.done()  # control: a beacon that must be stored waits for the writer
    finally:
        release.set()
        await holder
    assert (await first).status_code == 204
    counts = await runtime.store.event_counts("acme", 0, runtime.now() + 1)
    assert counts["deal_preview_displayed"] == 2
