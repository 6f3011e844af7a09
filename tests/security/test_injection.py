"""Data that tries to break out of where it lands: SSE framing, response headers, HTML
pages (CSP and the security headers), JSON parsing and body limits on the routes that
take JSON outside ``/api/v1`` (the record API's own are ``tests/test_api_errors.py``'s),
server-owned fields sent by a client (mass assignment), and one Idempotency-Key sent
many times at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from httpx_sse import connect_sse
from starlette.applications import Starlette

from tests.helpers import assert_error, audit, deal, detail, ticket
from tests.support import LiveServer, Tenant, asgi_client, mint_token
from widget.runtime import Runtime
from widget.tokens import CRM_LINK, CRM_SESSION

ROOM = "room-1"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors ")

# -- SSE framing ------------------------------------------------------------------------

# Each tries to end the data line and forge fields or a whole event of its own.
FRAME_BREAKERS = [
    'a\n\nevent: room\ndata: {"version": 999}\n\n',
    "b\r\nid: 999\r\nretry: 1\r\n\r\n",
    "c\revent: token-expired\rdata: {}\r\r",
    "d\n: comment\nevent: x",
    "e\u2028f\u2029g\x85h\x0bi\x0cj",  # not SSE line ends, but other parsers' (str.splitlines)
    "data: k",
]


def _events(source: Any) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for event in source.iter_sse():
        if event.data:
            yield event.event, event.id, json.loads(event.data)


def test_newlines_in_every_string_field_never_break_the_event_framing(live: tuple[LiveServer, Tenant]) -> None:
    """Read over real uvicorn with httpx-sse: every event parses back to exactly the
    stored snapshot, first paint and live updates alike, and no forged event or id
    appears."""
    server, tenant = live
    first, second, third = FRAME_BREAKERS[0:2], FRAME_BREAKERS[2:4], FRAME_BREAKERS[4:6]
    with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=10) as api:
        token = api.post("/api/v1/embed-tokens", json={"room_id": ROOM, "agent_id": "a"}).json()["token"]
        made = api.post("/api/v1/deals", json=deal(name=first[0], stage=first[1], pipeline=second[0],
                                                    room_id=ROOM, creator_flag="bot"))
        assert made.status_code == 201, made.text
        with connect_sse(api, "GET", f"/embed/rooms/{ROOM}/events", params={"token": token}) as source:
            events = _events(source)
            seen = [next(events)]  # the first paint: version 1
            api.post("/api/v1/tickets", json=ticket(name=second[1], status=third[0], room_id=ROOM,
                                                    creator_flag="agentic_ai"))
            seen.append(next(events))
            api.patch(f"/api/v1/deals/{made.json()['id']}", json={"name": third[1], "stage": FRAME_BREAKERS[1]})
            seen.append(next(events))
            stored = api.get(f"/api/v1/rooms/{ROOM}").json()
    assert [(name, id_) for name, id_, _ in seen] == [("room", "1"), ("room", "2"), ("room", "3")]
    assert seen[-1][2] == stored  # exactly the stored values, every field
    assert (seen[0][2]["deal"]["name"], seen[0][2]["deal"]["stage"], seen[0][2]["deal"]["pipeline"]) == \
        (first[0], first[1], second[0])
    assert (stored["ticket"]["name"], stored["ticket"]["status"]) == (second[1], third[0])
    assert (stored["deal"]["name"], stored["deal"]["stage"]) == (third[1], FRAME_BREAKERS[1])


# -- response headers -------------------------------------------------------------------

EVIL_IDS = ["x\r\nSet-Cookie: evil=1", "y\nLocation: https:evil.example", "z%0d%0aX-Evil: 1"]


def _header_lines(response: httpx.Response) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers.raw]


@pytest.mark.parametrize("record_id", EVIL_IDS)
async def test_ids_and_parameters_never_reach_a_header_raw(
    app: Starlette, runtime: Runtime, api: httpx.AsyncClient, record_id: str,
) -> None:
    """A CRM link for a record id with CR/LF (the redirect's Location and the
    cookie's Path are built from it) and a language parameter with CR/LF."""
    claims = {"company": "acme", "kind": "deal", "id": record_id, "agent_id": "a", "permissions": ["deal:view"],
              "locale": "en", "tz": "UTC"}
    link, _ = runtime.signer.sign(CRM_LINK, claims, 300)
    async with asgi_client(app, follow_redirects=False) as browser:
        response = await browser.get(f"/crm/deals/{quote(record_id, safe='')}", params={"link": link, "lang": "en\r\nX-Evil: 1"})
    assert response.status_code == 303  # a valid link: redirected with a session
    lines = _header_lines(response)
    assert not any(c in name + value for name, value in lines for c in "\r\n\x00"), lines
    names = [name.lower() for name, _ in lines]
    assert names.count("set-cookie") == 1 and "x-evil" not in names and names.count("location") == 1
    location = response.headers["location"]
    assert location.startswith("/crm/deals/") and "evil.example" not in location.split("/crm/deals/")[0]
    assert "path=/crm/deals/" in response.headers["set-cookie"].lower()


# -- HTML pages: CSP and security headers -----------------------------------------------


def _assert_page_headers(response: httpx.Response, ancestors: str, what: str) -> None:
    assert response.headers["content-type"].startswith("text/html"), what
    assert response.headers["content-security-policy"] == CSP + ancestors, (what, response.headers)
    assert response.headers["x-content-type-options"] == "nosniff", what
    assert response.headers["referrer-policy"] == "no-referrer", what
    assert response.headers["cache-control"] == "no-store", what
    found = audit(response.text)
    assert (found.inline_scripts, found.bad_attributes) == (0, []), what


async def test_every_html_route_carries_the_csp_and_security_headers(
    app: Starlette, runtime: Runtime, api: httpx.AsyncClient, clock: Any,
) -> None:
    """Every page and state of a page: the component (ready, empty, error, expired,
    forbidden), the CRM record page (record, deleted, no link, bad link, used link,
    no access) and its timeline fragment; framed only by the company's origins, the
    CRM pages by nobody. Names with markup are escaped (no inline script comes out)."""
    evil = '"><script>alert(1)</script><img src=x onerror=alert(2) style="x">'
    made = (await api.post("/api/v1/deals", json=deal(name=evil, stage=evil, pipeline=evil, room_id=ROOM,
                                                        creator_flag="bot", source=evil))).json()
    await api.post("/api/v1/tickets", json=ticket(name=evil, status=evil, room_id=ROOM, creator_flag="bot"))
    token = await mint_token(api, ROOM)
    origins = "http://localhost:8001 https://inbox.example.com"
    async with asgi_client(app, follow_redirects=False) as browser:
        pages = {
            "ready": (await browser.get(f"/embed/rooms/{ROOM}", params={"token": token}), origins),
            "empty": (await browser.get("/embed/rooms/room-2", params={"token": await mint_token(api, "room-2")}),
                      origins),
            "error": (await browser.get(f"/embed/rooms/{ROOM}", params={"token": "x"}), "'none'"),
            "forbidden": (await browser.get("/embed/rooms/room-3", params={"token": token}), origins),
            "no link": (await browser.get(f"/crm/deals/{made['id']}"), "'none'"),
            "bad link": (await browser.get(f"/crm/deals/{made['id']}", params={"link": "x"}), "'none'"),
        }
        opened = await browser.post(f"/embed/rooms/{ROOM}/open", params={"token": token},
                                    json={"kind": "deal", "id": made["id"]})
        link = opened.json()["url"].split("?link=")[1]
        assert (await browser.get(f"/crm/deals/{made['id']}", params={"link": link})).status_code == 303
        pages["record"] = (await browser.get(f"/crm/deals/{made['id']}"), "'none'")
        pages["timeline fragment"] = (await browser.get(f"/crm/deals/{made['id']}/timeline"), "'none'")
        browser.cookies.clear()
        pages["used link"] = (await browser.get(f"/crm/deals/{made['id']}", params={"link": link}), "'none'")
        no_access, _ = runtime.signer.sign(CRM_LINK, {"company": "acme", "kind": "deal", "id": made["id"],
                                                      "agent_id": "a", "permissions": ["ticket:view"],
                                                      "locale": "en", "tz": "UTC"}, 300)
        pages["no access"] = (await browser.get(f"/crm/deals/{made['id']}", params={"link": no_access}), "'none'")
        session, _ = runtime.signer.sign(CRM_SESSION, {"company": "acme", "kind": "deal", "id": made["id"],
                                                       "agent_id": "a", "permissions": ["deal:view"],
                                                       "locale": "en", "tz": "UTC"}, 300)
        await api.delete(f"/api/v1/deals/{made['id']}")
        browser.cookies.set("crm_record_session", session)
        pages["deleted"] = (await browser.get(f"/crm/deals/{made['id']}"), "'none'")
        clock.advance(901)
        pages["expired"] = (await browser.get(f"/embed/rooms/{ROOM}", params={"token": token}), origins)
    statuses = {name: response.status_code for name, (response, _) in pages.items()}
    assert statuses == {"ready": 200, "empty": 200, "error": 401, "forbidden": 403, "no link": 401,
                        "bad link": 401, "record": 200, "timeline fragment": 200, "used link": 401,
                        "no access": 403, "deleted": 404, "expired": 401}
    for name, (response, ancestors) in pages.items():
        _assert_page_headers(response, ancestors, name)
    # The control: the evil name is there, as text.
    escaped = "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    assert escaped in pages["ready"][0].text.replace("&quot;", "&#34;")
    assert escaped in pages["record"][0].text.replace("&quot;", "&#34;")
    assert "<script>alert(1)" not in pages["ready"][0].text + pages["record"][0].text


async def test_json_answers_and_errors_are_not_renderable_or_frameable(
    client: httpx.AsyncClient, api: httpx.AsyncClient,
) -> None:
    for response in (await api.get("/api/v1/rooms/r-1"), await client.get("/api/v1/deals/x"),
                     await client.get("/no/such/page"), await client.get("/embed/rooms/r-1/state"),
                     await client.get("/healthz")):
        assert response.headers["content-type"].startswith("application/json"), response.request.url
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


# -- strict JSON and body limits outside /api/v1 ----------------------------------------

JSON = {"Content-Type": "application/json"}
STRICT = {
    "duplicate key": (b'{"kind": "deal", "kind": "ticket", "id": "x"}', JSON, 400, "malformed_json"),
    "NaN": (b'{"kind": "deal", "id": NaN}', JSON, 400, "malformed_json"),
    "Infinity": (b'{"kind": "deal", "id": -Infinity}', JSON, 400, "malformed_json"),
    "trailing garbage": (b'{"kind": "deal", "id": "x"} {"more": 1}', JSON, 400, "malformed_json"),
    "BOM": (b'\xef\xbb\xbf{"kind": "deal", "id": "x"}', JSON, 400, "malformed_json"),
    "invalid UTF-8": (b'{"kind": "deal", "id": "\xff"}', JSON, 400, "malformed_json"),
    "top-level array": (b'[{"kind": "deal", "id": "x"}]', JSON, 400, "malformed_json"),
    "deep nesting": (b'{"id": ' + b"[" * 30000 + b"]" * 30000 + b"}", JSON, 400, "malformed_json"),
    "form": (b"kind=deal&id=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
             "unsupported_media_type"),
    "no content type": (b'{"kind": "deal", "id": "x"}', {}, 415, "unsupported_media_type"),
    "too large": (b'{"kind": "deal", "id": "' + b"x" * 65536 + b'"}', JSON, 413, "payload_too_large"),
}


@pytest.fixture
async def json_routes(app: Starlette, runtime: Runtime, api: httpx.AsyncClient) -> dict[str, tuple[str, dict]]:
    """The routes that take JSON outside /api/v1: path, and the headers they need."""
    made = (await api.post("/api/v1/deals", json=deal(room_id=ROOM, creator_flag="bot"))).json()
    token = await mint_token(api, ROOM)
    session, _ = runtime.signer.sign(CRM_SESSION, {"company": "acme", "kind": "deal", "id": made["id"],
                                                   "agent_id": "a", "permissions": ["deal:view"],
                                                   "locale": "en", "tz": "UTC"}, 300)
    return {
        "open": (f"/embed/rooms/{ROOM}/open?token={token}", {}),
        "telemetry": (f"/embed/rooms/{ROOM}/telemetry?token={token}", {}),
        "room-check": (f"/crm/deals/{made['id']}/room-check",
                       {"X-CRM-Request": "1", "Cookie": f"crm_record_session={session}"}),
    }


@pytest.mark.parametrize("case", list(STRICT))
async def test_strict_json_and_the_body_limit_on_the_embed_and_crm_routes(
    app: Starlette, json_routes: dict[str, tuple[str, dict]], case: str,
) -> None:
    payload, headers, status, code = STRICT[case]
    async with asgi_client(app) as browser:
        for route, (path, needed) in json_routes.items():
            sent = {**needed, **headers}
            if case == "form" and route == "telemetry":
                continue  # sendBeacon's text/plain is allowed there; a form is refused below
            response = await browser.post(path, content=payload, headers=sent)
            assert_error(response, status, code)
        if case == "form":
            assert_error(await browser.post(json_routes["telemetry"][0], content=payload, headers=headers),
                         415, "unsupported_media_type")


async def test_the_json_routes_take_well_formed_bodies(app: Starlette, api: httpx.AsyncClient,
                                                       json_routes: dict[str, tuple[str, dict]]) -> None:
    """The control of the strict-JSON matrix: a valid body passes the parser on each."""
    deal_id = json_routes["room-check"][0].split("/")[3]
    async with asgi_client(app) as browser:
        opened = await browser.post(json_routes["open"][0], json={"kind": "deal", "id": deal_id})
        assert opened.status_code == 200
        beacon = await browser.post(json_routes["telemetry"][0], headers={"Content-Type": "text/plain"},
                                    content=json.dumps({"event": "displayed", "kind": "deal", "id": deal_id}))
        assert beacon.status_code == 204
        entry = (await api.get(f"/api/v1/deals/{deal_id}/timeline")).json()["entries"][0]["id"]
        path, needed = json_routes["room-check"]
        checked = await browser.post(path, headers=needed, json={"entry": entry, "open_anyway": True})
        assert checked.status_code == 200, checked.text


# -- mass assignment --------------------------------------------------------------------

SERVER_OWNED = {"id": "deal_mine", "creator": "Bot", "url": "https://evil.example/", "created_at":
                "2000-01-01T00:00:00.000000Z", "updated_at": "2000-01-01T00:00:00.000000Z", "company_id": "globex",
                "company": "globex", "version": 99, "deleted_at": None}


@pytest.mark.parametrize("kind", ["deal", "ticket"])
async def test_server_owned_fields_in_a_create_are_422_each_named(api: httpx.AsyncClient, kind: str) -> None:
    body = (deal if kind == "deal" else ticket)(room_id=ROOM, creator_flag="bot", **SERVER_OWNED)
    if kind == "ticket":
        body["unique_id"] = "TCK-999999"
    error = assert_error(await api.post(f"/api/v1/{kind}s", json=body), 422, "validation_failed",
                         set(SERVER_OWNED) | ({"unique_id"} if kind == "ticket" else set()))
    assert detail(error, "company_id") == "unknown field"
    assert (await api.get(f"/api/v1/rooms/{ROOM}")).json()["version"] == 0  # nothing was created


@pytest.mark.parametrize("kind", ["deal", "ticket"])
async def test_server_owned_and_immutable_fields_in_a_patch_are_422_and_change_nothing(
    api: httpx.AsyncClient, kind: str,
) -> None:
    made = (await api.post(f"/api/v1/{kind}s", json=(deal if kind == "deal" else ticket)(
        room_id=ROOM, creator_flag="bot", source="chatbot"))).json()
    fields = ["id", "creator", "creator_flag", "room_id", "contact_id", "source", "url", "external_url",
              "created_at", "updated_at"] + (["unique_id"] if kind == "ticket" else [])
    values = {"id": "other", "creator": "AI", "creator_flag": "agentic_ai", "room_id": "room-9", "contact_id": "c",
              "source": "x", "url": "https://evil.example/", "external_url": "https://evil.example/",
              "created_at": "2000-01-01T00:00:00.000000Z", "updated_at": "2000-01-01T00:00:00.000000Z",
              "unique_id": "TCK-000001"}
    for field in fields:  # each alone, beside a legitimate change
        response = await api.patch(f"/api/v1/{kind}s/{made['id']}", json={"name": "renamed", field: values[field]})
        error = assert_error(response, 422, "validation_failed", {field})
        assert detail(error, field) == "cannot be changed"
    assert (await api.get(f"/api/v1/{kind}s/{made['id']}")).json() == made
    # The control: the legitimate change alone goes through.
    assert (await api.patch(f"/api/v1/{kind}s/{made['id']}", json={"name": "renamed"})).json()["name"] == "renamed"


async def test_a_token_cannot_be_minted_for_another_company_or_wider_permissions(api: httpx.AsyncClient,
                                                                                 client: httpx.AsyncClient) -> None:
    base = {"room_id": ROOM, "agent_id": "a"}
    for extra, field in (({"company": "globex"}, "company"), ({"company_id": "globex"}, "company_id"),
                         ({"exp": 2**62}, "exp"), ({"jti": "x"}, "jti"),
                         ({"permissions": ["deal:view", "admin"]}, "permissions.1")):
        error = assert_error(await api.post("/api/v1/embed-tokens", json={**base, **extra}), 422,
                             "validation_failed")
        assert {d["field"] for d in error["details"]} == {field}, (extra, error)
    token = await mint_token(api, ROOM)  # the control
    assert (await client.get(f"/embed/rooms/{ROOM}/state", params={"token": token})).status_code == 200


async def test_extra_fields_in_embed_bodies_are_refused(app: Starlette, api: httpx.AsyncClient) -> None:
    made = (await api.post("/api/v1/deals", json=deal(room_id=ROOM, creator_flag="bot"))).json()
    token = await mint_token(api, ROOM, permissions=["ticket:view"])
    async with asgi_client(app) as browser:
        widened = await browser.post(f"/embed/rooms/{ROOM}/open", params={"token": token},
                                     json={"kind": "deal", "id": made["id"], "permissions": ["deal:view"]})
        assert_error(widened, 422, "validation_failed", {"permissions"})
        plain = await browser.post(f"/embed/rooms/{ROOM}/open", params={"token": token},
                                   json={"kind": "deal", "id": made["id"]})
        assert_error(plain, 403, "forbidden")  # the control: without it, the token's own permissions decide


# -- idempotency races ------------------------------------------------------------------


def test_one_idempotency_key_sent_many_times_at_once_creates_one_record(live: tuple[LiveServer, Tenant]) -> None:
    """Twelve threads POST the same body with the same key at the same moment over real
    HTTP: one record (the room's version is 1 and its deal is it), every 201 the same
    body, the rest 409 "still running"; after it, every replay is that body."""
    server, tenant = live
    body = deal(name="Raced", room_id="race-room", creator_flag="bot")
    headers = {**tenant.headers, "Idempotency-Key": "race-key-1"}
    answers: list[httpx.Response] = []
    start = threading.Barrier(12)

    def post() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            start.wait()
            answers.append(http.post("/api/v1/deals", json=body, headers=headers))

    threads = [threading.Thread(target=post) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(answers) == 12
    created = [r for r in answers if r.status_code == 201]
    assert created and {r.status_code for r in answers} <= {201, 409}, [(r.status_code, r.text) for r in answers]
    assert len({r.content for r in created}) == 1
    for refused in (r for r in answers if r.status_code == 409):
        assert_error(refused, 409, "idempotency_conflict")
    with httpx.Client(base_url=server.url, timeout=10, headers=headers) as http:
        replays = [http.post("/api/v1/deals", json=body) for _ in range(3)]
        assert {(r.status_code, r.content, r.headers.get("idempotent-replayed")) for r in replays} == \
            {(201, created[0].content, "true")}
        room = http.get("/api/v1/rooms/race-room").json()
        assert room["version"] == 1 and room["deal"]["id"] == created[0].json()["id"]
        other = http.post("/api/v1/deals", json={**body, "name": "Other"})
        assert_error(other, 409, "idempotency_conflict")
        # The control: another key creates a second record (the room shows it).
        again = http.post("/api/v1/deals", json=body, headers={"Idempotency-Key": "race-key-2"})
        assert again.status_code == 201 and http.get("/api/v1/rooms/race-room").json()["version"] == 2
