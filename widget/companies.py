"""Companies (tenants) and API-key authentication (RFC section 4)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from widget.errors import Invalid, Unauthenticated
from widget.models import COMPANY_ID
from widget.runtime import Runtime
from widget.store import CompanyExists, Row
from widget.tokens import hash_api_key, new_api_key


def normalise_origin(value: str) -> str:
    """scheme://host[:port], lower-case, no path or trailing slash; ValueError if not."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) origin: {value!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"an origin has no path, query or credentials: {value!r}")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


def frame_origins(company: Row) -> list[str]:
    return json.loads(company["frame_origins"])


def _invalid(message: str) -> Invalid:
    return Invalid([], message)


async def create_company(
    rt: Runtime,
    company_id: str,
    name: str,
    origins: list[str],
    omnichannel_url: str | None = None,
    omnichannel_secret: str | None = None,
) -> tuple[Row, str]:
    """Returns (company, api key); the key is shown once and stored hashed."""
    if not COMPANY_ID.fullmatch(company_id):
        raise _invalid("company id must be 2-64 characters of a-z 0-9 -")
    if not name.strip() or len(name) > 255:
        raise _invalid("company name must be 1-255 characters")
    try:
        normalised = list(dict.fromkeys(normalise_origin(o) for o in origins))
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    if not normalised:
        raise _invalid("at least one --frame-origin is required")
    if omnichannel_url and urlsplit(omnichannel_url).scheme not in ("http", "https"):
        raise _invalid("omnichannel url must be http(s)")
    key = new_api_key()
    row = {
        "id": company_id,
        "name": name,
        "api_key_hash": hash_api_key(key),
        "frame_origins": json.dumps(normalised),
        "omnichannel_url": omnichannel_url,
        "omnichannel_secret": omnichannel_secret,
        "last_created_at": 0,
        "ticket_seq": 0,
        "created_at": rt.now(),
    }
    try:
        await rt.store.create_company(row)
    except CompanyExists:
        raise _invalid(f"company {company_id!r} already exists") from None
    return row, key


async def authenticate(rt: Runtime, authorization: str | None) -> Row:
    """The company whose API key is in ``Authorization: Bearer <key>``."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthenticated("missing or malformed Authorization: Bearer <api key>")
    company = await rt.store.company_by_key_hash(hash_api_key(key.strip()))
    if company is None:
        raise Unauthenticated("unknown API key")
    return company
