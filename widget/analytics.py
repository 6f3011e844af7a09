"""PRD product events (section 11) and the success metrics built from them (section 12).

Every event of ``events`` is one JSON log line, a stored row that ``/stats`` counts and
a sample of ``widget_product_events_total`` (the PRD alerts' input). Events of a record
write are stored in its transaction (``stored``, then ``emitted`` after the commit);
the others by ``track``, without taking the company's lock."""

from __future__ import annotations

import logging
from typing import Any

from widget import logs, metrics
from widget.events import CREATED, Event
from widget.models import CREATORS, rfc3339, stats_out
from widget.runtime import Runtime

DISPLAYED = ("deal_preview_displayed", "ticket_preview_displayed")
CLICKED = ("deal_preview_clicked", "ticket_preview_clicked")
CHATROOM_CLICKED = ("deal_timeline_chatroom_clicked", "ticket_timeline_chatroom_clicked")


def stored(event: Event) -> tuple[str, dict[str, Any]]:
    return event.name, event.props()


def emitted(company_id: str, event: Event) -> None:
    logs.event(event.name, event.level, company_id=company_id, **event.props())
    metrics.PRODUCT_EVENTS.labels(event.name).inc()


async def track(rt: Runtime, company_id: str, event: Event, dedupe: str | None = None) -> None:
    """Store and emit ``event``, once per ``dedupe`` key."""
    if await rt.store.record_event(company_id, stored(event), rt.now(), dedupe):
        emitted(company_id, event)
    else:
        logs.log.debug("repeat %s (%s)", event.name, dedupe)


def warn(name: str, **props: Any) -> None:
    """An operational event that is logged but not counted (e.g. a failed lookup)."""
    logs.event(name, logging.WARNING, **props)


async def stats(rt: Runtime, company_id: str, since: int, until: int) -> dict[str, Any]:
    """PRD section 12 over [since, until]. The shares of records (displayed, full
    context, with a timeline log) are of the bot/AI records created in the window, so a
    deal seen by three agents counts once; the navigation and failure rates compare
    event counts in the window, as the PRD defines them."""
    counts = await rt.store.event_counts(company_id, since, until)
    by_kind = await rt.store.creation_context(company_id, since, until, CREATORS)
    records = {key: by_kind["deal"][key] + by_kind["ticket"][key] for key in by_kind["deal"]}

    def total(*names: str) -> int:
        return sum(counts.get(n, 0) for n in names)

    def ratio(num: int, den: int) -> float | None:
        return round(num / den, 4) if den else None

    return stats_out({
        "since": rfc3339(since),
        "until": rfc3339(until),
        "counts": counts,
        "records": records,
        "preview_display_rate": ratio(records["displayed"], records["created"]),
        "deal_preview_display_rate": ratio(by_kind["deal"]["displayed"], by_kind["deal"]["created"]),
        "ticket_preview_display_rate": ratio(by_kind["ticket"]["displayed"], by_kind["ticket"]["created"]),
        "room_to_record_navigation_rate": ratio(total(*CLICKED), total(*DISPLAYED)),
        "record_to_room_navigation_rate": ratio(total(*CHATROOM_CLICKED), records["with_timeline_log"]),
        "full_context_rate": ratio(records["with_full_context"], records["created"]),
        "timeline_log_creation_failure_rate": ratio(total("timeline_log_creation_failed"), total(*CREATED)),
    })
