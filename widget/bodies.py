"""Reading request bodies: size limit while streaming, media type, strict JSON,
and ``Idempotency-Key`` replay for POSTs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget.errors import validation_failed
from widget.http_errors import ApiError
from widget.store import Keyed, KeyTaken, Row

MAX_BODY = 64 * 1024
IDEMPOTENCY_TTL = 24 * 3600 * 1_000_000  # µs


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, an object at the top."""
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ApiError(400, "the body is not valid JSON: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        reason = "invalid UTF-8" if isinstance(exc, UnicodeDecodeError) or not exc.args else exc.args[0]
        raise ApiError(400, f"the body is not valid JSON: {reason}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


async def read_json(request: Request, *, allow_text: bool = False) -> dict[str, Any]:
    """The body as a JSON object. 413 before the body is read whole, then 415, then 400."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    allowed = ("application/json", "text/plain") if allow_text else ("application/json",)
    if media_type not in allowed:
        raise ApiError(415, "the body must be application/json")
    return parse_json_object(b"".join(chunks))


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not key.strip() or len(key) > 255 or not all(32 <= ord(c) <= 126 for c in key):
        raise validation_failed(
            [{"field": "Idempotency-Key", "message": "must be 1-255 printable ASCII characters, not blank"}]
        )
    return key


async def idempotent(
    request: Request,
    company: Row,
    body: dict[str, Any],
    key: str | None,
    run: Callable[[Keyed | None], Awaitable[Any]],
    status: int = 201,
    replay: Callable[[str], str] | None = None,
) -> Response:
    """Run a POST once per (company, route, key): replay a stored 2xx for the same
    canonical body, 409 for another body or while the first is still running.

    ``run`` stores its response in the transaction of its work (``Keyed``), so a key
    is taken exactly when that work committed: a crash before the commit leaves the
    key free, after it the retry gets the stored response. "Still running" is known
    in this process; a same-key request racing in another process waits for the
    first one's write (company lock, single writer) and then meets its key taken.

    ``replay`` turns a stored response into the one to send again, for a response
    stored in another form than sent (an embed token is stored without the token)."""
    if key is None:
        return JSONResponse(await run(None), status_code=status)
    runtime = request.app.state.runtime
    now = runtime.now()
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    body_hash = hashlib.sha256(canonical.encode()).hexdigest()
    keyed = Keyed(company["id"], request.url.path, key, body_hash, status, now, now - IDEMPOTENCY_TTL)
    running: set[tuple[str, str, str]] = request.app.state.running_keys
    slot = (keyed.company_id, keyed.route, key)
    if slot in running:
        raise ApiError(409, "a request with this Idempotency-Key is still running")
    running.add(slot)
    try:
        for _ in range(2):  # again only if the key expired and was purged in between
            try:
                return JSONResponse(await run(keyed), status_code=status)
            except KeyTaken as taken:
                existing = taken.existing
            if existing is not None:
                break
        if existing is None or existing["body_hash"] != body_hash:
            raise ApiError(409, "this Idempotency-Key was used with another body")
        stored = existing["response"]
        return Response(
            replay(stored) if replay is not None else stored, status_code=existing["status"],
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    finally:
        running.discard(slot)
