"""The example host's shared parts: configuration, in-memory state, and the
small HTTP helpers the inbox, the simulator and the fakes use."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request

from examples.host_page.demo import (
    ROOM_ID,
    Room,
    adhoc_room,
)

HERE = Path(__file__).resolve().parent
FLAG = "deal_ticket_tab"
DEFAULT_AGENT = "agent-1"
DEFAULT_SECRET = "demo-omnichannel-secret"
MAX_TOKEN_TTL = 900  # seconds: the widget's default WIDGET_TOKEN_MAX_AGE
MAX_BODY = 64 * 1024
MAX_ADHOC_ROOMS = 200
MAX_RECEIVED = 500
LAST_PREFIX = {"agent": "You: ", "bot": "Bot: ", "agentic_ai": "AI: "}
WIDGET_TIMEOUT = httpx.Timeout(5.0, connect=2.0)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# -- configuration and in-memory state ---------------------------------------------


@dataclass(frozen=True)
class HostConfig:
    widget_url: str
    widget_api_url: str
    api_key: str
    company_id: str
    account_name: str
    omnichannel_secret: str
    signature_tolerance: int  # seconds; 0 disables the timestamp check
    chat_panel_slow_seconds: float  # how long the Chat Panel API's "slow" mode waits


@dataclass
class HostState:
    rooms: dict[str, Room]
    adhoc: OrderedDict[str, Room] = field(default_factory=OrderedDict)
    flags: dict[str, bool] = field(default_factory=lambda: {FLAG: False})
    contacts: dict[str, str] = field(default_factory=dict)  # room id -> CRM contact id
    contact_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # Omnichannel calls, for the panel (each call, verified or not) and their cursor.
    received: list[dict[str, Any]] = field(default_factory=list)
    received_seq: int = 0
    # The verified notifications by X-Widget-Event-Id (dedupe), oldest first.
    received_by_event: dict[str, dict[str, Any]] = field(default_factory=dict)
    widget: httpx.AsyncClient | None = None

    def room(self, room_id: str, *, create: bool) -> Room | None:
        """A demo room, or an ad-hoc QA room (made on first view when ``create``)."""
        if room_id in self.rooms:
            return self.rooms[room_id]
        if room_id in self.adhoc:
            return self.adhoc[room_id]
        if not create or not ROOM_ID.fullmatch(room_id):
            return None
        room = adhoc_room(room_id, datetime.now(UTC))
        self.adhoc[room_id] = room
        while len(self.adhoc) > MAX_ADHOC_ROOMS:
            self.adhoc.popitem(last=False)
        return room


def host_state(request: Request) -> HostState:
    return request.app.state.host


def host_config(request: Request) -> HostConfig:
    return request.app.state.config


def widget_client(request: Request) -> httpx.AsyncClient:
    client = host_state(request).widget
    if client is None:  # the lifespan did not run
        raise RuntimeError("the host app's lifespan has not started")
    return client


# -- small HTTP helpers ---------------------------------------------------------------


class HostError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_json_object(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HostError(415, "send a JSON body (Content-Type: application/json)")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HostError(413, "body too large")
    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise HostError(400, "malformed JSON") from None
    if not isinstance(data, dict):
        raise HostError(400, "the body must be a JSON object")
    return data


def text_field(data: dict[str, Any], key: str, default: str, *, limit: int = 255) -> str:
    value = data.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, str):
        raise HostError(422, f"{key} must be a string")
    if len(value) > limit:
        raise HostError(422, f"{key} must be at most {limit} characters")
    return value


def bool_field(data: dict[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise HostError(422, f"{key} must be true or false")
    return value


def describe_error(response: httpx.Response) -> str:
    """One line from the widget's error body ``{"error": {code, message, details}}``."""
    try:
        error = response.json().get("error") or {}
        text = f"{error.get('code', 'error')}: {error.get('message', '')}".rstrip(": ")
        details = error.get("details") or []
        if details:
            text += " (" + "; ".join(f"{d.get('field')}: {d.get('message')}" for d in details) + ")"
        return text
    except (ValueError, AttributeError):
        return (response.text or response.reason_phrase)[:200]


class Unreachable(Exception):
    pass


class WidgetCalls:
    """Calls to the widget's record API, each kept for the activity log."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.calls: list[dict[str, Any]] = []

    async def request(
        self, method: str, path: str, *, json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, dict[str, Any]]:
        """The response and its log entry (whose ``summary`` the caller may fill)."""
        entry: dict[str, Any] = {"method": method, "path": path, "status": None, "error": None, "summary": None}
        self.calls.append(entry)
        sent = dict(headers or {})
        if method == "POST":
            sent.setdefault("Idempotency-Key", str(uuid.uuid4()))
        try:
            response = await self.client.request(method, path, json=json_body, headers=sent)
        except httpx.HTTPError as exc:
            entry["error"] = f"widget API unreachable ({type(exc).__name__})"
            raise Unreachable(entry["error"]) from None
        entry["status"] = response.status_code
        if response.status_code >= 400:
            entry["error"] = describe_error(response)
        return response, entry

    @property
    def ok(self) -> bool:
        return all(c["status"] is not None and c["status"] < 400 for c in self.calls)


def record_summary(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    keys = ["id", "name", "creator", "creator_flag", "room_id", "contact_id", "source", "url"]
    keys += ["stage", "pipeline"] if kind == "deal" else ["unique_id", "status"]
    return {"kind": kind, **{k: record.get(k) for k in keys}}

