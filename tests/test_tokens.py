"""Embed tokens (RFC section 4): minting through ``POST /api/v1/embed-tokens``, the
claims, salts, expiry, key rotation; and secrets never reaching a log line."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer

from tests.support import T0, FakeClock, LiveServer, Tenant, WidgetLog, make_settings, new_tenant
from tests.helpers import assert_error
from widget import logs
from widget.app import create_app
from widget.models import rfc3339, to_micros
from widget.runtime import Runtime
from widget.tokens import CRM_LINK, CRM_SESSION, EMBED, InvalidToken, Signer, TokenExpired

OLD = "old-key-0123456789abcdef"
NEW = "new-key-0123456789abcdef"


async def mint(api: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await api.post("/api/v1/embed-tokens", json={"room_id": "r-1", "agent_id": "agent-7", **body})


async def test_mint_defaults(api: httpx.AsyncClient, runtime: Runtime) -> None:
    response = await mint(api)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"token", "embed_url", "expires_at"}
    token = body["token"]
    assert body["expires_at"] == rfc3339(T0 + 900 * 1_000_000) == "2026-11-25T09:15:00.000000Z"
    url = urlsplit(body["embed_url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == "http://127.0.0.1:8000/embed/rooms/r-1"
    assert parse_qs(url.query) == {"token": [token]}
    claims = runtime.signer.verify(EMBED, token)
    assert set(claims) == {"company", "room_id", "agent_id", "permissions", "parent_origin", "locale",
                           "jti", "exp"}
    assert claims["company"] == "acme"
    assert claims["room_id"] == "r-1"
    assert claims["agent_id"] == "agent-7"
    assert claims["permissions"] == ["deal:view", "ticket:view"]
    assert claims["parent_origin"] == "http://localhost:8001"  # the company's first frame origin
    assert claims["locale"] == "en"
    assert claims["exp"] == T0 + 900 * 1_000_000
    assert isinstance(claims["jti"], str) and claims["jti"]


async def test_mint_with_every_option(api: httpx.AsyncClient, runtime: Runtime) -> None:
    response = await mint(api, room_id="a:b@c.d", permissions=["ticket:view"],
                          parent_origin="https://inbox.example.com", locale="id", ttl_seconds=60)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["expires_at"] == "2026-11-25T09:01:00.000000Z"
    assert urlsplit(body["embed_url"]).path == "/embed/rooms/a%3Ab%40c.d"
    claims = runtime.signer.verify(EMBED, body["token"])
    assert claims["room_id"] == "a:b@c.d"
    assert claims["permissions"] == ["ticket:view"]
    assert claims["parent_origin"] == "https://inbox.example.com"
    assert claims["locale"] == "id"
    assert claims["exp"] == T0 + 60 * 1_000_000


async def test_ttl_is_respected_and_at_most_the_max(api: httpx.AsyncClient, runtime: Runtime,
                                                    clock: FakeClock) -> None:
    clock.advance(0.5)
    body = (await mint(api, ttl_seconds=900)).json()
    assert datetime.fromisoformat(body["expires_at"]) == datetime.fromisoformat("2026-11-25T09:15:00.500000Z")
    body = (await mint(api, ttl_seconds=1)).json()
    assert to_micros(datetime.fromisoformat(body["expires_at"])) == clock.now + 1_000_000
    for ttl in (901, 10**6):
        error = assert_error(await mint(api, ttl_seconds=ttl), 422, "validation_failed", {"ttl_seconds"})
        assert "900" in error["details"][0]["message"]
    for ttl in (0, -5, "60", 60.5, True):
        assert_error(await mint(api, ttl_seconds=ttl), 422, "validation_failed", {"ttl_seconds"})
    # JSON has one number type: 60.0 is the integer 60 (as JSON Schema's "integer" says).
    body = (await mint(api, ttl_seconds=60.0)).json()
    assert to_micros(datetime.fromisoformat(body["expires_at"])) == clock.now + 60_000_000


async def test_max_age_follows_the_setting(tmp_path: Path, clock: FakeClock) -> None:
    application = create_app(make_settings(tmp_path, token_max_age=120), clock)
    async with application.router.lifespan_context(application):
        tenant = await new_tenant(application.state.runtime)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://x",
                                     headers=tenant.headers) as http:
            assert (await mint(http)).json()["expires_at"] == "2026-11-25T09:02:00.000000Z"
            assert_error(await mint(http, ttl_seconds=121), 422, "validation_failed", {"ttl_seconds"})


@pytest.mark.parametrize("origin", ["http://localhost:8001/", "HTTP://LOCALHOST:8001",
                                    "https://inbox.example.com:443", "https://inbox.example.com"])
async def test_parent_origin_is_normalised_before_matching(api: httpx.AsyncClient, runtime: Runtime,
                                                           origin: str) -> None:
    response = await mint(api, parent_origin=origin)
    assert response.status_code == 201, response.text
    claims = runtime.signer.verify(EMBED, response.json()["token"])
    assert claims["parent_origin"] in ("http://localhost:8001", "https://inbox.example.com")


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:8002", "https://localhost:8001",
                                    "http://localhost:8001/inbox", "*", "", "null", "localhost:8001"])
async def test_parent_origin_not_in_frame_origins_is_422(api: httpx.AsyncClient, origin: str) -> None:
    assert_error(await mint(api, parent_origin=origin), 422, "validation_failed", {"parent_origin"})


@pytest.mark.parametrize("permissions", [["admin"], ["deal:view", "deal:edit"], ["DEAL:VIEW"], "deal:view",
                                         [1], {"deal:view": True}])
async def test_permissions_outside_the_allowed_set_are_422(api: httpx.AsyncClient, permissions: object) -> None:
    error = assert_error(await mint(api, permissions=permissions), 422, "validation_failed")
    assert all(d["field"].startswith("permissions") for d in error["details"])


async def test_permissions_subsets(api: httpx.AsyncClient, runtime: Runtime) -> None:
    for permissions in (["deal:view"], ["ticket:view"], ["ticket:view", "deal:view"], []):
        response = await mint(api, permissions=permissions)
        assert response.status_code == 201, response.text
        assert runtime.signer.verify(EMBED, response.json()["token"])["permissions"] == permissions


async def test_other_bad_token_requests_list_every_field(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/embed-tokens", json={"room_id": "a b", "locale": "fr", "x": 1})
    assert_error(response, 422, "validation_failed", {"room_id", "agent_id", "locale", "x"})
    assert_error(await mint(api, agent_id=""), 422, "validation_failed", {"agent_id"})
    assert_error(await mint(api, agent_id="a" * 256), 422, "validation_failed", {"agent_id"})
    both = await mint(api, ttl_seconds=5000, parent_origin="http://evil.example")
    assert_error(both, 422, "validation_failed", {"ttl_seconds", "parent_origin"})


async def test_every_token_has_its_own_jti(api: httpx.AsyncClient, runtime: Runtime) -> None:
    tokens = [(await mint(api)).json()["token"] for _ in range(5)]
    assert len({runtime.signer.verify(EMBED, t)["jti"] for t in tokens}) == 5


async def test_wrong_salt_tampering_and_garbage_are_invalid(api: httpx.AsyncClient, runtime: Runtime) -> None:
    token = (await mint(api)).json()["token"]
    for purpose in (CRM_LINK, CRM_SESSION, "something-else"):
        with pytest.raises(InvalidToken):
            runtime.signer.verify(purpose, token)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for bad in (None, "", "garbage", "a.b.c", tampered, token + "x", "x" * 5000):
        with pytest.raises(InvalidToken):
            runtime.signer.verify(EMBED, bad)
    # A token minted for a CRM link is not an embed token either.
    link, _ = runtime.signer.sign(CRM_LINK, {"company": "acme"}, 60)
    with pytest.raises(InvalidToken):
        runtime.signer.verify(EMBED, link)


async def test_token_without_exp_is_invalid(runtime: Runtime) -> None:
    serializer = URLSafeTimedSerializer(runtime.settings.signing_keys(), salt=EMBED)
    for claims in ({"company": "acme"}, {"company": "acme", "exp": "soon"}, ["not", "a", "dict"]):
        with pytest.raises(InvalidToken):
            runtime.signer.verify(EMBED, serializer.dumps(claims))


async def test_expired_token_carries_the_company(api: httpx.AsyncClient, runtime: Runtime,
                                                 clock: FakeClock) -> None:
    token = (await mint(api, ttl_seconds=30)).json()["token"]
    clock.advance(29.999999)
    assert runtime.signer.verify(EMBED, token)["company"] == "acme"
    clock.advance(0.000001)  # exactly at exp: expired
    with pytest.raises(TokenExpired) as excinfo:
        runtime.signer.verify(EMBED, token)
    assert excinfo.value.claims["company"] == "acme"
    assert excinfo.value.claims["room_id"] == "r-1"
    clock.advance(3600)
    with pytest.raises(TokenExpired):
        runtime.signer.verify(EMBED, token)


def test_key_rotation() -> None:
    clock = FakeClock()
    old_token, _ = Signer([OLD], clock).sign(EMBED, {"company": "acme"}, 60)
    rotated = Signer([OLD, NEW], clock)
    assert rotated.verify(EMBED, old_token)["company"] == "acme"  # still valid during rotation
    new_token, _ = rotated.sign(EMBED, {"company": "acme"}, 60)  # signs with the newest
    assert Signer([NEW], clock).verify(EMBED, new_token)["company"] == "acme"
    with pytest.raises(InvalidToken):
        Signer([OLD], clock).verify(EMBED, new_token)
    with pytest.raises(InvalidToken):  # the old key retired
        Signer([NEW], clock).verify(EMBED, old_token)


async def test_key_rotation_through_settings(tmp_path: Path, clock: FakeClock) -> None:
    old_token, _ = Signer([OLD], clock).sign(EMBED, {"company": "acme"}, 60)
    application = create_app(make_settings(tmp_path, secret_keys=f"{OLD}, {NEW}"), clock)
    async with application.router.lifespan_context(application):
        signer = application.state.runtime.signer
        assert signer.verify(EMBED, old_token)["company"] == "acme"
        token, _ = signer.sign(EMBED, {"company": "acme"}, 60)
        assert Signer([NEW], clock).verify(EMBED, token)["company"] == "acme"
    retired = create_app(make_settings(tmp_path, secret_keys=NEW), clock)
    async with retired.router.lifespan_context(retired):
        with pytest.raises(InvalidToken):
            retired.state.runtime.signer.verify(EMBED, old_token)


# -- secrets never reach the logs ----------------------------------------------------


async def test_tokens_and_api_keys_never_reach_the_log_records(
    api: httpx.AsyncClient, client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime,
    widget_log: WidgetLog, clock: FakeClock
) -> None:
    body = (await mint(api)).json()
    token = body["token"]
    await client.get("/api/v1/rooms/r-1", headers={"Authorization": "Bearer wk_not-a-real-key-123456"})
    await client.get(f"/embed/rooms/r-1/state?token={token}")
    await client.get(f"/embed/rooms/r-2/state?token={token}")  # forbidden
    clock.advance(1000)
    await client.get(f"/embed/rooms/r-1/state?token={token}")  # expired
    await api.post("/api/v1/deals", json={"name": "n", "stage": "s", "pipeline": "p", "room_id": "r-1",
                                          "creator_flag": "bot", "contact_id": "nope"})
    text = widget_log.caplog.text + "".join(
        json.dumps(getattr(r, "props", {}), default=str) for r in widget_log.caplog.records)
    assert widget_log.caplog.records, "expected some log records"
    for secret in (token, tenant.api_key, "wk_not-a-real-key-123456"):
        assert secret not in text


def test_tokens_and_api_keys_never_reach_stderr(capfd: pytest.CaptureFixture[str],
                                                live: tuple[LiveServer, Tenant]) -> None:
    # capfd comes first so the server's log handler writes into the captured stream.
    server, tenant = live
    with httpx.Client(base_url=server.url, timeout=10) as http:
        minted = http.post("/api/v1/embed-tokens", headers=tenant.headers,
                           json={"room_id": "r-1", "agent_id": "a"})
        assert minted.status_code == 201, minted.text
        token = minted.json()["token"]
        http.get(f"/embed/rooms/r-1?token={token}")
        http.get(f"/embed/rooms/r-1/state?token={token}")
        http.get(f"/embed/rooms/r-9/state?token={token}")
        http.get("/api/v1/rooms/r-1", headers={"Authorization": "Bearer wk_garbage-key-value-000"})
        http.post("/api/v1/deals", headers=tenant.headers, json={
            "name": "n", "stage": "s", "pipeline": "p", "room_id": "r-1", "creator_flag": "bot",
            "contact_id": "unknown"})
    out, err = capfd.readouterr()
    assert "contact_association_failed" in err  # the server did log to stderr
    for secret in (token, tenant.api_key, "wk_garbage-key-value-000"):
        assert secret not in out and secret not in err


def test_log_formatters_mask_secrets_that_slip_into_a_line(capfd: pytest.CaptureFixture[str]) -> None:
    token, _ = Signer([OLD], FakeClock()).sign(EMBED, {"company": "acme"}, 60)
    key = "wk_" + "A" * 43
    for fmt in ("json", "text"):
        logs.configure(fmt)
        logs.event("leak_test", logging.WARNING, url=f"/embed/rooms/r?token={token}", auth=f"Bearer {key}",
                   raw=token)
        logs.log.warning("plain message with %s and %s", token, key)
        _, err = capfd.readouterr()
        assert "leak_test" in err and "plain message" in err
        assert token not in err and key not in err
