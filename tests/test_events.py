"""The typed events of ``widget/events.py`` against the PRD's table (section 11)."""

from __future__ import annotations

import pydantic
import pytest

from tests.helpers import PRD_EVENT_PROPERTIES, assert_prd_properties
from widget import events

pytestmark = pytest.mark.any_stack  # touches neither the store nor the broker: run on one stack

NOW = "2026-11-25T09:00:00.000000Z"


def test_every_prd_event_and_ours_has_one_definition_with_the_prd_properties() -> None:
    assert set(events.EVENTS) == set(PRD_EVENT_PROPERTIES)
    for name, cls in events.EVENTS.items():
        assert cls.name == name
        fields = set(cls.model_fields) | {"deal_id", "ticket_id"}
        assert PRD_EVENT_PROPERTIES[name] <= fields, (name, PRD_EVENT_PROPERTIES[name] - fields)


def test_creation_events_carry_the_creator_they_are_named_after() -> None:
    event = events.about(events.created_name("ticket", "agentic_ai"), "ticket", "tck_1",
                         room_id="r", contact_id_present=False, source=None, timestamp=NOW)
    assert event.name == "ai_ticket_created"
    assert event.props() == {"ticket_id": "tck_1", "room_id": "r", "contact_id_present": False,
                             "source": None, "creator_flag": "agentic_ai", "timestamp": NOW}
    assert_prd_properties(event.name, event.props())
    assert events.created_name("deal", "bot") == "bot_deal_created"


def test_an_event_about_a_record_names_exactly_one_record() -> None:
    failed = events.about("timeline_log_creation_failed", "deal", "deal_1",
                          room_id="r", error_reason="timeout", timestamp=NOW)
    assert failed.props() == {"deal_id": "deal_1", "room_id": "r", "error_reason": "timeout", "timestamp": NOW}
    with pytest.raises(pydantic.ValidationError):
        events.TimelineLogCreationFailed(room_id="r", error_reason="timeout", timestamp=NOW)
    with pytest.raises(pydantic.ValidationError):
        events.TimelineLogCreationFailed(deal_id="d", ticket_id="t", room_id="r", error_reason="x", timestamp=NOW)


def test_properties_are_typed_and_closed() -> None:
    with pytest.raises(pydantic.ValidationError):  # a creator the PRD doesn't know
        events.DealPreviewDisplayed(room_id="r", agent_id="a", deal_id="d", creator_source="human", timestamp=NOW)
    with pytest.raises(pydantic.ValidationError):  # a property that isn't the event's
        events.DealPreviewClicked(room_id="r", agent_id="a", deal_id="d", timestamp=NOW, extra=1)
