"""The store: every SQL statement of the service lives here.

One class serves SQLite and PostgreSQL through SQLAlchemy Core; the only difference
is how a write transaction serialises (``BEGIN IMMEDIATE`` vs. locking the company
row), see ``engine.py``. Rows come back as plain dicts; times are integer µs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, delete, exists, func, insert, not_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from widget.errors import Invalid
from widget.store import schema
from widget.store.engine import StoreUnavailable, create_engine, is_sqlite, migrate, write_connection
from widget.store.writers import WriterQueue

Row = dict[str, Any]
Event = tuple[str, Row]  # an analytics event as stored: name, properties
TABLES = {"deal": schema.deals, "ticket": schema.tickets}
# Fields of a record that the room snapshot shows: a change to one bumps the version.
SHOWN_FIELDS = {"deal": ("name", "stage", "pipeline"), "ticket": ("name", "status")}
NOTIFY_TOPICS = "notify.%"  # LIKE pattern of the Omnichannel notification topics
NUL = "\x00"  # PostgreSQL text cannot hold it (SQLite can): refused on every backend alike


def _refuse_nul(row: Row) -> None:
    """Text with U+0000 is refused before any SQL, on SQLite too, so both backends
    answer the same (422 naming the fields) instead of PostgreSQL failing the write."""
    bad = sorted(k for k, v in row.items() if isinstance(v, str) and NUL in v)
    if bad:
        raise Invalid([{"field": k, "message": "must not contain the NUL character (U+0000)"} for k in bad])


def _findable(*keys: object) -> bool:
    """False if a key holds U+0000: no stored row has one (writes refuse it), so the
    lookup finds nothing on either backend, without asking PostgreSQL (which would fail)."""
    return not any(isinstance(key, str) and NUL in key for key in keys)


class CompanyExists(Exception):
    pass


@dataclass
class RoomState:
    version: int
    deal: Row | None
    ticket: Row | None


@dataclass
class Change:
    """What a write did: the record after it, and the room's new state if it changed."""

    record: Row | None
    room: RoomState | None = None


class Store:
    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_engine(url)
        self._sqlite = is_sqlite(self.engine)
        self._insert = sqlite_insert if self._sqlite else postgresql_insert  # for ON CONFLICT
        self._writers = WriterQueue() if self._sqlite else None

    async def migrate(self) -> None:
        await migrate(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    # -- transactions -------------------------------------------------------

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def _write(
        self, company_id: str | None = None, *, background: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A serialised write transaction (per company on PostgreSQL, global on SQLite).
        ``background``: the worker's, which waits while a request's write is waiting."""
        async with AsyncExitStack() as stack:
            if self._writers is not None:
                await stack.enter_async_context(self._writers.turn(background=background))
            conn = await write_connection(self.engine)
            stack.push_async_callback(conn.close)
            async with conn.begin():
                if company_id is not None and not self._sqlite:
                    await conn.execute(
                        select(schema.companies.c.id)
                        .where(schema.companies.c.id == company_id)
                        .with_for_update()
                    )
                yield conn

    # -- companies ----------------------------------------------------------

    async def create_company(self, row: Row) -> None:
        _refuse_nul(row)
        try:
            async with self._write() as conn:
                await conn.execute(insert(schema.companies).values(**row))
        except IntegrityError:
            raise CompanyExists(row["id"]) from None

    async def update_company(self, company_id: str, values: Row) -> None:
        _refuse_nul(values)
        async with self._write(company_id) as conn:
            await conn.execute(
                update(schema.companies).where(schema.companies.c.id == company_id).values(**values)
            )

    async def get_company(self, company_id: str) -> Row | None:
        if not _findable(company_id):
            return None
        return await self._one(select(schema.companies).where(schema.companies.c.id == company_id))

    async def company_by_key_hash(self, key_hash: str) -> Row | None:
        return await self._one(
            select(schema.companies).where(schema.companies.c.api_key_hash == key_hash)
        )

    # -- contacts -----------------------------------------------------------

    async def create_contact(self, row: Row) -> Row:
        _refuse_nul(row)
        async with self._write(row["company_id"]) as conn:
            await conn.execute(insert(schema.contacts).values(**row))
        return {**row, "deleted_at": None}

    async def get_contact(self, company_id: str, contact_id: str) -> Row | None:
        """A live (not soft-deleted) contact of this company."""
        if not _findable(company_id, contact_id):
            return None
        c = schema.contacts.c
        return await self._one(
            select(schema.contacts).where(
                c.id == contact_id, c.company_id == company_id, c.deleted_at.is_(None)
            )
        )

    async def contact_state(self, company_id: str, contact_id: str) -> str:
        """'ok', 'deleted', 'other_company' or 'unknown': why a contact can't be linked."""
        if not _findable(contact_id):
            return "unknown"
        row = await self._one(select(schema.contacts).where(schema.contacts.c.id == contact_id))
        if row is None:
            return "unknown"
        if row["company_id"] != company_id:
            return "other_company"
        return "deleted" if row["deleted_at"] is not None else "ok"

    async def delete_contact(self, company_id: str, contact_id: str, now: int) -> bool:
        if not _findable(company_id, contact_id):
            return False
        c = schema.contacts.c
        async with self._write(company_id) as conn:
            result = await conn.execute(
                update(schema.contacts)
                .where(c.id == contact_id, c.company_id == company_id, c.deleted_at.is_(None))
                .values(deleted_at=now)
            )
        return result.rowcount == 1

    # -- records ------------------------------------------------------------

    async def get_record(self, kind: str, company_id: str, record_id: str) -> Row | None:
        """A live (not soft-deleted) record of this company."""
        if not _findable(company_id, record_id):
            return None
        return await self._one(self._live_record(kind, company_id, record_id))

    @staticmethod
    def _live_record(kind: str, company_id: str, record_id: str) -> Any:
        t = TABLES[kind]
        return select(t).where(t.c.id == record_id, t.c.company_id == company_id, t.c.deleted_at.is_(None))

    async def create_record(
        self,
        kind: str,
        row: Row,
        *,
        now: int,
        exact_time: bool,
        link_room: bool,
        timeline: Row | None,
        outbox_topics: Iterable[str],
        events: Callable[[Row], list[Event]] = lambda record: [],
    ) -> Change:
        """Insert a record, assigning ``created_at`` (and a ticket's ``unique_id``) inside
        the transaction, then link it to its room if it is the newest there. ``events``:
        the analytics events of the stored record, written in the same transaction.

        ``created_at`` is max(now, last + 1 µs) per company so it is strictly increasing;
        with ``exact_time`` (test clock) ``now`` is used as given.
        """
        _refuse_nul(row)
        company_id = row["company_id"]
        co = schema.companies.c
        async with self._write(company_id) as conn:
            company = (
                await conn.execute(select(co.last_created_at, co.ticket_seq).where(co.id == company_id))
            ).one()
            created = now if exact_time else max(now, company.last_created_at + 1)
            values: Row = {"last_created_at": max(created, company.last_created_at)}
            record = {**row, "created_at": created, "updated_at": created, "deleted_at": None}
            if kind == "ticket":
                values["ticket_seq"] = company.ticket_seq + 1
                record["unique_id"] = f"TCK-{values['ticket_seq']:06d}"
            await conn.execute(update(schema.companies).where(co.id == company_id).values(**values))
            await conn.execute(insert(TABLES[kind]).values(**record))
            if timeline is not None:
                await conn.execute(
                    insert(schema.timeline_entries).values(
                        **timeline, record_kind=kind, record_id=record["id"], created_at=created
                    )
                )
            await self._enqueue(conn, company_id, outbox_topics, kind, record, created)
            await self._insert_events(conn, company_id, events(record), created)
            room = None
            if link_room:
                room = await self._link(conn, kind, record)
        return Change(record, room)

    async def patch_record(
        self, kind: str, company_id: str, record_id: str, changes: Row, *, now: int, notify: bool
    ) -> Change:
        _refuse_nul(changes)
        if not _findable(company_id, record_id):
            return Change(None)
        t = TABLES[kind]
        async with self._write(company_id) as conn:
            current = await self._one(self._live_record(kind, company_id, record_id), conn)
            if current is None:
                return Change(None)
            changed = {k: v for k, v in changes.items() if current[k] != v}
            if not changed:
                return Change(current)
            await conn.execute(update(t).where(t.c.id == record_id).values(**changed, updated_at=now))
            record = {**current, **changed, "updated_at": now}
            room = None
            if current["room_id"] and set(changed) & set(SHOWN_FIELDS[kind]):
                room = await self._bump_if_shown(conn, kind, record)
            if notify:
                await self._enqueue(conn, company_id, ["notify.updated"], kind, record, now)
        return Change(record, room)

    async def delete_record(
        self, kind: str, company_id: str, record_id: str, *, now: int, notify: bool
    ) -> Change:
        if not _findable(company_id, record_id):
            return Change(None)
        t = TABLES[kind]
        r = schema.rooms.c
        async with self._write(company_id) as conn:
            current = await self._one(self._live_record(kind, company_id, record_id), conn)
            if current is None:
                return Change(None)
            await conn.execute(update(t).where(t.c.id == record_id).values(deleted_at=now))
            room = None
            if current["room_id"]:
                # Empty the slot if it shows this record; the high-water mark stays.
                result = await conn.execute(
                    update(schema.rooms)
                    .where(
                        r.company_id == company_id,
                        r.room_id == current["room_id"],
                        getattr(r, f"{kind}_id") == record_id,
                    )
                    .values(**{f"{kind}_id": None}, version=r.version + 1)
                )
                if result.rowcount:
                    room = await self._room_state(conn, company_id, current["room_id"])
            if notify:
                await self._enqueue(conn, company_id, ["notify.deleted"], kind, current, now)
        return Change({**current, "deleted_at": now}, room)

    async def timeline(self, kind: str, record_id: str) -> list[Row]:
        if not _findable(record_id):
            return []
        t = schema.timeline_entries.c
        query = (
            select(schema.timeline_entries)
            .where(t.record_kind == kind, t.record_id == record_id)
            .order_by(t.created_at, t.id)
        )
        async with self._read() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    # -- rooms --------------------------------------------------------------

    async def room_state(self, company_id: str, room_id: str) -> RoomState:
        if not _findable(company_id, room_id):
            return RoomState(0, None, None)
        async with self._read() as conn:
            return await self._room_state(conn, company_id, room_id)

    async def _room_state(self, conn: AsyncConnection, company_id: str, room_id: str) -> RoomState:
        r = schema.rooms.c
        room = await self._one(
            select(schema.rooms).where(r.company_id == company_id, r.room_id == room_id), conn
        )
        if room is None:
            return RoomState(0, None, None)
        shown = {}
        for kind, table in TABLES.items():
            record_id = room[f"{kind}_id"]
            shown[kind] = (
                await self._one(select(table).where(table.c.id == record_id), conn) if record_id else None
            )
        return RoomState(room["version"], shown["deal"], shown["ticket"])

    async def _link(self, conn: AsyncConnection, kind: str, record: Row) -> RoomState | None:
        """Latest wins: take the slot only if (created_at, id) is past the high-water mark."""
        r = schema.rooms.c
        company_id, room_id = record["company_id"], record["room_id"]
        room = await self._one(
            select(schema.rooms).where(r.company_id == company_id, r.room_id == room_id), conn
        )
        if room is None:
            await conn.execute(
                insert(schema.rooms).values(company_id=company_id, room_id=room_id, version=0)
            )
            room = {f"{kind}_mark_at": None, f"{kind}_mark_id": None}
        mark = (room[f"{kind}_mark_at"], room[f"{kind}_mark_id"])
        candidate = (record["created_at"], record["id"])
        if mark[0] is not None and candidate <= mark:
            return None
        await conn.execute(
            update(schema.rooms)
            .where(r.company_id == company_id, r.room_id == room_id)
            .values(
                **{f"{kind}_id": record["id"], f"{kind}_mark_at": candidate[0], f"{kind}_mark_id": candidate[1]},
                version=r.version + 1,
            )
        )
        return await self._room_state(conn, company_id, room_id)

    async def _bump_if_shown(self, conn: AsyncConnection, kind: str, record: Row) -> RoomState | None:
        r = schema.rooms.c
        result = await conn.execute(
            update(schema.rooms)
            .where(
                r.company_id == record["company_id"],
                r.room_id == record["room_id"],
                getattr(r, f"{kind}_id") == record["id"],
            )
            .values(version=r.version + 1)
        )
        if not result.rowcount:
            return None
        return await self._room_state(conn, record["company_id"], record["room_id"])

    # -- outbox -------------------------------------------------------------

    async def _enqueue(
        self, conn: AsyncConnection, company_id: str, topics: Iterable[str], kind: str, record: Row, now: int
    ) -> None:
        rows = [
            {
                "company_id": company_id,
                "topic": topic,
                "payload": json.dumps({"kind": kind, "record_id": record["id"], "room_id": record["room_id"]}),
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for topic in topics
        ]
        if rows:
            await conn.execute(insert(schema.outbox), rows)

    async def outbox_backlog(self) -> dict[str, tuple[int, int]]:
        """Unfinished rows per topic: (count, oldest ``created_at``)."""
        o = schema.outbox.c
        query = select(o.topic, func.count(), func.min(o.created_at)).where(o.done_at.is_(None)).group_by(o.topic)
        async with self._read() as conn:
            return {topic: (count, oldest) for topic, count, oldest in await conn.execute(query)}

    async def outbox_rows(self, company_id: str) -> list[Row]:
        o = schema.outbox.c
        query = select(schema.outbox).where(o.company_id == company_id).order_by(o.id)
        async with self._read() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    async def claim_outbox(
        self, topics: Iterable[str], *, now: int, lease_until: int, limit: int
    ) -> list[Row]:
        """Lease up to ``limit`` due rows of these topics, oldest first, to one worker.

        One statement: the leased rows get ``next_attempt_at = lease_until`` (so a row
        whose worker died is due again when the lease ends) and ``attempts + 1`` (which
        also fences the outcome writes below against a worker whose lease ran out).
        PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets concurrent claimers pass each other;
        SQLite (the dialect drops that clause) serialises them with ``BEGIN IMMEDIATE``.

        Omnichannel notifications of one record go out in order, across any number of
        loops: a ``notify.*`` row is not claimed while an earlier ``notify.*`` row of the
        same record is unfinished (due, leased or waiting for a retry), so an update
        never overtakes its create nor a delete either; a given-up row is finished and
        no longer holds the next one back."""
        o = schema.outbox.c
        due = (
            select(o.id)
            .where(
                o.done_at.is_(None), o.next_attempt_at <= now, o.topic.in_(list(topics)),
                or_(not_(o.topic.like(NOTIFY_TOPICS)), not_(self._earlier_notify_unfinished())),
            )
            .order_by(o.id)
            .limit(limit)
        )
        # An idle loop polls every second: a read finds there is nothing to claim
        # without taking the (single, on SQLite) writer.
        if await self._one(due.limit(1)) is None:
            return []
        due = due.with_for_update(skip_locked=True)
        claim = (
            update(schema.outbox)
            .where(o.id.in_(due.scalar_subquery()))
            .values(attempts=o.attempts + 1, next_attempt_at=lease_until)
            .returning(*schema.outbox.c)
        )
        async with self._write(background=True) as conn:
            rows = [dict(row._mapping) for row in await conn.execute(claim)]
        return sorted(rows, key=lambda row: row["id"])

    @staticmethod
    def _earlier_notify_unfinished() -> Any:
        """EXISTS an unfinished ``notify.*`` row of the same record before the outer
        ``outbox`` row. "Same record" is "same payload text": ``_enqueue`` writes every
        row of a record with ``json.dumps`` of the same dict (kind and record id, which
        are unique, and the room id, which never changes), so they are byte-identical;
        plain text equality works alike on SQLite and PostgreSQL."""
        o, earlier = schema.outbox.c, schema.outbox.alias("earlier_notify")
        e = earlier.c
        return exists().where(
            e.id < o.id, e.done_at.is_(None), e.topic.like(NOTIFY_TOPICS), e.payload == o.payload
        )

    async def record_for_notify(self, kind: str, company_id: str, record_id: str) -> Row | None:
        """A record of this company as stored now, soft-deleted or not (a deleted record
        still has its created/updated/deleted notifications to send)."""
        if not _findable(company_id, record_id):
            return None
        t = TABLES[kind]
        return await self._one(select(t).where(t.c.id == record_id, t.c.company_id == company_id))

    async def outbox_done(self, row_id: int, attempts: int, *, now: int, error: str | None = None) -> bool:
        """Finish a leased row (``error`` says why when the worker gave up)."""
        return await self._settle_outbox(row_id, attempts, {"done_at": now, "last_error": error})

    async def outbox_retry(self, row_id: int, attempts: int, *, at: int, error: str) -> bool:
        return await self._settle_outbox(row_id, attempts, {"next_attempt_at": at, "last_error": error})

    async def outbox_release(self, row_id: int, attempts: int, *, now: int) -> bool:
        """Hand a leased row back unrun (worker stopping): due now, the claim not counted."""
        return await self._settle_outbox(row_id, attempts, {"next_attempt_at": now, "attempts": attempts - 1})

    async def _settle_outbox(self, row_id: int, attempts: int, values: Row) -> bool:
        """Write an outcome if the claim that counted ``attempts`` still holds the row;
        False if the lease was lost (claimed again since, or finished meanwhile)."""
        o = schema.outbox.c
        async with self._write(background=True) as conn:
            result = await conn.execute(
                update(schema.outbox)
                .where(o.id == row_id, o.attempts == attempts, o.done_at.is_(None))
                .values(values)
            )
        return result.rowcount == 1

    # What the chat_history rows write back: the creation entry's preview, once.

    async def chat_preview_pending(self, company_id: str, kind: str, record_id: str) -> bool:
        t = schema.timeline_entries.c
        row = await self._one(
            select(t.id).where(
                t.company_id == company_id, t.record_kind == kind, t.record_id == record_id,
                t.chat_preview_status == "pending",
            )
        )
        return row is not None

    async def set_chat_preview(
        self, company_id: str, kind: str, record_id: str, status: str, preview: str | None
    ) -> bool:
        """Settle the record's entry (``preview`` is JSON text or None) if it is still
        pending; False if it was settled already (a row run twice) or is gone."""
        t = schema.timeline_entries.c
        async with self._write(background=True) as conn:
            result = await conn.execute(
                update(schema.timeline_entries)
                .where(
                    t.company_id == company_id, t.record_kind == kind, t.record_id == record_id,
                    t.chat_preview_status == "pending",
                )
                .values(chat_preview=preview, chat_preview_status=status)
            )
        return result.rowcount > 0

    # -- idempotency --------------------------------------------------------

    async def idempotency_claim(
        self, company_id: str, route: str, key: str, body_hash: str, now: int,
        expire_before: int, abandon_before: int,
    ) -> Row | None:
        """Claim a key for a new request. Returns None if claimed, else the existing row
        (``status`` None while the first request still runs). A stored response expires
        at ``expire_before``; a claim whose request never finished (a crashed process)
        is given up at ``abandon_before``."""
        i = schema.idempotency_keys.c
        where = and_(i.company_id == company_id, i.route == route, i.key == key)
        async with self._write(company_id) as conn:
            existing = await self._one(select(schema.idempotency_keys).where(where), conn)
            if existing is not None and existing["created_at"] >= (
                expire_before if existing["status"] is not None else abandon_before
            ):
                return existing
            await conn.execute(delete(schema.idempotency_keys).where(where))
            await conn.execute(
                insert(schema.idempotency_keys).values(
                    company_id=company_id, route=route, key=key, body_hash=body_hash, created_at=now
                )
            )
        return None

    async def idempotency_finish(
        self, company_id: str, route: str, key: str, status: int | None, response: str | None
    ) -> None:
        """Store a 2xx response, or release the key (status None) so it can be retried."""
        i = schema.idempotency_keys.c
        where = and_(i.company_id == company_id, i.route == route, i.key == key)
        async with self._write(company_id) as conn:
            if status is None:
                await conn.execute(delete(schema.idempotency_keys).where(where))
            else:
                await conn.execute(
                    update(schema.idempotency_keys).where(where).values(status=status, response=response)
                )

    # -- analytics ----------------------------------------------------------

    async def record_event(self, company_id: str, event: Event, now: int, dedupe: str | None = None) -> bool:
        """Store an analytics event; False if ``dedupe`` was already recorded. Not under
        the company's lock (nothing else is read or written with it), and a repeat is
        found by a read, so duplicate beacons cost no write."""
        if dedupe is not None and not _findable(dedupe):  # (an agent id with U+0000): its digest
            dedupe = "sha256:" + hashlib.sha256(dedupe.encode("utf-8", "surrogatepass")).hexdigest()
        if dedupe is not None:
            a = schema.analytics_events.c
            seen = select(a.id).where(a.company_id == company_id, a.dedupe == dedupe)
            if await self._one(seen) is not None:
                return False
        async with self._write() as conn:
            return await self._insert_events(conn, company_id, [event], now, dedupe) == 1

    async def _insert_events(
        self, conn: AsyncConnection, company_id: str, events: list[Event], now: int, dedupe: str | None = None
    ) -> int:
        """Insert, skipping a ``dedupe`` key already taken (two racing beacons); the
        number of rows written."""
        if not events:
            return 0
        rows = [
            {
                "company_id": company_id, "name": name, "dedupe": dedupe, "created_at": now,
                "record_id": props.get("deal_id") or props.get("ticket_id") or props.get("record_id"),
                "props": json.dumps(props),
            }
            for name, props in events
        ]
        statement = self._insert(schema.analytics_events).values(rows).on_conflict_do_nothing()
        return (await conn.execute(statement)).rowcount

    async def event_counts(self, company_id: str, since: int, until: int) -> dict[str, int]:
        a = schema.analytics_events.c
        query = (
            select(a.name, func.count())
            .where(a.company_id == company_id, a.created_at >= since, a.created_at <= until)
            .group_by(a.name)
        )
        async with self._read() as conn:
            return {name: count for name, count in await conn.execute(query)}

    async def creation_context(
        self, company_id: str, since: int, until: int, creators: Iterable[str]
    ) -> dict[str, dict[str, int]]:
        """Per kind, records created in [since, until] by the given creators (deleted
        ones too): how many; how many were displayed as a preview (by until); how many
        have a timeline log (their creation entry settled ``ok`` or ``empty``; ``failed``
        and still ``pending`` ones do not); how many have the full context: a contact, a
        room and a timeline log (the creator label is given by ``creators``)."""
        e, a = schema.timeline_entries.c, schema.analytics_events.c
        found = {}
        async with self._read() as conn:
            for kind, table in TABLES.items():
                t = table.c
                displayed = exists().where(
                    a.company_id == company_id, a.record_id == t.id,
                    a.name == f"{kind}_preview_displayed", a.created_at <= until,
                )
                logged = exists().where(
                    e.record_kind == kind, e.record_id == t.id, e.chat_preview_status.in_(("ok", "empty"))
                )
                full = and_(logged, t.contact_id.is_not(None), t.room_id.is_not(None))
                query = select(
                    func.count(), func.count(case((displayed, 1))),
                    func.count(case((logged, 1))), func.count(case((full, 1))),
                ).where(
                    t.company_id == company_id, t.creator_flag.in_(list(creators)),
                    t.created_at >= since, t.created_at <= until,
                )
                row = (await conn.execute(query)).one()
                found[kind] = dict(zip(("created", "displayed", "with_timeline_log", "with_full_context"), row))
        return found

    # -- retention ----------------------------------------------------------

    async def purge_expired(
        self, *, timeline_before: int, idempotency_before: int, outbox_done_before: int, dry_run: bool
    ) -> dict[str, int]:
        """Delete (or with ``dry_run`` only count) timeline entries created, idempotency
        keys created and outbox rows finished strictly before the given times. Unfinished
        outbox rows are live work and never purged."""
        t, i, o = schema.timeline_entries.c, schema.idempotency_keys.c, schema.outbox.c
        expired = {
            "timeline_entries": (schema.timeline_entries, t.created_at < timeline_before),
            "idempotency_keys": (schema.idempotency_keys, i.created_at < idempotency_before),
            "outbox_done": (schema.outbox, o.done_at < outbox_done_before),  # NULL: not done
        }
        if dry_run:
            async with self._read() as conn:
                return {
                    name: (await conn.execute(select(func.count()).select_from(table).where(where))).scalar_one()
                    for name, (table, where) in expired.items()
                }
        async with self._write(background=True) as conn:
            return {
                name: (await conn.execute(delete(table).where(where))).rowcount
                for name, (table, where) in expired.items()
            }

    # -- helpers ------------------------------------------------------------

    async def _one(self, query: Any, conn: AsyncConnection | None = None) -> Row | None:
        if conn is None:
            async with self._read() as conn:
                return await self._one(query, conn)
        row = (await conn.execute(query)).first()
        return dict(row._mapping) if row is not None else None

    # -- crm links ----------------------------------------------------------

    async def use_crm_link(self, jti: str, company_id: str, *, expires_at: int, now: int) -> bool:
        """Remember that the CRM link ``jti`` was used; False if it was used before."""
        try:
            async with self._write(company_id) as conn:
                await conn.execute(
                    insert(schema.used_crm_links).values(
                        jti=jti, company_id=company_id, used_at=now, expires_at=expires_at
                    )
                )
        except IntegrityError:
            return False
        return True

    async def forget_used_links(self, before: int, *, dry_run: bool = False) -> int:
        """Forget (or with ``dry_run`` only count) used CRM links that expired strictly
        before ``before`` (µs): past its ``exp`` a link is refused by its signature check
        anyway, so remembering it is no longer needed. The retention purge calls this."""
        u = schema.used_crm_links.c
        if dry_run:
            async with self._read() as conn:
                query = select(func.count()).select_from(schema.used_crm_links).where(u.expires_at < before)
                return (await conn.execute(query)).scalar_one()
        async with self._write(background=True) as conn:
            return (await conn.execute(delete(schema.used_crm_links).where(u.expires_at < before))).rowcount


__all__ = ["Change", "CompanyExists", "RoomState", "Row", "Store", "StoreUnavailable"]
