"""Properties of the record API, with generated data (bounded: a few seconds).

- hypothesis: any text the API accepts is stored and served exactly as given (unicode,
  markup, line ends), the creator label follows the flag and only a recognised flag
  reaches the room, and a room's version moves by one exactly when its snapshot does.
- schemathesis, against the served ``/openapi.json``: ``tests/test_openapi_contract.py``
  fuzzes every operation with the company's own key; here every generated request to
  an operation with an ``{id}`` carries *another* company's real id, with a key of
  its own: never a 2xx, never a 500, never a byte of the other company's data, and
  the other company's records unchanged."""

from __future__ import annotations

import asyncio
import itertools
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation.case import Case

from tests.helpers import deal
from tests.support import FakeClock, LiveServer, Tenant, make_settings, new_tenant, running_app
from widget.app import create_app
from widget.openapi import document
from widget.settings import Settings

CREATORS = {"bot": "Bot", "agentic_ai": "AI"}
text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1,
               max_size=255).filter(lambda s: bool(s.strip()))
flags = st.sampled_from(["bot", "agentic_ai"]) | st.text(st.characters(exclude_categories=("Cs",),
                                                                       exclude_characters="\x00"), max_size=64)
rooms = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=text, stage=text, pipeline=text, source=text, flag=flags,
       changes=st.dictionaries(st.sampled_from(["name", "stage", "pipeline"]), text, min_size=1))
async def test_what_is_accepted_is_stored_exactly_and_the_room_moves_only_when_its_snapshot_does(
    api: httpx.AsyncClient, name: str, stage: str, pipeline: str, source: str, flag: str, changes: dict[str, str],
) -> None:
    room = f"prop-{next(rooms)}"
    response = await api.post("/api/v1/deals", json=deal(name=name, stage=stage, pipeline=pipeline, source=source,
                                                         creator_flag=flag, room_id=room))
    assert response.status_code == 201, response.text
    made = response.json()
    assert (made["name"], made["stage"], made["pipeline"], made["source"], made["creator_flag"]) == \
        (name, stage, pipeline, source, flag)
    assert made["creator"] == CREATORS.get(flag, "API")
    assert (await api.get(f"/api/v1/deals/{made['id']}")).json() == made
    shown = flag in CREATORS
    snapshot = (await api.get(f"/api/v1/rooms/{room}")).json()
    assert snapshot["version"] == int(shown)
    assert (snapshot["deal"] or {}).get("name") == (name if shown else None)

    patched = await api.patch(f"/api/v1/deals/{made['id']}", json=changes)
    assert patched.status_code == 200, patched.text
    assert patched.json() == {**made, **changes, "updated_at": patched.json()["updated_at"]}
    assert (await api.get(f"/api/v1/deals/{made['id']}")).json() == patched.json()
    moved = shown and any(made[field] != value for field, value in changes.items())
    after = (await api.get(f"/api/v1/rooms/{room}")).json()
    assert after["version"] == snapshot["version"] + int(moved)
    if shown:
        assert {field: after["deal"][field] for field in changes} == changes


# -- schemathesis: another company's ids ------------------------------------------------


def seed_companies(live_settings: Settings, *ids: str) -> list[Tenant]:
    """``seed_company`` for several companies in one start of the app."""

    async def work() -> list[Tenant]:
        async with running_app(live_settings) as application:
            return [await new_tenant(application.state.runtime, company_id) for company_id in ids]

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work()).result()


MARK = "ACME-ONLY"
CONFIG = schemathesis.Config.from_dict({
        "phases": {"examples": {"enabled": False}, "coverage": {"enabled": False}, "fuzzing": {"enabled": True},
               "stateful": {"enabled": False}},
})


@pytest.fixture
def acme_and_globex(tmp_path: Path) -> Iterator[tuple[LiveServer, Tenant, dict[str, dict[str, Any]]]]:
    """A live server; acme's contact, deal and ticket (a room, a timeline entry each)."""
    live_settings = make_settings(tmp_path)
    acme, globex = seed_companies(live_settings, "acme", "globex")
    with LiveServer(create_app(live_settings, FakeClock())) as live, \
            httpx.Client(base_url=live.url, headers=acme.headers, timeout=10) as a:
        contact = a.post("/api/v1/contacts", json={"name": MARK}).json()
        records = {"contacts": contact}
        for kind, body in (("deals", deal(name=MARK, room_id="r-1", creator_flag="bot", contact_id=contact["id"])),
                           ("tickets", {"name": MARK, "status": MARK, "room_id": "r-1", "creator_flag": "bot"})):
            records[kind] = a.post(f"/api/v1/{kind}", json=body).json()
        yield live, globex, records
        for kind, record in records.items():  # unchanged by everything globex sent
            assert a.get(f"/api/v1/{kind}/{record['id']}").json() == record, kind


# The document the live server serves (its settings: make_settings' public URL and token
# max age), checked against /openapi.json in each test. (schemathesis' from_fixture,
# which would load it from the server, fails under pytest 9: 'Function' has no _nodeid.)
DOCUMENT = document("http://127.0.0.1:8000", 900)
served = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


ID_OPERATIONS = [operation.ok() for operation in served.include(path_regex="[{]id[}]").get_all_operations()]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=st.one_of(*[operation.as_strategy() for operation in ID_OPERATIONS]))
def test_generated_requests_with_another_companys_ids_never_reach_its_records(
    case: Case, acme_and_globex: tuple[LiveServer, Tenant, dict[str, dict[str, Any]]],
) -> None:
    """One server for all the examples (an operation each, drawn at random from the ten
    with an id): globex's key, acme's ids."""
    live, globex, records = acme_and_globex
    assert len(ID_OPERATIONS) == 10
    record = records[case.path.split("/")[3]]
    case.path_parameters = {**(case.path_parameters or {}), "id": record["id"]}
    case.headers = {**(case.headers or {}), **globex.headers}  # over a generated Authorization
    response = case.call(base_url=live.url)
    # 404 (RFC section 4), or an error the RFC's precedence puts before it.
    assert response.status_code in (400, 404, 413, 415, 422), (case.method, case.path, response.status_code,
                                                                response.text)
    assert MARK not in response.text and record["id"] not in response.text


def test_the_fuzzed_document_is_the_served_one(
    acme_and_globex: tuple[LiveServer, Tenant, dict[str, dict[str, Any]]],
) -> None:
    assert httpx.get(f"{acme_and_globex[0].url}/openapi.json").json() == DOCUMENT
