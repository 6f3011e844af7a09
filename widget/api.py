"""The record API, ``/api/v1`` (RFC section 5).

Checks run in the RFC's precedence: routing 405, then 401 (auth), 413/415/400 (body),
422 (validation), 403, 404, 409 (idempotency).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from widget import analytics, companies, contacts, embed_tokens, records, rooms, timeline
from widget.bodies import idempotency_key, idempotent, read_json
from widget.errors import Unauthenticated, not_found, validation_failed
from widget.http_errors import ApiError
from widget.models import (
    IMMUTABLE,
    ROOM_ID,
    Body,
    ContactIn,
    DealIn,
    DealPatch,
    EmbedTokenIn,
    TicketIn,
    TicketPatch,
    parse,
    to_micros,
)
from widget.ratelimit import RateLimiter, retry_after, source_address
from widget.runtime import Runtime
from widget.store import Keyed, Row

CREATE = {"deal": DealIn, "ticket": TicketIn}
PATCH = {"deal": DealPatch, "ticket": TicketPatch}


async def authenticate(request: Request) -> Row:
    """The company of the request's API key. Failed attempts are counted per source
    address (``WIDGET_AUTH_FAILURE_RATE``, ``_BURST``): past the burst, every request
    from that address is 429 and its key is not even checked, so guessing keys gets
    nowhere; a client elsewhere, with its valid key, is not affected."""
    rt: Runtime = request.app.state.runtime
    failures: RateLimiter = request.app.state.auth_failures
    source = source_address(request, request.app.state.trusted_proxies)
    wait = failures.wait(source)
    if wait:
        raise ApiError(429, "too many failed authentications from this address",
                       headers={"Retry-After": retry_after(wait)})
    try:
        return await companies.authenticate(rt, request.headers.get("authorization"))
    except Unauthenticated:
        failures.acquire(source)
        raise


async def _auth(request: Request) -> tuple[Runtime, Row]:
    rt: Runtime = request.app.state.runtime
    company = await authenticate(request)
    wait = request.app.state.rate_limiter.acquire(company["id"])
    if wait:
        raise ApiError(429, "too many requests for this company", headers={"Retry-After": retry_after(wait)})
    return rt, company


def _time_param(value: str, field: str) -> int:
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("naive")
        micros = to_micros(moment.astimezone(UTC))  # OverflowError past year 9999
    except (ValueError, OverflowError):
        raise validation_failed([{"field": field, "message": "must be an RFC 3339 time with a zone"}]) from None
    if micros < 0:
        raise validation_failed([{"field": field, "message": "must not be before 1970"}])
    return micros


def _test_clock(request: Request, rt: Runtime) -> int | None:
    """``X-Test-Clock`` (only with WIDGET_TEST_CLOCK): the record's creation time, as
    given, to play a record created earlier that arrives late (E1)."""
    value = request.headers.get("x-test-clock")
    if value is None or not rt.settings.test_clock:
        return None
    return _time_param(value, "X-Test-Clock")


# -- contacts -------------------------------------------------------------------


Action = Callable[[Keyed | None], Awaitable[Any]]


async def _create(
    request: Request, model: type[Body], action: Callable[[Runtime, Row, Any], Action],
    replay: Callable[[Runtime, str], str] | None = None,
) -> Response:
    """A POST that creates: auth, body, validation (all 422s before the action is
    built), then once per Idempotency-Key (``replay``: see ``idempotent``)."""
    rt, company = await _auth(request)
    data = await read_json(request)
    key = idempotency_key(request)
    body = parse(model, data)
    return await idempotent(request, company, data, key, action(rt, company, body),
                            replay=partial(replay, rt) if replay is not None else None)


async def create_contact(request: Request) -> Response:
    return await _create(
        request, ContactIn, lambda rt, company, body: lambda keyed: contacts.create(rt, company, body, keyed)
    )


async def contact(request: Request) -> Response:
    rt, company = await _auth(request)
    contact_id = request.path_params["id"]
    if request.method == "DELETE":
        await contacts.delete(rt, company, contact_id)
        return Response(status_code=204)
    return JSONResponse(await contacts.get(rt, company, contact_id))


# -- deals and tickets ----------------------------------------------------------


async def create_record(request: Request, kind: str) -> Response:
    def action(rt: Runtime, company: Row, body: Any) -> Action:
        created_at = _test_clock(request, rt)
        return lambda keyed: records.create(rt, kind, company, body, created_at, keyed)

    return await _create(request, CREATE[kind], action)


async def record(request: Request, kind: str) -> Response:
    rt, company = await _auth(request)
    record_id = request.path_params["id"]
    if request.method == "GET":
        return JSONResponse(await records.get(rt, kind, company, record_id))
    if request.method == "DELETE":
        await records.delete(rt, kind, company, record_id)
        return Response(status_code=204)
    data = await read_json(request)
    changes = parse(PATCH[kind], data, IMMUTABLE).model_dump(exclude_unset=True)
    return JSONResponse(await records.patch(rt, kind, company, record_id, changes))


async def record_timeline(request: Request, kind: str) -> Response:
    rt, company = await _auth(request)
    return JSONResponse({"entries": await timeline.entries(rt, kind, company["id"], request.path_params["id"])})


# -- rooms, tokens, stats ---------------------------------------------------------


async def room(request: Request) -> Response:
    rt, company = await _auth(request)
    room_id = request.path_params["room_id"]
    if not ROOM_ID.fullmatch(room_id):
        raise not_found("room")
    return JSONResponse(await rooms.current(rt, company["id"], room_id))


async def create_embed_token(request: Request) -> Response:
    return await _create(
        request, EmbedTokenIn, lambda rt, company, body: lambda keyed: embed_tokens.mint(rt, company, body, keyed),
        replay=embed_tokens.replay,
    )


async def stats(request: Request) -> Response:
    rt, company = await _auth(request)
    now = rt.now()
    params = request.query_params
    until = _time_param(params["until"], "until") if "until" in params else now
    since = _time_param(params["since"], "since") if "since" in params else until - 30 * 86_400 * 1_000_000
    if since > until:
        raise validation_failed([{"field": "since", "message": "must not be after until"}])
    return JSONResponse(await analytics.stats(rt, company["id"], since, until))


def _kind_routes(kind: str) -> list[Route]:
    base = f"/api/v1/{kind}s"
    return [
        Route(base, partial(create_record, kind=kind), methods=["POST"]),
        Route(base + "/{id}", partial(record, kind=kind), methods=["GET", "PATCH", "DELETE"]),
        Route(base + "/{id}/timeline", partial(record_timeline, kind=kind), methods=["GET"]),
    ]


routes = [
    Route("/api/v1/contacts", create_contact, methods=["POST"]),
    Route("/api/v1/contacts/{id}", contact, methods=["GET", "DELETE"]),
    *_kind_routes("deal"),
    *_kind_routes("ticket"),
    Route("/api/v1/rooms/{room_id}", room, methods=["GET"]),
    Route("/api/v1/embed-tokens", create_embed_token, methods=["POST"]),
    Route("/api/v1/stats", stats, methods=["GET"]),
]
