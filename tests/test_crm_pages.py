"""The CRM record pages (RFC section 8; PRD S04-S06, E6), in process: the signed link
(single use, per-kind permission, redirect to the clean URL), the per-record session
cookie, the pages for a missing / tampered / expired / used link, times in the agent's
language and time zone, the timeline fragment, escaping, and the room check against a
Chat Panel played by ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update
from starlette.applications import Starlette

from tests.helpers import audit, execute, rows_of
from tests.support import FakeClock, asgi_client, make_settings, mint_token, new_tenant, running_app
from widget import chat_panel as chat_panel_api, rendering, timeline
from widget.embed_tokens import crm_link
from widget.runtime import Runtime
from widget.settings import Settings
from widget.store import schema
from widget.tokens import CRM_LINK, CRM_SESSION

CHAT_PANEL = "http://chat-panel.test/api"
PUBLIC = "http://127.0.0.1:8000"
DEAL = {"name": "Laptop order", "stage": "New", "pipeline": "Sales", "creator_flag": "bot", "room_id": "room-1"}
TICKET = {"name": "Refund", "status": "Open", "creator_flag": "agentic_ai", "room_id": "room-1"}
CSRF = {"X-CRM-Request": "1"}
PREVIEW = [
    {"sender_type": "customer", "sender_name": "Budi", "text": "Hi, I need a quote", "sent_at": "2026-11-25T08:58:00Z"},
    {"sender_type": "bot", "text": "Sure, for how many laptops?", "sent_at": "2026-11-25T08:58:05Z"},
    {"sender_type": "agentic_ai", "sender_name": "Assistant", "text": "I created a deal", "sent_at": "2026-11-25T08:59:00Z"},
    {"sender_type": "agent", "sender_name": "Sari", "text": "I'll send it today", "sent_at": "2026-11-25T09:01:00Z"},
]


class ChatPanel:
    """The Chat Panel API as a MockTransport handler: ``answer(request)`` decides."""

    def __init__(self) -> None:
        self.calls: list[httpx.Request] = []
        self.answer: Callable[[httpx.Request], Any] = lambda request: httpx.Response(
            200, json={"room_id": "x", "status": "open"})

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        result = self.answer(request)
        return await result if inspect.isawaitable(result) else result


@pytest.fixture
def chat_panel() -> ChatPanel:
    return ChatPanel()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, chat_panel_url=CHAT_PANEL)


@pytest.fixture
async def app(settings: Settings, clock: FakeClock, chat_panel: ChatPanel) -> AsyncIterator[Starlette]:
    async with running_app(settings, clock, upstream=httpx.MockTransport(chat_panel)) as application:
        yield application


@pytest.fixture
async def browser(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The agent's browser: no API key, its own cookie jar."""
    async with asgi_client(app) as http:
        yield http


async def link_for(api: httpx.AsyncClient, kind: str, record: dict[str, Any], **token: Any) -> str:
    """What a click on the record's name in the component gets: the link's path + query."""
    tz = token.pop("tz", None)
    minted = await mint_token(api, record["room_id"], **token)
    room = chat_panel_api.room_segment(record["room_id"])  # "..": not resolved away by the client
    response = await api.post(f"/embed/rooms/{room}/open?token={minted}",
                              json={"kind": kind, "id": record["id"], **({"tz": tz} if tz else {})})
    assert response.status_code == 200, response.text
    url = urlsplit(response.json()["url"])
    return f"{url.path}?{url.query}"


async def enter(browser: httpx.AsyncClient, link: str) -> httpx.Response:
    """Follow the link like the new tab does: 303 to the clean URL, then the page."""
    first = await browser.get(link)
    assert first.status_code == 303, first.text
    return await browser.get(first.headers["location"])


async def create(api: httpx.AsyncClient, kind: str, **fields: Any) -> dict[str, Any]:
    response = await api.post(f"/api/v1/{kind}s", json={**(DEAL if kind == "deal" else TICKET), **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def set_preview(runtime: Runtime, record_id: str, status: str, messages: list[dict] | None) -> None:
    """What the worker does once it has the chat history (straight into the table)."""
    t = schema.timeline_entries
    await execute(runtime, update(t).where(t.c.record_id == record_id).values(
        chat_preview=json.dumps(messages) if messages is not None else None, chat_preview_status=status))


async def entry_id(runtime: Runtime, record_id: str) -> str:
    [row] = await runtime.store.timeline("deal", record_id) or await runtime.store.timeline("ticket", record_id)
    return row["id"]


def problem_of(html: str) -> str | None:
    match = re.search(r'data-testid="crm-problem" data-problem="([a-z_]+)"', html)
    return match.group(1) if match else None


def set_cookie(response: httpx.Response) -> str:
    [cookie] = [v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("crm_record_session=")]
    return cookie


# -- the link: single use, redirect, per-record session ---------------------------------------


async def test_link_redirects_to_the_clean_url_with_a_session_for_this_record_only(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime, clock: FakeClock
) -> None:
    deal = await create(api, "deal")
    link = await link_for(api, "deal", deal, locale="id", tz="Asia/Jakarta")
    response = await browser.get(link)
    assert response.status_code == 303
    assert response.headers["location"] == f"/crm/deals/{deal['id']}"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    cookie = set_cookie(response)
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert attributes["path"] == f"Path=/crm/deals/{deal['id']}"
    assert attributes["max-age"] == "Max-Age=28800"
    assert attributes["samesite"].lower() == "samesite=lax" and "httponly" in attributes
    assert "secure" not in attributes  # plain http here; https public URLs get Secure
    claims = runtime.signer.verify(CRM_SESSION, cookie.split(";")[0].split("=", 1)[1])
    assert {k: v for k, v in claims.items() if k not in ("jti", "exp")} == {
        "company": "acme", "kind": "deal", "id": deal["id"], "agent_id": "agent-7",
        "permissions": ["deal:view"], "locale": "id", "tz": "Asia/Jakarta"}
    assert claims["exp"] == runtime.now() + 8 * 3600 * 1_000_000

    for _ in range(2):  # reloading the clean URL keeps working
        page = await browser.get(f"/crm/deals/{deal['id']}")
        assert page.status_code == 200 and 'data-testid="crm-name">Laptop order<' in page.text
        assert page.headers["content-security-policy"].endswith("frame-ancestors 'none'")
    clock.advance(8 * 3600 + 1)  # a working day later
    page = await browser.get(f"/crm/deals/{deal['id']}")
    assert page.status_code == 401 and problem_of(page.text) == "session_expired"
    assert "Laptop order" not in page.text


async def test_a_link_works_once(api: httpx.AsyncClient, browser: httpx.AsyncClient, app: Starlette,
                                 runtime: Runtime) -> None:
    deal = await create(api, "deal")
    link = await link_for(api, "deal", deal)
    assert (await enter(browser, link)).status_code == 200
    # The same browser (it has the session): the link is just dropped again.
    again = await browser.get(link)
    assert again.status_code == 303 and again.headers["location"] == f"/crm/deals/{deal['id']}"
    assert "set-cookie" not in again.headers
    # Anyone else with the link (a forwarded URL, a shared screen, a log): refused.
    async with asgi_client(app) as stranger:
        used = await stranger.get(link)
    assert used.status_code == 401 and problem_of(used.text) == "link_used"
    assert "This link was already used" in used.text and "Deal &amp; Ticket tab" in used.text
    assert "Laptop order" not in used.text and "set-cookie" not in used.headers
    jti = runtime.signer.verify(CRM_LINK, parse_qs(urlsplit(link).query)["link"][0])["jti"]
    rows = await rows_of(runtime, select(schema.used_crm_links))
    assert [(r["jti"], r["company_id"]) for r in rows] == [(jti, "acme")]


async def test_forget_used_links_drops_only_expired_ones(api: httpx.AsyncClient, browser: httpx.AsyncClient,
                                                         runtime: Runtime, clock: FakeClock) -> None:
    deal = await create(api, "deal")
    first = await link_for(api, "deal", deal)
    await enter(browser, first)
    clock.advance(200)
    await enter(browser, await link_for(api, "deal", deal))
    clock.advance(200)  # the first link expired 100 s ago, the second has 100 s to go
    assert await runtime.store.forget_used_links(runtime.now(), dry_run=True) == 1
    assert await runtime.store.forget_used_links(runtime.now()) == 1
    assert await runtime.store.forget_used_links(runtime.now()) == 0
    assert await runtime.store.forget_used_links(runtime.now() + 101 * 1_000_000) == 1


async def test_legacy_company_wide_cookie_is_ignored_and_cleared(api: httpx.AsyncClient, app: Starlette,
                                                                  runtime: Runtime) -> None:
    deal = await create(api, "deal")
    old, _ = runtime.signer.sign(CRM_SESSION, {"company": "acme", "agent_id": "agent-7"}, 3600)
    async with asgi_client(app, headers={"Cookie": f"crm_session={old}"}) as http:
        page = await http.get(f"/crm/deals/{deal['id']}")
        assert page.status_code == 401 and problem_of(page.text) == "no_link"
        response = await http.get(await link_for(api, "deal", deal))
    assert any(v.startswith("crm_session=") and "Path=/crm" in v and "Max-Age=0" in v
               for k, v in response.headers.multi_items() if k == "set-cookie")


# -- permissions ------------------------------------------------------------------------------


async def test_ticket_view_only_agent_cannot_open_the_deal(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime, app: Starlette
) -> None:
    deal = await create(api, "deal")
    ticket = await create(api, "ticket")
    token = await mint_token(api, permissions=["ticket:view"])
    refused = await api.post(f"/embed/rooms/room-1/open?token={token}", json={"kind": "deal", "id": deal["id"]})
    assert refused.status_code == 403

    # With the session of the room's ticket page ...
    ticket_link = await link_for(api, "ticket", ticket, permissions=["ticket:view"])
    assert (await enter(browser, ticket_link)).status_code == 200
    ticket_session = [c for c in browser.cookies.jar if c.name == "crm_record_session"][0]
    assert ticket_session.path == f"/crm/tickets/{ticket['id']}"
    # ... the browser does not even send it to the deal (path), and sent by hand it
    # does not open the deal, its fragment or its room check (kind and id are claims).
    assert (await browser.get(f"/crm/deals/{deal['id']}")).status_code == 401
    async with asgi_client(app, headers={"Cookie": f"crm_record_session={ticket_session.value}"}) as forged:
        page = await forged.get(f"/crm/deals/{deal['id']}")
        assert page.status_code == 401 and problem_of(page.text) == "no_link" and "Laptop order" not in page.text
        assert (await forged.get(f"/crm/deals/{deal['id']}/timeline")).status_code == 401
        check = await forged.post(f"/crm/deals/{deal['id']}/room-check", json={"entry": "x"}, headers=CSRF)
        assert check.status_code == 401 and check.json()["error"]["code"] == "session_required"
        other = await create(api, "ticket", room_id="room-2")
        assert (await forged.get(f"/crm/tickets/{other['id']}")).status_code == 401  # another ticket: no

    # A link signed for an agent without deal:view (not from /open) opens nothing.
    claims = {"company": "acme", "agent_id": "agent-7", "permissions": ["ticket:view"], "locale": "en"}
    url = urlsplit(crm_link(runtime, claims, "deal", deal["id"]))
    page = await browser.get(f"{url.path}?{url.query}")
    assert page.status_code == 403 and problem_of(page.text) == "no_access"
    assert "You don&#39;t have access to this deal" in page.text and "Laptop order" not in page.text


async def test_a_link_opens_only_its_own_kind_and_record(api: httpx.AsyncClient, browser: httpx.AsyncClient,
                                                         runtime: Runtime) -> None:
    deal = await create(api, "deal")
    other = await create(api, "deal", room_id="room-2")
    link = parse_qs(urlsplit(await link_for(api, "deal", deal)).query)["link"][0]
    for path in (f"/crm/tickets/{deal['id']}", f"/crm/deals/{other['id']}"):
        page = await browser.get(f"{path}?link={link}")
        assert page.status_code == 401 and problem_of(page.text) == "link_invalid"
    # Refused there, it was not used up.
    assert (await browser.get(f"/crm/deals/{deal['id']}?link={link}")).status_code == 303


async def test_another_companys_link_does_not_open_its_records(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime
) -> None:
    globex = await new_tenant(runtime, "globex")
    theirs = (await api.post("/api/v1/deals", json=DEAL, headers=globex.headers)).json()
    claims = {"company": "acme", "agent_id": "agent-7", "permissions": ["deal:view"]}
    url = urlsplit(crm_link(runtime, claims, "deal", theirs["id"]))  # acme's agent, globex's id
    page = await enter(browser, f"{url.path}?{url.query}")
    assert page.status_code == 404 and problem_of(page.text) == "record_deleted"
    assert "Laptop order" not in page.text


# -- pages without a usable link --------------------------------------------------------------


@pytest.mark.parametrize(("kind", "query", "headers", "title"), [
    ("deal", "", {}, "Open this deal from the chat room"),
    ("deal", "?lang=id", {}, "Buka deal ini dari room chat"),
    ("deal", "", {"Accept-Language": "id-ID,id;q=0.9,en;q=0.5"}, "Buka deal ini dari room chat"),
    ("ticket", "", {}, "Open this ticket from the chat room"),
    ("ticket", "?lang=id", {"Accept-Language": "en"}, "Buka tiket ini dari room chat"),
])
async def test_record_url_without_a_link_says_how_to_get_there(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, kind: str, query: str, headers: dict, title: str
) -> None:
    record = await create(api, kind)
    assert record["url"] == f"{PUBLIC}/crm/{kind}s/{record['id']}"
    page = await browser.get(urlsplit(record["url"]).path + query, headers=headers)
    assert page.status_code == 401 and problem_of(page.text) == "no_link"
    assert title in page.text and 'data-testid="crm-how-to"' in page.text
    assert "invalid" not in page.text and "tidak valid" not in page.text
    assert record["name"] not in page.text.split("<main", 1)[1]
    assert page.headers["content-security-policy"].endswith("frame-ancestors 'none'")
    assert audit(page.text).inline_scripts == 0 and audit(page.text).bad_attributes == []


async def test_tampered_and_expired_links_have_pages_of_their_own(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, clock: FakeClock
) -> None:
    deal = await create(api, "deal")
    link = await link_for(api, "deal", deal, locale="id")
    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    for bad in (tampered, f"/crm/deals/{deal['id']}?link=garbage", f"/crm/deals/{deal['id']}?link="):
        page = await browser.get(bad)
        assert page.status_code == 401 and problem_of(page.text) == "link_invalid", bad
        assert "This link is not valid" in page.text and "Laptop order" not in page.text
    clock.advance(301)
    page = await browser.get(link)
    assert page.status_code == 401 and problem_of(page.text) == "link_expired"
    assert "Tautan ini sudah kedaluwarsa" in page.text  # the expired link still tells the language
    assert 'lang="id"' in page.text and "Laptop order" not in page.text


async def test_deleted_record_says_so(api: httpx.AsyncClient, browser: httpx.AsyncClient) -> None:
    deal = await create(api, "deal")
    assert (await enter(browser, await link_for(api, "deal", deal))).status_code == 200
    await api.delete(f"/api/v1/deals/{deal['id']}")
    page = await browser.get(f"/crm/deals/{deal['id']}")
    assert page.status_code == 404 and problem_of(page.text) == "record_deleted"
    assert "This record was deleted" in page.text and 'data-testid="crm-record"' not in page.text
    assert (await browser.get(f"/crm/deals/{deal['id']}/timeline")).status_code == 404


# -- what the page shows ------------------------------------------------------------------------


async def test_times_in_the_agents_time_zone_and_language(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime
) -> None:
    """FakeClock: created at 09:00 UTC, i.e. 16:00 in Jakarta."""
    deal = await create(api, "deal")
    await set_preview(runtime, deal["id"], "ok", PREVIEW[:1])
    page = (await enter(browser, await link_for(api, "deal", deal, tz="Asia/Jakarta", locale="id"))).text
    assert '<time datetime="2026-11-25T09:00:00.000000Z" title="25 Nov 2026 16.00 · Waktu Indonesia Barat (Asia/Jakarta)"' in page
    assert 'data-testid="crm-created">25 Nov 2026 16.00</time>' in page
    assert re.search(r'class="msg__time" datetime="2026-11-25T08:58:00.000000Z"[^>]*>15.58<', page)
    assert 'lang="id"' in page and "Tahap" in page
    english = (await browser.get(f"/crm/deals/{deal['id']}?lang=en")).text
    assert 'data-testid="crm-created">Nov 25, 2026, 4:00\u202fPM</time>' in english and 'lang="en"' in english
    assert re.search(r'class="msg__time"[^>]*>3:58\u202fPM<', english)


@pytest.mark.parametrize("tz", [None, "Mars/Olympus_Mons", "../../etc/passwd", "localtime", "asia/jakarta", ""])
async def test_unknown_time_zones_fall_back_to_utc(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, tz: str | None
) -> None:
    deal = await create(api, "deal")
    minted = await mint_token(api)
    body = {"kind": "deal", "id": deal["id"], **({"tz": tz} if tz is not None else {})}
    url = urlsplit((await api.post(f"/embed/rooms/room-1/open?token={minted}", json=body)).json()["url"])
    page = await enter(browser, f"{url.path}?{url.query}")
    assert 'data-testid="crm-created">Nov 25, 2026, 9:00\u202fAM</time>' in page.text
    assert "Coordinated Universal Time" in page.text


async def test_open_refuses_a_time_zone_longer_than_64(api: httpx.AsyncClient) -> None:
    deal = await create(api, "deal")
    minted = await mint_token(api)
    response = await api.post(f"/embed/rooms/room-1/open?token={minted}",
                              json={"kind": "deal", "id": deal["id"], "tz": "A" * 65})
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "tz"


@pytest.mark.parametrize(("lang", "labels"), [
    ("en", ["Customer", "Bot", "AI", "Agent"]), ("id", ["Pelanggan", "Bot", "AI", "Agen"])])
async def test_chat_preview_as_bubbles_with_translated_senders(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime, lang: str, labels: list[str]
) -> None:
    contact = (await api.post("/api/v1/contacts", json={"name": "Budi", "phone": "+62 812", "email": "b@example.com"})).json()
    deal = await create(api, "deal", contact_id=contact["id"], source="whatsapp")
    await set_preview(runtime, deal["id"], "ok", PREVIEW)
    page = (await enter(browser, await link_for(api, "deal", deal, locale=lang))).text
    assert re.findall(r'class="msg__type">([^<]+)<', page) == labels
    sides = re.findall(r'class="msg msg--(in|out) msg--([a-z_]+)"', page)
    assert sides == [("in", "customer"), ("out", "bot"), ("out", "agentic_ai"), ("out", "agent")]
    assert 'data-testid="crm-contact">Budi<' in page and "+62 812" in page and "b@example.com" in page
    assert 'data-testid="crm-source">whatsapp<' in page and 'data-testid="crm-creator">Bot<' in page
    assert 'data-testid="chat-pending"' not in page and 'data-pending="false"' in page


async def test_ticket_page_failed_preview_and_no_contact(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime
) -> None:
    ticket = await create(api, "ticket")
    await set_preview(runtime, ticket["id"], "failed", None)
    page = (await enter(browser, await link_for(api, "ticket", ticket))).text
    assert f'data-testid="crm-id">{ticket["unique_id"]}<' in page and ticket["unique_id"].startswith("TCK-")
    assert 'data-testid="crm-creator">AI<' in page and 'data-testid="crm-contact">No contact<' in page
    entry = page.split('data-testid="timeline-entry"', 1)[1]
    assert 'data-testid="creator-badge">AI<' in entry and 'data-testid="room-deeplink"' in entry
    for absent in ("chat-preview", "chat-pending", "chat-empty", "error", "not available"):
        assert absent not in entry, absent  # PRD S04 ERR-2: no agent-facing error


async def test_record_without_a_timeline_entry(api: httpx.AsyncClient, browser: httpx.AsyncClient,
                                               runtime: Runtime) -> None:
    deal = await create(api, "deal", creator_flag=None)  # an API deal: no entry, default creator
    claims = {"company": "acme", "agent_id": "a", "permissions": ["deal:view"]}
    url = urlsplit(crm_link(runtime, claims, "deal", deal["id"]))
    page = (await enter(browser, f"{url.path}?{url.query}")).text
    assert 'data-testid="crm-creator">API<' in page and "badge--api" in page
    assert 'data-testid="timeline-entry"' not in page and "No timeline entries." in page
    assert "/static/crm.js" in page


async def test_names_and_messages_are_escaped(api: httpx.AsyncClient, browser: httpx.AsyncClient,
                                              runtime: Runtime) -> None:
    evil = '<script>alert(1)</script>"\'&'
    contact = (await api.post("/api/v1/contacts", json={"name": "<img src=x onerror=alert(1)>"})).json()
    deal = await create(api, "deal", name=evil, stage="<b>x</b>", contact_id=contact["id"], source=evil)
    await set_preview(runtime, deal["id"], "ok", [
        {"sender_type": "customer", "sender_name": evil, "text": "<script>alert(2)</script> javascript:alert(3)",
         "sent_at": "2026-11-25T08:58:00Z"},
        {"sender_type": "bot", "text": '"><script>alert(4)</script>', "sent_at": "not a time"},
    ])
    page = (await enter(browser, await link_for(api, "deal", deal))).text
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;" in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt; javascript:alert(3)" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&#34;&gt;&lt;script&gt;alert(4)" in page and page.count('data-testid="chat-message"') == 2
    parsed = audit(page)
    assert parsed.inline_scripts == 0 and parsed.bad_attributes == []
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert all(h.startswith(("http://", "https://", "/static/", "#main", "data:,")) for h in hrefs), hrefs
    fragment = (await browser.get(f"/crm/deals/{deal['id']}/timeline")).text
    assert "<script>alert" not in fragment and "&lt;script&gt;alert(2)" in fragment


def test_only_http_urls_are_handed_out() -> None:
    for good in ("http://x.test/a", "https://x.test/?room=a%3Ab"):
        assert rendering.http_only(good) == good
    for bad in ("javascript:alert(1)", "data:text/html,x", "//x.test", "/relative", "http:/x", "", None):
        assert rendering.http_only(bad) is None


# -- live chat preview: the timeline fragment ---------------------------------------------------


async def test_timeline_fragment_needs_the_session_and_shows_pending_then_ok(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime, app: Starlette
) -> None:
    deal = await create(api, "deal")
    async with asgi_client(app) as stranger:
        refused = await stranger.get(f"/crm/deals/{deal['id']}/timeline")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "session_required"

    page = (await enter(browser, await link_for(api, "deal", deal, locale="id"))).text
    assert 'data-pending="true"' in page and "Mengambil riwayat chat…" in page
    pending = await browser.get(f"/crm/deals/{deal['id']}/timeline")
    assert pending.status_code == 200 and pending.headers["content-type"].startswith("text/html")
    assert pending.headers["cache-control"] == "no-store"
    assert pending.text.lstrip().startswith('<div class="timeline__body" id="timeline-body"')
    assert "<html" not in pending.text and 'data-pending="true"' in pending.text
    assert 'data-testid="chat-pending"' in pending.text and "Mengambil riwayat chat…" in pending.text

    await set_preview(runtime, deal["id"], "ok", PREVIEW[:2])
    ok = await browser.get(f"/crm/deals/{deal['id']}/timeline?lang=en")
    assert 'data-pending="false"' in ok.text and ok.text.count('data-testid="chat-message"') == 2
    assert "Customer" in ok.text and 'data-status="ok"' in ok.text
    # The page's first paint is the same partial.
    assert ok.text.strip() in (await browser.get(f"/crm/deals/{deal['id']}?lang=en")).text

    await set_preview(runtime, deal["id"], "empty", [])
    assert "No messages yet" in (await browser.get(f"/crm/deals/{deal['id']}/timeline?lang=en")).text


# -- S05: the room check ---------------------------------------------------------------------------


async def checked_page(api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime,
                       room_id: str = "room-1", kind: str = "deal") -> tuple[dict[str, Any], str]:
    record = await create(api, kind, room_id=room_id)
    await enter(browser, await link_for(api, kind, record))
    return record, await entry_id(runtime, record["id"])


def answer(status: int, body: Any = None) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=body if body is not None else {"error": "x"})


def fail(exc: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def raise_(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)
    return raise_


async def _sleep_then_ok(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(1)
    return httpx.Response(200, json={"status": "open"})


OUTCOMES = [
    # (name, chat panel answer, our status, error code, clicked event)
    ("open", answer(200, {"room_id": "room-1", "status": "open"}), 200, None, True),
    ("archived", answer(200, {"room_id": "room-1", "status": "archived"}), 200, None, True),
    ("not json", lambda r: httpx.Response(200, content=b"<html>ok</html>"), 200, None, True),
    ("deleted", answer(404), 404, "room_not_found", False),
    ("gone", answer(410), 404, "room_not_found", False),
    ("forbidden", answer(403), 403, "room_forbidden", False),
    ("5xx", answer(503), 503, "chat_panel_unavailable", False),
    ("500", answer(500), 503, "chat_panel_unavailable", False),
    ("401 from the panel", answer(401), 503, "chat_panel_unavailable", False),
    ("redirect", lambda r: httpx.Response(302, headers={"Location": "http://elsewhere.test/"}), 503,
     "chat_panel_unavailable", False),
    ("connect error", fail(httpx.ConnectError), 503, "chat_panel_unavailable", False),
    ("read timeout", fail(httpx.ReadTimeout), 503, "chat_panel_unavailable", False),
    ("slow", _sleep_then_ok, 503, "chat_panel_unavailable", False),
]


@pytest.mark.parametrize(("name", "upstream", "status", "code", "clicked"), OUTCOMES, ids=[o[0] for o in OUTCOMES])
async def test_room_check_outcomes(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime, chat_panel: ChatPanel,
    widget_log: Any, monkeypatch: pytest.MonkeyPatch,
    name: str, upstream: Callable, status: int, code: str | None, clicked: bool,
) -> None:
    monkeypatch.setattr(chat_panel_api, "TIMEOUT", 0.2)  # "slow" sleeps 1 s
    deal, entry = await checked_page(api, browser, runtime)
    chat_panel.answer = upstream
    widget_log.clear()
    response = await browser.post(f"/crm/deals/{deal['id']}/room-check", json={"entry": entry}, headers=CSRF)
    assert response.status_code == status, response.text
    if code is None:
        state = "archived" if name == "archived" else "open"
        assert response.json() == {"url": "http://localhost:8001/inbox?room=room-1", "status": state}
    else:
        assert response.json()["error"]["code"] == code and "url" not in response.json()
    [call] = chat_panel.calls
    assert call.method == "GET" and str(call.url) == f"{CHAT_PANEL}/rooms/room-1"
    assert call.headers["x-company-id"] == "acme" and call.headers["x-agent-id"] == "agent-7"
    events = widget_log.props("deal_timeline_chatroom_clicked")
    if clicked:
        assert events == [{"company_id": "acme", "deal_id": deal["id"], "room_id": "room-1", "agent_id": "agent-7",
                           "timestamp": "2026-11-25T09:00:00.000000Z"}]
    else:
        assert events == []
        [failed] = widget_log.props("chat_room_check_failed")
        assert failed["room_id"] == "room-1" and failed["record_id"] == deal["id"]
    counts = await runtime.store.event_counts("acme", 0, runtime.now() + 1)
    assert counts.get("deal_timeline_chatroom_clicked", 0) == (1 if clicked else 0)


async def test_room_check_for_a_ticket_logs_the_ticket_event(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime, widget_log: Any
) -> None:
    ticket, entry = await checked_page(api, browser, runtime, kind="ticket")
    response = await browser.post(f"/crm/tickets/{ticket['id']}/room-check", json={"entry": entry}, headers=CSRF)
    assert response.status_code == 200
    assert widget_log.props("ticket_timeline_chatroom_clicked") == [
        {"company_id": "acme", "ticket_id": ticket["id"], "room_id": "room-1", "agent_id": "agent-7",
         "timestamp": "2026-11-25T09:00:00.000000Z"}]


async def test_room_check_when_the_chat_panel_is_not_configured(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime, chat_panel: ChatPanel, widget_log: Any
) -> None:
    deal, entry = await checked_page(api, browser, runtime)
    runtime.settings.chat_panel_url = None  # as if WIDGET_CHAT_PANEL_URL was never set
    response = await browser.post(f"/crm/deals/{deal['id']}/room-check", json={"entry": entry}, headers=CSRF)
    assert response.status_code == 503 and response.json()["error"]["code"] == "chat_panel_not_configured"
    assert chat_panel.calls == [] and widget_log.props("deal_timeline_chatroom_clicked") == []


async def test_open_anyway_skips_the_check_and_counts_the_click(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime, chat_panel: ChatPanel, widget_log: Any
) -> None:
    deal, entry = await checked_page(api, browser, runtime)
    response = await browser.post(f"/crm/deals/{deal['id']}/room-check",
                                  json={"entry": entry, "open_anyway": True}, headers=CSRF)
    assert response.json() == {"url": "http://localhost:8001/inbox?room=room-1", "status": "unchecked"}
    assert chat_panel.calls == [] and len(widget_log.props("deal_timeline_chatroom_clicked")) == 1


async def test_room_check_is_for_the_pages_own_requests(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime, chat_panel: ChatPanel
) -> None:
    deal, entry = await checked_page(api, browser, runtime)
    path = f"/crm/deals/{deal['id']}/room-check"
    no_header = await browser.post(path, json={"entry": entry})
    assert no_header.status_code == 403
    cross_site = await browser.post(path, json={"entry": entry}, headers={**CSRF, "Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403
    form = await browser.post(path, content=b"entry=x", headers={**CSRF, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    bad = await browser.post(path, json={"entry": 5}, headers=CSRF)
    assert bad.status_code == 422
    unknown = await browser.post(path, json={"entry": "tl_nope"}, headers=CSRF)
    assert unknown.status_code == 404
    assert chat_panel.calls == []
    same = await browser.post(path, json={"entry": entry}, headers={**CSRF, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200


@pytest.mark.parametrize(("room_id", "segment", "query"), [
    ("room-1", "room-1", "room-1"),
    ("Az09._:@-", "Az09._%3A%40-", "Az09._%3A%40-"),
    ("wa:+62@c.us", None, None),  # not a valid room id ("+"): refused at creation
    ("..", "%2E%2E", ".."),
    (".", "%2E", "."),
    ("a" * 128, "a" * 128, "a" * 128),
])
async def test_room_ids_are_one_encoded_segment_everywhere(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime, chat_panel: ChatPanel,
    room_id: str, segment: str | None, query: str | None,
) -> None:
    if segment is None:
        response = await api.post("/api/v1/deals", json={**DEAL, "room_id": room_id})
        assert response.status_code == 422
        return
    deal, entry = await checked_page(api, browser, runtime, room_id=room_id)
    page = (await browser.get(f"/crm/deals/{deal['id']}")).text
    assert f'href="http://localhost:8001/inbox?room={query}"' in page
    response = await browser.post(f"/crm/deals/{deal['id']}/room-check", json={"entry": entry}, headers=CSRF)
    assert response.json()["url"] == f"http://localhost:8001/inbox?room={query}"
    [call] = chat_panel.calls
    assert call.url.raw_path == f"/api/rooms/{segment}".encode()


def test_room_url_in_a_path_template_encodes_every_reserved_character(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, omnichannel_room_url="https://omni.example/rooms/{room_id}/chat")
    assert timeline.room_url(settings, "Az09._:@-") == "https://omni.example/rooms/Az09._%3A%40-/chat"
    assert chat_panel_api.room_segment("Az09._:@-") == "Az09._%3A%40-"


async def test_page_script_and_csp(api: httpx.AsyncClient, browser: httpx.AsyncClient, runtime: Runtime) -> None:
    deal, entry = await checked_page(api, browser, runtime)
    page = await browser.get(f"/crm/deals/{deal['id']}")
    csp = page.headers["content-security-policy"]
    assert csp == ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                   "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    assert re.search(r'<script src="/static/crm.js\?v=[0-9a-f]+" defer></script>', page.text)
    strings = json.loads(re.search(r'id="crm-strings">(.*?)</script>', page.text).group(1))  # type: ignore[union-attr]
    assert strings["room_unavailable"] == "This chat room is no longer available."
    assert strings["room_session_ended"].endswith("Open the deal again from the chat room.")
    assert f'data-base="/crm/deals/{deal["id"]}"' in page.text
    assert f'data-entry="{entry}"' in page.text and 'rel="noopener noreferrer"' in page.text
    assert (await browser.get("/static/crm.js")).status_code == 200
