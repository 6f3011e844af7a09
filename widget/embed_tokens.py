"""Signed tokens for agents: the embed token a host mints for a room (RFC section 4)
and the short-lived link from the component to a CRM record page."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from widget.companies import frame_origins, normalise_origin
from widget.errors import Invalid
from widget.models import PERMISSIONS, EmbedTokenIn, rfc3339
from widget.runtime import Runtime
from widget.store import Keyed, Row, response_text
from widget.strings import zone_or_utc
from widget.tokens import CRM_LINK, EMBED

CRM_LINK_TTL = 300  # s: the link only has to survive the new tab opening


async def mint(rt: Runtime, company: Row, body: EmbedTokenIn, keyed: Keyed | None = None) -> dict[str, Any]:
    origins = frame_origins(company)
    problems = []
    parent_origin = origins[0] if origins else None
    if body.parent_origin is not None:
        try:
            parent_origin = normalise_origin(body.parent_origin)
        except ValueError:
            parent_origin = None
        if parent_origin not in origins:
            problems.append({"field": "parent_origin", "message": "is not one of the company's frame origins"})
    max_age = rt.settings.token_max_age
    ttl = body.ttl_seconds if body.ttl_seconds is not None else max_age
    if ttl > max_age:
        problems.append({"field": "ttl_seconds", "message": f"must be at most {max_age}"})
    if problems:
        raise Invalid(problems)
    permissions = list(dict.fromkeys(body.permissions)) if body.permissions is not None else list(PERMISSIONS)
    claims = {
        "company": company["id"],
        "room_id": body.room_id,
        "agent_id": body.agent_id,
        "permissions": permissions,
        "parent_origin": parent_origin,
        "locale": body.locale or "en",
    }
    stamped = rt.signer.stamp(EMBED, claims, ttl)
    url = f"{rt.settings.public_url}/embed/rooms/{quote(body.room_id, safe='')}?token="
    minted = _minted(stamped.token, url, rfc3339(stamped.exp))
    if keyed is not None:
        # Stored without the token (the idempotency table is no place for a bearer
        # credential): its claims and itsdangerous timestamp, which only a holder of
        # the secret keys can turn back into it (``replay``).
        await rt.store.remember(keyed, {
            "embed_url": url, "expires_at": minted["expires_at"],
            "signed": {"payload": stamped.payload, "timestamp": stamped.timestamp},
        })
    return minted


def _minted(token: str, url: str, expires_at: str) -> dict[str, Any]:
    return {"token": token, "embed_url": url + token, "expires_at": expires_at}


def replay(rt: Runtime, stored: str) -> str:
    """The response of a replayed ``POST /embed-tokens`` from its stored form: the token
    signed again, the same string while the newest key is the one that signed it."""
    kept = json.loads(stored)
    if "signed" not in kept:  # stored by an earlier version, token and all
        return stored
    token = rt.signer.resign(EMBED, kept["signed"]["payload"], kept["signed"]["timestamp"])
    return response_text(_minted(token, kept["embed_url"], kept["expires_at"]))


def crm_link(rt: Runtime, claims: dict[str, Any], kind: str, record_id: str, tz: str | None = None) -> str:
    """Where a click on a preview's name leads: the record's CRM page, with a signed
    single-use link for this agent. It carries what the page needs to know about the
    agent: permissions, language (the embed token's ``locale``) and the browser's time
    zone (``tz``; not a real IANA zone → UTC)."""
    token, _ = rt.signer.sign(
        CRM_LINK,
        {
            "company": claims["company"],
            "kind": kind,
            "id": record_id,
            "agent_id": claims["agent_id"],
            "permissions": list(claims.get("permissions", [])),
            "locale": claims.get("locale") or "en",
            "tz": zone_or_utc(tz),
        },
        CRM_LINK_TTL,
    )
    return f"{rt.settings.public_url}/crm/{kind}s/{quote(record_id, safe='')}?link={token}"


async def redeem_crm_link(rt: Runtime, claims: dict[str, Any]) -> bool:
    """Use a verified CRM link: True the first time, False ever after (single use)."""
    return await rt.store.use_crm_link(claims["jti"], claims["company"], expires_at=claims["exp"], now=rt.now())
