"""HTML pages: the embedded component (RFC sections 6-7), server-rendered with Jinja2
(autoescaped), no inline script or style; the shared template set-up. The CRM record
pages (section 8) are in ``widget.crm``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from widget import crm, rooms
from widget.companies import frame_origins
from widget.embed import EmbedDenied, authorize
from widget.runtime import Runtime
from widget.settings import Settings
from widget.strings import LANGUAGES, fill, strings_for

# Everything but frame-ancestors, which depends on who may embed the page.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}")


def http_url(value: str | None) -> str:
    """The URL if it is absolute http(s), else an inert '#': never render another scheme."""
    return value if value and urlsplit(value).scheme in ("http", "https") else "#"


def templates(settings: Settings) -> Jinja2Templates:
    env = Jinja2Templates(directory=str(settings.templates_dir))
    env.env.filters["http_url"] = http_url
    env.env.filters["fill"] = fill
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


routes = [
    Route("/embed/rooms/{room_id}", component, methods=["GET"]),
    *crm.routes,  # the CRM record pages live in widget/crm.py
]
