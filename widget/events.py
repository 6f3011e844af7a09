"""Every event the service records (PRD section 11, plus ``contact_association_failed``,
``actor_filtered`` and ``omnichannel_notify_failed``): its name and properties, typed,
in one place. ``analytics`` stores and logs them; ``/stats`` and ``/metrics`` count them.

An event about one record names it ``deal_id`` or ``ticket_id`` as the PRD does; ``about`` puts it
under the right one from the record's kind."""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, model_validator

Creator = Literal["bot", "agentic_ai"]


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str]
    level: ClassVar[int] = logging.INFO
    timestamp: str  # RFC 3339 UTC

    def props(self) -> dict[str, Any]:
        return self.model_dump()


# -- record creation (the denominators of every rate) ------------------------------


class _Created(Event):
    room_id: str | None
    contact_id_present: bool
    source: str | None


class BotDealCreated(_Created):
    name = "bot_deal_created"
    deal_id: str
    creator_flag: Literal["bot"] = "bot"


class AiDealCreated(_Created):
    name = "ai_deal_created"
    deal_id: str
    creator_flag: Literal["agentic_ai"] = "agentic_ai"


class BotTicketCreated(_Created):
    name = "bot_ticket_created"
    ticket_id: str
    creator_flag: Literal["bot"] = "bot"


class AiTicketCreated(_Created):
    name = "ai_ticket_created"
    ticket_id: str
    creator_flag: Literal["agentic_ai"] = "agentic_ai"


# -- what agents see and click ------------------------------------------------------


class _InRoom(Event):
    room_id: str
    agent_id: str


class DealPreviewDisplayed(_InRoom):
    name = "deal_preview_displayed"
    deal_id: str
    creator_source: Creator


class TicketPreviewDisplayed(_InRoom):
    name = "ticket_preview_displayed"
    ticket_id: str
    creator_source: Creator


class DealPreviewClicked(_InRoom):
    name = "deal_preview_clicked"
    deal_id: str


class TicketPreviewClicked(_InRoom):
    name = "ticket_preview_clicked"
    ticket_id: str


class DealTimelineChatroomClicked(_InRoom):
    name = "deal_timeline_chatroom_clicked"
    deal_id: str


class TicketTimelineChatroomClicked(_InRoom):
    name = "ticket_timeline_chatroom_clicked"
    ticket_id: str


# -- failures and filtered records --------------------------------------------------


class _AboutRecord(Event):
    """Exactly one of ``deal_id`` / ``ticket_id``; the other is left out of the props."""

    deal_id: str | None = None
    ticket_id: str | None = None

    @model_validator(mode="after")
    def _one_record(self) -> _AboutRecord:
        if (self.deal_id is None) == (self.ticket_id is None):
            raise ValueError("exactly one of deal_id and ticket_id")
        return self

    def props(self) -> dict[str, Any]:
        return self.model_dump(exclude={"ticket_id" if self.deal_id else "deal_id"})


class TimelineLogCreationFailed(_AboutRecord):
    name = "timeline_log_creation_failed"
    level = logging.WARNING
    room_id: str
    error_reason: str


class ContactAssociationFailed(_AboutRecord):
    name = "contact_association_failed"
    level = logging.WARNING
    contact_id: str
    reason: str  # invalid_id | not_found | deleted | other_company | lookup_failed


class OmnichannelNotifyFailed(_AboutRecord):
    name = "omnichannel_notify_failed"
    level = logging.WARNING
    room_id: str | None
    event: str  # deal_created, ticket_updated, …
    event_id: str
    error_reason: str
    attempts: int


class ActorFiltered(Event):
    """A record without a recognised ``creator_flag`` stays out of rooms (PRD 8 #9)."""

    name = "actor_filtered"
    kind: Literal["deal", "ticket"]
    record_id: str
    action: Literal["create", "update", "delete"]
    creator_flag: str | None


EVENTS: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        BotDealCreated, AiDealCreated, BotTicketCreated, AiTicketCreated,
        DealPreviewDisplayed, TicketPreviewDisplayed, DealPreviewClicked, TicketPreviewClicked,
        DealTimelineChatroomClicked, TicketTimelineChatroomClicked, TimelineLogCreationFailed,
        ContactAssociationFailed, OmnichannelNotifyFailed, ActorFiltered,
    )
}
CREATED = ("bot_deal_created", "ai_deal_created", "bot_ticket_created", "ai_ticket_created")


def created_name(kind: str, flag: str) -> str:
    return f"{'ai' if flag == 'agentic_ai' else 'bot'}_{kind}_created"


def about(name: str, kind: str, record_id: str, **props: Any) -> Event:
    """The event ``name`` about one record, whose id goes under ``deal_id`` or ``ticket_id``."""
    return EVENTS[name](**{f"{kind}_id": record_id}, **props)
