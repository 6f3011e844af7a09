"""HTML pages: the embedded component (RFC sections 6-7) and the CRM record pages
(section 8), server-rendered with Jinja2 (autoescaped), no inline script or style."""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from widget import rooms, timeline
from widget.companies import frame_origins
from widget.embed import EmbedDenied, authorize
from widget.models import creator_label, rfc3339
from widget.runtime import Runtime
from widget.settings import Settings
from widget.strings import LANGUAGES, strings_for
from widget.tokens import CRM_LINK, CRM_SESSION, InvalidToken, TokenExpired

# Everything but frame-ancestors, which depends on who may embed the page.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}")
SESSION_COOKIE = "crm_session"
SESSION_TTL = 8 * 3600


def http_url(value: str | None) -> str:
    """The URL if it is absolute http(s), else an inert '#': never render another scheme."""
    return value if value and urlsplit(value).scheme in ("http", "https") else "#"


def templates(settings: Settings) -> Jinja2Templates:
    env = Jinja2Templates(directory=str(settings.templates_dir))
    env.env.filters["http_url"] = http_url
    env.env.globals["static_version"] = _static_version(settings)
    return env


def _static_version(settings: Settings) -> str:
    mtimes = [p.stat().st_mtime_ns for p in settings.static_dir.glob("*") if p.is_file()]
    return format(max(mtimes, default=0) % 1_000_000_007, "x")


def _render(request: Request, name: str, context: dict[str, Any], status: int, ancestors: str) -> Response:
    response = request.app.state.templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Content-Security-Policy"] = CSP.format(ancestors=ancestors)
    response.headers["Cache-Control"] = "no-store"
    return response


async def component(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    room_id = request.path_params["room_id"]
    status, snapshot, claims = 200, None, None
    try:
        claims = authorize(request)
        state = "ready"
    except EmbedDenied as denied:
        status, claims = denied.status, denied.claims
        state = {"token_expired": "expired", "forbidden": "forbidden"}.get(denied.code, "error")
    company = await rt.store.get_company(claims["company"]) if claims else None
    if company is None:  # no trusted company: carry no data, allow no framing
        state, claims, status = "error", None, 401
        ancestors = "'none'"
    else:
        ancestors = " ".join(frame_origins(company))
    if state == "ready":
        snapshot = await rooms.current(rt, claims["company"], room_id)
        state = "ready" if snapshot["deal"] or snapshot["ticket"] else "empty"
    lang = request.query_params.get("lang")
    if lang not in LANGUAGES:
        lang = (claims or {}).get("locale", "en")
    strings = strings_for(lang)
    context = {
        "state": state,
        "snapshot": snapshot,
        "room_id": room_id if claims else "",
        "token": request.query_params.get("token", "") if claims else "",
        "parent_origin": (claims or {}).get("parent_origin", ""),
        "permissions": (claims or {}).get("permissions", []),
        "lang": lang if lang in LANGUAGES else "en",
        "theme": "dark" if request.query_params.get("theme") == "dark" else "light",
        "s": strings,
    }
    return _render(request, "component.html", context, status, ancestors)


# -- CRM record pages -------------------------------------------------------------


def _session_claims(rt: Runtime, request: Request, kind: str, record_id: str) -> tuple[dict | None, str | None]:
    """(claims, fresh session token): from the signed link, else from the session cookie."""
    link = request.query_params.get("link")
    if link:
        try:
            claims = rt.signer.verify(CRM_LINK, link)
        except (InvalidToken, TokenExpired):
            return None, None
        if claims.get("kind") != kind or claims.get("id") != record_id:
            return None, None
        session, _ = rt.signer.sign(
            CRM_SESSION, {"company": claims["company"], "agent_id": claims["agent_id"]}, SESSION_TTL
        )
        return claims, session
    try:
        return rt.signer.verify(CRM_SESSION, request.cookies.get(SESSION_COOKIE)), None
    except (InvalidToken, TokenExpired):
        return None, None


async def crm_record(request: Request, kind: str) -> Response:
    rt: Runtime = request.app.state.runtime
    record_id = request.path_params["id"]
    lang = request.query_params.get("lang")
    lang = lang if lang in LANGUAGES else "en"
    claims, session = _session_claims(rt, request, kind, record_id)
    context: dict[str, Any] = {"s": strings_for(lang), "kind": kind, "record": None, "lang": lang}
    if claims is None:
        return _render(request, "crm_record.html", {**context, "problem": "link_invalid"}, 401, "'none'")
    row = await rt.store.get_record(kind, claims["company"], record_id)
    if row is None:
        response = _render(request, "crm_record.html", {**context, "problem": "record_deleted"}, 404, "'none'")
    else:
        contact = await rt.store.get_contact(claims["company"], row["contact_id"]) if row["contact_id"] else None
        entries = [timeline.entry_out(rt.settings, e) for e in await rt.store.timeline(kind, record_id)]
        context.update(
            record=row, contact=contact, entries=entries, problem=None,
            creator=creator_label(row["creator_flag"]), created_at=rfc3339(row["created_at"]),
        )
        response = _render(request, "crm_record.html", context, 200, "'none'")
    if session:
        response.set_cookie(SESSION_COOKIE, session, max_age=SESSION_TTL, path="/crm", httponly=True,
                            samesite="lax", secure=request.url.scheme == "https")
    return response


routes = [
    Route("/embed/rooms/{room_id}", component, methods=["GET"]),
    Route("/crm/deals/{id}", partial(crm_record, kind="deal"), methods=["GET"]),
    Route("/crm/tickets/{id}", partial(crm_record, kind="ticket"), methods=["GET"]),
]
