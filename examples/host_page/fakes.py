"""Fakes of the systems around the widget that Omnichannel owns: the Chat Panel
API (RFC section 8) and the receivers of the Omnichannel notifications (section 9)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from examples.host_page.context import (
    MAX_BODY,
    MAX_RECEIVED,
    HostError,
    HostState,
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
#
# Every call is recorded for the simulator's "Omnichannel events" panel, whatever the
# answer: a call refused for its signature is shown "not verified" with the reason (and
# still answered 401). Only verified, accepted calls are notifications: only they enter
# the dedupe memory (``HostState.received_by_event``, by ``X-Widget-Event-Id``) and only
# they make the inbox refresh the room's component (host.js polls ``since=<cursor>``).
#
# ``seq`` orders the entries: microseconds since the epoch, strictly increasing, so a
# cursor a page got from an earlier run of the host still orders before this run's calls.

# A rejected call's body is shown as sent (parsed if it is JSON), up to this much text.
MAX_SHOWN_BODY = 4096
MAX_EVENT_IDS = 5000  # the dedupe memory, apart from the panel's list: spam cannot evict it


def verify_signature(header: str | None, raw: bytes, secret: str, tolerance: int, now: float) -> str | None:
    """None if ``t=<unix>,v1=<hex>`` signs ``"<t>.<raw body>"``; else why not, in the
    panel's words ("bad signature", "timestamp too old", ...)."""
    if not header:
        return "missing signature"
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value.lower())
    if timestamp is None or not timestamp.isdigit() or not signatures:
        return "malformed signature header"
    if tolerance and now - int(timestamp) > tolerance:
        return "timestamp too old"
    if tolerance and int(timestamp) - now > tolerance:
        return "timestamp in the future"
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        return "bad signature"
    return None


ACTIONS = {"POST": "created", "PUT": "updated", "DELETE": "deleted"}


def _parse_body(raw: bytes) -> tuple[Any, bool]:
    """(what the panel shows of a body, whether it is JSON): its JSON (an empty body is
    ``{}``), else its text, cut at ``MAX_SHOWN_BODY``."""
    if not raw:
        return {}, True
    try:
        return json.loads(raw), True
    except ValueError:
        text = raw[:MAX_SHOWN_BODY].decode("utf-8", "replace")
        return text + ("…" if len(raw) > MAX_SHOWN_BODY else ""), False


def _record(state: HostState, request: Request, event_id: str, body: Any, *,
            verified: bool, status: int, reason: str | None) -> dict[str, Any]:
    """Keep one call for the panel (the last ``MAX_RECEIVED``)."""
    fields = body if isinstance(body, dict) else {}
    room_id = fields.get("room_id")
    record_id = request.path_params.get("id") or fields.get("external_id") or fields.get("crm_ticket_id")
    state.received_seq = max(state.received_seq + 1, time.time_ns() // 1000)
    entry = {
        "seq": state.received_seq,
        "event_id": event_id or None,
        "kind": "deal" if request.url.path.startswith("/omnichannel/deals") else "ticket",
        "action": ACTIONS[request.method],
        "method": request.method,
        "path": request.url.path,
        "record_id": record_id if isinstance(record_id, str) else None,
        "room_id": room_id if isinstance(room_id, str) else None,
        "body": body,
        "received_at": rfc3339(datetime.now(UTC)),
        "deliveries": 1,
        "verified": verified,
        "status": status,
        "reason": reason,
    }
    state.received.append(entry)
    del state.received[:-MAX_RECEIVED]
    return entry


def _refuse(state: HostState, request: Request, event_id: str, body: Any, *,
            verified: bool, status: int, reason: str) -> Response:
    _record(state, request, event_id, body, verified=verified, status=status, reason=reason)
    code = "unauthorized" if status == 401 else str(status)
    return JSONResponse({"error": {"code": code, "message": reason}}, status_code=status)


async def omnichannel_receive(request: Request) -> Response:
    config, state = host_config(request), host_state(request)
    raw = await request.body()
    event_id = request.headers.get("x-widget-event-id", "").strip()[:200]
    if len(raw) > MAX_BODY:
        return _refuse(state, request, event_id, None, verified=False, status=413, reason="body too large")
    body, is_json = _parse_body(raw)
    problem = verify_signature(request.headers.get("x-widget-signature"), raw,
                               config.omnichannel_secret, config.signature_tolerance, time.time())
    if problem:
        return _refuse(state, request, event_id, body, verified=False, status=401, reason=problem)
    if not event_id:
        return _refuse(state, request, event_id, body, verified=True, status=400, reason="missing X-Widget-Event-Id")
    if not isinstance(body, dict):
        reason = "the body must be a JSON object" if is_json else "malformed JSON"
        return _refuse(state, request, event_id, body, verified=True, status=400, reason=reason)
    if event_id in state.received_by_event:
        state.received_by_event[event_id]["deliveries"] += 1
        return JSONResponse({"status": "duplicate", "event_id": event_id})
    entry = _record(state, request, event_id, body, verified=True, status=200, reason=None)
    state.received_by_event[event_id] = entry
    while len(state.received_by_event) > MAX_EVENT_IDS:
        state.received_by_event.pop(next(iter(state.received_by_event)))
    return JSONResponse({"status": "received", "event_id": event_id})


async def omnichannel_received(request: Request) -> Response:
    """``{count, cursor, events}``: the calls in arrival order, optionally only a room's
    (``room=``) and only those after a cursor (``since=``, an earlier ``cursor``);
    ``cursor`` is the last call's ``seq`` (of any room), for the next ``since=``."""
    state = host_state(request)
    events = state.received
    since = request.query_params.get("since", "")
    if since:
        if not since.isdigit():
            raise HostError(400, "since must be a cursor (a non-negative integer)")
        events = [e for e in events if e["seq"] > int(since)]
    room = request.query_params.get("room")
    if room:
        events = [e for e in events if e["room_id"] == room]
    return JSONResponse({"count": len(events), "cursor": state.received_seq, "events": events})


async def omnichannel_clear(request: Request) -> Response:
    state = host_state(request)
    state.received.clear()
    state.received_by_event.clear()
    return Response(status_code=204)
