"""The example host: a stand-in for Omnichannel, for development, demos and QA.

It plays every party around the widget service (RFC section 1):

- the agent's **inbox** (``/inbox?room=…``) whose conversation room has the
  feature-flagged "Deal & Ticket" tab (flag ``deal_ticket_tab``, per account, default
  OFF) hosting the widget's component in an iframe, with a token minted by this backend;
- the **manual "Create Deal"** button of the info bar, unchanged by the feature (NEG-2);
- a **simulator** that plays Chatbot / Agentic AI against the record API (the API key
  stays on this server; the browser only talks to ``/api/sim/…``);
- a fake **Chat Panel API** (``/chat-panel/…``, RFC section 8);
- receivers for the **Omnichannel notifications** (``/omnichannel/…``, RFC section 9).

Everything is in memory and belongs to one demo account (``company_id``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message as AsgiMessage, Receive, Scope, Send

from examples.host_page.demo import (
    DEAL_PIPELINES,
    DEAL_STAGES,
    ROOM_ID,
    SENDER_LABELS,
    TICKET_STATUSES,
    Message,
    Room,
    adhoc_room,
    demo_rooms,
    rfc3339,
)

HERE = Path(__file__).resolve().parent
FLAG = "deal_ticket_tab"
DEFAULT_AGENT = "agent-1"
DEFAULT_SECRET = "demo-omnichannel-secret"
READY_TIMEOUT_MS = 8000
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


@dataclass
class HostState:
    rooms: dict[str, Room]
    adhoc: OrderedDict[str, Room] = field(default_factory=OrderedDict)
    flags: dict[str, bool] = field(default_factory=lambda: {FLAG: False})
    contacts: dict[str, str] = field(default_factory=dict)  # room id -> CRM contact id
    contact_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
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


def _state(request: Request) -> HostState:
    return request.app.state.host


def _config(request: Request) -> HostConfig:
    return request.app.state.config


def _client(request: Request) -> httpx.AsyncClient:
    client = _state(request).widget
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


def _text(data: dict[str, Any], key: str, default: str, *, limit: int = 255) -> str:
    value = data.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, str):
        raise HostError(422, f"{key} must be a string")
    if len(value) > limit:
        raise HostError(422, f"{key} must be at most {limit} characters")
    return value


def _flag(data: dict[str, Any], key: str, default: bool) -> bool:
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


def _record_summary(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    keys = ["id", "name", "creator", "creator_flag", "room_id", "contact_id", "source", "url"]
    keys += ["stage", "pipeline"] if kind == "deal" else ["unique_id", "status"]
    return {"kind": kind, **{k: record.get(k) for k in keys}}


# -- security headers -------------------------------------------------------------------


class SecurityHeaders:
    """Pure ASGI (never BaseHTTPMiddleware): no-referrer everywhere, and a CSP for pages
    that allows frames from the widget origin only."""

    def __init__(self, app: ASGIApp, frame_src: str) -> None:
        self.app = app
        self.csp = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'; frame-src {frame_src}; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: AsgiMessage) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", self.csp)
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- the inbox ----------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """QA options read from the inbox query and carried to links, the infobar reload and
    token refreshes: ``agent``, ``perms`` (comma list, may be empty), ``theme``, ``lang``,
    ``tab``, ``ready_timeout`` (ms) and ``ttl`` (the embed token's seconds)."""

    agent: str = DEFAULT_AGENT
    perms: list[str] | None = None
    theme: str | None = None
    lang: str | None = None
    tab: str | None = None
    ready_timeout: int = READY_TIMEOUT_MS
    ttl: int | None = None

    @classmethod
    def from_query(cls, request: Request) -> View:
        q = request.query_params
        agent = (q.get("agent") or DEFAULT_AGENT).strip()[:255] or DEFAULT_AGENT
        perms = None
        if "perms" in q:
            perms = [p.strip() for p in q["perms"].split(",") if p.strip()]
        theme = q.get("theme") if q.get("theme") in ("light", "dark") else None
        lang = q.get("lang") if q.get("lang") in ("en", "id") else None
        tab = q.get("tab") if q.get("tab") in ("customer", "deal-ticket") else None
        try:
            timeout = min(max(int(q.get("ready_timeout", READY_TIMEOUT_MS)), 200), 120_000)
        except ValueError:
            timeout = READY_TIMEOUT_MS
        ttl = int(q["ttl"]) if q.get("ttl", "").isdigit() and 0 < int(q["ttl"]) <= 86_400 else None
        return cls(agent, perms, theme, lang, tab, timeout, ttl)

    def query(self, **extra: str) -> str:
        """The options as a query string (defaults left out), plus ``extra``."""
        params: dict[str, str] = dict(extra)
        if self.agent != DEFAULT_AGENT:
            params["agent"] = self.agent
        if self.perms is not None:
            params["perms"] = ",".join(self.perms)
        for key in ("theme", "lang", "tab"):
            if getattr(self, key):
                params[key] = getattr(self, key)
        if self.ready_timeout != READY_TIMEOUT_MS:
            params["ready_timeout"] = str(self.ready_timeout)
        if self.ttl is not None:
            params["ttl"] = str(self.ttl)
        return urlencode(params)


def request_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def mint_embed_token(request: Request, room_id: str, view: View) -> dict[str, Any]:
    """``POST /api/v1/embed-tokens`` on the widget, from this backend (RFC section 4)."""
    body: dict[str, Any] = {"room_id": room_id, "agent_id": view.agent, "parent_origin": request_origin(request)}
    if view.perms is not None:
        body["permissions"] = view.perms
    if view.lang:
        body["locale"] = view.lang
    if view.ttl is not None:
        body["ttl_seconds"] = view.ttl
    try:
        response = await _client(request).post("/api/v1/embed-tokens", json=body)
    except httpx.HTTPError as exc:
        raise HostError(502, f"widget API unreachable ({type(exc).__name__})") from None
    if response.status_code != 201:
        raise HostError(502, f"token request failed: {response.status_code} {describe_error(response)}")
    token = response.json()
    if view.theme:
        token["embed_url"] += f"&theme={view.theme}"
    if view.lang:
        token["embed_url"] += f"&lang={view.lang}"
    return token


def _time_label(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%H:%M") if value else ""


def _message_view(message: Message) -> dict[str, Any]:
    return {
        "sender_type": message.sender_type,
        "sender_name": message.sender_name,
        "label": SENDER_LABELS.get(message.sender_type, message.sender_type),
        "text": message.text,
        "sent_at": rfc3339(message.sent_at),
        "time": _time_label(message.sent_at),
        "outbound": message.sender_type != "customer",
    }


async def _infobar_context(request: Request, room: Room, view: View) -> dict[str, Any]:
    state, config = _state(request), _config(request)
    enabled = state.flags[FLAG]
    embed: dict[str, Any] | None = None
    embed_error = None
    if enabled:
        try:
            embed = await mint_embed_token(request, room.id, view)
        except HostError as exc:
            embed_error = exc.message
    widget_origin = origin_of(embed["embed_url"]) if embed else origin_of(config.widget_url)
    active = view.tab or ("deal-ticket" if enabled else "customer")
    if not enabled:
        active = "customer"
    return {
        "room": room,
        "flag_enabled": enabled,
        "embed": embed,
        "embed_error": embed_error,
        "widget_origin": widget_origin,
        "active_tab": active,
        "contact_id": state.contacts.get(room.id),
        "view": view,
        "ready_timeout": view.ready_timeout,
    }


async def inbox(request: Request) -> Response:
    state, config = _state(request), _config(request)
    view = View.from_query(request)
    room_id = request.query_params.get("room") or next(iter(state.rooms))
    room = state.room(room_id, create=True)
    templates: Jinja2Templates = request.app.state.templates
    if room is None:
        return templates.TemplateResponse(
            request, "not_found.html", {"room_id": room_id, "view_query": view.query(),
                                        "asset_version": request.app.state.asset_version},
            status_code=404,
        )
    rooms = list(state.rooms.values())
    if room.adhoc:
        rooms.insert(0, room)
    context = await _infobar_context(request, room, view)
    context.update({
        "rooms": [
            {"room": r, "time": _time_label(r.last_at), "at": rfc3339(r.last_at) if r.last_at else "",
             "last": r.last.text if r.last else "No messages yet",
             "last_prefix": LAST_PREFIX.get(r.last.sender_type, "") if r.last else "",
             "href": "/inbox?" + view.query(room=r.id)}
            for r in rooms
        ],
        "messages": [_message_view(m) for m in room.messages],
        "account_name": config.account_name,
        "company_id": config.company_id,
        "view_query": view.query(),
        "stages": DEAL_STAGES,
        "pipelines": DEAL_PIPELINES,
        "statuses": TICKET_STATUSES,
        "asset_version": request.app.state.asset_version,
    })
    return templates.TemplateResponse(request, "inbox.html", context)


async def infobar(request: Request) -> Response:
    """The info bar alone, for the flag toggle to swap in without a page reload."""
    view = View.from_query(request)
    room = _state(request).room(request.query_params.get("room", ""), create=False)
    if room is None:
        return JSONResponse({"error": "unknown room"}, status_code=404)
    templates: Jinja2Templates = request.app.state.templates
    context = await _infobar_context(request, room, view)
    return templates.TemplateResponse(request, "_infobar.html", context)


async def home(request: Request) -> Response:
    query = request.url.query
    return RedirectResponse("/inbox" + (f"?{query}" if query else ""), status_code=307)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


# -- host API used by the page's JS -----------------------------------------------------


async def get_flags(request: Request) -> Response:
    return JSONResponse({"account": _config(request).company_id, "flags": dict(_state(request).flags)})


async def set_flag(request: Request) -> Response:
    name = request.path_params["name"]
    state = _state(request)
    if name not in state.flags:
        raise HostError(404, f"no flag {name!r}")
    data = await read_json_object(request)
    if not isinstance(data.get("enabled"), bool):
        raise HostError(422, "send {\"enabled\": true|false}")
    state.flags[name] = data["enabled"]
    return JSONResponse({"account": _config(request).company_id, "flag": name, "enabled": state.flags[name]})


def _known_room(request: Request) -> Room:
    room = _state(request).room(request.path_params["room_id"], create=False)
    if room is None:
        raise HostError(404, "unknown room (open it in the inbox first)")
    return room


async def room_embed_token(request: Request) -> Response:
    """A fresh embed token for the page (``token-expired`` and retry)."""
    room = _known_room(request)
    if not _state(request).flags[FLAG]:
        raise HostError(403, "the deal_ticket_tab flag is off for this account")
    token = await mint_embed_token(request, room.id, View.from_query(request))
    return JSONResponse(token)


async def post_message(request: Request) -> Response:
    """The composer: an agent message, kept in memory (the Chat Panel API serves it)."""
    room = _known_room(request)
    data = await read_json_object(request)
    text = _text(data, "text", "", limit=2000).strip()
    if not text:
        raise HostError(422, "text must not be empty")
    message = Message("agent", "Alya Putri", text, datetime.now(UTC))
    room.messages.append(message)
    return JSONResponse(_message_view(message), status_code=201)


async def manual_deal(request: Request) -> Response:
    """The info bar's existing "Create Deal" (NEG-2): a manual deal, no creator_flag."""
    room = _known_room(request)
    data = await read_json_object(request)
    body = {
        "name": _text(data, "name", ""),
        "stage": _text(data, "stage", DEAL_STAGES[0]),
        "pipeline": _text(data, "pipeline", DEAL_PIPELINES[0]),
        "room_id": room.id,
    }
    calls = WidgetCalls(_client(request))
    try:
        response, entry = await calls.request("POST", "/api/v1/deals", json_body=body)
    except Unreachable as exc:
        return JSONResponse({"ok": False, "message": str(exc), "calls": calls.calls}, status_code=502)
    if response.status_code != 201:
        message = f"Create Deal failed: {response.status_code} {entry['error']}"
        return JSONResponse({"ok": False, "message": message, "calls": calls.calls}, status_code=502)
    deal = response.json()
    entry["summary"] = _record_summary("deal", deal)
    return JSONResponse({"ok": True, "message": f"Deal created: {deal['name']}", "deal": deal,
                         "calls": calls.calls}, status_code=201)


# -- the simulator (Chatbot / Agentic AI) ------------------------------------------------


@dataclass
class SimOptions:
    room: Room
    use_room: bool
    with_contact: bool
    source: str
    deal_name: str
    deal_stage: str
    deal_pipeline: str
    ticket_name: str
    ticket_status: str
    backdate_seconds: int

    @classmethod
    def parse(cls, state: HostState, data: dict[str, Any]) -> SimOptions:
        room_id = _text(data, "room_id", "")
        room = state.room(room_id, create=False)
        if room is None:
            raise HostError(404, f"unknown room {room_id!r} (open it in the inbox first)")
        backdate = data.get("backdate_seconds", 0) or 0
        if isinstance(backdate, str) and backdate.strip().isdigit():
            backdate = int(backdate)
        if not isinstance(backdate, int) or isinstance(backdate, bool) or not 0 <= backdate <= 86_400 * 365:
            raise HostError(422, "backdate_seconds must be a whole number of seconds ≥ 0")
        return cls(
            room=room,
            use_room=_flag(data, "use_room", True),
            with_contact=_flag(data, "with_contact", True),
            source=_text(data, "source", "whatsapp"),
            deal_name=_text(data, "deal_name", room.deal_name),
            deal_stage=_text(data, "deal_stage", DEAL_STAGES[0]),
            deal_pipeline=_text(data, "deal_pipeline", DEAL_PIPELINES[0]),
            ticket_name=_text(data, "ticket_name", room.ticket_name),
            ticket_status=_text(data, "ticket_status", TICKET_STATUSES[0]),
            backdate_seconds=backdate,
        )


class SimOutcome(Exception):
    """Stops an action with a message and a status (e.g. 409: nothing shown)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Simulator:
    def __init__(self, state: HostState, calls: WidgetCalls, opts: SimOptions) -> None:
        self.state = state
        self.calls = calls
        self.opts = opts
        self.records: list[dict[str, Any]] = []

    async def contact_id(self) -> str:
        """The room's demo contact, created once per room through the record API."""
        room = self.opts.room
        lock = self.state.contact_locks.setdefault(room.id, asyncio.Lock())
        async with lock:
            if room.id in self.state.contacts:
                return self.state.contacts[room.id]
            body: dict[str, Any] = {"name": room.customer}
            if room.channel == "whatsapp":
                body["phone"] = room.handle
            if room.email:
                body["email"] = room.email
            response, entry = await self.calls.request("POST", "/api/v1/contacts", json_body=body)
            if response.status_code != 201:
                raise SimOutcome(502, f"could not create the demo contact: {entry['error']}")
            contact = response.json()
            entry["summary"] = {"kind": "contact", "id": contact["id"], "name": contact["name"]}
            self.state.contacts[room.id] = contact["id"]
            return contact["id"]

    async def create(self, kind: str, creator: str | None, name_suffix: str = "", contact: str | None = None) -> None:
        opts = self.opts
        body: dict[str, Any]
        if kind == "deal":
            body = {"name": opts.deal_name + name_suffix, "stage": opts.deal_stage, "pipeline": opts.deal_pipeline}
        else:
            body = {"name": opts.ticket_name + name_suffix, "status": opts.ticket_status}
        if creator:
            body["creator_flag"] = creator
        if opts.use_room:
            body["room_id"] = opts.room.id
        if opts.with_contact:
            body["contact_id"] = contact if contact is not None else await self.contact_id()
        if opts.source:
            body["source"] = opts.source
        headers = {}
        if opts.backdate_seconds:
            created = datetime.now(UTC) - timedelta(seconds=opts.backdate_seconds)
            headers["X-Test-Clock"] = rfc3339(created)
        response, entry = await self.calls.request("POST", f"/api/v1/{kind}s", json_body=body, headers=headers)
        if response.status_code == 201:
            record = _record_summary(kind, response.json())
            entry["summary"] = record
            self.records.append(record)

    async def shown(self, kind: str) -> dict[str, Any]:
        room_id = self.opts.room.id
        response, entry = await self.calls.request("GET", f"/api/v1/rooms/{room_id}")
        if response.status_code != 200:
            raise SimOutcome(502, f"could not read the room: {entry['error']}")
        snapshot = response.json()
        entry["summary"] = {"kind": "room", "version": snapshot.get("version"),
                                           "deal": (snapshot.get("deal") or {}).get("id"),
                                           "ticket": (snapshot.get("ticket") or {}).get("id")}
        record = snapshot.get(kind)
        if not record:
            raise SimOutcome(409, f"No {kind} is shown in room {room_id}: create one first")
        return record

    async def update(self, kind: str) -> None:
        record = await self.shown(kind)
        if kind == "deal":
            cycle, key = DEAL_STAGES, "stage"
        else:
            cycle, key = TICKET_STATUSES, "status"
        current = record.get(key)
        following = cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else cycle[0]
        response, entry = await self.calls.request(
            "PATCH", f"/api/v1/{kind}s/{record['id']}", json_body={key: following})
        if response.status_code == 200:
            summary = _record_summary(kind, response.json())
            entry["summary"] = summary
            self.records.append(summary)

    async def delete(self, kind: str) -> None:
        record = await self.shown(kind)
        response, entry = await self.calls.request("DELETE", f"/api/v1/{kind}s/{record['id']}")
        if response.status_code == 204:
            summary = {"kind": kind, "id": record["id"], "name": record.get("name"), "deleted": True}
            entry["summary"] = summary
            self.records.append(summary)

    async def two_at_once(self) -> None:
        contact = await self.contact_id() if self.opts.with_contact else None
        results = await asyncio.gather(
            self.create("deal", "bot", " · Bot", contact),
            self.create("deal", "agentic_ai", " · AI", contact),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result


SIM_ACTIONS: dict[str, tuple[str, Callable[[Simulator], Awaitable[None]]]] = {
    "deal-bot": ("Create deal as Bot", lambda s: s.create("deal", "bot")),
    "deal-ai": ("Create deal as AI", lambda s: s.create("deal", "agentic_ai")),
    "ticket-bot": ("Create ticket as Bot", lambda s: s.create("ticket", "bot")),
    "ticket-ai": ("Create ticket as AI", lambda s: s.create("ticket", "agentic_ai")),
    "deal-manual": ("Manual deal (no creator)", lambda s: s.create("deal", None)),
    "update-deal": ("Update shown deal", lambda s: s.update("deal")),
    "update-ticket": ("Update shown ticket", lambda s: s.update("ticket")),
    "delete-deal": ("Delete shown deal", lambda s: s.delete("deal")),
    "delete-ticket": ("Delete shown ticket", lambda s: s.delete("ticket")),
    "two-at-once": ("Two creations at once", lambda s: s.two_at_once()),
}


async def simulate(request: Request) -> Response:
    action = request.path_params["action"]
    if action not in SIM_ACTIONS:
        raise HostError(404, f"no simulator action {action!r}")
    label, run = SIM_ACTIONS[action]
    state = _state(request)
    opts = SimOptions.parse(state, await read_json_object(request))
    sim = Simulator(state, WidgetCalls(_client(request)), opts)
    status, message = 200, ""
    try:
        await run(sim)
    except Unreachable as exc:
        status, message = 502, str(exc)
    except SimOutcome as exc:
        status, message = exc.status, exc.message
    ok = status == 200 and sim.calls.ok
    if status == 200 and not ok:
        status = 502
        message = next(c["error"] for c in sim.calls.calls if c["error"])
    return JSONResponse(
        {"action": action, "label": label, "ok": ok, "message": message or "done",
         "room_id": opts.room.id, "calls": sim.calls.calls, "records": sim.records},
        status_code=status,
    )


# -- fake Chat Panel API (RFC section 8) ------------------------------------------------


def _chat_panel_room(request: Request) -> Room:
    company = request.headers.get("x-company-id")
    if not company:
        raise HostError(400, "missing X-Company-Id")
    room = _state(request).rooms.get(request.path_params["room_id"])
    if company != _config(request).company_id or room is None:
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
    config, state = _config(request), _state(request)
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
    state = _state(request)
    events = state.received
    room = request.query_params.get("room")
    if room:
        events = [e for e in events if e["room_id"] == room]
    return JSONResponse({"count": len(events), "events": events})


async def omnichannel_clear(request: Request) -> Response:
    state = _state(request)
    state.received.clear()
    state.received_by_event.clear()
    return Response(status_code=204)


# -- the application ----------------------------------------------------------------------


async def on_host_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HostError)
    return JSONResponse({"error": {"code": str(exc.status), "message": exc.message}}, status_code=exc.status)


def _asset_version() -> str:
    digest = hashlib.sha256()
    for path in sorted((HERE / "static").glob("*")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def create_host_app(
    widget_url: str,
    api_key: str,
    company_id: str,
    *,
    widget_api_url: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    omnichannel_secret: str | None = None,
    signature_tolerance: int = 300,
    account_name: str = "Demo Store",
) -> Starlette:
    """The host app. ``widget_url`` is the widget's public base URL (the iframe's origin);
    ``widget_api_url`` (default ``widget_url``) is where this backend calls the record
    API with ``api_key``; ``transport`` replaces the network (tests)."""
    config = HostConfig(
        widget_url=widget_url.rstrip("/"),
        widget_api_url=(widget_api_url or widget_url).rstrip("/"),
        api_key=api_key,
        company_id=company_id,
        account_name=account_name,
        omnichannel_secret=omnichannel_secret or os.environ.get("HOST_OMNICHANNEL_SECRET") or DEFAULT_SECRET,
        signature_tolerance=signature_tolerance,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = httpx.AsyncClient(
            base_url=config.widget_api_url,
            transport=transport,
            headers={"Authorization": f"Bearer {config.api_key}", "User-Agent": "example-host/1"},
            timeout=WIDGET_TIMEOUT,
        )
        app.state.host.widget = client
        try:
            yield
        finally:
            app.state.host.widget = None
            await client.aclose()

    record_routes = []
    for kind in ("deals", "tickets"):
        record_routes += [
            Route(f"/omnichannel/{kind}", omnichannel_receive, methods=["POST"]),
            Route(f"/omnichannel/{kind}/{{id}}", omnichannel_receive, methods=["PUT", "DELETE"]),
        ]
    routes = [
        Route("/", home),
        Route("/healthz", healthz),
        Route("/inbox", inbox, methods=["GET"]),
        Route("/inbox/infobar", infobar, methods=["GET"]),
        Route("/api/flags", get_flags, methods=["GET"]),
        Route("/api/flags/{name}", set_flag, methods=["POST"]),
        Route("/api/rooms/{room_id}/embed-token", room_embed_token, methods=["GET"]),
        Route("/api/rooms/{room_id}/messages", post_message, methods=["POST"]),
        Route("/api/rooms/{room_id}/deals", manual_deal, methods=["POST"]),
        Route("/api/sim/{action}", simulate, methods=["POST"]),
        Route("/chat-panel/rooms/{room_id}", chat_panel_room, methods=["GET"]),
        Route("/chat-panel/rooms/{room_id}/messages", chat_panel_messages, methods=["GET"]),
        *record_routes,
        Route("/omnichannel/received", omnichannel_received, methods=["GET"]),
        Route("/omnichannel/received", omnichannel_clear, methods=["DELETE"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HostError: on_host_error})
    app.state.config = config
    app.state.host = HostState(rooms=demo_rooms(datetime.now(UTC)))
    app.state.templates = Jinja2Templates(directory=HERE / "templates")
    app.state.asset_version = _asset_version()
    frame_src = " ".join(dict.fromkeys([origin_of(config.widget_url)]))
    app.add_middleware(SecurityHeaders, frame_src=frame_src)
    return app
