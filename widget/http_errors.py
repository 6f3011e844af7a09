"""The RFC error shape, ``{"error": {"code", "message", "details"}}``, for every error,
and the mapping of domain errors onto it."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

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
