"""Contacts, and associating one with a record at creation (PRD S03)."""

from __future__ import annotations

import asyncio
from typing import Any

from widget import analytics
from widget.errors import not_found
from widget.ids import new_id
from widget.models import ContactIn, contact_out
from widget.runtime import Runtime
from widget.store import Keyed, Row

LOOKUP_TIMEOUT = 1.0  # s: a slow lookup must not hold up the create
INVALID_IDS = {"", "0", "null"}


async def create(rt: Runtime, company: Row, body: ContactIn, keyed: Keyed | None = None) -> dict[str, Any]:
    row = {"id": new_id("contact"), "company_id": company["id"], **body.model_dump(), "created_at": rt.now()}
    return contact_out(await rt.store.create_contact(row, keyed=keyed, output=contact_out))


async def get(rt: Runtime, company: Row, contact_id: str) -> dict[str, Any]:
    row = await rt.store.get_contact(company["id"], contact_id)
    if row is None:
        raise not_found("contact")
    return contact_out(row)


async def delete(rt: Runtime, company: Row, contact_id: str) -> None:
    if not await rt.store.delete_contact(company["id"], contact_id, rt.now()):
        raise not_found("contact")


async def resolve(rt: Runtime, company_id: str, raw: str | int | None) -> tuple[str | None, str | None]:
    """(contact id to link, reason it could not be linked). Never raises: an invalid
    contact or a failed lookup never fails the create (S03 ERR-2)."""
    if raw is None:
        return None, None
    value = str(raw)
    if value in INVALID_IDS:
        return None, "invalid_id"
    try:
        state = await asyncio.wait_for(rt.store.contact_state(company_id, value), LOOKUP_TIMEOUT)
    except Exception as exc:
        analytics.warn("contact_lookup_error", error=type(exc).__name__)
        return None, "lookup_failed"
    return (value, None) if state == "ok" else (None, state)
