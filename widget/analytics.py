"""PRD product events (section 11) and the success metrics built from them (section 12).

Every event is one JSON log line and a stored row that ``/stats`` counts."""

from __future__ import annotations

import logging
from typing import Any

from widget import logs
from widget.models import rfc3339, stats_out
from widget.runtime import Runtime
from widget.store import Row

CREATED = ("bot_deal_created", "ai_deal_created", "bot_ticket_created", "ai_ticket_created")


async def track(rt: Runtime, company_id: str, name: str, props: Row, dedupe: str | None = None) -> None:
    """A PRD product event: stored for /stats and logged, once per ``dedupe`` key."""
    if await rt.store.record_event(company_id, name, props, rt.now(), dedupe):
        logs.event(name, company_id=company_id, **props)
    else:
        logs.log.debug("repeat %s (%s)", name, dedupe)


def actor_filtered(company_id: str, kind: str, record_id: str, action: str, flag: str | None) -> None:
    """A record without a recognised creator_flag stays out of rooms (PRD section 8 #9)."""
    logs.event(
        "actor_filtered", company_id=company_id, kind=kind, record_id=record_id,
        action=action, creator_flag=flag,
    )


def warn(name: str, **props: Any) -> None:
    """An operational event that is logged but not counted (e.g. a failed lookup)."""
    logs.event(name, logging.WARNING, **props)


async def stats(rt: Runtime, company_id: str, since: int, until: int) -> dict[str, Any]:
    counts = await rt.store.event_counts(company_id, since, until)

    def total(*names: str) -> int:
        return sum(counts.get(n, 0) for n in names)

    def ratio(num: int, den: int) -> float | None:
        return round(num / den, 4) if den else None

    created = total(*CREATED)
    displayed = total("deal_preview_displayed", "ticket_preview_displayed")
    return stats_out({
        "since": rfc3339(since),
        "until": rfc3339(until),
        "counts": counts,
        "preview_display_rate": ratio(displayed, created),
        "deal_preview_display_rate": ratio(
            total("deal_preview_displayed"), total("bot_deal_created", "ai_deal_created")),
        "ticket_preview_display_rate": ratio(
            total("ticket_preview_displayed"), total("bot_ticket_created", "ai_ticket_created")),
        "room_to_record_navigation_rate": ratio(
            total("deal_preview_clicked", "ticket_preview_clicked"), displayed),
        "timeline_log_creation_failure_rate": ratio(total("timeline_log_creation_failed"), created),
    })
