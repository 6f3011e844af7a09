"""``/openapi.json`` against the running server. schemathesis generates requests from
the document (coverage and fuzzing phases, valid and invalid data) and runs every
check on the answers, so a rule the document and the server read differently fails;
a scripted run checks the answers that random data rarely reaches (a room showing a
deal and a ticket, a timeline with an entry)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import CheckContext, Response
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support import T0, FakeClock, LiveServer, Tenant, make_settings, seed_company
from widget.app import create_app
from widget.models import NOT_BLANK, timeline_entry_out
from widget.openapi import REQUESTS, document

# Fuzzing examples per operation; the coverage phase adds its own, bounded set.
MAX_EXAMPLES = 15

CONFIG = schemathesis.Config.from_dict({
    "generation": {"max-examples": MAX_EXAMPLES},
    "phases": {
        "examples": {"enabled": False},  # the document has no examples
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},  # no links: the scripted test covers sequences
    },
    # Valid data with the company's key is accepted (a room id is valid, its room
    # perhaps empty), except for random record ids (404) and a generated
    # Idempotency-Key sent again with another body (409).
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx"]}},
    "operations": [
        {"include-path-regex": "[{]id[}]", "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "404"]}}},
        {"include-method": "POST", "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "409"]}}},
    ],
})
# Requests go to the live server (``base_url``): the document's server URL is not used.
schema = schemathesis.openapi.from_dict(document("http://127.0.0.1"), config=CONFIG)

# Rules about the data rather than its shape, which no schema can state: parent_origin
# must be one of the company's frame origins (RFC section 4); since and until must not
# be before 1970, nor since after until (section 5).
DATA_RULES = {"parent_origin", "since", "until"}


def positive_data_accepted(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """schemathesis' positive_data_acceptance, except that a 422 naming only
    ``DATA_RULES`` fields is a fair answer to data of the right shape."""
    if response.status_code == 422:
        fields = {detail["field"] for detail in response.json()["error"]["details"] or []}
        if fields and fields <= DATA_RULES:
            return None
    return positive_data_acceptance(ctx, response, case)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LiveServer, Tenant]]:
    # Schemathesis sends wrong keys by the hundred and wants each one's 401: the limit on
    # failed authentication (429 past a burst) is off here, tested in tests/security.
    live_settings = make_settings(tmp_path, auth_failure_rate=0)
    tenant = seed_company(live_settings)
    with LiveServer(create_app(live_settings, FakeClock())) as live:
        yield live, tenant


@schema.parametrize()
# One live server answers all the examples of an operation, on purpose.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_server_does_what_its_document_says(case: Case, server: tuple[LiveServer, Tenant]) -> None:
    live, tenant = server
    # The company's key, except in the cases that test a missing or bad one. (Coverage
    # cases are built at collection, before the key exists: no auth provider can help.)
    headers = None if schema.is_security_param_negated(case) else tenant.headers
    case.call_and_validate(base_url=live.url, headers=headers, excluded_checks=[positive_data_acceptance],
                           additional_checks=[positive_data_accepted])


def test_populated_answers_match_the_served_document(server: tuple[LiveServer, Tenant]) -> None:
    live, tenant = server
    served = schemathesis.openapi.from_url(f"{live.url}/openapi.json", config=CONFIG)

    def call(method: str, path: str, status: int, **parts: Any) -> Any:
        case = served[path][method].Case(**parts)
        response = case.call_and_validate(base_url=live.url, headers=tenant.headers)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    contact = call("POST", "/api/v1/contacts", 201, body={"name": "Budi", "phone": "+62812"})
    deal = call("POST", "/api/v1/deals", 201, body={
        "name": "Laptop", "stage": "New", "pipeline": "Sales", "room_id": "r-1",
        "creator_flag": "bot", "contact_id": contact["id"], "source": "chatbot"})
    ticket = call("POST", "/api/v1/tickets", 201, body={
        "name": "Refund", "status": "Open", "room_id": "r-1", "creator_flag": "agentic_ai",
        "external_url": "https://crm.example.com/t/1"})
    call("PATCH", "/api/v1/deals/{id}", 200, path_parameters={"id": deal["id"]}, body={"stage": "Won"})
    call("GET", "/api/v1/tickets/{id}", 200, path_parameters={"id": ticket["id"]})
    room = call("GET", "/api/v1/rooms/{room_id}", 200, path_parameters={"room_id": "r-1"})
    assert room["deal"]["id"] == deal["id"] and room["ticket"]["id"] == ticket["id"]
    for kind, record in (("deal", deal), ("ticket", ticket)):
        timeline = call("GET", f"/api/v1/{kind}s/{{id}}/timeline", 200, path_parameters={"id": record["id"]})
        assert len(timeline["entries"]) == 1
    call("POST", "/api/v1/embed-tokens", 201, body={"room_id": "r-1", "agent_id": "agent-7"})
    assert call("GET", "/api/v1/stats", 200)["counts"]["bot_deal_created"] == 1
    call("DELETE", "/api/v1/deals/{id}", 204, path_parameters={"id": deal["id"]})
    call("DELETE", "/api/v1/contacts/{id}", 204, path_parameters={"id": contact["id"]})
    call("GET", "/api/v1/contacts/{id}", 404, path_parameters={"id": contact["id"]})


def _strings(node: Any) -> Iterator[dict[str, Any]]:
    """Every string schema inside a JSON Schema."""
    if isinstance(node, dict):
        if node.get("type") == "string":
            yield node
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_every_string_a_body_accepts_is_bounded() -> None:
    """Generated data seldom reaches a limit the document forgot: check it is there."""
    schemas = document("http://127.0.0.1")["components"]["schemas"]
    for model in REQUESTS:
        for string in _strings(schemas[model.__name__]):
            assert {"maxLength", "enum", "const"} & set(string), (model.__name__, string)


def test_not_blank_is_what_str_strip_leaves_something_of() -> None:
    """The pattern spells Python's whitespace out (every engine reads it alike); all
    of that whitespace is in the Basic Multilingual Plane."""
    not_blank = re.compile(NOT_BLANK)
    assert [c for c in map(chr, range(0x10000)) if c.isspace() == bool(not_blank.match(c))] == []


def test_timeline_entry_keeps_a_messages_missing_sender_name_out() -> None:
    messages = [{"sender_type": "customer", "text": "Hi", "sent_at": "2026-11-25T08:59:00Z"},
                {"sender_type": "agent", "sender_name": "Sari", "text": "Hello", "sent_at": "2026-11-25T09:00:00Z"}]
    row = {"id": "tl_1", "company_id": "acme", "kind": "bot_creation", "creator": "Bot", "room_id": "r-1",
           "chat_preview": json.dumps(messages), "chat_preview_status": "ok", "created_at": T0}
    assert timeline_entry_out(row, "http://inbox/r-1") == {
        "id": "tl_1", "kind": "bot_creation", "creator": "Bot", "room_id": "r-1", "room_url": "http://inbox/r-1",
        "chat_preview": messages, "chat_preview_status": "ok", "created_at": "2026-11-25T09:00:00.000000Z",
    }
