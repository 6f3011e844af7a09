"""A room's snapshot (RFC section 6) and publishing it to the room's streams.

Every change of what a room shows is published after its transaction commits."""

from __future__ import annotations

import logging
import time
from typing import Any

from widget import logs, metrics
from widget.broker import room_channel
from widget.errors import not_found
from widget.models import preview_out
from widget.runtime import Runtime
from widget.store import RoomState, Row

PUBLISHED_AT = "published_at"  # in a published message only, never sent to clients


def snapshot(rt: Runtime, room_id: str, state: RoomState) -> dict[str, Any]:
    public_url = rt.settings.public_url
    return {
        "room_id": room_id,
        "version": state.version,
        "deal": preview_out("deal", state.deal, public_url),
        "ticket": preview_out("ticket", state.ticket, public_url),
    }


async def current(rt: Runtime, company_id: str, room_id: str) -> dict[str, Any]:
    """The room's snapshot as stored now (version 0 and both slots empty if unknown)."""
    return snapshot(rt, room_id, await rt.store.room_state(company_id, room_id))


async def shown(rt: Runtime, company_id: str, room_id: str, kind: str, record_id: str) -> Row:
    """The room's current deal (ticket) if it is ``record_id``: NotFound once it was
    deleted or replaced (S02 ERR-1)."""
    record = getattr(await rt.store.room_state(company_id, room_id), kind)
    if record is None or record["id"] != record_id:
        raise not_found(kind)
    return record


async def publish(rt: Runtime, company_id: str, room_id: str | None, state: RoomState | None) -> None:
    """Send the room's new snapshot to its streams, if a write changed it."""
    if room_id is None or state is None:
        return
    # published_at (wall clock, comparable across processes) times the delivery lag.
    message = {**snapshot(rt, room_id, state), PUBLISHED_AT: time.time()}
    try:
        await rt.broker.publish(room_channel(company_id, room_id), message)
        metrics.PUBLISHED.inc()
    except Exception as exc:  # committed already: streams catch up on reconnect
        logs.event("room_publish_failed", logging.ERROR, company_id=company_id,
                   room_id=room_id, version=state.version, error=type(exc).__name__)
