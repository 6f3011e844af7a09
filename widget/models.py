"""Request bodies (pydantic, strict, no unknown fields) and response shapes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
)

from widget.errors import validation_failed

ROOM_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
COMPANY_ID = re.compile(r"[a-z0-9-]{2,64}")
CREATORS = {"bot": "Bot", "agentic_ai": "AI"}
DEFAULT_CREATOR = "API"
PERMISSIONS = ("deal:view", "ticket:view")


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _room_id(value: str) -> str:
    if not ROOM_ID.fullmatch(value):
        raise ValueError("must be 1-128 characters of A-Z a-z 0-9 . _ : @ -")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    return value


Name = Annotated[StrictStr, StringConstraints(max_length=255), AfterValidator(_not_blank)]
Text = Annotated[StrictStr, StringConstraints(max_length=255)]
RoomId = Annotated[StrictStr, AfterValidator(_room_id)]
Url = Annotated[StrictStr, StringConstraints(max_length=2048), AfterValidator(_http_url)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ContactIn(Body):
    name: Name
    phone: Text | None = None
    email: Text | None = None


class RecordIn(Body):
    room_id: RoomId | None = None
    contact_id: Text | StrictInt | None = None
    creator_flag: Annotated[StrictStr, StringConstraints(max_length=64)] | None = None
    source: Text | None = None
    external_url: Url | None = None


class DealIn(RecordIn):
    name: Name
    stage: Name
    pipeline: Name


class TicketIn(RecordIn):
    name: Name
    status: Name


# Fields a record has but a PATCH may not send: 422 "cannot be changed".
IMMUTABLE = frozenset({"id", "unique_id", "room_id", "contact_id", "creator_flag", "creator",
                       "source", "external_url", "url", "created_at", "updated_at"})


class DealPatch(Body):
    name: Name | None = None
    stage: Name | None = None
    pipeline: Name | None = None


class TicketPatch(Body):
    name: Name | None = None
    status: Name | None = None


class EmbedTokenIn(Body):
    room_id: RoomId
    agent_id: Annotated[StrictStr, StringConstraints(min_length=1, max_length=255)]
    permissions: list[Literal["deal:view", "ticket:view"]] | None = None
    parent_origin: StrictStr | None = None
    locale: Literal["en", "id"] | None = None
    ttl_seconds: Annotated[StrictInt, Field(gt=0)] | None = None


class OpenIn(Body):
    kind: Literal["deal", "ticket"]
    id: Annotated[StrictStr, StringConstraints(min_length=1, max_length=64)]


class TelemetryIn(Body):
    event: Literal["displayed"]
    kind: Literal["deal", "ticket"]
    id: Annotated[StrictStr, StringConstraints(min_length=1, max_length=64)]


_MESSAGES = {
    "missing": "is required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "list_type": "must be a list",
    "literal_error": "is not one of the allowed values",
    "greater_than": "must be a positive integer",
}


def parse(model: type[Body], data: Any, immutable: frozenset[str] = frozenset()) -> Body:
    """Validate ``data`` into ``model``; on failure raise 422 listing every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details: dict[str, str] = {}
        for err in exc.errors():
            loc = err["loc"]
            field = ".".join([str(loc[0]), *(str(p) for p in loc[1:] if isinstance(p, int))]) if loc else "body"
            if field in details:
                continue  # union members repeat the same field
            kind = err["type"]
            if kind == "extra_forbidden":
                message = "cannot be changed" if field in immutable else "unknown field"
            elif kind == "string_too_long":
                message = f"must be at most {err['ctx']['max_length']} characters"
            elif kind == "string_too_short":
                message = "must not be empty"
            elif field == "contact_id":
                message = "must be a string or an integer"
            else:
                message = _MESSAGES.get(kind) or str(err["msg"]).removeprefix("Value error, ")
            details[field] = message
        raise validation_failed([{"field": f, "message": m} for f, m in details.items()]) from None


# -- response shapes ------------------------------------------------------------


def rfc3339(micros: int | None) -> str | None:
    if micros is None:
        return None
    moment = datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def creator_label(flag: str | None) -> str:
    return CREATORS.get(flag or "", DEFAULT_CREATOR)


def record_url(kind: str, row: dict[str, Any], public_url: str) -> str:
    return row["external_url"] or f"{public_url}/crm/{kind}s/{row['id']}"


def record_out(kind: str, row: dict[str, Any], public_url: str) -> dict[str, Any]:
    fields = ("stage", "pipeline") if kind == "deal" else ("unique_id", "status")
    return {
        "id": row["id"],
        "name": row["name"],
        **{f: row[f] for f in fields},
        "room_id": row["room_id"],
        "contact_id": row["contact_id"],
        "creator_flag": row["creator_flag"],
        "creator": creator_label(row["creator_flag"]),
        "source": row["source"],
        "url": record_url(kind, row, public_url),
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


def preview_out(kind: str, row: dict[str, Any] | None, public_url: str) -> dict[str, Any] | None:
    """The record as the room snapshot shows it."""
    if row is None:
        return None
    full = record_out(kind, row, public_url)
    keys = ("id", "name", "stage", "pipeline") if kind == "deal" else ("id", "unique_id", "name", "status")
    return {**{k: full[k] for k in keys}, "url": full["url"], "creator": full["creator"],
            "created_at": full["created_at"]}


def contact_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "phone": row["phone"],
        "email": row["email"],
        "created_at": rfc3339(row["created_at"]),
        "deleted": row["deleted_at"] is not None,
    }
