"""The OpenAPI 3.1 description of the record API, built from the request models."""

from __future__ import annotations

from typing import Any

from widget.models import ContactIn, DealIn, DealPatch, EmbedTokenIn, TicketIn, TicketPatch

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {
                    "type": ["array", "null"],
                    "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}},
                },
            },
        }
    },
}
_RECORD_COMMON = {
    "id": {"type": "string"}, "name": {"type": "string"}, "room_id": {"type": ["string", "null"]},
    "contact_id": {"type": ["string", "null"]}, "creator_flag": {"type": ["string", "null"]},
    "creator": {"type": "string", "enum": ["Bot", "AI", "API"]}, "source": {"type": ["string", "null"]},
    "url": {"type": "string", "format": "uri"}, "created_at": {"type": "string", "format": "date-time"},
    "updated_at": {"type": "string", "format": "date-time"},
}
SCHEMAS: dict[str, Any] = {
    "Error": ERROR,
    "Deal": {"type": "object", "properties": {**_RECORD_COMMON, "stage": {"type": "string"}, "pipeline": {"type": "string"}}},
    "Ticket": {"type": "object", "properties": {**_RECORD_COMMON, "unique_id": {"type": "string"}, "status": {"type": "string"}}},
    "Contact": {"type": "object", "properties": {k: {"type": "string"} for k in ("id", "name", "phone", "email", "created_at")}},
    "RoomSnapshot": {
        "type": "object",
        "properties": {
            "room_id": {"type": "string"}, "version": {"type": "integer"},
            "deal": {"oneOf": [{"$ref": "#/components/schemas/Deal"}, {"type": "null"}]},
            "ticket": {"oneOf": [{"$ref": "#/components/schemas/Ticket"}, {"type": "null"}]},
        },
    },
    "TimelineEntries": {"type": "object", "properties": {"entries": {"type": "array", "items": {"type": "object"}}}},
    "EmbedToken": {"type": "object", "properties": {k: {"type": "string"} for k in ("token", "embed_url", "expires_at")}},
    "Stats": {"type": "object"},
}
for model in (ContactIn, DealIn, DealPatch, TicketIn, TicketPatch, EmbedTokenIn):
    SCHEMAS[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(summary: str, status: int, out: str | None, body: str | None = None, **extra: Any) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): {"description": summary, **({"content": {"application/json": {"schema": _ref(out)}}} if out else {})},
        "default": {"description": "error", "content": {"application/json": {"schema": _ref("Error")}}},
    }
    op: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return op


_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_IDEMPOTENCY = [{"name": "Idempotency-Key", "in": "header", "required": False,
                 "schema": {"type": "string", "minLength": 1, "maxLength": 255}}]


def _record_paths(kind: str, model: str, create: str, patch: str) -> dict[str, Any]:
    return {
        f"/api/v1/{kind}s": {"post": _op(f"Create a {kind}", 201, model, create, parameters=_IDEMPOTENCY)},
        f"/api/v1/{kind}s/{{id}}": {
            "parameters": _ID,
            "get": _op(f"Get a {kind}", 200, model),
            "patch": _op(f"Update a {kind}", 200, model, patch),
            "delete": _op(f"Delete a {kind} (soft)", 204, None),
        },
        f"/api/v1/{kind}s/{{id}}/timeline": {"parameters": _ID, "get": _op(f"The {kind}'s timeline", 200, "TimelineEntries")},
    }


def document(public_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "CRM Deal & Ticket component: record API", "version": "1.0.0"},
        "servers": [{"url": public_url}],
        "security": [{"apiKey": []}],
        "paths": {
            "/api/v1/contacts": {"post": _op("Create a contact", 201, "Contact", "ContactIn", parameters=_IDEMPOTENCY)},
            "/api/v1/contacts/{id}": {
                "parameters": _ID,
                "get": _op("Get a contact", 200, "Contact"),
                "delete": _op("Delete a contact (soft)", 204, None),
            },
            **_record_paths("deal", "Deal", "DealIn", "DealPatch"),
            **_record_paths("ticket", "Ticket", "TicketIn", "TicketPatch"),
            "/api/v1/rooms/{room_id}": {
                "parameters": [{"name": "room_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": _op("The room snapshot", 200, "RoomSnapshot"),
            },
            "/api/v1/embed-tokens": {"post": _op("Mint an embed token", 201, "EmbedToken", "EmbedTokenIn", parameters=_IDEMPOTENCY)},
            "/api/v1/stats": {"get": _op("PRD success metrics", 200, "Stats", parameters=[
                {"name": n, "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}}
                for n in ("since", "until")])},
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }
