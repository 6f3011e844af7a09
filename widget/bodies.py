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
from widget.store import Row

MAX_BODY = 64 * 1024
IDEMPOTENCY_TTL = 24 * 3600 * 1_000_000  # µs
# A request still "running" after this long died with its process: free its key.
IDEMPOTENCY_ABANDONED = 60 * 1_000_000  # µs


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
    run: Callable[[], Awaitable[Any]],
    status: int = 201,
) -> Response:
    """Run a POST once per (company, route, key): replay a stored 2xx for the same
    canonical body, 409 for another body or while the first is still running."""
    if key is None:
        return JSONResponse(await run(), status_code=status)
    runtime = request.app.state.runtime
    store, now = runtime.store, runtime.now()
    route = request.url.path
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    body_hash = hashlib.sha256(canonical.encode()).hexdigest()
    existing = await store.idempotency_claim(
        company["id"], route, key, body_hash, now, now - IDEMPOTENCY_TTL, now - IDEMPOTENCY_ABANDONED
    )
    if existing is not None:
        if existing["body_hash"] != body_hash:
            raise ApiError(409, "this Idempotency-Key was used with another body")
        if existing["status"] is None:
            raise ApiError(409, "a request with this Idempotency-Key is still running")
        return Response(
            existing["response"], status_code=existing["status"], media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        result = await run()
    except BaseException:
        await store.idempotency_finish(company["id"], route, key, None, None)
        raise
    response = JSONResponse(result, status_code=status)
    await store.idempotency_finish(company["id"], route, key, status, response.body.decode())
    return response
