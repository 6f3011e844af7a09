"""Request bodies and response shapes, as pydantic models: the API validates requests
and serialises responses through them, and ``widget.openapi`` builds ``/openapi.json``
from their JSON Schemas, so the document says what the server does.

Every rule a model checks is also in its schema. Patterns therefore use explicit
character classes (never ``\\s``, ``\\d``, ``\\w`` or ``.``, which Python, pydantic's
Rust engine and JSON Schema validators each read differently) and a whole-value match
is written ``^…$``, which those engines agree on."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from widget.errors import validation_failed

# Exactly the characters Python's str.isspace() accepts: a name needs one outside them.
WHITESPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = f"[^{WHITESPACE}]"
# Stored text never holds U+0000: PostgreSQL's text cannot (SQLite's can), so no
# backend takes it and the document says so (a name: not blank, and no U+0000).
NUL = "\x00"
NO_NUL = r"^[^\x00]*$"
NAME_PATTERN = rf"^[^\x00]*[^{WHITESPACE}\x00][^\x00]*$"
ROOM_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
# An absolute http(s) URL whose host is a plain name or IPv4 address (no user info, no
# IPv6 literal), an optional numeric port, then any path, query and fragment without
# control characters or spaces (a URL has none; CR/LF would split a header it lands in).
# Narrower than urlsplit, so that a schema can say it exactly.
HTTP_URL = r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9][A-Za-z0-9._~-]*(:[0-9]{1,5})?([/?#][^\x00-\x20\x7f]*)?$"
# An integer contact_id is taken as its decimal string, so it is held to a string's
# 255 characters too: 255 digits, or a minus sign and 254.
CONTACT_ID_MAX, CONTACT_ID_MIN = 10**255 - 1, -(10**254 - 1)
ROOM_ID = re.compile(ROOM_ID_PATTERN)
COMPANY_ID = re.compile(r"[a-z0-9-]{2,64}")
CREATORS = {"bot": "Bot", "agentic_ai": "AI"}
DEFAULT_CREATOR = "API"
PERMISSIONS = ("deal:view", "ticket:view")


def _integral(value: Any) -> Any:
    """JSON has one number type: 43.0 is the integer 43, as JSON Schema's "integer" says."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# List it after the integer's constraints: one listed after it reaches the JSON Schema
# as pydantic's "gt" instead of "exclusiveMinimum".
Integral = BeforeValidator(_integral)

Name = Annotated[StrictStr, StringConstraints(max_length=255, pattern=NAME_PATTERN)]
Text = Annotated[StrictStr, StringConstraints(max_length=255, pattern=NO_NUL)]
RoomId = Annotated[StrictStr, StringConstraints(max_length=128, pattern=ROOM_ID_PATTERN)]
Url = Annotated[StrictStr, StringConstraints(max_length=2048, pattern=HTTP_URL)]
RecordRef = Annotated[StrictStr, StringConstraints(min_length=1, max_length=64)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ContactIn(Body):
    """A new contact."""

    name: Name
    phone: Text | None = None
    email: Text | None = None


class RecordIn(Body):
    room_id: RoomId | None = Field(
        default=None, description="The chat room; a bot/AI record with a room is shown in it."
    )
    contact_id: Text | Annotated[StrictInt, Field(ge=CONTACT_ID_MIN, le=CONTACT_ID_MAX), Integral] | None = Field(
        default=None,
        description="A contact of this company (an integer is taken as its decimal string). An unknown "
        "or deleted contact does not fail the create: the record is created without a contact.",
    )
    creator_flag: Annotated[StrictStr, StringConstraints(max_length=64, pattern=NO_NUL)] | None = Field(
        default=None, description='"bot" or "agentic_ai" mark a bot/AI record; any other value is stored as given.'
    )
    source: Text | None = None
    external_url: Url | None = Field(
        default=None, description="The record's own page; without it the record's URL is this server's CRM page."
    )


class DealIn(RecordIn):
    """A new deal."""

    name: Name
    stage: Name
    pipeline: Name


class TicketIn(RecordIn):
    """A new ticket."""

    name: Name
    status: Name


# Fields a record has but a PATCH may not send: 422 "cannot be changed".
IMMUTABLE = frozenset({"id", "number", "unique_id", "room_id", "contact_id", "creator_flag", "creator",
                       "source", "external_url", "url", "created_at", "updated_at"})


def _patch_schema(schema: dict[str, Any]) -> None:
    """A field left out is unchanged; null is refused, so the schema shows no default."""
    schema["minProperties"] = 1
    for field in schema["properties"].values():
        field.pop("default", None)


class Patch(Body):
    """At least one field; none may be null."""

    model_config = ConfigDict(json_schema_extra=_patch_schema)

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any) -> Any:
        if data == {}:
            raise ValueError(f"send at least one of {', '.join(cls.model_fields)}")
        return data


class DealPatch(Patch):
    """Changes to a deal: at least one of name, stage, pipeline."""

    name: Name = Field(default=None)
    stage: Name = Field(default=None)
    pipeline: Name = Field(default=None)


class TicketPatch(Patch):
    """Changes to a ticket: at least one of name, status."""

    name: Name = Field(default=None)
    status: Name = Field(default=None)


class EmbedTokenIn(Body):
    """An embed token for one agent in one chat room."""

    room_id: RoomId
    agent_id: Annotated[StrictStr, StringConstraints(min_length=1, max_length=255)]
    permissions: list[Literal["deal:view", "ticket:view"]] | None = Field(
        default=None, description="Which previews the agent may open; default both."
    )
    parent_origin: Annotated[StrictStr, StringConstraints(max_length=2048)] | None = Field(
        default=None,
        description="The page that frames the component: must be one of the company's frame origins "
        "(else 422); default the first of them.",
    )
    locale: Literal["en", "id"] | None = None
    ttl_seconds: Annotated[StrictInt, Field(gt=0), Integral] | None = Field(
        default=None, description="At most the server's WIDGET_TOKEN_MAX_AGE (else 422), which is the default."
    )


class OpenIn(Body):
    kind: Literal["deal", "ticket"]
    id: RecordRef
    # The agent's IANA time zone (browser), for times on the CRM page; unknown → UTC.
    tz: Annotated[StrictStr, StringConstraints(max_length=64)] | None = None


class TelemetryIn(Body):
    event: Literal["displayed"]
    kind: Literal["deal", "ticket"]
    id: RecordRef


_MESSAGES = {
    "missing": "is required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "list_type": "must be a list",
    "literal_error": "is not one of the allowed values",
    "greater_than": "must be a positive integer",
}
_PATTERN_MESSAGES = {
    NOT_BLANK: "must not be blank",
    NAME_PATTERN: "must not be blank",
    NO_NUL: "must not contain the NUL character (U+0000)",
    ROOM_ID_PATTERN: "must be 1-128 characters of A-Z a-z 0-9 . _ : @ -",
    HTTP_URL: "must be an absolute http(s) URL",
}


def _message(err: Any, field: str, immutable: frozenset[str]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "cannot be changed" if field in immutable else "unknown field"
    if kind == "string_too_long":
        return f"must be at most {err['ctx']['max_length']} characters"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        if NUL in str(err["input"]):
            return _PATTERN_MESSAGES[NO_NUL]
        return _PATTERN_MESSAGES[err["ctx"]["pattern"]]
    if kind != "missing" and err["input"] is None:
        return "must not be null"
    if field == "contact_id":
        if kind in ("less_than_equal", "greater_than_equal"):
            return "must be at most 255 characters (as a decimal string)"
        return "must be a string or an integer"
    return _MESSAGES.get(kind) or str(err["msg"]).removeprefix("Value error, ")


def parse(model: type[Body], data: Any, immutable: frozenset[str] = frozenset()) -> Body:
    """Validate ``data`` into ``model``; on failure raise 422 listing every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details: dict[str, str] = {}
        type_errors: set[str] = set()  # fields whose message so far only says "wrong type"
        for err in exc.errors():
            loc = err["loc"]
            field = ".".join([str(loc[0]), *(str(p) for p in loc[1:] if isinstance(p, int))]) if loc else "body"
            # Union members repeat the same field: the first error stands, unless it only
            # names a type the value was not and a later one says what is wrong with it.
            if field not in details or (field in type_errors and not err["type"].endswith("_type")):
                details[field] = _message(err, field, immutable)
                (type_errors.add if err["type"].endswith("_type") else type_errors.discard)(field)
        raise validation_failed([{"field": f, "message": m} for f, m in details.items()]) from None


# -- response shapes ------------------------------------------------------------

# What ``rfc3339`` writes: UTC, always with microseconds.
Timestamp = Annotated[StrictStr, WithJsonSchema({
    "type": "string", "format": "date-time",
    "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{6}Z$",
})]
Creator = Literal["Bot", "AI", "API"]
Count = Annotated[StrictInt, Field(ge=0)]
Rate = Annotated[StrictFloat, Field(ge=0)] | None


class Out(BaseModel):
    """A response shape: exactly these keys, each of exactly its type."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Contact(Out):
    """A contact."""

    id: StrictStr
    name: Name
    phone: Text | None
    email: Text | None
    created_at: Timestamp
    deleted: bool = Field(description="Always false in this API: a deleted contact answers 404.")


class _Record(Out):
    id: StrictStr
    name: Name
    room_id: RoomId | None
    contact_id: StrictStr | None = Field(description="The linked contact, if one was linked at creation.")
    creator_flag: StrictStr | None
    creator: Creator = Field(description='"Bot" for creator_flag "bot", "AI" for "agentic_ai", else "API".')
    source: Text | None
    url: StrictStr = Field(description="external_url if given, else this server's CRM page of the record.")
    created_at: Timestamp
    updated_at: Timestamp


DealNumber = Annotated[StrictStr, StringConstraints(pattern=r"^DEAL-[0-9]{6,}$")]


class Deal(_Record):
    """A deal; ``number`` is sequential per company (what an agent reads aloud)."""

    number: DealNumber
    stage: Name
    pipeline: Name


UniqueId = Annotated[StrictStr, StringConstraints(pattern=r"^TCK-[0-9]{6,}$")]


class Ticket(_Record):
    """A ticket; ``unique_id`` is sequential per company."""

    unique_id: UniqueId
    status: Name


class DealPreview(Out):
    """The deal as a room shows it."""

    id: StrictStr
    number: DealNumber
    name: Name
    stage: Name
    pipeline: Name
    url: StrictStr
    creator: Creator
    created_at: Timestamp


class TicketPreview(Out):
    """The ticket as a room shows it."""

    id: StrictStr
    unique_id: UniqueId
    name: Name
    status: Name
    url: StrictStr
    creator: Creator
    created_at: Timestamp


class RoomSnapshot(Out):
    """What a chat room shows; an unknown room is version 0 with both slots empty."""

    room_id: RoomId
    version: Count
    deal: DealPreview | None
    ticket: TicketPreview | None


ChatText = Annotated[StrictStr, StringConstraints(max_length=160)]


class ChatMessage(Out):
    """One message of the chat history preview, as the Chat Panel gave it (texts cut to 160)."""

    sender_type: Literal["customer", "bot", "agentic_ai", "agent"]
    sender_name: ChatText | None = None
    text: ChatText
    sent_at: Annotated[StrictStr, StringConstraints(max_length=64)]


class TimelineEntry(Out):
    """The creation entry of a bot/AI record made in a chat room."""

    id: StrictStr
    kind: Literal["bot_creation"]
    creator: Literal["Bot", "AI"]
    room_id: RoomId
    room_url: StrictStr = Field(description="The chat room in Omnichannel.")
    chat_preview: list[ChatMessage] | None = Field(description="The last messages, oldest first, once fetched.")
    chat_preview_status: Literal["pending", "ok", "empty", "failed"]
    created_at: Timestamp


class TimelineEntries(Out):
    """A record's timeline, oldest first."""

    entries: list[TimelineEntry]


class EmbedToken(Out):
    """A signed embed token and the component's URL with it."""

    token: StrictStr
    embed_url: StrictStr
    expires_at: Timestamp


class CreatedRecords(Out):
    """Bot/AI records created in the window (deleted ones too)."""

    created: Count
    displayed: Count = Field(description="Shown as a preview to at least one agent (by until).")
    with_timeline_log: Count = Field(description="Their creation entry settled ok or empty.")
    with_full_context: Count = Field(description="A contact, a room and a timeline log.")


class Stats(Out):
    """PRD success metrics over [since, until]: event counts and rates (null when the
    rate's denominator is 0). Events count when they happened in the window; ``records``
    are those created in it."""

    since: Timestamp
    until: Timestamp
    counts: dict[str, Count]
    records: CreatedRecords
    preview_display_rate: Rate = Field(description="records.displayed / records.created.")
    deal_preview_display_rate: Rate
    ticket_preview_display_rate: Rate
    room_to_record_navigation_rate: Rate = Field(description="Preview clicks / previews displayed.")
    record_to_room_navigation_rate: Rate = Field(
        description="Timeline chat room clicks / records.with_timeline_log.")
    full_context_rate: Rate = Field(description="records.with_full_context / records.created.")
    timeline_log_creation_failure_rate: Rate = Field(
        description="timeline_log_creation_failed / bot+AI creations.")


class ErrorDetail(Out):
    field: StrictStr
    message: StrictStr


class ErrorBody(Out):
    code: StrictStr = Field(description="The RFC's code for the status, e.g. validation_failed for 422.")
    message: StrictStr
    details: list[ErrorDetail] | None = Field(description="Every bad field, for 422; else null.")


class Error(Out):
    """Every error, routing's 404 and 405 included."""

    error: ErrorBody


def rfc3339(micros: int | None) -> str | None:
    if micros is None:
        return None
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_utc_second(seconds)}.{fraction:06d}Z"


@lru_cache(maxsize=256)
def _utc_second(seconds: int) -> str:
    """A create formats several times of one second (the record, its events, its
    snapshot): strftime once per second, not per time."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def creator_label(flag: str | None) -> str:
    return CREATORS.get(flag or "", DEFAULT_CREATOR)


def record_url(kind: str, row: dict[str, Any], public_url: str) -> str:
    return row["external_url"] or f"{public_url}/crm/{kind}s/{row['id']}"


def _shape(model: type[Out], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (which may hold more) validated into ``model``, as JSON-ready data.
    Keys a value left out stay out (a chat message without ``sender_name``)."""
    picked = {name: values[name] for name in model.model_fields if name in values}
    return model.model_validate(picked).model_dump(mode="json", exclude_unset=True)


def _record_values(kind: str, row: dict[str, Any], public_url: str) -> dict[str, Any]:
    """Every field a record or preview shows, from its stored row."""
    return {
        **row,
        "creator": creator_label(row["creator_flag"]),
        "url": record_url(kind, row, public_url),
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


def record_out(kind: str, row: dict[str, Any], public_url: str) -> dict[str, Any]:
    return _shape(Deal if kind == "deal" else Ticket, _record_values(kind, row, public_url))


def preview_out(kind: str, row: dict[str, Any] | None, public_url: str) -> dict[str, Any] | None:
    """The record as the room snapshot shows it."""
    if row is None:
        return None
    return _shape(DealPreview if kind == "deal" else TicketPreview, _record_values(kind, row, public_url))


def contact_out(row: dict[str, Any]) -> dict[str, Any]:
    return _shape(Contact, {**row, "created_at": rfc3339(row["created_at"]), "deleted": row["deleted_at"] is not None})


def timeline_entry_out(row: dict[str, Any], room_url: str) -> dict[str, Any]:
    """A stored timeline entry; ``row["chat_preview"]`` is JSON text or None."""
    preview = json.loads(row["chat_preview"]) if row["chat_preview"] else None
    return _shape(TimelineEntry, {**row, "room_url": room_url, "chat_preview": preview,
                                  "created_at": rfc3339(row["created_at"])})


def stats_out(values: dict[str, Any]) -> dict[str, Any]:
    return _shape(Stats, values)
