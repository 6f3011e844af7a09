"""The ``notify.created`` / ``notify.updated`` / ``notify.deleted`` topics: tell
Omnichannel about a bot/AI record of a room (RFC section 9, PRD section 8 #3–#7),
off the request path.

The outbox row says which record; what is sent is the record as stored when the row
runs (an update sends the current name/stage/pipeline or name/status; a soft-deleted
record still sends its created/updated/deleted). Every attempt signs the exact bytes
it sends, ``X-Widget-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
with a fresh ``t`` (the receiver allows 300 s), and carries
``X-Widget-Event-Id: evt_<outbox row id>``, the same on every retry and after a
restart (rows are never re-created), so the receiver can drop duplicates.

Network errors, timeouts (5 s for the whole call), 429 and 5xx are retried with
backoff (8 attempts); other answers that are not 2xx fail at once. Giving up logs one
``omnichannel_notify_failed``. A company without ``omnichannel_url`` (removed after the
row was written) is skipped; one without ``omnichannel_secret`` fails at once with
``secret_not_configured``: an empty key would sign with nothing anybody could trust.

Rows of one record go out in order (``Store.claim_outbox``). A ``Retry-After`` on a
429/5xx is honoured when it asks for longer than the backoff (up to the backoff cap,
5 minutes, so one odd header cannot park a row for a day).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from widget import analytics, events, upstream
from widget.chat_panel import room_segment
from widget.models import record_url, rfc3339
from widget.runtime import Runtime
from widget.store import Row
from widget.worker.jobs import Fail, Handler, Job, upstream_failure

TIMEOUT = 5.0  # s, the whole call
FAILED_EVENT = "omnichannel_notify_failed"
METHODS = {"created": "POST", "updated": "PUT", "deleted": "DELETE"}


def event_id(job: Job) -> str:
    return f"evt_{job.id}"


def action_of(job: Job) -> str:
    return job.topic.removeprefix("notify.")


def signature(secret: str, timestamp: int, raw: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + raw, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def request_for(rt: Runtime, kind: str, action: str, record: Row, room_id: str) -> tuple[str, str, dict[str, Any]]:
    """(method, path, body) of the RFC's table for this record."""
    record_id = record["id"]
    if kind == "deal":
        item = f"/deals/{room_segment(record_id)}"
        if action == "created":
            url = record_url(kind, record, rt.settings.public_url)
            return "POST", "/deals", {"external_id": record_id, "external_url": url, "room_id": room_id}
        if action == "updated":
            url = record_url(kind, record, rt.settings.public_url)
            return "PUT", item, {"name": record["name"], "stage": record["stage"], "pipeline": record["pipeline"],
                                 "external_url": url, "room_id": room_id}
        return "DELETE", item, {"room_id": room_id}
    item = f"/tickets/{room_segment(record_id)}"
    if action == "created":
        return "POST", "/tickets", {"room_id": room_id, "crm_ticket_name": record["name"],
                                    "crm_ticket_id": record_id, "crm_unique_ticket_id": record["unique_id"]}
    if action == "updated":
        return "PUT", item, {"room_id": room_id, "crm_ticket_name": record["name"], "status": record["status"]}
    return "DELETE", item, {"room_id": room_id}


async def notify(rt: Runtime, job: Job) -> None:
    kind, record_id, room_id = job.payload["kind"], job.payload["record_id"], job.payload["room_id"]
    company = await rt.store.get_company(job.company_id)
    if company is None or not company["omnichannel_url"]:
        return  # not (or no longer) configured: nothing to tell
    if not company["omnichannel_secret"]:
        raise Fail("secret_not_configured")
    record = await rt.store.record_for_notify(kind, job.company_id, record_id)
    if record is None:
        raise Fail("record_not_found")
    method, path, body = request_for(rt, kind, action_of(job), record, room_id)
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Widget-Signature": signature(company["omnichannel_secret"], rt.now() // 1_000_000, raw),
        "X-Widget-Event-Id": event_id(job),
    }
    url = f"{company['omnichannel_url'].rstrip('/')}{path}"
    try:
        response = await upstream.request(rt, method, url, timeout=TIMEOUT, content=raw, headers=headers)
    except upstream.UpstreamError as exc:
        raise upstream_failure(exc) from None
    if not 200 <= response.status_code < 300:
        raise upstream_failure(upstream.refused(response))


async def record_failure(rt: Runtime, job: Job, reason: str) -> None:
    """The give-up hook: one event per row (deduplicated, so a row given up again after
    a crash logs it once)."""
    kind, record_id = job.payload["kind"], job.payload["record_id"]
    event = events.about(
        FAILED_EVENT, kind, record_id, room_id=job.payload["room_id"], event=f"{kind}_{action_of(job)}",
        event_id=event_id(job), error_reason=reason, attempts=job.attempts, timestamp=rfc3339(rt.now()))
    await analytics.track(rt, job.company_id, event, dedupe=f"{FAILED_EVENT}:{job.id}")


# Eight attempts: the first now, then after ~1, 2, 4, 8, 16, 32, 64 s (each with
# equal jitter, capped at 5 min): an Omnichannel outage of one to two minutes is ridden out.
HANDLER = Handler(notify, record_failure, max_attempts=8, backoff=1.0, backoff_cap=300.0)
TOPICS = ("notify.created", "notify.updated", "notify.deleted")
