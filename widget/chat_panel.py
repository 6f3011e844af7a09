"""The Chat Panel API (RFC section 8), a system we don't own: a room's last messages
(for the timeline's chat preview) and whether a room can be opened (for the deeplink).

One client for both, with the RFC's 2 s for the whole call; failures are
``widget.upstream.UpstreamError``s."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from widget.runtime import Runtime
from widget.upstream import UpstreamError, refused, request

TIMEOUT = 2.0  # s


def room_segment(room_id: str) -> str:
    """The room id as one path segment: every character but unreserved ones encoded,
    and an all-dots id ("." / "..", valid room ids) spelled out, so no URL parser
    resolves it away as a dot-segment (``/rooms/../messages`` is ``/messages``)."""
    segment = quote(room_id, safe="")
    return segment.replace(".", "%2E") if set(segment) == {"."} else segment


async def _get(rt: Runtime, path: str, headers: dict[str, str], params: dict[str, Any] | None = None) -> httpx.Response:
    base = rt.settings.chat_panel_url
    if not base:
        raise UpstreamError("not_configured", transient=False)
    return await request(rt, "GET", f"{base.rstrip('/')}{path}", timeout=TIMEOUT, params=params, headers=headers)


async def messages(rt: Runtime, company_id: str, room_id: str, limit: int) -> Any:
    """The decoded answer of ``GET /rooms/{room_id}/messages?limit=…`` (its shape is
    the caller's to check)."""
    response = await _get(rt, f"/rooms/{room_segment(room_id)}/messages", {"X-Company-Id": company_id},
                          {"limit": limit})
    if not 200 <= response.status_code < 300:
        raise refused(response)
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):  # not JSON, cut short, or absurdly nested
        raise UpstreamError("malformed_json", transient=False) from None


async def room_status(rt: Runtime, company_id: str, room_id: str, agent_id: str) -> str:
    """"open", "archived", "gone" (404/410) or "forbidden" (403), from ``GET
    /rooms/{room_id}``; ``X-Agent-Id`` too, so a Chat Panel that knows per-agent access
    can answer 403. Any other answer: ``UpstreamError``."""
    response = await _get(rt, f"/rooms/{room_segment(room_id)}",
                          {"X-Company-Id": company_id, "X-Agent-Id": agent_id})
    if response.status_code in (404, 410):
        return "gone"
    if response.status_code == 403:
        return "forbidden"
    if response.status_code != 200:
        raise refused(response)
    try:
        answer = json.loads(response.content)
    except ValueError:
        answer = None  # a 200 still says the room is there
    return "archived" if isinstance(answer, dict) and answer.get("status") == "archived" else "open"
