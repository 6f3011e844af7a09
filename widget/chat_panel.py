"""The Chat Panel API (RFC section 8), a system we don't own: a room's last messages
(for the timeline's chat preview) and whether a room can be opened (for the deeplink).

One client for both, through the runtime's upstream HTTP client, with the RFC's 2 s
for the whole call (the client's own timeout bounds each network read separately).
Failures are ``ChatPanelError``s with a short machine reason and whether trying again
later can help."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import httpx

from widget.runtime import Runtime

TIMEOUT = 2.0  # s


class ChatPanelError(Exception):
    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason  # e.g. "timeout", "http_503", "malformed_json", "not_configured"
        self.transient = transient


def room_segment(room_id: str) -> str:
    """The room id as one path segment: every character but unreserved ones encoded,
    and an all-dots id ("." / "..", valid room ids) spelled out, so no URL parser
    resolves it away as a dot-segment (``/rooms/../messages`` is ``/messages``)."""
    segment = quote(room_id, safe="")
    return segment.replace(".", "%2E") if set(segment) == {"."} else segment


async def _get(rt: Runtime, path: str, headers: dict[str, str], params: dict[str, Any] | None = None) -> httpx.Response:
    base = rt.settings.chat_panel_url
    if not base:
        raise ChatPanelError("not_configured", transient=False)
    try:
        async with asyncio.timeout(TIMEOUT):
            response = await rt.http.get(f"{base.rstrip('/')}{path}", params=params, headers=headers)
    except (TimeoutError, httpx.TimeoutException):
        raise ChatPanelError("timeout", transient=True) from None
    except httpx.ConnectError:
        raise ChatPanelError("connect_error", transient=True) from None
    except httpx.TransportError:  # e.g. the connection dropped mid-answer
        raise ChatPanelError("network_error", transient=True) from None
    return response


def _status_error(response: httpx.Response) -> ChatPanelError:
    status = response.status_code
    return ChatPanelError(f"http_{status}", transient=status == 429 or status >= 500)


async def messages(rt: Runtime, company_id: str, room_id: str, limit: int) -> Any:
    """The decoded answer of ``GET /rooms/{room_id}/messages?limit=…`` (its shape is
    the caller's to check)."""
    response = await _get(rt, f"/rooms/{room_segment(room_id)}/messages", {"X-Company-Id": company_id},
                          {"limit": limit})
    if not 200 <= response.status_code < 300:
        raise _status_error(response)
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):  # not JSON, cut short, or absurdly nested
        raise ChatPanelError("malformed_json", transient=False) from None


async def room_status(rt: Runtime, company_id: str, room_id: str, agent_id: str) -> str:
    """"open", "archived", "gone" (404/410) or "forbidden" (403), from ``GET
    /rooms/{room_id}``; ``X-Agent-Id`` too, so a Chat Panel that knows per-agent access
    can answer 403. Any other answer: ``ChatPanelError``."""
    response = await _get(rt, f"/rooms/{room_segment(room_id)}",
                          {"X-Company-Id": company_id, "X-Agent-Id": agent_id})
    if response.status_code in (404, 410):
        return "gone"
    if response.status_code == 403:
        return "forbidden"
    if response.status_code != 200:
        raise _status_error(response)
    try:
        answer = json.loads(response.content)
    except ValueError:
        answer = None  # a 200 still says the room is there
    return "archived" if isinstance(answer, dict) and answer.get("status") == "archived" else "open"
