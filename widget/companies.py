"""Companies (tenants) and API-key authentication (RFC section 4)."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from widget.errors import Invalid, Unauthenticated
from widget.models import COMPANY_ID
from widget.runtime import Runtime
from widget.store import CompanyExists, Row
from widget.tokens import hash_api_key, new_api_key


# Exactly scheme://host[:port] (one trailing slash tolerated): a host is dot-separated
# labels of letters, digits and hyphens, as CSP's host-source. Origins go verbatim into
# the frame-ancestors directive, so anything more (";", a space, "*") could add to it.
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_ORIGIN = re.compile(rf"(https?)://({_LABEL}(?:\.{_LABEL})*)(?::([0-9]{{1,5}}))?/?", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(value: str) -> str:
    """scheme://host[:port], lower-case, no default port, no trailing slash; ValueError if
    ``value`` is anything else (a path, query, credentials, spaces, ";", "*")."""
    match = _ORIGIN.fullmatch(value)
    port = int(match.group(3)) if match and match.group(3) else None
    if match is None or port == 0 or (port or 0) > 65535:
        shown = value if len(value) <= 100 else value[:100] + "…"
        raise ValueError(f"an origin must be exactly http(s)://host[:port], nothing more: {shown!r}")
    scheme, host = match.group(1).lower(), match.group(2).lower()
    return f"{scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[scheme] else "")


def _is_normal_origin(value: str) -> bool:
    try:
        return normalise_origin(value) == value
    except ValueError:
        return False


def frame_origins(company: Row) -> list[str]:
    """The company's frame origins, for frame-ancestors and parent_origin; one stored
    before origins were checked this strictly (it may carry CSP syntax) is left out."""
    return [origin for origin in json.loads(company["frame_origins"]) if _is_normal_origin(origin)]


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
        "deal_seq": 0,
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
