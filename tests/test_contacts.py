"""Contacts (soft delete) and contact association at creation (PRD S03, RFC section 5):
a bad contact never fails a create; it is logged as ``contact_association_failed``."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

import widget.contacts
from tests.support import WidgetLog, new_tenant
from tests.helpers import assert_error, body_for
from widget.runtime import Runtime

KINDS = ["deal", "ticket"]


async def test_contact_create_get_soft_delete(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/contacts", json={"name": "Budi", "phone": "+62812", "email": "b@x.id"})
    assert response.status_code == 201, response.text
    contact = response.json()
    assert contact["name"] == "Budi" and contact["phone"] == "+62812" and contact["email"] == "b@x.id"
    assert isinstance(contact["id"], str) and contact["id"]
    path = f"/api/v1/contacts/{contact['id']}"
    assert (await api.get(path)).json() == contact
    minimal = (await api.post("/api/v1/contacts", json={"name": "Sari"})).json()
    assert minimal["phone"] is None and minimal["email"] is None

    response = await api.delete(path)
    assert response.status_code == 204 and response.content == b""
    assert_error(await api.get(path), 404, "not_found")
    assert_error(await api.delete(path), 404, "not_found")
    # Only that contact is gone.
    assert (await api.get(f"/api/v1/contacts/{minimal['id']}")).status_code == 200


async def test_contacts_are_per_company(api: httpx.AsyncClient, client: httpx.AsyncClient,
                                        runtime: Runtime) -> None:
    other = await new_tenant(runtime, "globex")
    contact = (await api.post("/api/v1/contacts", json={"name": "Budi"})).json()
    path = f"/api/v1/contacts/{contact['id']}"
    assert_error(await client.get(path, headers=other.headers), 404, "not_found")
    assert_error(await client.delete(path, headers=other.headers), 404, "not_found")
    assert (await api.get(path)).status_code == 200


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flag", ["bot", "agentic_ai", None])
async def test_valid_contact_is_linked(api: httpx.AsyncClient, widget_log: WidgetLog, kind: str,
                                       flag: str | None) -> None:
    contact = (await api.post("/api/v1/contacts", json={"name": "Budi"})).json()
    extra = {"creator_flag": flag} if flag else {}
    response = await api.post(f"/api/v1/{kind}s", json=body_for(kind, contact_id=contact["id"],
                                                                room_id="r-1", **extra))
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["contact_id"] == contact["id"]
    assert (await api.get(f"/api/v1/{kind}s/{record['id']}")).json()["contact_id"] == contact["id"]
    assert widget_log.events("contact_association_failed") == []


@pytest.mark.parametrize("kind", KINDS)
async def test_absent_or_null_contact_links_nothing_and_logs_nothing(
    api: httpx.AsyncClient, widget_log: WidgetLog, kind: str
) -> None:
    for body in (body_for(kind, creator_flag="bot"), body_for(kind, creator_flag="bot", contact_id=None)):
        response = await api.post(f"/api/v1/{kind}s", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["contact_id"] is None
    assert widget_log.events("contact_association_failed") == []
    # The creation event still fires, saying no contact was given.
    created = widget_log.props(f"bot_{kind}_created")
    assert [p["contact_id_present"] for p in created] == [False, False]


async def _failing_cases(api: httpx.AsyncClient, client: httpx.AsyncClient,
                         runtime: Runtime) -> list[tuple[object, str]]:
    deleted = (await api.post("/api/v1/contacts", json={"name": "Gone"})).json()["id"]
    assert (await api.delete(f"/api/v1/contacts/{deleted}")).status_code == 204
    other = await new_tenant(runtime, "globex")
    foreign = (await client.post("/api/v1/contacts", json={"name": "Theirs"}, headers=other.headers)).json()["id"]
    return [
        ("ct_does_not_exist", "unknown"),
        (deleted, "deleted"),
        (foreign, "other_company"),
        (0, "invalid_id"),
        ("0", "invalid_id"),
        ("", "invalid_id"),
        ("null", "invalid_id"),
        (12345, "unknown"),
        ("c" * 255, "unknown"),
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_bad_contact_still_creates_the_record_and_logs_the_reason(
    api: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime, widget_log: WidgetLog, kind: str
) -> None:
    cases = await _failing_cases(api, client, runtime)
    widget_log.clear()
    for contact_id, reason in cases:
        response = await api.post(f"/api/v1/{kind}s", json=body_for(kind, contact_id=contact_id,
                                                                    room_id="r-1", creator_flag="bot"))
        assert response.status_code == 201, (contact_id, response.text)
        record = response.json()
        assert record["contact_id"] is None, contact_id
        # The record is created normally otherwise: it takes the room.
        assert (await api.get("/api/v1/rooms/r-1")).json()[kind]["id"] == record["id"]
        logged = widget_log.events("contact_association_failed")
        assert len(logged) == 1, (contact_id, logged)
        assert logged[0].levelno == logging.WARNING
        assert logged[0].getMessage() == "contact_association_failed"
        props = logged[0].props  # type: ignore[attr-defined]
        assert props["reason"] == reason, (contact_id, props)
        assert props["contact_id"] == str(contact_id)
        assert props[f"{kind}_id"] == record["id"]
        assert props["company_id"] == "acme"
        widget_log.clear()


async def test_integer_contact_id_is_taken_as_its_decimal_string(
    api: httpx.AsyncClient, widget_log: WidgetLog
) -> None:
    response = await api.post("/api/v1/deals", json=body_for("deal", contact_id=12345))
    assert response.status_code == 201, response.text
    assert response.json()["contact_id"] is None
    [props] = widget_log.props("contact_association_failed")
    assert props["contact_id"] == "12345" and props["reason"] == "unknown"


async def test_manual_record_with_bad_contact_also_logs(api: httpx.AsyncClient, widget_log: WidgetLog) -> None:
    response = await api.post("/api/v1/tickets", json=body_for("ticket", contact_id="nope"))
    assert response.status_code == 201
    assert [p["reason"] for p in widget_log.props("contact_association_failed")] == ["unknown"]


@pytest.mark.parametrize("kind", KINDS)
async def test_contact_lookup_that_raises_never_fails_the_create(
    api: httpx.AsyncClient, runtime: Runtime, widget_log: WidgetLog, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    contact = (await api.post("/api/v1/contacts", json={"name": "Budi"})).json()

    async def broken(company_id: str, contact_id: str) -> str:
        raise ConnectionError("contacts database is down")

    monkeypatch.setattr(runtime.store, "contact_state", broken)
    response = await api.post(f"/api/v1/{kind}s", json=body_for(kind, contact_id=contact["id"],
                                                                room_id="r-1", creator_flag="bot"))
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["contact_id"] is None
    assert (await api.get("/api/v1/rooms/r-1")).json()[kind]["id"] == record["id"]
    [props] = widget_log.props("contact_association_failed")
    assert props["reason"] == "lookup_failed"


@pytest.mark.parametrize("kind", KINDS)
async def test_contact_lookup_that_times_out_never_fails_the_create(
    api: httpx.AsyncClient, runtime: Runtime, widget_log: WidgetLog, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    contact = (await api.post("/api/v1/contacts", json={"name": "Budi"})).json()
    assert widget.contacts.LOOKUP_TIMEOUT == 1.0  # the production budget

    async def hangs(company_id: str, contact_id: str) -> str:
        await asyncio.sleep(5)
        return "ok"

    monkeypatch.setattr(runtime.store, "contact_state", hangs)
    monkeypatch.setattr(widget.contacts, "LOOKUP_TIMEOUT", 0.05)
    started = asyncio.get_running_loop().time()
    response = await api.post(f"/api/v1/{kind}s", json=body_for(kind, contact_id=contact["id"],
                                                                creator_flag="agentic_ai"))
    elapsed = asyncio.get_running_loop().time() - started
    assert response.status_code == 201, response.text
    assert response.json()["contact_id"] is None
    assert elapsed < 2, elapsed
    [props] = widget_log.props("contact_association_failed")
    assert props["reason"] == "lookup_failed"


async def test_deleting_a_linked_contact_keeps_the_record(api: httpx.AsyncClient) -> None:
    contact = (await api.post("/api/v1/contacts", json={"name": "Budi"})).json()
    record = (await api.post("/api/v1/deals", json=body_for("deal", contact_id=contact["id"]))).json()
    assert (await api.delete(f"/api/v1/contacts/{contact['id']}")).status_code == 204
    again = await api.get(f"/api/v1/deals/{record['id']}")
    assert again.status_code == 200 and again.json()["id"] == record["id"]
