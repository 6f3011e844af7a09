"""The CRM record pages (RFC section 8; PRD S04-S06, E5, E6): a deal's or ticket's
detail with its creator, contact and timeline, and the timeline's way back to the
chat room.

Access. A click on a name in the component gets a signed **link** (``CRM_LINK``, 300 s,
``embed_tokens.crm_link``) that carries the agent, their permissions, language and
time zone. ``GET /crm/{kind}s/{id}?link=…`` checks it (signature, expiry, this kind and
id, ``{kind}:view``), remembers its ``jti`` so it works **once**, sets a **session
cookie for this record only** and answers 303 to the clean URL, so the link leaves the
address bar (and the history). Reloads and the page's own calls ride on the cookie:

  name ``crm_record_session``, Path ``/crm/{kind}s/{id}``, HttpOnly, SameSite=Lax,
  Secure on https, 8 h; claims company, kind, id, agent_id, permissions (just
  ``{kind}:view``), locale, tz (+ jti, exp).

A page without a link or session explains how to get there (``no_link``); a tampered,
expired or already used link has a page of its own. Every one of these pages carries no
record data and cannot be framed.

The page's timeline is one Jinja partial, rendered for the first paint and again by
``GET …/timeline`` while a chat preview is pending (``static/crm.js`` polls it).
``POST …/room-check`` asks the Chat Panel whether the room can be opened before the
page opens it in a new tab (S05)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from widget import analytics, chat_panel, embed_tokens, events, records, timeline
from widget.bodies import read_json
from widget.http_errors import ApiError
from widget.models import creator_label, rfc3339, to_micros
from widget.rendering import http_only, render
from widget.upstream import UpstreamError
from widget.runtime import Runtime
from widget.store import Row
from widget.i18n import LANGUAGES, choose_language, strings_for
from widget.strings import fill, format_clock, format_moment, zone_label, zone_or_utc
from widget.tokens import CRM_LINK, CRM_SESSION, InvalidToken, TokenExpired

SESSION_COOKIE = "crm_record_session"
LEGACY_COOKIE = "crm_session"  # the old company-wide cookie (Path=/crm): cleared on sight
SESSION_TTL = 8 * 3600  # s: a working day
# The header crm.js sends with its POSTs: a cross-site form or beacon cannot set it,
# and a cross-site fetch that does needs a CORS preflight we never grant.
CSRF_HEADER = "x-crm-request"
KINDS = ("deal", "ticket")
# What static/crm.js says itself (the notices of the room check).
JS_STRINGS = ("room_checking", "room_unavailable", "room_forbidden", "room_check_failed",
              "room_session_ended", "record_deleted_title")


def record_path(kind: str, record_id: str) -> str:
    return f"/crm/{kind}s/{quote(record_id, safe='')}"


# -- who is asking -------------------------------------------------------------------


def _session(rt: Runtime, request: Request, kind: str, record_id: str) -> tuple[dict[str, Any] | None, str]:
    """(claims, problem): the session of this very record, or why there is none."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None, "no_link"
    try:
        claims = rt.signer.verify(CRM_SESSION, raw)
    except TokenExpired:
        return None, "session_expired"
    except InvalidToken:
        return None, "no_link"
    if claims.get("kind") != kind or claims.get("id") != record_id or f"{kind}:view" not in claims.get(
        "permissions", []
    ):
        return None, "no_link"
    return claims, ""


def _language(request: Request, claims: dict[str, Any] | None) -> str:
    """``?lang=`` wins here (the page's own switch, kept across its redirect and used by
    crm.js), then the agent's locale (link / session), then the browser's."""
    return choose_language(request.query_params.get("lang"), (claims or {}).get("locale"),
                           accept_language=request.headers.get("accept-language"))


async def _use_link(
    rt: Runtime, request: Request, kind: str, record_id: str, link: str, session: dict[str, Any] | None
) -> Response:
    known: dict[str, Any] | None = None  # what the link tells even when refused (language)
    problem, status = "", 401
    try:
        claims = rt.signer.verify(CRM_LINK, link)
        known = claims
    except TokenExpired as exc:
        claims, problem, known = None, "link_expired", exc.claims
    except InvalidToken:
        claims, problem = None, "link_invalid"
    if claims is not None:
        if claims.get("kind") != kind or claims.get("id") != record_id or not isinstance(claims.get("jti"), str):
            problem = "link_invalid"
        elif f"{kind}:view" not in claims.get("permissions", []):
            problem, status = "no_access", 403
        elif not await embed_tokens.redeem_crm_link(rt, claims):
            problem = "link_used"
    clean = record_path(kind, record_id)
    if request.query_params.get("lang") in LANGUAGES:
        clean += "?" + urlencode({"lang": request.query_params["lang"]})
    if not problem and claims is not None:
        response = RedirectResponse(clean, status_code=303)
        session_claims = {
            "company": claims["company"], "kind": kind, "id": record_id, "agent_id": claims["agent_id"],
            "permissions": [f"{kind}:view"],  # no wider than this page needs
            "locale": claims["locale"] if claims.get("locale") in LANGUAGES else "en",
            "tz": zone_or_utc(claims.get("tz")),
        }
        token, _ = rt.signer.sign(CRM_SESSION, session_claims, SESSION_TTL)
        secure = request.url.scheme == "https" or rt.settings.public_url.startswith("https://")
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_TTL, path=record_path(kind, record_id),
                            httponly=True, samesite="lax", secure=secure)
        if LEGACY_COOKIE in request.cookies:
            response.delete_cookie(LEGACY_COOKIE, path="/crm")
        return response
    if session is not None:  # already in (a reopened or reused link): just drop the link
        return RedirectResponse(clean, status_code=303)
    return _problem(request, kind, problem, _language(request, known), status)


# -- rendering ----------------------------------------------------------------------


def _base_context(kind: str, lang: str) -> dict[str, Any]:
    s = strings_for(lang)
    return {"s": s, "kind": kind, "lang": lang, "noun": s[f"{kind}_noun"], "record": None, "problem": None}


def _problem(request: Request, kind: str, problem: str, lang: str, status: int) -> Response:
    return render(request, "crm_record.html", {**_base_context(kind, lang), "problem": problem}, status)


def _when(micros: int, lang: str, zone: str, *, clock: bool = False) -> dict[str, str]:
    return {
        "iso": rfc3339(micros) or "",
        "text": format_clock(micros, lang, zone) if clock else format_moment(micros, lang, zone),
        "title": f"{format_moment(micros, lang, zone)} · {zone_label(micros, lang, zone)}",
    }


def _parse_time(value: Any) -> int | None:
    """A message's ``sent_at`` (RFC 3339) as µs, or None if it is not a time."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return to_micros(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _messages(preview: list[dict[str, Any]], lang: str, zone: str) -> list[dict[str, Any]]:
    """The chat preview (validated by ``timeline.entry_out``) as the page shows it."""
    s = strings_for(lang)
    shown = []
    for item in preview:
        sender = item["sender_type"]
        sent = _parse_time(item["sent_at"])
        shown.append({
            "sender": sender,
            "side": "in" if sender == "customer" else "out",
            "label": s[f"sender_{sender}"],
            "name": (item.get("sender_name") or "").strip(),
            "text": item["text"],
            "sent": _when(sent, lang, zone, clock=True) if sent is not None else None,
        })
    return shown


def _entries(rt: Runtime, rows: list[Row], lang: str, zone: str) -> list[dict[str, Any]]:
    s = strings_for(lang)
    entries = []
    for row in rows:
        entry = timeline.entry_out(rt.settings, row)
        status = entry["chat_preview_status"]
        entries.append({
            **entry,
            "status": status if status in ("pending", "ok", "empty", "failed") else "failed",
            "creator_text": s.get(f"creator_{entry['creator']}", entry["creator"]),
            "badge": _badge(entry["creator"]),
            "messages": _messages(entry["chat_preview"] or [], lang, zone) if status == "ok" else [],
            "room_url": http_only(entry["room_url"]),
            "when": _when(row["created_at"], lang, zone),
        })
    return entries


def _badge(label: str) -> str:
    return {"Bot": "bot", "AI": "ai"}.get(label, "api")


async def _record_context(
    rt: Runtime, kind: str, record_id: str, claims: dict[str, Any], lang: str
) -> dict[str, Any] | None:
    found = await records.detail(rt, kind, claims["company"], record_id)
    if found is None:
        return None
    row, contact, entries = found
    zone = zone_or_utc(claims.get("tz"))
    creator = creator_label(row["creator_flag"])
    s = strings_for(lang)
    return {
        **_base_context(kind, lang),
        "record": row,
        "display_id": row["unique_id"] if kind == "ticket" else row["id"],
        "contact": contact,
        "creator": creator,
        "creator_text": s.get(f"creator_{creator}", creator),
        "badge": _badge(creator),
        "created": _when(row["created_at"], lang, zone),
        "entries": _entries(rt, entries, lang, zone),
        "zone": zone,
        "base_path": record_path(kind, record_id),
        "js_strings": {key: fill(s[key], record=s[f"{kind}_noun"]) for key in JS_STRINGS},
    }


# -- routes --------------------------------------------------------------------------


async def record_page(request: Request, kind: str) -> Response:
    """The record's page: from a signed link (once, then 303 to the clean URL) or with
    the record's session cookie."""
    rt: Runtime = request.app.state.runtime
    record_id = request.path_params["id"]
    session, problem = _session(rt, request, kind, record_id)
    link = request.query_params.get("link")
    if link is not None:
        return await _use_link(rt, request, kind, record_id, link, session)
    if session is None:
        return _problem(request, kind, problem, _language(request, None), 401)
    lang = _language(request, session)
    context = await _record_context(rt, kind, record_id, session, lang)
    if context is None:  # E6: deleted while its tab was open
        return _problem(request, kind, "record_deleted", lang, 404)
    return render(request, "crm_record.html", context, 200)


def _require_session(rt: Runtime, request: Request, kind: str, record_id: str) -> dict[str, Any]:
    session, _ = _session(rt, request, kind, record_id)
    if session is None:
        raise ApiError(401, "open the record again from the chat room", code="session_required")
    return session


async def timeline_fragment(request: Request, kind: str) -> Response:
    """The timeline partial alone (what crm.js swaps in while a preview is pending)."""
    rt: Runtime = request.app.state.runtime
    record_id = request.path_params["id"]
    session = _require_session(rt, request, kind, record_id)
    context = await _record_context(rt, kind, record_id, session, _language(request, session))
    if context is None:
        raise ApiError(404, f"{kind} not found")
    return render(request, "_crm_timeline.html", context, 200)


def _same_origin_call(request: Request) -> None:
    """CSRF: our page's own fetch only (custom header; the browser's word when it gives it)."""
    if request.headers.get(CSRF_HEADER) != "1" or request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
        raise ApiError(403, "this endpoint is for the CRM page's own requests")


async def room_check(request: Request, kind: str) -> Response:
    """S05: may the agent open the entry's chat room? Asks the Chat Panel
    (``GET {CHAT_PANEL_URL}/rooms/{room_id}``, 2 s) and answers

    - 200 ``{url, status: "open"|"archived"}``: open it (archived chats stay readable);
      logged as ``{kind}_timeline_chatroom_clicked``;
    - 404 ``room_not_found`` / 403 ``room_forbidden``: show the error, don't navigate;
    - 503 ``chat_panel_unavailable`` (slow, down, 5xx, nonsense) or
      ``chat_panel_not_configured``: couldn't check; the page offers "Open anyway".

    ``{"open_anyway": true}`` skips the check: it only records the click of that link.
    Blocked clicks are not product events; they are logged as ``chat_room_check_failed``."""
    _same_origin_call(request)
    rt: Runtime = request.app.state.runtime
    record_id = request.path_params["id"]
    session = _require_session(rt, request, kind, record_id)
    body = await read_json(request)
    entry_id, anyway = body.get("entry"), body.get("open_anyway", False)
    if not isinstance(entry_id, str) or not isinstance(anyway, bool):
        raise ApiError(422, "the request body is not valid", details=[
            {"field": "entry", "message": "must be a timeline entry id"}])
    company = session["company"]
    entry = await timeline.entry(rt, kind, company, record_id, entry_id)
    url = http_only(timeline.room_url(rt.settings, entry["room_id"]))
    if url is None:
        raise ApiError(404, "this chat room has no http(s) address", code="room_not_found")
    room_id = entry["room_id"]
    status, reason = "unchecked", ""
    if not anyway:
        try:
            status = await chat_panel.room_status(rt, company, room_id, session["agent_id"])
        except UpstreamError as exc:
            status = "not_configured" if exc.reason == "not_configured" else "unavailable"
            reason = exc.reason
    if status in ("open", "archived", "unchecked"):
        await analytics.track(rt, company, events.about(
            f"{kind}_timeline_chatroom_clicked", kind, record_id,
            room_id=room_id, agent_id=session["agent_id"], timestamp=rfc3339(rt.now())))
        return JSONResponse({"url": url, "status": status})
    analytics.warn("chat_room_check_failed", company_id=company, kind=kind, record_id=record_id,
                   room_id=room_id, agent_id=session["agent_id"], outcome=status, reason=reason)
    if status == "gone":
        raise ApiError(404, "this chat room is no longer available", code="room_not_found")
    if status == "forbidden":
        raise ApiError(403, "you don't have access to this chat room", code="room_forbidden")
    code = "chat_panel_not_configured" if status == "not_configured" else "chat_panel_unavailable"
    raise ApiError(503, "couldn't check the chat room right now", code=code)


def _routes() -> list[Route]:
    routes = []
    for kind in KINDS:
        base = f"/crm/{kind}s/{{id}}"
        routes += [
            Route(base, partial(record_page, kind=kind), methods=["GET"]),
            Route(f"{base}/timeline", partial(timeline_fragment, kind=kind), methods=["GET"]),
            Route(f"{base}/room-check", partial(room_check, kind=kind), methods=["POST"]),
        ]
    return routes


routes = _routes()
