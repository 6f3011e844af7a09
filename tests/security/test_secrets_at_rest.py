"""Secrets at rest (issue 11): an embed token minted with an ``Idempotency-Key`` is not
kept in the idempotency table in a usable form, yet a replay still answers it (the same
string while the signing key is the same); API keys are kept hashed. A copy of the
database alone holds no bearer credential."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from sqlalchemy import select

from tests.helpers import assert_error, rows_of
from tests.support import FakeClock, Tenant, asgi_client, make_settings, running_app
from widget.runtime import Runtime
from widget.store import schema

BODY = {"room_id": "room-1", "agent_id": "agent-7"}
KEYED = {"Idempotency-Key": "mint-1"}


async def _every_stored_value(rt: Runtime) -> str:
    """Every row of every table, as one text (what a copy of the database holds)."""
    rows = []
    for table in schema.metadata.sorted_tables:
        rows += await rows_of(rt, select(table))
    return json.dumps(rows, default=str)


async def test_a_keyed_embed_token_is_stored_without_the_token_and_replayed_identically(
    api: httpx.AsyncClient, runtime: Runtime, tenant: Tenant
) -> None:
    first = await api.post("/api/v1/embed-tokens", json=BODY, headers=KEYED)
    assert first.status_code == 201, first.text
    token = first.json()["token"]

    stored = await _every_stored_value(runtime)
    assert token not in stored
    assert token.split(".")[-1] not in stored  # not even its signature
    assert tenant.api_key not in stored

    again = await api.post("/api/v1/embed-tokens", json=BODY, headers=KEYED)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content  # byte for byte: the same token, url and expiry
    state = await api.get("/embed/rooms/room-1/state", params={"token": again.json()["token"]})
    assert state.status_code == 200, state.text

    other = await api.post("/api/v1/embed-tokens", json={**BODY, "agent_id": "someone-else"}, headers=KEYED)
    assert_error(other, 409, "idempotency_conflict")


async def test_after_a_key_rotation_the_replay_is_a_working_token_of_the_same_claims(
    tmp_path: Path, clock: FakeClock, api: httpx.AsyncClient, runtime: Runtime
) -> None:
    first = (await api.post("/api/v1/embed-tokens", json=BODY, headers=KEYED)).json()
    rotated = make_settings(tmp_path, secret_keys="test-key-0123456789abcdef,rotated-key-0123456789abcdef")
    async with running_app(rotated, clock) as app, asgi_client(app, headers=dict(api.headers)) as http:
        again = await http.post("/api/v1/embed-tokens", json=BODY, headers=KEYED)
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
        replayed = again.json()
        assert replayed["token"] != first["token"]  # signed with the newest key now
        assert (replayed["expires_at"], replayed["embed_url"].split("?")[0]) == (
            first["expires_at"], first["embed_url"].split("?")[0])
        assert replayed["embed_url"].endswith("?token=" + replayed["token"])
        signer = app.state.runtime.signer
        old, new = (signer.verify("widget.embed", t) for t in (first["token"], replayed["token"]))
        assert old == new  # the same claims: jti, exp, room, agent
        state = await http.get("/embed/rooms/room-1/state", params={"token": replayed["token"]})
        assert state.status_code == 200, state.text
