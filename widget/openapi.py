"""The OpenAPI 3.1 description of the record API (RFC section 5).

Every schema comes from ``widget.models``, whose models also validate the requests and
serialise the responses, so the document says what the server accepts and returns.
What JSON Schema cannot say (the company's frame origins, the server's token lifetime
setting, ``since`` before ``until``) is in descriptions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from widget.models import (
    ROOM_ID_PATTERN,
    Contact,
    ContactIn,
    Deal,
    DealIn,
    DealPatch,
    EmbedToken,
    EmbedTokenIn,
    Error,
    RoomSnapshot,
    Stats,
    Ticket,
    TicketIn,
    TicketPatch,
    TimelineEntries,
)

REF = "#/components/schemas/{model}"
REQUESTS: tuple[type[BaseModel], ...] = (ContactIn, DealIn, DealPatch, TicketIn, TicketPatch, EmbedTokenIn)
RESPONSES: tuple[type[BaseModel], ...] = (Contact, Deal, Ticket, RoomSnapshot, TimelineEntries, EmbedToken,
                                          Stats, Error)
DEFAULT_TOKEN_MAX_AGE = 900

ERRORS = {
    400: "malformed_json: the body is not JSON, has NaN, Infinity or a duplicate key, or is not an object",
    401: "unauthorized: no valid API key",
    404: "not_found: no such object for this company",
    409: "idempotency_conflict: this Idempotency-Key came with another body, or its first request is still running",
    413: "payload_too_large: the body is larger than 64 KiB",
    415: "unsupported_media_type: the body is not application/json",
    422: "validation_failed: details lists every bad field",
    429: "rate_limited: too many requests for this company",
    503: "unavailable: the store is unreachable",
}
# Every operation authenticates, is rate limited and reads the store.
ANY = (401, 429, 503)
BODY = (400, 413, 415, 422)
CREATE = (*ANY, *BODY, 409)
ITEM = (*ANY, 404)
PATCH = (*ITEM, *BODY)

RETRY_AFTER = {"Retry-After": {"required": True, "description": "Seconds to wait before retrying.",
                               "schema": {"type": "integer", "minimum": 1}}}
REPLAYED = {"Idempotent-Replayed": {"description": "The stored response to an earlier request with this key.",
                                    "schema": {"const": "true"}}}
ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
ROOM_ID = {"name": "room_id", "in": "path", "required": True,
           "description": "A room id outside the pattern answers 404.",
           "schema": {"type": "string", "maxLength": 128, "pattern": ROOM_ID_PATTERN}}
# What ``widget.bodies.idempotency_key`` accepts: 1-255 printable ASCII, not all spaces.
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Replays the stored 2xx response for the same key and body (per company and route, 24 h).",
    "schema": {"type": "string", "maxLength": 255, "pattern": r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$"},
}
STATS_PERIOD = [
    {"name": name, "in": "query", "required": False, "description": description,
     "schema": {"type": "string", "format": "date-time"}}
    for name, description in (
        ("since", "RFC 3339 with a zone, not before 1970 nor after until; default 30 days before until."),
        ("until", "RFC 3339 with a zone, not before 1970; default now."),
    )
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def _responses(status: int, out: str | None, errors: Iterable[int]) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "No content" if out is None else out}
    if out is not None:
        success["content"] = _json(out)
    if status == 201:
        success["headers"] = REPLAYED
    responses = {str(status): success}
    for code in sorted(errors):
        responses[str(code)] = {"description": ERRORS[code], "content": _json("Error"),
                                **({"headers": RETRY_AFTER} if code in (429, 503) else {})}
    return responses


def _op(op_id: str, summary: str, status: int, out: str | None, errors: Iterable[int], *,
        body: str | None = None, parameters: list[dict[str, Any]] | None = None,
        description: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": op_id, "summary": summary,
                          "responses": _responses(status, out, errors)}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = {"required": True, "content": _json(body)}
    return op


def _create(op_id: str, summary: str, out: str, body: str) -> dict[str, Any]:
    return _op(op_id, summary, 201, out, CREATE, body=body, parameters=[IDEMPOTENCY_KEY])


def _record_paths(kind: str, model: str) -> dict[str, Any]:
    title = kind.title()
    return {
        f"/api/v1/{kind}s": {"post": _create(f"create{title}", f"Create a {kind}", model, f"{model}In")},
        f"/api/v1/{kind}s/{{id}}": {
            "parameters": [ID],
            "get": _op(f"get{title}", f"Get a {kind}", 200, model, ITEM),
            "patch": _op(f"update{title}", f"Update a {kind}", 200, model, PATCH, body=f"{model}Patch"),
            "delete": _op(f"delete{title}", f"Delete a {kind} (soft)", 204, None, ITEM,
                          description="A deleted record answers 404 from then on."),
        },
        f"/api/v1/{kind}s/{{id}}/timeline": {
            "parameters": [ID],
            "get": _op(f"get{title}Timeline", f"The {kind}'s timeline", 200, "TimelineEntries", ITEM),
        },
    }


def _schemas(token_max_age: int) -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "validation") for model in REQUESTS] + [(model, "serialization") for model in RESPONSES],
        ref_template=REF,
    )
    schemas: dict[str, Any] = top["$defs"]
    # The largest ttl_seconds is a setting of the server, not of the model.
    ttl = schemas["EmbedTokenIn"]["properties"]["ttl_seconds"]
    for option in ttl["anyOf"]:
        if option.get("type") == "integer":
            option["maximum"] = token_max_age
    return schemas


def document(public_url: str, token_max_age: int = DEFAULT_TOKEN_MAX_AGE) -> dict[str, Any]:
    """``token_max_age`` is the server's WIDGET_TOKEN_MAX_AGE: the largest ``ttl_seconds``."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "CRM Deal & Ticket component: record API", "version": "1.0.0"},
        "servers": [{"url": public_url}],
        "security": [{"apiKey": []}],
        "paths": {
            "/api/v1/contacts": {"post": _create("createContact", "Create a contact", "Contact", "ContactIn")},
            "/api/v1/contacts/{id}": {
                "parameters": [ID],
                "get": _op("getContact", "Get a contact", 200, "Contact", ITEM),
                "delete": _op("deleteContact", "Delete a contact (soft)", 204, None, ITEM,
                              description="A deleted contact answers 404 from then on."),
            },
            **_record_paths("deal", "Deal"),
            **_record_paths("ticket", "Ticket"),
            "/api/v1/rooms/{room_id}": {
                "parameters": [ROOM_ID],
                "get": _op("getRoom", "The room snapshot", 200, "RoomSnapshot", ITEM),
            },
            "/api/v1/embed-tokens": {"post": _create("createEmbedToken", "Mint an embed token", "EmbedToken",
                                                     "EmbedTokenIn")},
            "/api/v1/stats": {"get": _op("getStats", "PRD success metrics", 200, "Stats", (*ANY, 422),
                                         parameters=STATS_PERIOD)},
        },
        "components": {
            "schemas": _schemas(token_max_age),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }
