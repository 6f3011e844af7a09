"""Stream caps per embed token, room and company, and the maximum stream lifetime
(issue 11): a real uvicorn with the app, streams read over HTTP.

Over a cap a stream is refused before anything is sent: 429 in the RFC error shape
with ``Retry-After``. Each test has its positive control: a stream that must open (a
slot freed, another token, room or company) and a change that must reach it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from httpx_sse import EventSource, ServerSentEvent, connect_sse

from tests.helpers import wait_for
from tests.support import FakeClock, LiveServer, make_settings, seed_company
from widget.app import create_app
from widget.settings import SettingsError, load_settings

DEAL = {"name": "Laptop order", "stage": "New", "pipeline": "Sales", "creator_flag": "bot"}


@pytest.fixture
def capped(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[httpx.Client, httpx.Client, LiveServer]]:
    """A server with the default cap per token (8) and small ones per room (12) and
    company (16); API clients of two companies."""
    settings = make_settings(tmp_path, streams_per_room=12, streams_per_company=16)
    acme, globex = seed_company(settings), seed_company(settings, "globex")
    with LiveServer(create_app(settings, clock)) as server, \
            httpx.Client(base_url=server.url, headers=acme.headers, timeout=10) as a, \
            httpx.Client(base_url=server.url, headers=globex.headers, timeout=10) as g:
        yield a, g, server


def mint(api: httpx.Client, room_id: str = "room-1") -> str:
    response = api.post("/api/v1/embed-tokens", json={"room_id": room_id, "agent_id": "agent-1"})
    assert response.status_code == 201, response.text
    return response.json()["token"]


def url(token: str, room_id: str = "room-1") -> str:
    return f"/embed/rooms/{room_id}/events?token={token}"


class Streams:
    """Streams held open; ``open`` says how each answered."""

    def __init__(self, api: httpx.Client) -> None:
        self.api = api
        self.stack = ExitStack()
        self.open_sources: list[EventSource] = []
        self.events: list[Iterator[ServerSentEvent]] = []  # each open stream's room events

    def open(self, token: str, room_id: str = "room-1") -> httpx.Response:
        source = self.stack.enter_context(connect_sse(self.api, "GET", url(token, room_id)))
        if source.response.status_code == 200:
            self.open_sources.append(source)
            # One iterator per stream, kept: a dropped one closes its response.
            self.events.append(event for event in source.iter_sse() if event.event == "room")
        else:
            source.response.read()
        return source.response

    def __enter__(self) -> Streams:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()


def refused(response: httpx.Response, what: str) -> bool:
    body = response.json()
    return (response.status_code == 429 and response.headers["retry-after"] == "5"
            and body["error"]["code"] == "rate_limited" and f"streams for this {what}" in body["error"]["message"])


def test_64_streams_on_one_token_the_ones_over_the_cap_get_429(
    capped: tuple[httpx.Client, httpx.Client, LiveServer],
) -> None:
    api, _, server = capped
    token = mint(api)
    with Streams(api) as streams:
        answers = [streams.open(token) for _ in range(64)]
        assert [r.status_code for r in answers] == [200] * 8 + [429] * 56
        assert all(refused(r, "token") for r in answers[8:])
        assert server.app.state.stream_limits.count("company", "acme") == 8
        # Another token of the same room opens; a change reaches it and the first eight.
        other = streams.open(mint(api))
        assert other.status_code == 200
        api.post("/api/v1/deals", json={**DEAL, "room_id": "room-1"})
        assert [[json.loads(next(events).data)["version"] for _ in range(2)] for events in streams.events] == \
            [[0, 1]] * 9
        # A slot of the token frees when one of its streams closes.
        streams.open_sources[0].response.close()
        assert wait_for(lambda: server.app.state.stream_limits.count("company", "acme") == 8, 5)
        assert streams.open(token).status_code == 200


def test_the_room_and_company_caps_leave_other_rooms_and_companies_alone(
    capped: tuple[httpx.Client, httpx.Client, LiveServer],
) -> None:
    api, other_company, _ = capped
    with Streams(api) as streams:
        tokens = [mint(api) for _ in range(3)]
        answers = [streams.open(token) for token in tokens for _ in range(5)]  # 15 on room-1
        assert [r.status_code for r in answers] == [200] * 12 + [429] * 3
        assert all(refused(r, "room") for r in answers[12:])
        # Room 2 takes the company's last 4 (16), then the company cap refuses.
        room_2 = [mint(api, "room-2") for _ in range(2)]
        answers = [streams.open(token, "room-2") for token in room_2 for _ in range(3)]
        assert [r.status_code for r in answers] == [200] * 3 + [200, 429, 429]
        assert all(refused(r, "company") for r in answers[4:])
        # Another company's streams are not counted with these.
        assert streams.open(mint(other_company)).status_code == 200


def test_a_stream_ends_cleanly_at_its_maximum_age_and_resumes_where_it_was(
    tmp_path: Path, clock: FakeClock,
) -> None:
    settings = make_settings(tmp_path, stream_max_age=1)
    tenant = seed_company(settings)
    with LiveServer(create_app(settings, clock)) as server, \
            httpx.Client(base_url=server.url, headers=tenant.headers, timeout=10) as api:
        token = mint(api)
        api.post("/api/v1/deals", json={**DEAL, "room_id": "room-1"})
        with connect_sse(api, "GET", url(token)) as source:
            events = list(source.iter_sse())  # ends by itself, with the body's last chunk
        assert [(e.event, e.id) for e in events] == [("room", "1")]
        assert server.app.state.stream_limits.count("company", tenant.id) == 0  # its slot is free
        # The browser resumes with Last-Event-ID: nothing again, then the next change.
        with connect_sse(api, "GET", url(token), headers={"Last-Event-ID": "1"}) as source:
            api.post("/api/v1/deals", json={**DEAL, "name": "Second", "room_id": "room-1"})
            resumed = [(e.event, e.id) for e in source.iter_sse() if e.data]
        assert resumed == [("room", "2")]


def test_caps_and_age_are_settings_that_refuse_nonsense(tmp_path: Path) -> None:
    for name, value in (("streams_per_token", -1), ("stream_max_age", float("nan"))):
        with pytest.raises(SettingsError, match=f"WIDGET_{name.upper()}"):
            load_settings(**{**make_settings(tmp_path).model_dump(), name: value})
