"""The ``chat_history`` topic: fill a bot/AI record's creation timeline entry with the
room's last messages from the Chat Panel API (RFC section 8, PRD S04, E4), off the
request path.

The PRD asks for no retry; we make at most three attempts within a few seconds, and
only after a transient failure (network, timeout, 429, 5xx), so the agent never waits
long. However it ends, the entry leaves ``pending``: ``ok`` or ``empty``, or ``failed``
with no preview (the entry keeps its badge and room link, nothing agent-facing says
error) and one ``timeline_log_creation_failed`` event with the ``error_reason``.

Message texts are never logged.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from widget import analytics, chat_panel, events, logs
from widget.models import rfc3339
from widget.runtime import Runtime
from widget.upstream import UpstreamError
from widget.worker.jobs import Handler, Job, upstream_failure
from widget.worker.preview import PREVIEW_SIZE, parse_preview

FAILED_EVENT = "timeline_log_creation_failed"


async def fetch_chat_history(rt: Runtime, job: Job) -> None:
    kind, record_id = job.payload["kind"], job.payload["record_id"]
    if not await rt.store.chat_preview_pending(job.company_id, kind, record_id):
        # Settled by an earlier run of this row whose process died before marking it
        # done, or purged: the Chat Panel is not asked twice.
        return
    body = await _get_messages(rt, job.company_id, job.payload["room_id"])
    items, skipped = parse_preview(body)
    if skipped:
        logs.event(
            "chat_history_messages_skipped", logging.WARNING, company_id=job.company_id,
            **{f"{kind}_id": record_id}, room_id=job.payload["room_id"], skipped=skipped,
        )
    preview = json.dumps(items, ensure_ascii=False) if items else None
    await rt.store.set_chat_preview(job.company_id, kind, record_id, "ok" if items else "empty", preview)


async def _get_messages(rt: Runtime, company_id: str, room_id: str) -> Any:
    try:
        return await chat_panel.messages(rt, company_id, room_id, PREVIEW_SIZE)
    except UpstreamError as exc:
        raise upstream_failure(exc) from None


async def record_failure(rt: Runtime, job: Job, reason: str) -> None:
    """The give-up hook: event first (deduplicated, so a row run again after a crash
    logs it once), then the entry, so a crash between them cannot lose the event."""
    kind, record_id = job.payload["kind"], job.payload["record_id"]
    if not await rt.store.chat_preview_pending(job.company_id, kind, record_id):
        return
    event = events.about(FAILED_EVENT, kind, record_id, room_id=job.payload["room_id"],
                         error_reason=reason, timestamp=rfc3339(rt.now()))
    await analytics.track(rt, job.company_id, event, dedupe=f"{FAILED_EVENT}:{kind}:{record_id}")
    await rt.store.set_chat_preview(job.company_id, kind, record_id, "failed", None)


# Three attempts: the first now, then after ~0.25–0.5 s and ~0.5–1 s (plus up to 2 s
# per attempt and the loop's poll), so a failed entry settles within ~8 s.
HANDLER = Handler(fetch_chat_history, record_failure, max_attempts=3, backoff=0.5, backoff_cap=2.0)
