"""Deals and tickets: the PRD's rules for creating, changing and deleting them
(creator labels, contact association, latest wins, the actor filter).

Every write is one store transaction (record, contact link, room slot and version,
timeline entry, outbox rows); the room's new snapshot is published after it commits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from widget import analytics, contacts, events, rooms, timeline, worker
from widget.errors import not_found
from widget.events import Event
from widget.ids import new_id
from widget.models import CREATORS, RecordIn, record_out, rfc3339
from widget.runtime import Runtime
from widget.store import Change, Keyed, Row


async def create(
    rt: Runtime, kind: str, company: Row, body: RecordIn, created_at: int | None = None, keyed: Keyed | None = None
) -> dict[str, Any]:
    """``created_at`` is only given by the test clock (E1); otherwise the store
    assigns it inside the transaction. ``keyed``: the response is stored with the record."""
    company_id = company["id"]
    fields = body.model_dump(exclude={"contact_id"})
    contact_id, failure = await contacts.resolve(rt, company_id, body.contact_id)
    record_id = new_id(kind)
    flag = body.creator_flag
    in_room = flag in CREATORS and bool(body.room_id)
    entry, topics = None, []
    # Without a Chat Panel there is no history to fetch: the entry fails here, with its
    # event, as the worker would fail it at its first attempt (and costs it nothing).
    no_chat_panel = in_room and not rt.settings.chat_panel_url
    if in_room:
        assert flag is not None and body.room_id is not None
        entry = timeline.creation_entry(company_id, flag, body.room_id)
        if no_chat_panel:
            entry["chat_preview_status"] = "failed"
        else:
            topics.append("chat_history")
        if company["omnichannel_url"]:
            topics.append("notify.created")
    happened: list[Event] = []

    def creation_events(record: Row) -> list[tuple[str, Row]]:
        """Built from the stored record (its ``created_at``) inside the transaction;
        logged once it committed."""
        happened.clear()  # should the transaction ever run again, its events are new
        timestamp = rfc3339(record["created_at"])
        if failure:
            happened.append(events.about(
                "contact_association_failed", kind, record_id,
                contact_id=str(body.contact_id), reason=failure, timestamp=timestamp))
        if flag in CREATORS:
            happened.append(events.about(
                events.created_name(kind, flag), kind, record_id, room_id=body.room_id,
                contact_id_present=body.contact_id is not None, source=body.source, timestamp=timestamp))
            if no_chat_panel:
                happened.append(events.about(
                    events.TimelineLogCreationFailed.name, kind, record_id, room_id=body.room_id,
                    error_reason="not_configured", timestamp=timestamp))
        else:
            happened.append(events.ActorFiltered(
                kind=kind, record_id=record_id, action="create", creator_flag=flag, timestamp=timestamp))
        return [analytics.stored(event) for event in happened]

    change = await rt.store.create_record(
        kind,
        {"id": record_id, "company_id": company_id, **fields, "contact_id": contact_id},
        now=rt.now() if created_at is None else created_at,
        exact_time=created_at is not None,
        link_room=in_room,
        timeline=entry,
        outbox_topics=topics,
        events=creation_events,
        keyed=keyed,
        output=lambda record: record_out(kind, record, rt.settings.public_url),
    )
    record = change.record
    assert record is not None
    for event in happened:
        analytics.emitted(company_id, event)
    await rooms.publish(rt, company_id, body.room_id, change.room)
    if topics:  # once this request's own writes are done, so it doesn't wait for the worker
        worker.nudge()
    return record_out(kind, record, rt.settings.public_url)


async def get(rt: Runtime, kind: str, company: Row, record_id: str) -> dict[str, Any]:
    row = await rt.store.get_record(kind, company["id"], record_id)
    if row is None:
        raise not_found(kind)
    return record_out(kind, row, rt.settings.public_url)


async def from_actor_in_room(rt: Runtime, kind: str, company_id: str, room_id: str, record_id: str) -> Row:
    """A live bot/AI record of this room (what a room's preview can show), else NotFound."""
    row = await rt.store.get_record(kind, company_id, record_id)
    if row is None or row["room_id"] != room_id or row["creator_flag"] not in CREATORS:
        raise not_found(kind)
    return row


async def detail(rt: Runtime, kind: str, company_id: str, record_id: str) -> tuple[Row, Row | None, list[Row]] | None:
    """What a record page shows: the live record, its (live) contact, its timeline rows;
    None once the record is deleted."""
    row = await rt.store.get_record(kind, company_id, record_id)
    if row is None:
        return None
    contact = await rt.store.get_contact(company_id, row["contact_id"]) if row["contact_id"] else None
    return row, contact, await rt.store.timeline(kind, record_id)


async def _change(
    rt: Runtime, kind: str, company: Row, record_id: str, action: Literal["update", "delete"],
    write: Callable[[Callable[[Row], bool]], Awaitable[Change]],
) -> Row:
    """The shared path of an update and a delete: 404 for a missing record, the
    actor filter, Omnichannel notification only for bot/AI records in a room (decided
    on the record as the write transaction reads it: one read, not a read before),
    and publishing the room if what it shows changed."""
    notifies = bool(company["omnichannel_url"])
    change = await write(lambda current: notifies and current["creator_flag"] in CREATORS and bool(current["room_id"]))
    record = change.record
    if record is None:
        raise not_found(kind)
    if record["creator_flag"] not in CREATORS:  # (creator_flag and room_id never change)
        await analytics.track(rt, company["id"], events.ActorFiltered(
            kind=kind, record_id=record_id, action=action, creator_flag=record["creator_flag"],
            timestamp=rfc3339(rt.now())))
    await rooms.publish(rt, company["id"], record["room_id"], change.room)
    return record


async def patch(rt: Runtime, kind: str, company: Row, record_id: str, changes: Row) -> dict[str, Any]:
    record = await _change(
        rt, kind, company, record_id, "update",
        lambda notify: rt.store.patch_record(kind, company["id"], record_id, changes, now=rt.now(), notify=notify),
    )
    return record_out(kind, record, rt.settings.public_url)


async def delete(rt: Runtime, kind: str, company: Row, record_id: str) -> None:
    await _change(
        rt, kind, company, record_id, "delete",
        lambda notify: rt.store.delete_record(kind, company["id"], record_id, now=rt.now(), notify=notify),
    )
