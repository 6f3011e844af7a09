"""The RFC error shape, ``{"error": {"code", "message", "details"}}``, for every error,
and the mapping of domain errors onto it."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from widget.errors import DomainError, Forbidden, Invalid, NotFound, Unauthenticated

STATUS_CODES = {
    400: "malformed_json",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "idempotency_conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
DOMAIN_STATUS: dict[type[DomainError], int] = {NotFound: 404, Invalid: 422, Unauthenticated: 401, Forbidden: 403}


class ApiError(Exception):
    """An HTTP error raised by the web layer itself (body limits, tokens, rate limits)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or STATUS_CODES[status]
        self.message = message
        self.details = details
        self.headers = headers


def from_domain(exc: DomainError) -> ApiError:
    status = next(s for kind, s in DOMAIN_STATUS.items() if isinstance(exc, kind))
    return ApiError(status, exc.message, details=getattr(exc, "details", None))


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=exc.headers
    )


async def answer_exception(exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer ``exc`` as the app's exception handlers would (the most specific for its
    class), for an endpoint that runs outside Starlette's exception middleware."""
    handlers = scope["app"].exception_handlers
    handler = next((handlers[kind] for kind in type(exc).__mro__ if kind in handlers), None)
    if handler is None:
        raise exc
    response = await handler(Request(scope, receive), exc)
    await response(scope, receive, send)
