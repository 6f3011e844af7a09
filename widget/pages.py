"""HTML pages: the embedded component (RFC sections 6-7), server-rendered with Jinja2
(autoescaped), no inline script or style; the shared template set-up. The CRM record
pages (section 8) are in ``widget.crm``."""

from __future__ import annotations


from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from widget import crm, rooms
from widget.companies import frame_origins
from widget.embed import EmbedDenied, authorize
from widget.runtime import Runtime
from widget.rendering import render
from widget.i18n import choose_language, strings_for

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
    lang = choose_language((claims or {}).get("locale"), request.query_params.get("lang"),
                           accept_language=request.headers.get("accept-language"))
    theme = request.query_params.get("theme")
    context = {
        "state": state,
        "snapshot": snapshot,
        "room_id": room_id if claims else "",
        "token": request.query_params.get("token", "") if claims else "",
        "parent_origin": (claims or {}).get("parent_origin", ""),
        "permissions": (claims or {}).get("permissions", []),
        # The server renders "error" only for a token that is not valid (the script
        # tells an unreachable CRM apart): retrying cannot help it.
        "error_kind": "invalid" if state == "error" else "",
        "lang": lang,
        "theme": theme if theme in ("light", "dark") else "",  # else the browser's preference
        "s": strings_for(lang),
    }
    return render(request, "component.html", context, status, ancestors)


routes = [
    Route("/embed/rooms/{room_id}", component, methods=["GET"]),
    *crm.routes,  # the CRM record pages live in widget/crm.py
]
