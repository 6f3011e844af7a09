"""The tenant isolation matrix (RFC section 4): a company is taken from its API key or
token only, and another company's objects answer 404, never 403 and never data.

Company A (acme) has a contact, a deal and a ticket in room ``shared-room``; company B
(globex) uses the same room id for a room of its own. B's key on every record API
route with an id, B's signed CRM link and session on A's record pages, B's token
against A's room and A's token against B's: all 404 (or B's own, empty room), while A
(the control) gets its data on every one of them and finds it unchanged afterwards."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from starlette.applications import Starlette

from tests.helpers import assert_error, deal, ticket
from tests.support import LiveServer, Tenant, asgi_client, make_settings, mint_token, new_tenant, seed_company
from widget.app import create_app
from widget.runtime import Runtime
from widget.tokens import CRM_LINK, CRM_SESSION

ROOM = "shared-room"
MARK = "ACME-ONLY"  # in every string of A's records: no answer to B may carry it


async def _company_a(api: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    contact = (await api.post("/api/v1/contacts", json={"name": f"{MARK} Budi", "email": "b@acme.example"})).json()
    made = {"contact": contact}
    for kind, body in (("deal", deal), ("ticket", ticket)):
        response = await api.post(f"/api/v1/{kind}s", json=body(
            name=f"{MARK} {kind}", room_id=ROOM, creator_flag="bot", contact_id=contact["id"], source=MARK))
        assert response.status_code == 201, response.text
        made[kind] = response.json()
    return made


def _id_routes(made: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every record API route with an id: (method, path, body)."""
    routes: list[tuple[str, str, dict[str, Any] | None]] = []
    for kind, field in (("deal", "stage"), ("ticket", "status")):
        path = f"/api/v1/{kind}s/{made[kind]['id']}"
        routes += [("GET", path, None), ("GET", f"{path}/timeline", None),
                   ("PATCH", path, {"name": "taken over", field: "Lost"}), ("DELETE", path, None)]
    contact = f"/api/v1/contacts/{made['contact']['id']}"
    return routes + [("GET", contact, None), ("DELETE", contact, None)]


async def test_another_companys_key_gets_404_on_every_record_route_with_an_id(
    runtime: Runtime, api: httpx.AsyncClient, app: Starlette,
) -> None:
    made = await _company_a(api)
    globex = await new_tenant(runtime, "globex")
    async with asgi_client(app, headers=globex.headers) as other:
        for method, path, body in _id_routes(made):
            response = await other.request(method, path, json=body)
            assert_error(response, 404, "not_found")
            assert MARK not in response.text and made["deal"]["id"] not in response.text, (method, path)
        room = await other.get(f"/api/v1/rooms/{ROOM}")
        assert room.json() == {"room_id": ROOM, "version": 0, "deal": None, "ticket": None}
    # The control: A's own key reads every one of them, unchanged by B's attempts.
    for kind in ("deal", "ticket", "contact"):
        mine = await api.get(f"/api/v1/{kind}s/{made[kind]['id']}")
        assert mine.status_code == 200 and mine.json() == made[kind], kind
    for kind in ("deal", "ticket"):
        assert len((await api.get(f"/api/v1/{kind}s/{made[kind]['id']}/timeline")).json()["entries"]) == 1
    assert (await api.get(f"/api/v1/rooms/{ROOM}")).json()["version"] == 2


async def test_a_crm_link_or_session_of_another_company_opens_none_of_its_pages(
    runtime: Runtime, api: httpx.AsyncClient, app: Starlette,
) -> None:
    """A signed link or session names its company: for globex, acme's ids are unknown
    (the page says "deleted", 404, with no record data)."""
    made = await _company_a(api)
    async with asgi_client(app, follow_redirects=False) as browser:
        for kind in ("deal", "ticket"):
            record_id = made[kind]["id"]
            for company, expected in (("globex", 404), ("acme", 200)):  # acme: the control
                claims = {"company": company, "kind": kind, "id": record_id, "agent_id": "agent-7",
                          "permissions": [f"{kind}:view"], "locale": "en", "tz": "UTC"}
                link, _ = runtime.signer.sign(CRM_LINK, claims, 300)
                redirect = await browser.get(f"/crm/{kind}s/{record_id}", params={"link": link})
                assert redirect.status_code == 303
                page = await browser.get(redirect.headers["location"])
                assert page.status_code == expected, (kind, company)
                assert (MARK in page.text) == (company == "acme"), (kind, company)
                browser.cookies.clear()
                session, _ = runtime.signer.sign(CRM_SESSION, claims, 300)
                browser.cookies.set("crm_record_session", session)
                fragment = await browser.get(f"/crm/{kind}s/{record_id}/timeline")
                assert fragment.status_code == expected and (ROOM in fragment.text) == (company == "acme")
                entry = (await api.get(f"/api/v1/{kind}s/{record_id}/timeline")).json()["entries"][0]["id"]
                check = await browser.post(f"/crm/{kind}s/{record_id}/room-check",
                                           json={"entry": entry, "open_anyway": True},
                                           headers={"X-CRM-Request": "1"})
                assert check.status_code == expected, (kind, company, check.text)
                if company == "globex":
                    assert_error(check, 404, "not_found")
                browser.cookies.clear()


async def test_a_token_sees_its_own_companys_room_never_another_one_of_the_same_id(
    runtime: Runtime, api: httpx.AsyncClient, app: Starlette,
) -> None:
    made = await _company_a(api)
    globex = await new_tenant(runtime, "globex")
    async with asgi_client(app, headers=globex.headers) as other, asgi_client(app) as browser:
        b_deal = (await other.post("/api/v1/deals", json=deal(name="GLOBEX-ONLY", room_id=ROOM,
                                                               creator_flag="bot"))).json()
        tokens = {"acme": await mint_token(api, ROOM), "globex": await mint_token(other, ROOM)}
        for holder, own, foreign, foreign_mark in (("globex", b_deal, made["deal"], MARK),
                                                   ("acme", made["deal"], b_deal, "GLOBEX-ONLY")):
            params = {"token": tokens[holder]}
            state = (await browser.get(f"/embed/rooms/{ROOM}/state", params=params)).json()
            assert state["deal"]["id"] == own["id"] and foreign_mark not in json.dumps(state)
            page = await browser.get(f"/embed/rooms/{ROOM}", params=params)
            assert own["name"] in page.text and foreign_mark not in page.text
            for action, body in (("open", {"kind": "deal", "id": foreign["id"]}),
                                 ("telemetry", {"event": "displayed", "kind": "deal", "id": foreign["id"]})):
                assert_error(await browser.post(f"/embed/rooms/{ROOM}/{action}", params=params, json=body),
                             404, "not_found")
            # The control: the holder's own record opens.
            opened = await browser.post(f"/embed/rooms/{ROOM}/open", params=params, json={"kind": "deal", "id": own["id"]})
            assert opened.status_code == 200
        counts = await runtime.store.event_counts("acme", 0, runtime.now() + 10**9)
        assert "deal_preview_displayed" not in counts  # globex's beacon for acme's deal was not counted


@pytest.fixture
def two_companies(tmp_path: Any, clock: Any) -> Any:
    settings = make_settings(tmp_path)
    acme, globex = seed_company(settings), seed_company(settings, "globex")
    with LiveServer(create_app(settings, clock)) as server:
        yield server, acme, globex


def test_a_stream_gets_its_own_companys_room_changes_only(two_companies: tuple[LiveServer, Tenant, Tenant]) -> None:
    server, acme, globex = two_companies
    with httpx.Client(base_url=server.url, headers=acme.headers, timeout=10) as a, \
            httpx.Client(base_url=server.url, headers=globex.headers, timeout=10) as g:
        token = a.post("/api/v1/embed-tokens", json={"room_id": ROOM, "agent_id": "x"}).json()["token"]
        with connect_sse(a, "GET", f"/embed/rooms/{ROOM}/events", params={"token": token}) as source:
            events = (event for event in source.iter_sse() if event.event == "room")
            assert json.loads(next(events).data)["version"] == 0
            g.post("/api/v1/deals", json=deal(name="GLOBEX-ONLY", room_id=ROOM, creator_flag="bot"))
            a.post("/api/v1/deals", json=deal(name="acme's own", room_id=ROOM, creator_flag="bot"))  # the control
            update = json.loads(next(events).data)
    # Globex's change came first: had it reached the stream, it would be this event.
    assert update["version"] == 1 and update["deal"]["name"] == "acme's own"
