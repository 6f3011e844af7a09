"""The application factory: routes, error handlers, and the lifespan that opens the
runtime (store, broker, signer, upstream client) for the requests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from contextlib import asynccontextmanager

import httpx
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from widget import api, embed, logs, metrics, openapi, pages, rendering, room_mux, stream, worker
from widget.errors import DomainError
from widget.http_errors import STATUS_CODES, ApiError, error_body, error_response, from_domain
from widget.middleware import SecurityHeaders
from widget.ratelimit import RateLimiter, networks
from widget.runtime import Clock, Runtime, open_runtime, system_clock
from widget.settings import Settings, load_settings
from widget.store import Store
from widget.store.engine import failure_cause, read_failure, write_failure
from widget.stream_limits import StreamLimits


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


WRITE_CHECK_EVERY = 1.0  # s: /readyz writes at most this often per process


class WriteCheck:
    """``/readyz``'s write check (``Store.check_write``), run at most once per
    ``WRITE_CHECK_EVERY``: requests within that get the last answer, or share the one
    running, so probes stay cheap. A failure is logged once, when it starts, with the
    driver's words; the check's text says the cause and what helps."""

    def __init__(self) -> None:
        self._at = -float("inf")
        self._answer = "ok"
        self._running: asyncio.Future[str] | None = None

    async def __call__(self, store: Store) -> str:
        if self._running is None and time.monotonic() - self._at >= WRITE_CHECK_EVERY:
            self._running = asyncio.ensure_future(self._check(store))
        if self._running is not None:
            return await asyncio.shield(self._running)
        return self._answer

    async def _check(self, store: Store) -> str:
        try:
            await store.check_write()
            answer = "ok"
        except Exception as exc:
            answer = f"unavailable: the store cannot write: {write_failure(exc)}"
            if self._answer == "ok":
                logs.event("store_write_failed", logging.ERROR, reason=" ".join(str(exc).split())[:300])
        self._answer, self._at, self._running = answer, time.monotonic(), None
        return answer


async def readyz(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    checks = {}
    for name, probe in (("store", rt.store.ping), ("broker", rt.broker.ping)):
        try:
            await probe()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
            if name == "store":  # (the broker's text is its own: tests/test_redis_broker.py)
                logs.event("store_unavailable", logging.WARNING, path="/readyz",
                           reason=" ".join(str(exc).split())[:300])
                checks[name] = f"unavailable: the store cannot be read: {read_failure(exc)}"
    if checks["store"] == "ok":  # reachable; and can it write? (disk full, read-only)
        checks["store"] = await request.app.state.write_check(rt.store)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503)


async def openapi_json(request: Request) -> Response:
    settings = request.app.state.runtime.settings
    return JSONResponse(openapi.document(settings.public_url, settings.token_max_age))


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return error_response(from_domain(exc))


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404 and request.url.path.startswith("/api/v1/"):
        try:  # 401 comes before 404 in the RFC's precedence
            await api.authenticate(request)  # (failures counted: a 404 is no key oracle either)
        except DomainError as auth_error:
            return error_response(from_domain(auth_error))
        except ApiError as limited:
            return error_response(limited)
    code = STATUS_CODES.get(exc.status_code, "error")
    message = {404: "no such resource", 405: f"method {request.method} is not allowed here"}.get(
        exc.status_code, str(exc.detail)
    )
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


async def on_store_error(request: Request, exc: Exception) -> Response:
    logs.event("store_unavailable", logging.ERROR, path=request.url.path, error=type(exc).__name__)
    message = "the service is temporarily unavailable"
    if failure_cause(exc) == "locked":  # waited WIDGET_LOCK_TIMEOUT, then rolled back whole
        message = "the database is busy (another process holds its lock): nothing was written; try again"
    return JSONResponse(error_body("unavailable", message), status_code=503, headers={"Retry-After": "5"})


async def on_client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up while we read its body: nothing to answer, nothing wrong here."""
    return Response(status_code=499)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    logs.log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return JSONResponse(error_body("internal_error", "unexpected error"), status_code=500)


class StreamFirst(Starlette):
    """Starlette, except that a request for the event stream's route goes straight to
    it, behind our headers middleware but not Starlette's error and exception middleware
    and router: their coroutine frames and closures would live as long as each open
    stream, ~3.5 KB of an idle stream's ~17 (tracemalloc). The route answers its own
    refusals (``sse.EventStream``); an error once it streams reaches uvicorn, as it
    did through ``ServerErrorMiddleware``. Stream opens come in bursts (a restart, page
    loads): matched first."""

    def __init__(self, stream_route: Route, **options: Any) -> None:
        super().__init__(**options)
        self._stream_route = stream_route
        self._stream_app = SecurityHeaders(stream_route.app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            match, child_scope = self._stream_route.matches(scope)
            if match is Match.FULL:
                scope["app"] = self
                scope.update(child_scope)
                await self._stream_app(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    clock: Clock = system_clock,
    *,
    upstream: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """``upstream`` replaces the network for the systems we don't own (tests)."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        logs.configure(settings.log_format)
        async with open_runtime(settings, clock, migrate=settings.migrate_on_start, upstream=upstream) as runtime:
            app.state.runtime = runtime
            try:
                if settings.embedded_worker:
                    async with worker.in_background(runtime):
                        yield
                else:
                    yield
            finally:
                metrics.process_ended()

    routes = [
        stream.route,  # (run directly: see StreamFirst)
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/openapi.json", openapi_json),
        *api.routes,
        *pages.routes,
        *embed.routes,
        *metrics.routes,
        *room_mux.routes,  # (one of them before the /static mount)
        Mount("/static", StaticFiles(directory=settings.static_dir), name="static"),
    ]
    application = StreamFirst(
        stream.route,
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            ApiError: on_api_error,
            DomainError: on_domain_error,
            HTTPException: on_http_exception,
            SQLAlchemyError: on_store_error,
            ClientDisconnect: on_client_gone,
            Exception: on_unexpected,
        },
    )
    application.router.redirect_slashes = False  # a 307 would skip auth and the error shape
    application.state.templates = rendering.templates(settings)
    application.state.rate_limiter = RateLimiter(settings.rate_limit)
    application.state.auth_failures = RateLimiter(settings.auth_failure_rate, burst=settings.auth_failure_burst)
    application.state.trusted_proxies = networks(settings.trusted_proxies)
    application.state.open_limiter = RateLimiter(settings.open_rate, burst=max(10, 10 * settings.open_rate))
    application.state.telemetry_limiter = RateLimiter(
        settings.telemetry_rate, burst=max(10, 10 * settings.telemetry_rate))
    application.state.stream_limits = StreamLimits(settings)
    application.state.write_check = WriteCheck()
    application.state.running_keys = set()  # (company, route, Idempotency-Key) of requests running here
    return application
