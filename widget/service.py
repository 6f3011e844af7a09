"""The PRD's rules, between the HTTP layer and the store.

Every room change is published on the broker after its transaction commits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from widget import logs
from widget.broker import Broker, room_channel
from widget.errors import ApiError, not_found, validation_failed
from widget.models import (
    COMPANY_ID,
    CREATORS,
    PERMISSIONS,
    ContactIn,
    EmbedTokenIn,
    RecordIn,
    contact_out,
    creator_label,
    preview_out,
    record_out,
    rfc3339,
)
from widget.settings import Settings
from widget.store import Change, CompanyExists, RoomState, Row, Store
from widget.tokens import EMBED, Signer, hash_api_key, new_api_key

Clock = Callable[[], int]  # µs since the epoch, UTC
CONTACT_LOOKUP_TIMEOUT = 1.0
INVALID_CONTACT_IDS = {"", "0", "null"}
ID_PREFIX = {"deal": "de", "ticket": "tk"}


def system_clock() -> int:
    return time.time_ns() // 1000


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def normalise_origin(value: str) -> str:
    """scheme://host[:port], lower-case, no path or trailing slash; ValueError if not."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) origin: {value!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"an origin has no path, query or credentials: {value!r}")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


class Service:
    def __init__(
        self, store: Store, broker: Broker, settings: Settings, signer: Signer, clock: Clock
    ) -> None:
        self.store = store
        self.broker = broker
        self.settings = settings
        self.signer = signer
        self.clock = clock

    def now(self) -> int:
        return self.clock()

    # -- companies ----------------------------------------------------------

    async def create_company(
        self,
        company_id: str,
        name: str,
        frame_origins: list[str],
        omnichannel_url: str | None = None,
        omnichannel_secret: str | None = None,
    ) -> tuple[Row, str]:
        """Returns (company, api key); the key is shown once and stored hashed."""
        if not COMPANY_ID.fullmatch(company_id):
            raise ValueError("company id must be 2-64 characters of a-z 0-9 -")
        if not name.strip() or len(name) > 255:
            raise ValueError("company name must be 1-255 characters")
        origins = list(dict.fromkeys(normalise_origin(o) for o in frame_origins))
        if not origins:
            raise ValueError("at least one --frame-origin is required")
        if omnichannel_url and urlsplit(omnichannel_url).scheme not in ("http", "https"):
            raise ValueError("omnichannel url must be http(s)")
        key = new_api_key()
        row = {
            "id": company_id,
            "name": name,
            "api_key_hash": hash_api_key(key),
            "frame_origins": json.dumps(origins),
            "omnichannel_url": omnichannel_url,
            "omnichannel_secret": omnichannel_secret,
            "last_created_at": 0,
            "ticket_seq": 0,
            "created_at": self.now(),
        }
        try:
            await self.store.create_company(row)
        except CompanyExists:
            raise ValueError(f"company {company_id!r} already exists") from None
        return row, key

    async def authenticate(self, authorization: str | None) -> Row:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, "missing or malformed Authorization: Bearer <api key>")
        company = await self.store.company_by_key_hash(hash_api_key(key.strip()))
        if company is None:
            raise ApiError(401, "unknown API key")
        return company

    # -- contacts -----------------------------------------------------------

    async def create_contact(self, company: Row, body: ContactIn) -> dict[str, Any]:
        row = {"id": new_id("ct"), "company_id": company["id"], **body.model_dump(), "created_at": self.now()}
        return contact_out(await self.store.create_contact(row))

    async def get_contact(self, company: Row, contact_id: str) -> dict[str, Any]:
        row = await self.store.get_contact(company["id"], contact_id)
        if row is None:
            raise not_found("contact")
        return contact_out(row)

    async def delete_contact(self, company: Row, contact_id: str) -> None:
        if not await self.store.delete_contact(company["id"], contact_id, self.now()):
            raise not_found("contact")

    async def _resolve_contact(self, company_id: str, raw: str | int | None) -> tuple[str | None, str | None]:
        """(contact id to link, reason it could not be linked). Never raises."""
        if raw is None:
            return None, None
        value = str(raw)
        if value in INVALID_CONTACT_IDS:
            return None, "invalid_id"
        try:
            state = await asyncio.wait_for(
                self.store.contact_state(company_id, value), CONTACT_LOOKUP_TIMEOUT
            )
        except Exception as exc:  # a failed lookup never fails the create
            logs.event("contact_lookup_error", logging.WARNING, error=type(exc).__name__)
            return None, "lookup_failed"
        return (value, None) if state == "ok" else (None, state)

    # -- records ------------------------------------------------------------

    async def create_record(
        self, kind: str, company: Row, body: RecordIn, created_at: int | None = None
    ) -> dict[str, Any]:
        company_id = company["id"]
        fields = body.model_dump(exclude={"contact_id"})
        contact_id, failure = await self._resolve_contact(company_id, body.contact_id)
        record_id = new_id(ID_PREFIX[kind])
        flag = body.creator_flag
        from_actor = flag in CREATORS
        timeline = None
        topics: list[str] = []
        if from_actor and body.room_id:
            timeline = {
                "id": new_id("tl"),
                "company_id": company_id,
                "kind": "bot_creation",
                "creator": creator_label(flag),
                "room_id": body.room_id,
                "chat_preview": None,
                "chat_preview_status": "pending",
            }
            topics.append("chat_history")
            if company["omnichannel_url"]:
                topics.append("notify.created")
        change = await self.store.create_record(
            kind,
            {"id": record_id, "company_id": company_id, **fields, "contact_id": contact_id},
            now=self.now() if created_at is None else created_at,
            exact_time=created_at is not None,
            link_room=from_actor and bool(body.room_id),
            timeline=timeline,
            outbox_topics=topics,
        )
        record = change.record
        assert record is not None
        if failure:
            logs.event(
                "contact_association_failed", logging.WARNING, company_id=company_id,
                **{f"{kind}_id": record_id}, contact_id=str(body.contact_id), reason=failure,
            )
        if from_actor:
            name = f"{'ai' if flag == 'agentic_ai' else 'bot'}_{kind}_created"
            props = {
                "room_id": body.room_id, "creator_flag": flag, f"{kind}_id": record_id,
                "contact_id_present": body.contact_id is not None, "source": body.source,
                "timestamp": rfc3339(record["created_at"]),
            }
            await self.track(company_id, name, props)
        else:
            self._actor_filtered(company_id, kind, record_id, "create", flag)
        await self._publish(company_id, body.room_id, change.room)
        return record_out(kind, record, self.settings.public_url)

    async def get_record(self, kind: str, company: Row, record_id: str) -> dict[str, Any]:
        row = await self.store.get_record(kind, company["id"], record_id)
        if row is None:
            raise not_found(kind)
        return record_out(kind, row, self.settings.public_url)

    async def _change_record(
        self, kind: str, company: Row, record_id: str, action: str,
        write: Callable[[bool], Awaitable[Change]],
    ) -> Row:
        """The shared path of an update and a delete: 404 for a missing record, the
        actor filter, Omnichannel notification only for bot/AI records in a room,
        and publishing the room if what it shows changed."""
        current = await self.store.get_record(kind, company["id"], record_id)
        if current is None:
            raise not_found(kind)
        from_actor = current["creator_flag"] in CREATORS
        change = await write(from_actor and bool(current["room_id"]) and bool(company["omnichannel_url"]))
        if change.record is None:  # deleted meanwhile
            raise not_found(kind)
        if not from_actor:
            self._actor_filtered(company["id"], kind, record_id, action, current["creator_flag"])
        await self._publish(company["id"], current["room_id"], change.room)
        return change.record

    async def patch_record(self, kind: str, company: Row, record_id: str, changes: Row) -> dict[str, Any]:
        record = await self._change_record(
            kind, company, record_id, "update",
            lambda notify: self.store.patch_record(
                kind, company["id"], record_id, changes, now=self.now(), notify=notify),
        )
        return record_out(kind, record, self.settings.public_url)

    async def delete_record(self, kind: str, company: Row, record_id: str) -> None:
        await self._change_record(
            kind, company, record_id, "delete",
            lambda notify: self.store.delete_record(kind, company["id"], record_id, now=self.now(), notify=notify),
        )

    async def timeline(self, kind: str, company: Row, record_id: str) -> list[dict[str, Any]]:
        if await self.store.get_record(kind, company["id"], record_id) is None:
            raise not_found(kind)
        return [self.timeline_out(row) for row in await self.store.timeline(kind, record_id)]

    def timeline_out(self, row: Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "kind": row["kind"],
            "creator": row["creator"],
            "room_id": row["room_id"],
            "room_url": self.room_url(row["room_id"]),
            "chat_preview": json.loads(row["chat_preview"]) if row["chat_preview"] else None,
            "chat_preview_status": row["chat_preview_status"],
            "created_at": rfc3339(row["created_at"]),
        }

    def room_url(self, room_id: str) -> str:
        return self.settings.omnichannel_room_url.replace("{room_id}", quote(room_id, safe=""))

    async def track(self, company_id: str, name: str, props: Row, dedupe: str | None = None) -> None:
        """A PRD product event: stored for /stats and logged, once per ``dedupe`` key."""
        if await self.store.record_event(company_id, name, props, self.now(), dedupe):
            logs.event(name, company_id=company_id, **props)
        else:
            logs.log.debug("repeat %s (%s)", name, dedupe)

    @staticmethod
    def _actor_filtered(company_id: str, kind: str, record_id: str, action: str, flag: str | None) -> None:
        logs.event(
            "actor_filtered", company_id=company_id, kind=kind, record_id=record_id,
            action=action, creator_flag=flag,
        )

    # -- rooms --------------------------------------------------------------

    def snapshot(self, room_id: str, state: RoomState) -> dict[str, Any]:
        public_url = self.settings.public_url
        return {
            "room_id": room_id,
            "version": state.version,
            "deal": preview_out("deal", state.deal, public_url),
            "ticket": preview_out("ticket", state.ticket, public_url),
        }

    async def room_snapshot(self, company_id: str, room_id: str) -> dict[str, Any]:
        return self.snapshot(room_id, await self.store.room_state(company_id, room_id))

    async def _publish(self, company_id: str, room_id: str | None, state: RoomState | None) -> None:
        if room_id is None or state is None:
            return
        snapshot = self.snapshot(room_id, state)
        try:
            await self.broker.publish(room_channel(company_id, room_id), snapshot)
        except Exception as exc:  # committed already: streams catch up on reconnect
            logs.event("room_publish_failed", logging.ERROR, company_id=company_id,
                       room_id=room_id, version=state.version, error=type(exc).__name__)

    # -- embed tokens -------------------------------------------------------

    async def mint_embed_token(self, company: Row, body: EmbedTokenIn) -> dict[str, Any]:
        origins: list[str] = json.loads(company["frame_origins"])
        problems = []
        parent_origin = origins[0] if origins else None
        if body.parent_origin is not None:
            try:
                parent_origin = normalise_origin(body.parent_origin)
            except ValueError:
                parent_origin = None
            if parent_origin not in origins:
                problems.append({"field": "parent_origin", "message": "is not one of the company's frame origins"})
        ttl = body.ttl_seconds if body.ttl_seconds is not None else self.settings.token_max_age
        if ttl > self.settings.token_max_age:
            problems.append({"field": "ttl_seconds", "message": f"must be at most {self.settings.token_max_age}"})
        if problems:
            raise validation_failed(problems)
        permissions = list(dict.fromkeys(body.permissions)) if body.permissions is not None else list(PERMISSIONS)
        claims = {
            "company": company["id"],
            "room_id": body.room_id,
            "agent_id": body.agent_id,
            "permissions": permissions,
            "parent_origin": parent_origin,
            "locale": body.locale or "en",
        }
        token, exp = self.signer.sign(EMBED, claims, ttl)
        return {
            "token": token,
            "embed_url": f"{self.settings.public_url}/embed/rooms/{quote(body.room_id, safe='')}?token={token}",
            "expires_at": rfc3339(exp),
        }

    # -- stats --------------------------------------------------------------

    async def stats(self, company: Row, since: int, until: int) -> dict[str, Any]:
        counts = await self.store.event_counts(company["id"], since, until)

        def total(*names: str) -> int:
            return sum(counts.get(n, 0) for n in names)

        def ratio(num: int, den: int) -> float | None:
            return round(num / den, 4) if den else None

        created = total("bot_deal_created", "ai_deal_created", "bot_ticket_created", "ai_ticket_created")
        displayed = total("deal_preview_displayed", "ticket_preview_displayed")
        return {
            "since": rfc3339(since),
            "until": rfc3339(until),
            "counts": counts,
            "preview_display_rate": ratio(displayed, created),
            "deal_preview_display_rate": ratio(
                total("deal_preview_displayed"), total("bot_deal_created", "ai_deal_created")),
            "ticket_preview_display_rate": ratio(
                total("ticket_preview_displayed"), total("bot_ticket_created", "ai_ticket_created")),
            "room_to_record_navigation_rate": ratio(
                total("deal_preview_clicked", "ticket_preview_clicked"), displayed),
            "timeline_log_creation_failure_rate": ratio(total("timeline_log_creation_failed"), created),
        }
