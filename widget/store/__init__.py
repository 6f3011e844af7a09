"""The store: every SQL statement of the service lives here.

One class serves SQLite and PostgreSQL through SQLAlchemy Core. Each public method is
one transaction, written as a synchronous function of a connection and run whole by
the backend's runner (``database.py``: one thread hop per SQLite write, inline WAL
reads; ``run_sync`` on PostgreSQL). Rows come back as plain dicts; times are integer µs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    String,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from widget.errors import Invalid
from widget.store import schema
from widget.store.database import SqliteDatabase
from widget.store.engine import LOCK_TIMEOUT, StoreUnavailable, migrate, open_database

Row = dict[str, Any]
KEY_CACHE_SECONDS = 2.0
KEY_CACHE_SIZE = 10_000  # companies remembered at once (cleared when full)
CLOCK_FIELDS = ("last_created_at", "ticket_seq", "deal_seq")  # of a company row: change with every create
Event = tuple[str, Row]  # an analytics event as stored: name, properties
TABLES = {"deal": schema.deals, "ticket": schema.tickets}
# Fields of a record that the room snapshot shows: a change to one bumps the version.
SHOWN_FIELDS = {"deal": ("name", "stage", "pipeline"), "ticket": ("name", "status")}
NOTIFY_TOPICS = "notify.%"  # LIKE pattern of the Omnichannel notification topics
NUL = "\x00"  # PostgreSQL text cannot hold it (SQLite can): refused on every backend alike

# The statements of the hot paths, built once: building a statement (coercing each value
# into a bound parameter, then its cache key) cost SQLAlchemy several times what running
# it costs SQLite. Executed with a dict of parameters; an INSERT takes its columns from
# the dict's keys.
_co, _ct, _r, _tl, _o, _a, _i = (t.c for t in (
    schema.companies, schema.contacts, schema.rooms, schema.timeline_entries, schema.outbox,
    schema.analytics_events, schema.idempotency_keys,
))
def _advance(kind: str, exact: bool) -> Any:
    """The company's creation clock moved on (see ``Store.create_record``)."""
    last, now = _co.last_created_at, bindparam("now", type_=BigInteger)
    clock = {"last_created_at": case((last > now, last), else_=now) if exact else case((last + 1 > now, last + 1), else_=now)}
    seq = _co.ticket_seq if kind == "ticket" else _co.deal_seq
    clock[seq.name] = seq + 1
    return (update(schema.companies).where(_co.id == bindparam("company_id")).values(**clock)
            .returning(_co.last_created_at, seq.label("seq")))


ADVANCE = {(kind, exact): _advance(kind, exact) for kind in ("deal", "ticket") for exact in (False, True)}
COMPANY_BY_ID = select(schema.companies).where(_co.id == bindparam("company_id"))
COMPANY_BY_KEY = select(schema.companies).where(_co.api_key_hash == bindparam("key_hash"))
CONTACT_BY_ID = select(schema.contacts).where(_ct.id == bindparam("contact_id"))
LIVE_CONTACT = CONTACT_BY_ID.where(_ct.company_id == bindparam("company_id"), _ct.deleted_at.is_(None))
RECORD_BY_ID = {kind: select(t).where(t.c.id == bindparam("record_id")) for kind, t in TABLES.items()}
RECORD_OF_COMPANY = {kind: q.where(TABLES[kind].c.company_id == bindparam("company_id"))
                     for kind, q in RECORD_BY_ID.items()}
LIVE_RECORD = {kind: q.where(TABLES[kind].c.deleted_at.is_(None)) for kind, q in RECORD_OF_COMPANY.items()}
SET_RECORD = {kind: update(t).where(t.c.id == bindparam("record_id")) for kind, t in TABLES.items()}
ROOM_ROW = select(_r.version, _r.deal_id, _r.ticket_id).where(
    _r.company_id == bindparam("company_id"), _r.room_id == bindparam("room_id"))
ROOM_VERSIONS = select(_r.company_id, _r.room_id, _r.version).where(
    tuple_(_r.company_id, _r.room_id).in_(bindparam("rooms", expanding=True)))
# (bound names in an UPDATE's WHERE must not be column names: those are the SET's)
SLOT_SHOWS = {kind: and_(_r.company_id == bindparam("in_company"), _r.room_id == bindparam("in_room"),
                         getattr(_r, f"{kind}_id") == bindparam("shown_id")) for kind in TABLES}
BUMP_SHOWN = {kind: update(schema.rooms).where(shows).values(version=_r.version + 1)
              .returning(_r.version, _r.deal_id, _r.ticket_id) for kind, shows in SLOT_SHOWS.items()}
EMPTY_SLOT = {kind: update(schema.rooms).where(shows).values({f"{kind}_id": None, "version": _r.version + 1})
              .returning(_r.version, _r.deal_id, _r.ticket_id) for kind, shows in SLOT_SHOWS.items()}
def _earlier_notify_unfinished() -> Any:
    """EXISTS an unfinished ``notify.*`` row of the same record before the outer
    ``outbox`` row. "Same record" is "same payload text": ``_enqueue`` writes every
    row of a record with ``json.dumps`` of the same dict (kind and record id, which
    are unique, and the room id, which never changes), so they are byte-identical;
    plain text equality works alike on SQLite and PostgreSQL."""
    e = schema.outbox.alias("earlier_notify").c
    return exists().where(
        e.id < _o.id, e.done_at.is_(None), e.topic.like(NOTIFY_TOPICS), e.payload == _o.payload
    )


OUTBOX_DUE = (
    select(_o.id)
    .where(_o.done_at.is_(None), _o.next_attempt_at <= bindparam("now"),
           _o.topic.in_(bindparam("topics", expanding=True)),
           or_(not_(_o.topic.like(NOTIFY_TOPICS)), not_(_earlier_notify_unfinished())))
    .order_by(_o.id)
    .limit(bindparam("limit", type_=Integer))
)
CLAIM_OUTBOX = (
    update(schema.outbox)
    .where(_o.id.in_(OUTBOX_DUE.with_for_update(skip_locked=True).scalar_subquery()))
    .values(attempts=_o.attempts + 1, next_attempt_at=bindparam("lease_until", type_=BigInteger))
    .returning(*schema.outbox.c)
)
SETTLE_OUTBOX = update(schema.outbox).where(
    _o.id == bindparam("row_id"), _o.attempts == bindparam("claimed"), _o.done_at.is_(None))
_ENTRY_PENDING = and_(_tl.company_id == bindparam("of_company"), _tl.record_kind == bindparam("of_kind"),
                      _tl.record_id == bindparam("of_record"), _tl.chat_preview_status == "pending")
PENDING_ENTRY = select(_tl.id).where(_ENTRY_PENDING)
SETTLE_ENTRY = update(schema.timeline_entries).where(_ENTRY_PENDING)
EVENT_SEEN = select(_a.id).where(_a.company_id == bindparam("company_id"), _a.dedupe == bindparam("dedupe"))
REWRITE_REVISION = text("UPDATE alembic_version SET version_num = version_num")
KEY_ROW = select(schema.idempotency_keys).where(
    _i.company_id == bindparam("company_id"), _i.route == bindparam("route"), _i.key == bindparam("key"))


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


def _first(conn: Connection, query: Any, params: Row | None = None) -> Row | None:
    row = conn.execute(query, params).first()
    return dict(row._mapping) if row is not None else None


def _all(conn: Connection, query: Any, params: Row | None = None) -> list[Row]:
    return [dict(row._mapping) for row in conn.execute(query, params)]


def response_text(content: Any) -> str:
    """``content`` as Starlette's ``JSONResponse`` renders it: a replayed response is
    byte for byte the first one."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def _link_statement(dialect_insert: Any, kind: str) -> Any:
    """Latest wins, as one upsert: the record takes its room's slot only if its
    (created_at, id) is past the slot's high-water mark; no row back means the room
    has seen a newer one."""
    mark_at, mark_id = getattr(_r, f"{kind}_mark_at"), getattr(_r, f"{kind}_mark_id")
    slot = {f"{kind}_id": bindparam("record_id"), f"{kind}_mark_at": bindparam("created_at"),
            f"{kind}_mark_id": bindparam("record_id")}
    upsert = dialect_insert(schema.rooms).values(
        company_id=bindparam("company_id"), room_id=bindparam("room_id"), version=1, **slot)
    return upsert.on_conflict_do_update(
        index_elements=[_r.company_id, _r.room_id],
        set_={**slot, "version": _r.version + 1},
        where=or_(mark_at.is_(None), tuple_(mark_at, mark_id) < tuple_(
            bindparam("created_at", type_=BigInteger), bindparam("record_id", type_=String))),
    ).returning(_r.version, _r.deal_id, _r.ticket_id)


class CompanyExists(Exception):
    pass


@dataclass(frozen=True)
class Keyed:
    """A POST with an ``Idempotency-Key``: its response is stored in the transaction
    that does its work, so a key is taken exactly when that work committed."""

    company_id: str
    route: str
    key: str
    body_hash: str
    status: int
    now: int
    expire_before: int  # a stored response older than this is forgotten


class KeyTaken(Exception):
    """The key holds a live stored response (``existing``, None if it vanished since):
    the transaction that met it was rolled back."""

    def __init__(self, existing: Row | None) -> None:
        super().__init__("idempotency key taken")
        self.existing = existing


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
    def __init__(self, url: str, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.db = open_database(url, lock_timeout)
        dialect_insert = sqlite_insert if isinstance(self.db, SqliteDatabase) else postgresql_insert  # ON CONFLICT
        self._link_room = {kind: _link_statement(dialect_insert, kind) for kind in TABLES}
        self._insert_events_skipping_taken = dialect_insert(schema.analytics_events).on_conflict_do_nothing()
        taking = {"body_hash": bindparam("body_hash"), "status": bindparam("status"),
                  "response": bindparam("response"), "created_at": bindparam("now")}
        self._take_key = dialect_insert(schema.idempotency_keys).values(
            company_id=bindparam("company_id"), route=bindparam("route"), key=bindparam("key"), **taking,
        )
        self._take_key = self._take_key.on_conflict_do_update(
            index_elements=[_i.company_id, _i.route, _i.key], set_=taking,
            where=or_(_i.created_at < bindparam("expire_before"), _i.status.is_(None)),
        )
        self._companies_by_key: dict[str, tuple[float, Row]] = {}

    async def migrate(self) -> None:
        await migrate(self.db)

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        await self.db.read(lambda conn: conn.execute(select(1)).one())

    async def check_write(self) -> None:
        """One real write, as cheap as one can be, through the path every write takes:
        the schema's revision row rewritten with itself (a new row version, a page in
        the WAL), so a read-only database, a full disk or a lock held elsewhere fail it
        as they fail every write. Raises what the write raised."""
        await self.db.write(lambda conn: conn.execute(REWRITE_REVISION))

    async def _one(self, query: Any, **params: Any) -> Row | None:
        return await self.db.read(lambda conn: _first(conn, query, params))

    # -- companies ----------------------------------------------------------

    async def create_company(self, row: Row) -> None:
        _refuse_nul(row)
        try:
            await self.db.write(lambda conn: conn.execute(insert(schema.companies).values(**row)))
        except IntegrityError:
            raise CompanyExists(row["id"]) from None

    async def update_company(self, company_id: str, values: Row) -> None:
        _refuse_nul(values)
        co = schema.companies.c
        statement = update(schema.companies).where(co.id == company_id).values(**values)
        await self.db.write(lambda conn: conn.execute(statement), company_id=company_id)

    async def get_company(self, company_id: str) -> Row | None:
        if not _findable(company_id):
            return None
        return await self._one(COMPANY_BY_ID, company_id=company_id)

    async def company_by_key_hash(self, key_hash: str) -> Row | None:
        """The company of an API key. One found is remembered for ``KEY_CACHE_SECONDS``:
        every record-API request authenticates, and this read was 15% of a PATCH. A
        key never changes once made (no command rotates or deletes one), and a company's
        other fields do not either, save its creation clock, which is left out (only
        the write that advances it reads it)."""
        now = time.monotonic()
        cached = self._companies_by_key.get(key_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
        company = await self._one(COMPANY_BY_KEY, key_hash=key_hash)
        if company is not None:
            if len(self._companies_by_key) >= KEY_CACHE_SIZE:
                self._companies_by_key.clear()
            remembered = {k: v for k, v in company.items() if k not in CLOCK_FIELDS}
            self._companies_by_key[key_hash] = (now + KEY_CACHE_SECONDS, remembered)
            return remembered
        return None

    # -- contacts -----------------------------------------------------------

    async def create_contact(
        self, row: Row, *, keyed: Keyed | None = None, output: Callable[[Row], Any] = lambda row: row
    ) -> Row:
        _refuse_nul(row)
        contact = {**row, "deleted_at": None}

        def work(conn: Connection) -> Row:
            conn.execute(insert(schema.contacts), row)
            self._remember(conn, keyed, output(contact))
            return contact

        return await self._keyed_write(work, keyed, company_id=row["company_id"])

    async def get_contact(self, company_id: str, contact_id: str) -> Row | None:
        """A live (not soft-deleted) contact of this company."""
        if not _findable(company_id, contact_id):
            return None
        return await self._one(LIVE_CONTACT, contact_id=contact_id, company_id=company_id)

    async def contact_state(self, company_id: str, contact_id: str) -> str:
        """'ok', 'deleted', 'other_company' or 'unknown': why a contact can't be linked."""
        if not _findable(contact_id):
            return "unknown"
        row = await self._one(CONTACT_BY_ID, contact_id=contact_id)
        if row is None:
            return "unknown"
        if row["company_id"] != company_id:
            return "other_company"
        return "deleted" if row["deleted_at"] is not None else "ok"

    async def delete_contact(self, company_id: str, contact_id: str, now: int) -> bool:
        if not _findable(company_id, contact_id):
            return False
        c = schema.contacts.c
        statement = (
            update(schema.contacts)
            .where(c.id == contact_id, c.company_id == company_id, c.deleted_at.is_(None))
            .values(deleted_at=now)
        )
        return await self.db.write(lambda conn: conn.execute(statement).rowcount == 1, company_id=company_id)

    # -- records ------------------------------------------------------------

    async def get_record(self, kind: str, company_id: str, record_id: str) -> Row | None:
        """A live (not soft-deleted) record of this company."""
        if not _findable(company_id, record_id):
            return None
        return await self._one(LIVE_RECORD[kind], record_id=record_id, company_id=company_id)

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
        keyed: Keyed | None = None,
        output: Callable[[Row], Any] = lambda record: record,
    ) -> Change:
        """Insert a record, assigning ``created_at`` (and a deal's ``number`` or a
        ticket's ``unique_id``) inside the transaction, then link it to its room if it
        is the newest there. ``events``: the analytics events of the stored record;
        ``keyed``: store ``output(record)`` as the key's response; both in the same
        transaction.

        ``created_at`` is max(now, last + 1 µs) per company so it is strictly increasing;
        with ``exact_time`` (test clock) ``now`` is used as given. The company row's
        update comes first: on PostgreSQL it is the lock that queues the company's writers.
        """
        _refuse_nul(row)
        company_id = row["company_id"]

        def work(conn: Connection) -> Change:
            company = conn.execute(ADVANCE[kind, exact_time], {"company_id": company_id, "now": now}).one()
            created = now if exact_time else company.last_created_at
            record = {**row, "created_at": created, "updated_at": created, "deleted_at": None}
            if kind == "ticket":
                record["unique_id"] = f"TCK-{company.seq:06d}"
            else:
                record["number"] = f"DEAL-{company.seq:06d}"
            conn.execute(insert(TABLES[kind]), record)
            if timeline is not None:
                conn.execute(insert(schema.timeline_entries),
                             {**timeline, "record_kind": kind, "record_id": record["id"], "created_at": created})
            self._enqueue(conn, company_id, outbox_topics, kind, record, created)
            self._insert_events(conn, company_id, events(record), created)
            room = self._link(conn, kind, record) if link_room else None
            self._remember(conn, keyed, output(record))
            return Change(record, room)

        return await self._keyed_write(work, keyed)

    async def patch_record(
        self, kind: str, company_id: str, record_id: str, changes: Row, *, now: int, notify: Callable[[Row], bool]
    ) -> Change:
        """Apply ``changes`` to a live record; ``notify(current)`` says whether the
        change is queued for Omnichannel."""
        _refuse_nul(changes)
        if not _findable(company_id, record_id):
            return Change(None)
        def work(conn: Connection) -> Change:
            current = _first(conn, LIVE_RECORD[kind], {"record_id": record_id, "company_id": company_id})
            if current is None:
                return Change(None)
            changed = {k: v for k, v in changes.items() if current[k] != v}
            if not changed:
                return Change(current)
            conn.execute(SET_RECORD[kind], {**changed, "updated_at": now, "record_id": record_id})
            record = {**current, **changed, "updated_at": now}
            room = None
            if current["room_id"] and set(changed) & set(SHOWN_FIELDS[kind]):
                room = self._bump_if_shown(conn, kind, record)
            if notify(current):
                self._enqueue(conn, company_id, ["notify.updated"], kind, record, now)
            return Change(record, room)

        return await self.db.write(work, company_id=company_id)

    async def delete_record(
        self, kind: str, company_id: str, record_id: str, *, now: int, notify: Callable[[Row], bool]
    ) -> Change:
        if not _findable(company_id, record_id):
            return Change(None)
        def work(conn: Connection) -> Change:
            current = _first(conn, LIVE_RECORD[kind], {"record_id": record_id, "company_id": company_id})
            if current is None:
                return Change(None)
            conn.execute(SET_RECORD[kind], {"deleted_at": now, "record_id": record_id})
            room = None
            if current["room_id"]:
                # Empty the slot if it shows this record; the high-water mark stays.
                emptied = conn.execute(EMPTY_SLOT[kind], {
                    "in_company": company_id, "in_room": current["room_id"], "shown_id": record_id}).first()
                if emptied is not None:
                    room = self._state_of(conn, emptied)
            if notify(current):
                self._enqueue(conn, company_id, ["notify.deleted"], kind, current, now)
            return Change({**current, "deleted_at": now}, room)

        return await self.db.write(work, company_id=company_id)

    async def timeline(self, kind: str, record_id: str) -> list[Row]:
        if not _findable(record_id):
            return []
        t = schema.timeline_entries.c
        query = (
            select(schema.timeline_entries)
            .where(t.record_kind == kind, t.record_id == record_id)
            .order_by(t.created_at, t.id)
        )
        return await self.db.read(lambda conn: _all(conn, query))

    # -- rooms --------------------------------------------------------------

    async def room_state(self, company_id: str, room_id: str) -> RoomState:
        if not _findable(company_id, room_id):
            return RoomState(0, None, None)
        def work(conn: Connection) -> RoomState:
            room = conn.execute(ROOM_ROW, {"company_id": company_id, "room_id": room_id}).first()
            return RoomState(0, None, None) if room is None else self._state_of(conn, room)

        return await self.db.read(work)

    async def room_versions(self, rooms: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The stored version of each ``(company_id, room_id)`` that has one (a room never
        written has none: version 0), in one statement per 500 rooms."""
        keys = list(rooms)

        def work(conn: Connection) -> dict[tuple[str, str], int]:
            found: dict[tuple[str, str], int] = {}
            for start in range(0, len(keys), 500):
                rows = conn.execute(ROOM_VERSIONS, {"rooms": keys[start:start + 500]})
                found.update({(company_id, room_id): version for company_id, room_id, version in rows})
            return found

        return await self.db.read(work, offload=True)

    @staticmethod
    def _state_of(conn: Connection, room: Any, known: Row | None = None) -> RoomState:
        """The state of a room row (``version, deal_id, ticket_id``): the records its slots
        show, read unless ``known`` is the one."""
        shown: dict[str, Row | None] = {}
        for kind in TABLES:
            record_id = getattr(room, f"{kind}_id")
            if known is not None and record_id == known["id"]:
                shown[kind] = known
            else:
                shown[kind] = _first(conn, RECORD_BY_ID[kind], {"record_id": record_id}) if record_id else None
        return RoomState(room.version, shown["deal"], shown["ticket"])

    def _link(self, conn: Connection, kind: str, record: Row) -> RoomState | None:
        room = conn.execute(self._link_room[kind], {
            "company_id": record["company_id"], "room_id": record["room_id"],
            "record_id": record["id"], "created_at": record["created_at"],
        }).first()
        return None if room is None else self._state_of(conn, room, known=record)

    def _bump_if_shown(self, conn: Connection, kind: str, record: Row) -> RoomState | None:
        room = conn.execute(BUMP_SHOWN[kind], {
            "in_company": record["company_id"], "in_room": record["room_id"], "shown_id": record["id"]}).first()
        return None if room is None else self._state_of(conn, room, known=record)

    # -- outbox -------------------------------------------------------------

    @staticmethod
    def _enqueue(
        conn: Connection, company_id: str, topics: Iterable[str], kind: str, record: Row, now: int
    ) -> None:
        payload = json.dumps({"kind": kind, "record_id": record["id"], "room_id": record["room_id"]})
        rows = [
            {"company_id": company_id, "topic": topic, "payload": payload, "attempts": 0,
             "next_attempt_at": now, "created_at": now}
            for topic in topics
        ]
        if rows:
            conn.execute(insert(schema.outbox), rows)

    async def outbox_backlog(self) -> dict[str, tuple[int, int]]:
        """Unfinished rows per topic: (count, oldest ``created_at``)."""
        o = schema.outbox.c
        query = select(o.topic, func.count(), func.min(o.created_at)).where(o.done_at.is_(None)).group_by(o.topic)
        return await self.db.read(lambda conn: {topic: (n, oldest) for topic, n, oldest in conn.execute(query)})

    async def outbox_rows(self, company_id: str) -> list[Row]:
        o = schema.outbox.c
        query = select(schema.outbox).where(o.company_id == company_id).order_by(o.id)
        return await self.db.read(lambda conn: _all(conn, query))

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
        params = {"now": now, "topics": list(topics), "limit": limit}
        # An idle loop polls every second: a read finds there is nothing to claim
        # without taking the (single, on SQLite) writer.
        if await self._one(OUTBOX_DUE, **{**params, "limit": 1}) is None:
            return []
        params["lease_until"] = lease_until
        rows = await self.db.write(lambda conn: _all(conn, CLAIM_OUTBOX, params), background=True)
        return sorted(rows, key=lambda row: row["id"])

    async def record_for_notify(self, kind: str, company_id: str, record_id: str) -> Row | None:
        """A record of this company as stored now, soft-deleted or not (a deleted record
        still has its created/updated/deleted notifications to send)."""
        if not _findable(company_id, record_id):
            return None
        return await self._one(RECORD_OF_COMPANY[kind], record_id=record_id, company_id=company_id)

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
        params = {**values, "row_id": row_id, "claimed": attempts}
        return await self.db.write(lambda conn: conn.execute(SETTLE_OUTBOX, params).rowcount == 1, background=True)

    # What the chat_history rows write back: the creation entry's preview, once.

    async def chat_preview_pending(self, company_id: str, kind: str, record_id: str) -> bool:
        return await self._one(PENDING_ENTRY, of_company=company_id, of_kind=kind, of_record=record_id) is not None

    async def set_chat_preview(
        self, company_id: str, kind: str, record_id: str, status: str, preview: str | None
    ) -> bool:
        """Settle the record's entry (``preview`` is JSON text or None) if it is still
        pending; False if it was settled already (a row run twice) or is gone."""
        params = {"of_company": company_id, "of_kind": kind, "of_record": record_id,
                  "chat_preview": preview, "chat_preview_status": status}
        return await self.db.write(lambda conn: conn.execute(SETTLE_ENTRY, params).rowcount > 0, background=True)

    # -- idempotency --------------------------------------------------------

    async def remember(self, keyed: Keyed, content: Any) -> None:
        """Store the response of a keyed POST whose work wrote nothing else (an embed
        token); ``KeyTaken`` if the key holds a live response."""
        await self._keyed_write(lambda conn: self._remember(conn, keyed, content), keyed)

    def _remember(self, conn: Connection, keyed: Keyed | None, content: Any) -> None:
        """One statement: take the key (or one whose response expired) with this
        response, else raise ``KeyTaken``, which rolls back the whole transaction. A row
        without a status is a claim of the former two-step scheme, whose request died."""
        if keyed is None:
            return
        params = {"company_id": keyed.company_id, "route": keyed.route, "key": keyed.key, "now": keyed.now,
                  "body_hash": keyed.body_hash, "status": keyed.status, "response": response_text(content),
                  "expire_before": keyed.expire_before}
        if conn.execute(self._take_key, params).rowcount != 1:
            raise KeyTaken(None)

    async def _keyed_write(self, work: Callable[[Connection], Any], keyed: Keyed | None, **options: Any) -> Any:
        """A write that may meet its key taken: then ``KeyTaken`` with the stored row."""
        try:
            return await self.db.write(work, **options)
        except KeyTaken:
            assert keyed is not None
            raise KeyTaken(await self._one(
                KEY_ROW, company_id=keyed.company_id, route=keyed.route, key=keyed.key)) from None

    # -- analytics ----------------------------------------------------------

    async def record_event(self, company_id: str, event: Event, now: int, dedupe: str | None = None) -> bool:
        """Store an analytics event; False if ``dedupe`` was already recorded. Not under
        the company's lock (nothing else is read or written with it), and a repeat is
        found by a read, so duplicate beacons cost no write."""
        if dedupe is not None and not _findable(dedupe):  # (an agent id with U+0000): its digest
            dedupe = "sha256:" + hashlib.sha256(dedupe.encode("utf-8", "surrogatepass")).hexdigest()
        if dedupe is not None:
            if await self._one(EVENT_SEEN, company_id=company_id, dedupe=dedupe) is not None:
                return False
        return await self.db.write(lambda conn: self._insert_events(conn, company_id, [event], now, dedupe) == 1)

    def _insert_events(
        self, conn: Connection, company_id: str, events: list[Event], now: int, dedupe: str | None = None
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
        return conn.execute(self._insert_events_skipping_taken, rows).rowcount

    async def event_counts(self, company_id: str, since: int, until: int) -> dict[str, int]:
        a = schema.analytics_events.c
        query = (
            select(a.name, func.count())
            .where(a.company_id == company_id, a.created_at >= since, a.created_at <= until)
            .group_by(a.name)
        )
        return await self.db.read(lambda conn: {name: n for name, n in conn.execute(query)}, offload=True)

    async def creation_context(
        self, company_id: str, since: int, until: int, creators: Iterable[str]
    ) -> dict[str, dict[str, int]]:
        """Per kind, records created in [since, until] by the given creators (deleted
        ones too): how many; how many were displayed as a preview (by until); how many
        have a timeline log (their creation entry settled ``ok`` or ``empty``; ``failed``
        and still ``pending`` ones do not); how many have the full context: a contact, a
        room and a timeline log (the creator label is given by ``creators``)."""
        e, a = schema.timeline_entries.c, schema.analytics_events.c
        queries = {}
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
            queries[kind] = select(
                func.count(), func.count(case((displayed, 1))),
                func.count(case((logged, 1))), func.count(case((full, 1))),
            ).where(
                t.company_id == company_id, t.creator_flag.in_(list(creators)),
                t.created_at >= since, t.created_at <= until,
            )
        names = ("created", "displayed", "with_timeline_log", "with_full_context")
        return await self.db.read(
            lambda conn: {kind: dict(zip(names, conn.execute(q).one())) for kind, q in queries.items()},
            offload=True,
        )

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
            return await self.db.read(lambda conn: {
                name: conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
                for name, (table, where) in expired.items()
            }, offload=True)
        return await self.db.write(lambda conn: {
            name: conn.execute(delete(table).where(where)).rowcount for name, (table, where) in expired.items()
        }, background=True)

    # -- crm links ----------------------------------------------------------

    async def use_crm_link(self, jti: str, company_id: str, *, expires_at: int, now: int) -> bool:
        """Remember that the CRM link ``jti`` was used; False if it was used before."""
        statement = insert(schema.used_crm_links).values(
            jti=jti, company_id=company_id, used_at=now, expires_at=expires_at
        )
        try:
            await self.db.write(lambda conn: conn.execute(statement), company_id=company_id)
        except IntegrityError:
            return False
        return True

    async def forget_used_links(self, before: int, *, dry_run: bool = False) -> int:
        """Forget (or with ``dry_run`` only count) used CRM links that expired strictly
        before ``before`` (µs): past its ``exp`` a link is refused by its signature check
        anyway, so remembering it is no longer needed. The retention purge calls this."""
        u = schema.used_crm_links.c
        if dry_run:
            query = select(func.count()).select_from(schema.used_crm_links).where(u.expires_at < before)
            return await self.db.read(lambda conn: conn.execute(query).scalar_one(), offload=True)
        statement = delete(schema.used_crm_links).where(u.expires_at < before)
        return await self.db.write(lambda conn: conn.execute(statement).rowcount, background=True)


__all__ = ["Change", "CompanyExists", "Keyed", "KeyTaken", "RoomState", "Row", "Store", "StoreUnavailable",
           "response_text"]
