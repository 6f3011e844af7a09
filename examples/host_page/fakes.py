"""Fakes of the systems around the widget that Omnichannel owns: the Chat Panel
API (RFC section 8) and the receivers of the Omnichannel notifications (section 9)."""

from __future__ import annotations

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
)
from examples.host_page.demo import (
    Room,
    rfc3339,
)

# -- fake Chat Panel API (RFC section 8) ------------------------------------------------


def _chat_panel_room(request: Request) -> Room:
    company = request.headers.get("x-company-id")
    if not company:
        raise HostError(400, "missing X-Company-Id")
    room = host_state(request).rooms.get(request.path_params["room_id"])
    if company != host_config(request).company_id or room is None:
        raise HostError(404, "no such room")
    if room.restricted:
        raise HostError(403, "this room is restricted")
    return room


async def chat_panel_room(request: Request) -> Response:
    room = _chat_panel_room(request)
    return JSONResponse({"room_id": room.id})


async def chat_panel_messages(request: Request) -> Response:
    room = _chat_panel_room(request)
    try:
        limit = int(request.query_params.get("limit", "5"))
    except ValueError:
        raise HostError(400, "limit must be an integer") from None
    limit = min(max(limit, 1), 100)
    return JSONResponse({"messages": [m.to_json() for m in room.messages[-limit:]]})


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

