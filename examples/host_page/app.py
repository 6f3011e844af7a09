"""The example host: a stand-in for Omnichannel, for development, demos and QA.

It plays every party around the widget service (RFC section 1):

- the agent's **inbox** (``/inbox?room=…``) whose conversation room has the
  feature-flagged "Deal & Ticket" tab (flag ``deal_ticket_tab``, per account, default
  OFF) hosting the widget's component through the widget's ``embed.js``, with tokens
  minted by this backend (``/api/rooms/{room_id}/embed-token``);
- a **bare page** (``/embed-only?room=…``) that embeds the component with the markup of
  ``docs/embedding.md`` and no script of its own;
- the **manual "Create Deal"** button of the info bar, unchanged by the feature (NEG-2);
- a **simulator** that plays Chatbot / Agentic AI against the record API (the API key
  stays on this server; the browser only talks to ``/api/sim/…``);
- a fake **Chat Panel API** (``/chat-panel/…``, RFC section 8) that can play each of
  its failures per room (``PUT /chat-panel/rooms/{room_id}/mode``);
- receivers for the **Omnichannel notifications** (``/omnichannel/…``, RFC section 9).

Everything is in memory and belongs to one demo account (``company_id``). This module
holds the inbox and the app factory; ``context`` the configuration, state and HTTP
helpers; ``simulator`` the Chatbot / Agentic AI player; ``fakes`` the Chat Panel API and
the Omnichannel receivers.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from examples.host_page.context import (
    DEFAULT_AGENT,
    DEFAULT_SECRET,
    FLAG,
    HERE,
    LAST_PREFIX,
    MAX_TOKEN_TTL,
    WIDGET_TIMEOUT,
    HostConfig,
    HostError,
    HostState,
    Unreachable,
    WidgetCalls,
    describe_error,
    host_config,
    host_state,
    origin_of,
    read_json_object,
    record_summary,
    text_field,
    widget_client,
)
from examples.host_page.demo import (
    CHAT_PANEL_MODES,
    DEAL_PIPELINES,
    DEAL_STAGES,
    SENDER_LABELS,
    TICKET_STATUSES,
    Message,
    Room,
    demo_rooms,
    rfc3339,
)
from examples.host_page.fakes import (
    chat_panel_messages,
    chat_panel_room,
    get_chat_panel_mode,
    omnichannel_clear,
    omnichannel_receive,
    omnichannel_received,
    set_chat_panel_mode,
)
from examples.host_page.simulator import (
    simulate,
)

# -- security headers -------------------------------------------------------------------


class SecurityHeaders:
    """Pure ASGI (never BaseHTTPMiddleware): no-referrer everywhere, and for pages the CSP
    of docs/embedding.md: scripts and frames from this origin and the widget's only.
    Static files are revalidated on every use (``no-cache``), so the ES modules that
    ``inbox.js`` imports are never stale after a change."""

    def __init__(self, app: ASGIApp, widget_origin: str) -> None:
        self.app = app
        self.csp = (
            f"default-src 'self'; script-src 'self' {widget_origin}; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'; frame-src {widget_origin}; object-src 'none'; base-uri 'none'; "
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
                elif scope["path"].startswith("/static/"):
                    headers.setdefault("Cache-Control", "no-cache")
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- the inbox ----------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """QA options read from the inbox query and carried to links, the infobar reload and
    the token endpoint's URL: ``agent``, ``perms`` (comma list, may be empty), ``theme``,
    ``lang``, ``tab``, ``ready_timeout`` (ms, embed.js' ``data-ready-timeout``) and
    ``ttl`` (the embed token's seconds, 1 to ``MAX_TOKEN_TTL``)."""

    agent: str = DEFAULT_AGENT
    perms: list[str] | None = None
    theme: str | None = None
    lang: str | None = None
    tab: str | None = None
    ready_timeout: int | None = None
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
        timeout = min(max(int(q["ready_timeout"]), 200), 120_000) if q.get("ready_timeout", "").isdigit() else None
        ttl = min(max(int(q["ttl"]), 1), MAX_TOKEN_TTL) if q.get("ttl", "").isdigit() else None
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
        if self.ready_timeout is not None:
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
        response = await widget_client(request).post("/api/v1/embed-tokens", json=body)
    except httpx.HTTPError:
        raise HostError(502, "the CRM is unreachable") from None
    if response.status_code != 201:
        raise HostError(502, f"token request failed: {response.status_code} {describe_error(response)}")
    return response.json()


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


def _embed_context(room: Room, view: View) -> dict[str, Any]:
    """What the ``[data-crm-deal-ticket]`` element carries: this backend's token URL for
    the room (with the view's QA options) and the view's theme, language, ready timeout."""
    query = view.query()
    return {"room": room, "view": view,
            "token_url": f"/api/rooms/{quote(room.id, safe='')}/embed-token" + (f"?{query}" if query else "")}


def _infobar_context(request: Request, room: Room, view: View) -> dict[str, Any]:
    state = host_state(request)
    enabled = state.flags[FLAG]
    active = (view.tab or "deal-ticket") if enabled else "customer"
    return {
        **_embed_context(room, view),
        "flag_enabled": enabled,
        "active_tab": active,
        "contact_id": state.contacts.get(room.id),
    }


def _chat_panel_modes(slow_seconds: float) -> dict[str, dict[str, str]]:
    """The simulator's words for each Chat Panel mode: ``{mode: {label, hint}}``."""
    slow = f"{slow_seconds:g}"
    return {mode: {"label": label.format(slow=slow), "hint": hint.format(slow=slow)}
            for mode, (label, hint) in CHAT_PANEL_MODES.items()}


def _room_not_found(request: Request, room_id: str, view: View) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "not_found.html", {"room_id": room_id, "view_query": view.query()}, status_code=404)


async def inbox(request: Request) -> Response:
    state, config = host_state(request), host_config(request)
    view = View.from_query(request)
    room_id = request.query_params.get("room") or next(iter(state.rooms))
    room = state.room(room_id, create=True)
    if room is None:
        return _room_not_found(request, room_id, view)
    templates: Jinja2Templates = request.app.state.templates
    rooms = list(state.rooms.values())
    if room.adhoc:
        rooms.insert(0, room)
    context = _infobar_context(request, room, view)
    context.update({
        "rooms": [
            {"room": r, "time": _time_label(r.last_at), "at": rfc3339(r.last_at) if r.last_at else "",
             "last": r.last.text if r.last else "No messages yet",
             "last_prefix": LAST_PREFIX.get(r.last.sender_type, "") if r.last else "",
             "href": "/inbox?" + view.query(room=r.id)}
            for r in rooms
        ],
        "chat_panel_modes": _chat_panel_modes(config.chat_panel_slow_seconds),
        "messages": [_message_view(m) for m in room.messages],
        "account_name": config.account_name,
        "company_id": config.company_id,
        "view_query": view.query(),
        # Omnichannel calls up to this one were here before the page: no refresh for them.
        "omni_cursor": state.received_seq,
        "stages": DEAL_STAGES,
        "pipelines": DEAL_PIPELINES,
        "statuses": TICKET_STATUSES,
        "widget_url": config.widget_url,
    })
    return templates.TemplateResponse(request, "inbox.html", context)


async def embed_only(request: Request) -> Response:
    """A page that embeds the room's component with the markup of docs/embedding.md and
    no script of its own (the e2e bar for embed.js)."""
    view = View.from_query(request)
    room_id = request.query_params.get("room", "")
    room = host_state(request).room(room_id, create=True)
    if room is None:
        return _room_not_found(request, room_id, view)
    templates: Jinja2Templates = request.app.state.templates
    context = {**_embed_context(room, view), "widget_url": host_config(request).widget_url}
    return templates.TemplateResponse(request, "embed_only.html", context)


async def infobar(request: Request) -> Response:
    """The info bar alone, for the flag toggle to swap in without a page reload."""
    view = View.from_query(request)
    room = host_state(request).room(request.query_params.get("room", ""), create=False)
    if room is None:
        return JSONResponse({"error": "unknown room"}, status_code=404)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, "_infobar.html", _infobar_context(request, room, view))


async def home(request: Request) -> Response:
    query = request.url.query
    return RedirectResponse("/inbox" + (f"?{query}" if query else ""), status_code=307)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


# -- host API used by the page's JS -----------------------------------------------------


async def get_flags(request: Request) -> Response:
    return JSONResponse({"account": host_config(request).company_id, "flags": dict(host_state(request).flags)})


async def set_flag(request: Request) -> Response:
    name = request.path_params["name"]
    state = host_state(request)
    if name not in state.flags:
        raise HostError(404, f"no flag {name!r}")
    data = await read_json_object(request)
    if not isinstance(data.get("enabled"), bool):
        raise HostError(422, "send {\"enabled\": true|false}")
    state.flags[name] = data["enabled"]
    return JSONResponse({"account": host_config(request).company_id, "flag": name, "enabled": state.flags[name]})


def _known_room(request: Request) -> Room:
    room = host_state(request).room(request.path_params["room_id"], create=False)
    if room is None:
        raise HostError(404, "unknown room (open it in the inbox first)")
    return room


async def room_embed_token(request: Request) -> Response:
    """The token endpoint of the page's ``[data-crm-deal-ticket]`` element (embed.js GETs
    it to mount the frame and again before the token expires): the JSON of
    ``POST /api/v1/embed-tokens``, minted with this backend's API key."""
    room = _known_room(request)
    if not host_state(request).flags[FLAG]:
        raise HostError(403, "the deal_ticket_tab flag is off for this account")
    token = await mint_embed_token(request, room.id, View.from_query(request))
    return JSONResponse(token)


async def post_message(request: Request) -> Response:
    """The composer: an agent message, kept in memory (the Chat Panel API serves it)."""
    room = _known_room(request)
    data = await read_json_object(request)
    text = text_field(data, "text", "", limit=2000).strip()
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
        "name": text_field(data, "name", ""),
        "stage": text_field(data, "stage", DEAL_STAGES[0]),
        "pipeline": text_field(data, "pipeline", DEAL_PIPELINES[0]),
        "room_id": room.id,
    }
    calls = WidgetCalls(widget_client(request))
    try:
        response, entry = await calls.request("POST", "/api/v1/deals", json_body=body)
    except Unreachable as exc:
        return JSONResponse({"ok": False, "message": str(exc), "calls": calls.calls}, status_code=502)
    if response.status_code != 201:
        message = f"Create Deal failed: {response.status_code} {entry['error']}"
        return JSONResponse({"ok": False, "message": message, "calls": calls.calls}, status_code=502)
    deal = response.json()
    entry["summary"] = record_summary("deal", deal)
    return JSONResponse({"ok": True, "message": f"Deal created: {deal['name']}", "deal": deal,
                         "calls": calls.calls}, status_code=201)


# -- the application ----------------------------------------------------------------------


async def on_host_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HostError)
    return JSONResponse({"error": {"code": str(exc.status), "message": exc.message}}, status_code=exc.status)


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
    chat_panel_slow_seconds: float = 5.0,
) -> Starlette:
    """The host app. ``widget_url`` is the widget's public base URL (the iframe's origin);
    ``widget_api_url`` (default ``widget_url``) is where this backend calls the record
    API with ``api_key``; ``transport`` replaces the network (tests);
    ``chat_panel_slow_seconds`` is how long the Chat Panel API's ``slow`` mode waits."""
    config = HostConfig(
        widget_url=widget_url.rstrip("/"),
        widget_api_url=(widget_api_url or widget_url).rstrip("/"),
        api_key=api_key,
        company_id=company_id,
        account_name=account_name,
        omnichannel_secret=omnichannel_secret or os.environ.get("HOST_OMNICHANNEL_SECRET") or DEFAULT_SECRET,
        signature_tolerance=signature_tolerance,
        chat_panel_slow_seconds=chat_panel_slow_seconds,
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
        Route("/embed-only", embed_only, methods=["GET"]),
        Route("/api/flags", get_flags, methods=["GET"]),
        Route("/api/flags/{name}", set_flag, methods=["POST"]),
        Route("/api/rooms/{room_id}/embed-token", room_embed_token, methods=["GET"]),
        Route("/api/rooms/{room_id}/messages", post_message, methods=["POST"]),
        Route("/api/rooms/{room_id}/deals", manual_deal, methods=["POST"]),
        Route("/api/sim/{action}", simulate, methods=["POST"]),
        Route("/chat-panel/rooms/{room_id}", chat_panel_room, methods=["GET"]),
        Route("/chat-panel/rooms/{room_id}/messages", chat_panel_messages, methods=["GET"]),
        Route("/chat-panel/rooms/{room_id}/mode", get_chat_panel_mode, methods=["GET"]),
        Route("/chat-panel/rooms/{room_id}/mode", set_chat_panel_mode, methods=["PUT"]),
        *record_routes,
        Route("/omnichannel/received", omnichannel_received, methods=["GET"]),
        Route("/omnichannel/received", omnichannel_clear, methods=["DELETE"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HostError: on_host_error})
    app.state.config = config
    app.state.host = HostState(rooms=demo_rooms(datetime.now(UTC)))
    app.state.templates = Jinja2Templates(directory=HERE / "templates")
    app.add_middleware(SecurityHeaders, widget_origin=origin_of(config.widget_url))
    return app
