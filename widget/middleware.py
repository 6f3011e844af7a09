"""Pure ASGI middleware (``BaseHTTPMiddleware`` would buffer the SSE stream).

Adds the headers every response carries (with ``Server-Timing: app;dur=<ms>``, the time
to the first byte of the response), and per request one log line at INFO and one
``/metrics`` sample, both by route template (``/api/v1/deals/{id}``) and without the
query string (tokens travel in ``?token=``; uvicorn's access log is off).

A response that starts before its request's body was received whole (a 401 or 413
answered from the headers) carries ``Connection: close``: uvicorn would otherwise keep
the connection and read the rest of the body, however large, only to discard it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from widget import metrics

access_log = logging.getLogger("widget.access")

# Pages that set nothing else may not be framed at all.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def _declares_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _route_templates(routes: list[BaseRoute]) -> dict[Any, str]:
    """Routing leaves the matched endpoint in the scope; this maps it to its template."""
    return {getattr(route, "endpoint", None) or getattr(route, "app"): getattr(route, "path") for route in routes}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._templates: dict[Any, str] | None = None

    def _route(self, scope: Scope) -> str:
        if self._templates is None:
            self._templates = _route_templates(scope["app"].routes)
        return self._templates.get(scope.get("endpoint"), "unmatched")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        body_pending = _declares_body(scope)
        # Without a body there is nothing to note: the plain receive (a stream's
        # disconnect task holds it for the stream's life, so no wrapper rides along).
        receive_here = receive
        if body_pending:
            async def receive_noting_the_body_end() -> Message:
                nonlocal body_pending
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    body_pending = False
                return message

            receive_here = receive_noting_the_body_end

        # A plain function handing back the server's own awaitable: no coroutine of ours
        # per body chunk (a stream sends thousands).
        def send_with_headers(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                if body_pending:
                    headers["Connection"] = "close"
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
                headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
                if not scope["path"].startswith("/static/"):
                    headers.setdefault("Cache-Control", "no-store")
                elif scope["path"] == "/static/embed.js":  # host pages always run the current loader (304s)
                    headers.setdefault("Cache-Control", "no-cache")
            return send(message)

        try:
            await self.app(scope, receive_here, send_with_headers)
        except Exception:
            status = status or 500  # the server error handler outside answers it
            raise
        finally:
            seconds = time.perf_counter() - started
            route = self._route(scope)
            # 499: the client went away before a response started (nginx's convention).
            status_text = str(status or 499)
            metrics.REQUEST_SECONDS.labels(scope["method"], route, status_text).observe(seconds)
            access_log.info("request", extra={"event": "http_request", "props": {
                "method": scope["method"], "route": route, "status": status or 499,
                "ms": round(seconds * 1000, 2),
            }})
