"""Fakes of the systems around the widget that Omnichannel owns: the Chat Panel
API (RFC section 8) and the receivers of the Omnichannel notifications (section 9)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from examples.host_page.context import (
    MAX_BODY,
    MAX_RECEIVED,
    HostError,
    host_config,
    host_state,
    read_json_object,
)
from examples.host_page.demo import (
    CHAT_PANEL_MODES,
    Room,
    rfc3339,
)

# -- fake Chat Panel API (RFC section 8) ------------------------------------------------
#
# Every room has a mode (``Room.chat_panel_mode``, one of ``CHAT_PANEL_MODES``) that
# decides how these endpoints answer for it, so QA and e2e tests can play each failure
# the CRM must survive (S04 ERR-2, S05 ERR-1) on one room without touching the others.

# Modes that refuse the whole room, on both endpoints: (status, message).
_REFUSALS = {
    "down": (503, "the Chat Panel is down"),
    "deleted": (404, "this room was deleted"),
    "forbidden": (403, "you have no access to this room"),
}
# A maintenance page where JSON was expected. It is labelled JSON on purpose: the CRM
# must notice by parsing, not by trusting the Content-Type.
_NOT_JSON = b"<html><head><title>Chat Panel</title></head><body><h1>Down for maintenance</h1></body></html>"


async def _chat_panel_room(request: Request) -> Room:
    """The room asked for, once the caller is checked and the room's mode has refused
    (raises) or delayed the answer."""
    company = request.headers.get("x-company-id")
    if not company:
        raise HostError(400, "missing X-Company-Id")
    room = host_state(request).room(request.path_params["room_id"], create=False)
    if company != host_config(request).company_id or room is None:
        raise HostError(404, "no such room")
    if room.chat_panel_mode in _REFUSALS:
        raise HostError(*_REFUSALS[room.chat_panel_mode])
    if room.chat_panel_mode == "slow":
        await _wait_unless_hung_up(request, host_config(request).chat_panel_slow_seconds)
    return room


async def _wait_unless_hung_up(request: Request, seconds: float) -> None:
    """Sleep ``seconds``, less if the caller hangs up first: the CRM gives up after 2 s,
    and an abandoned reply left sleeping would hold up the server's graceful shutdown.
    (A shutdown cancels the sleep itself once its grace period is over.)"""
    hang_up = asyncio.create_task(_hung_up(request))
    try:
        await asyncio.wait([hang_up], timeout=seconds)
    finally:
        hang_up.cancel()


async def _hung_up(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass  # the (empty) request body; the next message comes when the client leaves


async def chat_panel_room(request: Request) -> Response:
    room = await _chat_panel_room(request)
    status = "archived" if room.chat_panel_mode == "archived" else "open"
    return JSONResponse({"room_id": room.id, "status": status})


async def chat_panel_messages(request: Request) -> Response:
    room = await _chat_panel_room(request)
    try:
        limit = int(request.query_params.get("limit", "5"))
    except ValueError:
        raise HostError(400, "limit must be an integer") from None
    limit = min(max(limit, 1), 100)
    mode = room.chat_panel_mode
    if mode == "malformed":
        return Response(_NOT_JSON, media_type="application/json")
    messages = [] if mode == "empty" else room.messages[-limit:]
    reply = JSONResponse({"messages": [m.to_json() for m in messages]})
    if mode == "partial":  # a strict prefix of a JSON object is never valid JSON
        return Response(reply.body[: len(reply.body) // 2], media_type="application/json")
    return reply


async def get_chat_panel_mode(request: Request) -> Response:
    room = host_state(request).room(request.path_params["room_id"], create=False)
    if room is None:
        raise HostError(404, "unknown room (open it in the inbox or set its mode first)")
    return JSONResponse({"room_id": room.id, "mode": room.chat_panel_mode})


async def set_chat_panel_mode(request: Request) -> Response:
    """Sets a room's mode; an unknown (valid) room id becomes an ad-hoc QA room, so an
    e2e test can rig a room before anything shows it."""
    data = await read_json_object(request)
    mode = data.get("mode")
    if not isinstance(mode, str) or mode not in CHAT_PANEL_MODES:
        raise HostError(422, f"mode must be one of: {', '.join(CHAT_PANEL_MODES)}")
    room = host_state(request).room(request.path_params["room_id"], create=True)
    if room is None:
        raise HostError(404, "not a valid room id")
    room.chat_panel_mode = mode
    return JSONResponse({"room_id": room.id, "mode": mode})


# -- Omnichannel notification receivers (RFC section 9) ---------------------------------


def verify_signature(header: str | None, raw: bytes, secret: str, tolerance: int, now: float) -> str | None:
    """None if ``t=<unix>,v1=<hex>`` signs ``"<t>.<raw body>"``; else why not."""
    if not header:
        return "missing X-Widget-Signature"
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value.lower())
    if timestamp is None or not timestamp.isdigit() or not signatures:
        return "malformed X-Widget-Signature"
    if tolerance and abs(now - int(timestamp)) > tolerance:
        return "X-Widget-Signature timestamp is outside the tolerance"
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        return "bad X-Widget-Signature"
    return None


ACTIONS = {"POST": "created", "PUT": "updated", "DELETE": "deleted"}


async def omnichannel_receive(request: Request) -> Response:
    config, state = host_config(request), host_state(request)
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise HostError(413, "body too large")
    problem = verify_signature(request.headers.get("x-widget-signature"), raw,
                               config.omnichannel_secret, config.signature_tolerance, time.time())
    if problem:
        return JSONResponse({"error": {"code": "unauthorized", "message": problem}}, status_code=401)
    event_id = request.headers.get("x-widget-event-id", "").strip()
    if not event_id:
        raise HostError(400, "missing X-Widget-Event-Id")
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        raise HostError(400, "malformed JSON") from None
    if not isinstance(body, dict):
        raise HostError(400, "the body must be a JSON object")
    if event_id in state.received_by_event:
        entry = state.received_by_event[event_id]
        entry["deliveries"] += 1
        return JSONResponse({"status": "duplicate", "event_id": event_id})
    kind = "deal" if request.url.path.startswith("/omnichannel/deals") else "ticket"
    record_id = request.path_params.get("id") or body.get("external_id") or body.get("crm_ticket_id")
    entry = {
        "event_id": event_id,
        "kind": kind,
        "action": ACTIONS[request.method],
        "method": request.method,
        "path": request.url.path,
        "record_id": record_id,
        "room_id": body.get("room_id"),
        "body": body,
        "received_at": rfc3339(datetime.now(UTC)),
        "deliveries": 1,
    }
    state.received.append(entry)
    state.received_by_event[event_id] = entry
    while len(state.received) > MAX_RECEIVED:
        dropped = state.received.pop(0)
        state.received_by_event.pop(dropped["event_id"], None)
    return JSONResponse({"status": "received", "event_id": event_id})


async def omnichannel_received(request: Request) -> Response:
    state = host_state(request)
    events = state.received
    room = request.query_params.get("room")
    if room:
        events = [e for e in events if e["room_id"] == room]
    return JSONResponse({"count": len(events), "events": events})


async def omnichannel_clear(request: Request) -> Response:
    state = host_state(request)
    state.received.clear()
    state.received_by_event.clear()
    return Response(status_code=204)

