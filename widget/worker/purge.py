"""Retention (PRD section 5.1, RFC section 8): `widget purge` and the worker's daily run.

What goes, by age against the runtime's clock ("older than" is strict: a row exactly
at the limit stays, one microsecond older goes):
- timeline entries created more than ``TIMELINE_RETENTION_DAYS`` days ago (the record
  itself stays);
- idempotency keys created more than 24 h ago (no replay answers them any more);
- outbox rows finished more than 7 days ago (kept a week to look into deliveries;
  unfinished rows are live work and never purged);
- used CRM links past their expiry (their signature refuses them anyway).
"""

from __future__ import annotations

from widget import logs
from widget.bodies import IDEMPOTENCY_TTL
from widget.runtime import Runtime

DAY = 24 * 3600 * 1_000_000  # µs
OUTBOX_DONE_KEPT = 7 * DAY


async def purge(rt: Runtime, *, dry_run: bool) -> dict[str, int]:
    """Rows deleted per kind, ``{"timeline_entries", "idempotency_keys", "outbox_done",
    "used_crm_links"}``; with ``dry_run`` the rows that would be, and nothing is deleted."""
    now = rt.now()
    counts = await rt.store.purge_expired(
        timeline_before=now - rt.settings.timeline_retention_days * DAY,
        idempotency_before=now - IDEMPOTENCY_TTL,
        outbox_done_before=now - OUTBOX_DONE_KEPT,
        dry_run=dry_run,
    )
    counts["used_crm_links"] = await rt.store.forget_used_links(now, dry_run=dry_run)
    logs.event("retention_purge", dry_run=dry_run, **counts)
    return counts
