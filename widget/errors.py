"""Domain errors: what went wrong in the PRD's terms. The domain modules raise these;
only the web layer (``widget.http_errors``) turns them into HTTP responses."""

from __future__ import annotations


class DomainError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """No such object for this company (another company's objects are 'not found' too)."""


class Invalid(DomainError):
    """Input that breaks a rule; ``details`` lists every bad field."""

    def __init__(self, details: list[dict[str, str]], message: str = "the request body is not valid") -> None:
        super().__init__(message)
        self.details = details


class Unauthenticated(DomainError):
    """No valid credentials (API key)."""


class Forbidden(DomainError):
    """Known caller, but not allowed to do this."""


def not_found(what: str = "resource") -> NotFound:
    return NotFound(f"{what} not found")


def validation_failed(details: list[dict[str, str]]) -> Invalid:
    return Invalid(details)
