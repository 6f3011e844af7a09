"""Server-rendered pages: the Jinja2 environment (autoescaped), the one CSP of our pages,
and the check that every URL we render is http(s)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from widget.settings import Settings
from widget.strings import fill

# Everything but frame-ancestors, which depends on who may embed the page.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}")


def http_only(url: str | None) -> str | None:
    """The URL if it is absolute http(s), else None: never hand out another scheme."""
    parts = urlsplit(url or "")
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def http_url(value: str | None) -> str:
    """The URL if it is absolute http(s), else an inert '#' (the templates' filter)."""
    return http_only(value) or "#"


def templates(settings: Settings) -> Jinja2Templates:
    env = Jinja2Templates(directory=str(settings.templates_dir))
    env.env.filters["http_url"] = http_url
    env.env.filters["fill"] = fill
    env.env.globals["static_version"] = _static_version(settings)
    return env


def _static_version(settings: Settings) -> str:
    mtimes = [p.stat().st_mtime_ns for p in settings.static_dir.glob("*") if p.is_file()]
    return format(max(mtimes, default=0) % 1_000_000_007, "x")


def render(
    request: Request, name: str, context: dict[str, Any], status: int, ancestors: str = "'none'"
) -> Response:
    """A template with our CSP; ``ancestors`` may frame it (nobody by default)."""
    response = request.app.state.templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Content-Security-Policy"] = CSP.format(ancestors=ancestors)
    response.headers["Cache-Control"] = "no-store"
    return response
