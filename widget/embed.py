"""The component's JSON endpoints and the token gate they share with the page and
the stream (RFC sections 4 and 6): ``/state``, ``/open``, ``/telemetry``.

Token outcomes: missing/garbage/bad signature/retired key/wrong salt → 401
``invalid_token``; past ``exp`` → 401 ``token_expired``; another room → 403.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from widget.bodies import read_json
from widget.errors import ApiError, not_found
from widget.models import CREATORS, OpenIn, TelemetryIn, parse, rfc3339
from widget.service import Service
from widget.tokens import CRM_LINK, EMBED, InvalidToken, TokenExpired

CRM_LINK_TTL = 300  # s: the link only has to survive the new tab opening


class EmbedDenied(ApiError):
    """A refused embed token; ``claims`` are known for expired and other-room tokens."""

    def __init__(self, status: int, code: str, message: str, claims: dict[str, Any] | None) -> None:
        super().__init__(status, message, code=code)
        self.claims = claims


def authorize(request: Request) -> dict[str, Any]:
    """The verified claims of the request's embed token, for the room in its path."""
    service: Service = request.app.state.service
    try:
        claims = service.signer.verify(EMBED, request.query_params.get("token"))
    except TokenExpired as exc:
        raise EmbedDenied(401, "token_expired", "the embed token has expired", exc.claims) from None
    except InvalidToken:
        raise EmbedDenied(401, "invalid_token", "the embed token is missing or invalid", None) from None
    if claims.get("room_id") != request.path_params["room_id"]:
        raise EmbedDenied(403, "forbidden", "the embed token is for another room", claims)
    return claims


async def room_state(request: Request) -> Response:
    claims = authorize(request)
    service: Service = request.app.state.service
    return JSONResponse(await service.room_snapshot(claims["company"], claims["room_id"]))


def crm_link(service: Service, claims: dict[str, Any], kind: str, record_id: str) -> str:
    token, _ = service.signer.sign(
        CRM_LINK,
        {"company": claims["company"], "kind": kind, "id": record_id, "agent_id": claims["agent_id"]},
        CRM_LINK_TTL,
    )
    return f"{service.settings.public_url}/crm/{kind}s/{record_id}?link={token}"


async def open_record(request: Request) -> Response:
    """Where a click on a preview's name goes: 403 without the permission (checked
    first), 404 when the record is deleted or no longer the room's."""
    claims = authorize(request)
    body = parse(OpenIn, await read_json(request))
    assert isinstance(body, OpenIn)
    if f"{body.kind}:view" not in claims["permissions"]:
        raise ApiError(403, f"you don't have access to this {body.kind}")
    service: Service = request.app.state.service
    state = await service.store.room_state(claims["company"], claims["room_id"])
    record = getattr(state, body.kind)
    if record is None or record["id"] != body.id:
        raise not_found(body.kind)
    url = record["external_url"] or crm_link(service, claims, body.kind, body.id)
    name = f"{body.kind}_preview_clicked"
    props = {"room_id": claims["room_id"], f"{body.kind}_id": body.id, "agent_id": claims["agent_id"],
             "timestamp": rfc3339(service.now())}
    await service.track(claims["company"], name, props)
    return JSONResponse({"url": url})


async def telemetry(request: Request) -> Response:
    """``displayed`` beacons: counted once per record per agent (PRD success metric)."""
    claims = authorize(request)
    body = parse(TelemetryIn, await read_json(request, allow_text=True))
    assert isinstance(body, TelemetryIn)
    service: Service = request.app.state.service
    record = await service.store.get_record(body.kind, claims["company"], body.id)
    if record is None or record["room_id"] != claims["room_id"] or record["creator_flag"] not in CREATORS:
        raise not_found(body.kind)
    name = f"{body.kind}_preview_displayed"
    props = {"room_id": claims["room_id"], f"{body.kind}_id": body.id,
             "creator_source": record["creator_flag"], "agent_id": claims["agent_id"],
             "timestamp": rfc3339(service.now())}
    dedupe = f"displayed:{body.kind}:{body.id}:{claims['agent_id']}"
    await service.track(claims["company"], name, props, dedupe)
    return Response(status_code=204)


routes = [
    Route("/embed/rooms/{room_id}/state", room_state, methods=["GET"]),
    Route("/embed/rooms/{room_id}/open", open_record, methods=["POST"]),
    Route("/embed/rooms/{room_id}/telemetry", telemetry, methods=["POST"]),
]
