"""Embed tokens of every bad kind on every embed route (RFC section 4's table): the
component page, ``/state``, ``/open``, ``/telemetry`` and the event stream.

Every refused token gets the RFC's status and code (the JSON routes and the stream in
the RFC error shape; the page with its ``data-state``, no record data, and framing
only when the company is known), and none of them reaches the room's data. The
positive control is the same matrix with the good token: every route answers with the
room (the stream over real uvicorn, since an endless body cannot be read in-process)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from itsdangerous import base64_decode, base64_encode

from tests.helpers import assert_error, deal
from starlette.applications import Starlette

from tests.support import FakeClock, LiveServer, Tenant, asgi_client, mint_token
from widget.runtime import Runtime
from widget.tokens import CRM_LINK, CRM_SESSION, EMBED, Signer

ROOM = "room-1"
SECRET_NAME = "Secret laptop order"  # the room's deal: no refused request may show it
ORIGINS = "http://localhost:8001 https://inbox.example.com"  # tests.support.DEFAULT_ORIGINS


def _tamper(token: str, **changes: Any) -> str:
    """The token's claims changed, its timestamp and signature kept."""
    payload, timestamp, signature = token.rsplit(".", 2)
    compressed = payload.startswith(".")
    raw = base64_decode(payload.lstrip("."))
    if compressed:
        import zlib

        raw = zlib.decompress(raw)
    claims = json.loads(raw) | changes
    return base64_encode(json.dumps(claims, separators=(",", ":")).encode()).decode() + f".{timestamp}.{signature}"


def _claims(rt: Runtime, room_id: str = ROOM) -> dict[str, Any]:
    return {"company": "acme", "room_id": room_id, "agent_id": "agent-7", "permissions": ["deal:view", "ticket:view"],
            "parent_origin": "http://localhost:8001", "locale": "en"}


# name -> (how to make it from (runtime, good token, api key)), expected (status, code)
BadToken = Callable[[Runtime, str, str], str | None]
INVALID = (401, "invalid_token")
BAD_TOKENS: dict[str, tuple[BadToken, tuple[int, str]]] = {
    "missing": (lambda rt, good, key: None, INVALID),
    "empty": (lambda rt, good, key: "", INVALID),
    "malformed": (lambda rt, good, key: "not-a-token", INVALID),
    "bad-signature": (lambda rt, good, key: good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), INVALID),
    "truncated": (lambda rt, good, key: good[: len(good) // 2], INVALID),
    "signature-cut-off": (lambda rt, good, key: good.rsplit(".", 1)[0], INVALID),
    "another-key": (lambda rt, good, key: Signer(["an-attackers-key-0123456789"], rt.now).sign(
        EMBED, _claims(rt), 600)[0], INVALID),
    "crm-link-salt": (lambda rt, good, key: rt.signer.sign(CRM_LINK, _claims(rt), 600)[0], INVALID),
    "crm-session-salt": (lambda rt, good, key: rt.signer.sign(CRM_SESSION, _claims(rt), 600)[0], INVALID),
    "tampered-exp": (lambda rt, good, key: _tamper(good, exp=2**62), INVALID),
    "tampered-company": (lambda rt, good, key: _tamper(good, company="globex"), INVALID),
    "tampered-permissions": (lambda rt, good, key: _tamper(good, permissions=["deal:view", "ticket:view", "admin"]),
                             INVALID),
    "api-key-as-token": (lambda rt, good, key: key, INVALID),
    "oversized": (lambda rt, good, key: good + "A" * 5000, INVALID),
    "expired": (lambda rt, good, key: rt.signer.sign(EMBED, _claims(rt), 60)[0], (401, "token_expired")),
    "another-room": (lambda rt, good, key: rt.signer.sign(EMBED, _claims(rt, "room-2"), 600)[0], (403, "forbidden")),
}
PAGE_STATE = {"invalid_token": "error", "token_expired": "expired", "forbidden": "forbidden"}


async def _room_with_a_deal(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.post("/api/v1/deals", json=deal(name=SECRET_NAME, room_id=ROOM, creator_flag="bot"))
    assert response.status_code == 201, response.text
    return response.json()


async def _every_route(client: httpx.AsyncClient, token: str | None, deal_id: str, stream: bool = True
                       ) -> dict[str, httpx.Response]:
    params = {} if token is None else {"token": token}
    base = f"/embed/rooms/{ROOM}"
    answers = {
        "page": await client.get(base, params=params),
        "state": await client.get(f"{base}/state", params=params),
        "open": await client.post(f"{base}/open", params=params, json={"kind": "deal", "id": deal_id}),
        "telemetry": await client.post(f"{base}/telemetry", params=params,
                                       json={"event": "displayed", "kind": "deal", "id": deal_id}),
    }
    if stream:  # a refused stream is answered whole, before any event: readable in-process
        answers["events"] = await client.get(f"{base}/events", params=params)
    return answers


@pytest.mark.parametrize("bad", list(BAD_TOKENS))
async def test_a_bad_token_is_refused_alike_on_every_embed_route(
    app: Starlette, api: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, clock: FakeClock, bad: str,
) -> None:
    record = await _room_with_a_deal(api)
    good = await mint_token(api, ROOM)
    make, (status, code) = BAD_TOKENS[bad]
    token = make(runtime, good, tenant.api_key)
    if bad == "expired":
        clock.advance(61)
    async with asgi_client(app) as browser:  # no API key
        answers = await _every_route(browser, token, record["id"])
    for route, response in answers.items():
        assert SECRET_NAME not in response.text, (route, response.text)
        if route == "page":
            assert response.status_code == status, (route, response.status_code)
            assert f'data-state="{PAGE_STATE[code]}"' in response.text
            ancestors = response.headers["content-security-policy"].rsplit("frame-ancestors ", 1)[1]
            # The page is framed only for a company the token proves (RFC section 4).
            assert ancestors == ("'none'" if code == "invalid_token" else ORIGINS), (bad, ancestors)
            assert 'data-token=""' in response.text or code != "invalid_token"
        else:
            assert_error(response, status, code)
    counts = await runtime.store.event_counts("acme", 0, runtime.now() + 10**9)
    assert counts == {"bot_deal_created": 1}  # no click, no display counted


async def test_the_good_token_opens_every_route(
    app: Starlette, api: httpx.AsyncClient, runtime: Runtime,
) -> None:
    """The control of the matrix above, in-process (the stream: next test)."""
    record = await _room_with_a_deal(api)
    token = await mint_token(api, ROOM)
    async with asgi_client(app) as browser:
        answers = await _every_route(browser, token, record["id"], stream=False)
    assert {route: r.status_code for route, r in answers.items()} == {
        "page": 200, "state": 200, "open": 200, "telemetry": 204}
    assert SECRET_NAME in answers["page"].text and 'data-state="ready"' in answers["page"].text
    assert answers["state"].json()["deal"]["name"] == SECRET_NAME
    assert re.match(r"http://127\.0\.0\.1:8000/crm/deals/.+\?link=", answers["open"].json()["url"])
    counts = await runtime.store.event_counts("acme", 0, runtime.now() + 10**9)
    assert counts == {"bot_deal_created": 1, "deal_preview_clicked": 1, "deal_preview_displayed": 1}


def test_the_good_token_opens_the_stream_and_the_bad_ones_do_not(live: tuple[LiveServer, Tenant]) -> None:
    """Over real uvicorn: the good token's stream sends the room; a refused one is an
    error response, never a stream (EventSource cannot see it: the status must be set
    before any byte of a stream)."""
    server, tenant = live
    with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=10) as api:
        api.post("/api/v1/deals", json=deal(name=SECRET_NAME, room_id=ROOM, creator_flag="bot"))
        good = api.post("/api/v1/embed-tokens", json={"room_id": ROOM, "agent_id": "a"}).json()["token"]
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        with connect_sse(browser, "GET", f"/embed/rooms/{ROOM}/events", params={"token": good}) as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            first = next(event for event in source.iter_sse() if event.event == "room")
        assert json.loads(first.data)["deal"]["name"] == SECRET_NAME
        for bad in (None, "garbage", good[:-3], tenant.api_key):
            response = browser.get(f"/embed/rooms/{ROOM}/events", params={} if bad is None else {"token": bad})
            assert_error(response, 401, "invalid_token")
        other_room = browser.get("/embed/rooms/room-2/events", params={"token": good})
        assert_error(other_room, 403, "forbidden")
