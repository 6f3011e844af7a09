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

from widget import analytics, embed_tokens, events, records, rooms
from widget.bodies import read_json
from widget.http_errors import ApiError
from widget.models import OpenIn, TelemetryIn, parse, rfc3339
from widget.ratelimit import RateLimiter, retry_after
from widget.runtime import Runtime
from widget.tokens import EMBED, InvalidToken, TokenExpired


class EmbedDenied(ApiError):
    """A refused embed token; ``claims`` are known for expired and other-room tokens."""

    def __init__(self, status: int, code: str, message: str, claims: dict[str, Any] | None) -> None:
        super().__init__(status, message, code=code)
        self.claims = claims


def verify_token(rt: Runtime, token: str | None) -> dict[str, Any]:
    """The verified claims of an embed token, whichever room it is for."""
    try:
        return rt.signer.verify(EMBED, token)
    except TokenExpired as exc:
        raise EmbedDenied(401, "token_expired", "the embed token has expired", exc.claims) from None
    except InvalidToken:
        raise EmbedDenied(401, "invalid_token", "the embed token is missing or invalid", None) from None


def authorize(request: Request) -> dict[str, Any]:
    """The verified claims of the request's embed token, for the room in its path."""
    claims = verify_token(request.app.state.runtime, request.query_params.get("token"))
    if claims.get("room_id") != request.path_params["room_id"]:
        raise EmbedDenied(403, "forbidden", "the embed token is for another room", claims)
    return claims


def limit(request: Request, limiter: RateLimiter, claims: dict[str, Any]) -> None:
    """One call of a token's budget (``WIDGET_OPEN_RATE``, ``WIDGET_TELEMETRY_RATE``):
    a token cannot click or beacon the PRD's metrics up."""
    wait = limiter.acquire(str(claims.get("jti") or request.query_params.get("token")))
    if wait:
        raise ApiError(429, "too many requests for this embed token", headers={"Retry-After": retry_after(wait)})


async def room_state(request: Request) -> Response:
    claims = authorize(request)
    rt: Runtime = request.app.state.runtime
    return JSONResponse(await rooms.current(rt, claims["company"], claims["room_id"]))


async def open_record(request: Request) -> Response:
    """Where a click on a preview's name goes: 403 without the permission (checked
    first), 404 when the record is deleted or no longer the room's."""
    claims = authorize(request)
    limit(request, request.app.state.open_limiter, claims)
    body = parse(OpenIn, await read_json(request))
    assert isinstance(body, OpenIn)
    if f"{body.kind}:view" not in claims["permissions"]:
        raise ApiError(403, f"you don't have access to this {body.kind}")
    rt: Runtime = request.app.state.runtime
    record = await rooms.shown(rt, claims["company"], claims["room_id"], body.kind, body.id)
    url = record["external_url"] or embed_tokens.crm_link(rt, claims, body.kind, body.id, body.tz)
    await analytics.track(rt, claims["company"], events.about(
        f"{body.kind}_preview_clicked", body.kind, body.id,
        room_id=claims["room_id"], agent_id=claims["agent_id"], timestamp=rfc3339(rt.now())))
    return JSONResponse({"url": url})


async def telemetry(request: Request) -> Response:
    """``displayed`` beacons: counted once per record per agent (PRD success metric)."""
    claims = authorize(request)
    limit(request, request.app.state.telemetry_limiter, claims)
    body = parse(TelemetryIn, await read_json(request, allow_text=True))
    assert isinstance(body, TelemetryIn)
    rt: Runtime = request.app.state.runtime
    record = await records.from_actor_in_room(rt, body.kind, claims["company"], claims["room_id"], body.id)
    event = events.about(
        f"{body.kind}_preview_displayed", body.kind, body.id, room_id=claims["room_id"],
        creator_source=record["creator_flag"], agent_id=claims["agent_id"], timestamp=rfc3339(rt.now()))
    dedupe = f"displayed:{body.kind}:{body.id}:{claims['agent_id']}"
    await analytics.track(rt, claims["company"], event, dedupe)
    return Response(status_code=204)


routes = [
    Route("/embed/rooms/{room_id}/state", room_state, methods=["GET"]),
    Route("/embed/rooms/{room_id}/open", open_record, methods=["POST"]),
    Route("/embed/rooms/{room_id}/telemetry", telemetry, methods=["POST"]),
]
