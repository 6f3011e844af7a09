"""A record's timeline (RFC section 8): the bot/AI creation entry, with its room
deeplink and chat-history preview."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from widget.errors import not_found
from widget.ids import new_id
from widget.models import creator_label, timeline_entry_out
from widget.runtime import Runtime
from widget.settings import Settings
from widget.store import Row


def room_url(settings: Settings, room_id: str) -> str:
    """The chat room in Omnichannel; the room id is one encoded path/query segment."""
    return settings.omnichannel_room_url.replace("{room_id}", quote(room_id, safe=""))


def creation_entry(company_id: str, flag: str, room_id: str) -> Row:
    """The entry a bot/AI record with a room gets in its create transaction; the
    worker fills in the chat preview later."""
    return {
        "id": new_id("timeline"),
        "company_id": company_id,
        "kind": "bot_creation",
        "creator": creator_label(flag),
        "room_id": room_id,
        "chat_preview": None,
        "chat_preview_status": "pending",
    }


def entry_out(settings: Settings, row: Row) -> dict[str, Any]:
    return timeline_entry_out(row, room_url(settings, row["room_id"]))


async def entry(rt: Runtime, kind: str, company_id: str, record_id: str, entry_id: str) -> Row:
    """One entry of a live record (NotFound for a deleted record or another's entry)."""
    if await rt.store.get_record(kind, company_id, record_id) is None:
        raise not_found(kind)
    for row in await rt.store.timeline(kind, record_id):
        if row["id"] == entry_id:
            return row
    raise not_found("timeline entry")


async def entries(rt: Runtime, kind: str, company_id: str, record_id: str) -> list[dict[str, Any]]:
    """The live record's entries, oldest first."""
    if await rt.store.get_record(kind, company_id, record_id) is None:
        raise not_found(kind)
    return [entry_out(rt.settings, row) for row in await rt.store.timeline(kind, record_id)]
