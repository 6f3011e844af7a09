"""``POST /embed/streams`` (``widget/room_mux.py``): many rooms on one event stream,
against real uvicorn, read with httpx-sse. Per room the single-room stream's rules
(first message from the store, resume by version, token expiry); a refused room does
not stop the others; caps; the body's errors in the RFC shape; everything given back
when the client goes away."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from tests.helpers import assert_error, deal, ticket, wait_for
from tests.support import FakeClock, LiveServer, Tenant, make_settings, seed_company
from widget.app import create_app
from widget.bodies import MAX_BODY
from widget.broker import room_channel
from widget.room_mux import MAX_ROOMS, WORKER_CSP

STREAMS = "/embed/streams"


@pytest.fixture
def http(live: tuple[LiveServer, Tenant]) -> Iterator[httpx.Client]:
    server, tenant = live
    with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=10) as client:
        yield client


def token_for(http: httpx.Client, room_id: str, **extra: object) -> str:
    response = http.post("/api/v1/embed-tokens", json={"room_id": room_id, "agent_id": "agent-1", **extra})
    assert response.status_code == 201, response.text
    return response.json()["token"]


def rooms_body(*rooms: tuple[str, Any]) -> dict[str, Any]:
    """The body for (token, last_event_id) pairs."""
    return {"rooms": [{"token": token, "last_event_id": last} for token, last in rooms]}


def dispatched(events: Iterator[ServerSentEvent]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) of what a client acts on: events with data (not pings, not the
    "up to date" comments)."""
    return ((event.event, json.loads(event.data)) for event in events if event.data)


def test_several_rooms_get_their_snapshot_first_then_their_own_changes(http: httpx.Client) -> None:
    http.post("/api/v1/deals", json=deal(room_id="room-2", creator_flag="bot"))
    body = rooms_body(*((token_for(http, room), None) for room in ("room-1", "room-2", "room-3")))
    with connect_sse(http, "POST", STREAMS, json=body) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        events = dispatched(source.iter_sse())
        first = [next(events) for _ in range(3)]
        assert [(name, data["room_id"], data["version"]) for name, data in first] == [
            ("room", "room-1", 0), ("room", "room-2", 1), ("room", "room-3", 0)]
        assert first[1][1]["deal"]["creator"] == "Bot"

        http.post("/api/v1/tickets", json=ticket(room_id="room-3", creator_flag="bot"))
        http.post("/api/v1/deals", json=deal(room_id="room-9", creator_flag="bot"))  # not streamed here
        http.post("/api/v1/deals", json=deal(room_id="room-1", creator_flag="agentic_ai"))
        name, data = next(events)
        assert (name, data["room_id"], data["version"]) == ("room", "room-3", 1) and data["ticket"]["creator"] == "Bot"
        name, data = next(events)
        assert (name, data["room_id"], data["version"]) == ("room", "room-1", 1) and data["deal"]["creator"] == "AI"


def test_each_room_resumes_from_its_own_version(http: httpx.Client) -> None:
    http.post("/api/v1/deals", json=deal(room_id="room-1", creator_flag="bot"))
    http.post("/api/v1/deals", json=deal(room_id="room-2", creator_flag="bot"))
    one, two = token_for(http, "room-1"), token_for(http, "room-2")
    # room-1: the client has version 1 (skipped); room-2: a stale id (sent), as an integer.
    with connect_sse(http, "POST", STREAMS, json=rooms_body((one, "1"), (two, 0))) as source:
        events = dispatched(source.iter_sse())
        name, data = next(events)
        assert (name, data["room_id"], data["version"]) == ("room", "room-2", 1)
        http.post("/api/v1/tickets", json=ticket(room_id="room-1", creator_flag="bot"))
        name, data = next(events)
        assert (name, data["room_id"], data["version"]) == ("room", "room-1", 2)


def test_a_refused_room_gets_a_room_error_and_the_others_stay_live(http: httpx.Client) -> None:
    good = token_for(http, "room-1")
    body = rooms_body((good, None), ("garbage", None), ("", None))
    with connect_sse(http, "POST", STREAMS, json=body) as source:
        assert source.response.status_code == 200
        events = dispatched(source.iter_sse())
        assert next(events)[0] == "room"
        for index in (1, 2):
            assert next(events) == ("room-error", {"index": index, "room_id": None, "status": 401,
                                                   "code": "invalid_token"})
        http.post("/api/v1/deals", json=deal(room_id="room-1", creator_flag="bot"))
        name, data = next(events)
        assert (name, data["room_id"], data["version"]) == ("room", "room-1", 1)


def test_a_room_whose_token_expires_leaves_and_the_others_stay_live(
    live: tuple[LiveServer, Tenant], http: httpx.Client, clock: FakeClock,
) -> None:
    server, tenant = live
    broker = server.app.state.runtime.broker
    short, long = token_for(http, "room-1", ttl_seconds=1), token_for(http, "room-2")
    with connect_sse(http, "POST", STREAMS, json=rooms_body((short, None), (long, None))) as source:
        events = dispatched(source.iter_sse())
        assert [next(events)[1]["room_id"] for _ in range(2)] == ["room-1", "room-2"]
        clock.advance(2)  # the stream looks at the clock once the remaining second passed
        assert next(events) == ("token-expired", {"room_id": "room-1"})
        assert broker.subscriber_count(room_channel(tenant.id, "room-1")) == 0  # let go at once
        http.post("/api/v1/deals", json=deal(room_id="room-2", creator_flag="bot"))
        name, data = next(events)
        assert (name, data["room_id"]) == ("room", "room-2")
    # An expired token is refused as a room, with its room named.
    with connect_sse(http, "POST", STREAMS, json=rooms_body((short, None))) as source:
        assert list(dispatched(source.iter_sse())) == [  # and, no room left, the stream ends
            ("room-error", {"index": 0, "room_id": "room-1", "status": 401, "code": "token_expired"})]


def test_the_client_going_away_gives_back_every_room(live: tuple[LiveServer, Tenant], http: httpx.Client) -> None:
    server, tenant = live
    broker, limits = server.app.state.runtime.broker, server.app.state.stream_limits
    rooms = ("room-1", "room-2", "room-3")
    body = rooms_body(*((token_for(http, room), None) for room in rooms))
    with connect_sse(http, "POST", STREAMS, json=body) as source:
        events = dispatched(source.iter_sse())  # (kept: a discarded iterator closes the connection)
        assert [next(events)[1]["room_id"] for _ in rooms] == list(rooms)
        assert [broker.subscriber_count(room_channel(tenant.id, room)) for room in rooms] == [1, 1, 1]
        assert limits.count("company", tenant.id) == 3  # each room holds a place of its own
    assert wait_for(lambda: all(broker.subscriber_count(room_channel(tenant.id, r)) == 0 for r in rooms), 2)
    assert limits.count("company", tenant.id) == 0


@contextmanager
def serving(tmp_path: Path, clock: FakeClock, **settings: Any) -> Iterator[httpx.Client]:
    """A live server of the test's own, with these settings; a client with the company's key."""
    live_settings = make_settings(tmp_path, **settings)
    tenant = seed_company(live_settings)
    with LiveServer(create_app(live_settings, clock)) as server, httpx.Client(
        base_url=server.url, headers=tenant.headers, timeout=10) as client:
        yield client


def test_caps_per_room_hold_and_a_room_named_twice_is_refused_once(tmp_path: Path, clock: FakeClock) -> None:
    with serving(tmp_path, clock, streams_per_room=1) as http:
        taken = token_for(http, "room-1")
        with connect_sse(http, "GET", f"/embed/rooms/room-1/events?token={taken}") as own:
            own_events = own.iter_sse()  # (kept: a discarded iterator closes the connection)
            assert next(own_events).event == "room"  # room-1's one place is taken
            body = rooms_body((token_for(http, "room-1"), None), (token_for(http, "room-2"), None),
                              (token_for(http, "room-2"), None))
            with connect_sse(http, "POST", STREAMS, json=body) as source:
                events = dispatched(source.iter_sse())
                assert next(events) == ("room-error", {"index": 0, "room_id": "room-1", "status": 429,
                                                       "code": "rate_limited"})
                name, data = next(events)
                assert (name, data["room_id"]) == ("room", "room-2")  # (the control: room-2 had a place)
                assert next(events) == ("room-error", {"index": 2, "room_id": "room-2", "status": 422,
                                                       "code": "validation_failed"})


def test_the_stream_ends_at_its_maximum_age(tmp_path: Path, clock: FakeClock) -> None:
    with serving(tmp_path, clock, stream_max_age=1) as http, connect_sse(
            http, "POST", STREAMS, json=rooms_body((token_for(http, "room-1"), None))) as source:
        assert [name for name, _ in dispatched(source.iter_sse())] == ["room"]  # then a clean end


JSON = {"content-type": "application/json"}
BAD_BODIES = [  # (body, headers, status, code, fields in details)
    (b"{", JSON, 400, "malformed_json", None),
    (b'{"rooms": []}', {"content-type": "text/plain"}, 415, "unsupported_media_type", None),
    (b"[]", JSON, 400, "malformed_json", None),
    (b"{}", JSON, 422, "validation_failed", {"rooms"}),
    (b'{"rooms": []}', JSON, 422, "validation_failed", {"rooms"}),
    (b'{"rooms": [{"token": 7}]}', JSON, 422, "validation_failed", {"rooms.0"}),
    (b'{"rooms": [{"token": "t", "room_id": "r"}]}', JSON, 422, "validation_failed", {"rooms.0"}),
    (json.dumps(rooms_body(*[("t", None)] * (MAX_ROOMS + 1))).encode(), JSON, 422, "validation_failed", {"rooms"}),
    (b'{"rooms": "' + b"x" * MAX_BODY + b'"}', JSON, 413, "payload_too_large", None),
]


def test_a_bad_body_is_refused_in_the_rfc_shape(http: httpx.Client) -> None:
    for body, headers, status, code, fields in BAD_BODIES:
        assert_error(http.post(STREAMS, content=body, headers=headers), status, code, fields)


def test_only_post_is_allowed(http: httpx.Client) -> None:
    assert_error(http.get(STREAMS), 405, "method_not_allowed")


def test_the_worker_script_may_fetch_this_stream(http: httpx.Client) -> None:
    """A worker obeys the policy its script came with; the default one of static files
    (``default-src 'none'``) would forbid its fetch."""
    response = http.get("/static/room-worker.js")
    assert response.status_code == 200 and "/embed/streams" in response.text
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["content-security-policy"] == WORKER_CSP == "default-src 'none'; connect-src 'self'"
    assert "connect-src" not in http.get("/static/room-feed.js").headers["content-security-policy"]  # (control)
