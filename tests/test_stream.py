"""The SSE stream, at two levels: the event generator in-process (ordering rules),
and the HTTP endpoint against real uvicorn read with httpx-sse."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse
from starlette.applications import Starlette

from tests.helpers import next_message
from tests.support import FakeClock, LiveServer, Tenant
from widget.broker import room_channel
from widget.runtime import Runtime
from widget.stream import room_events

DEAL = {"name": "Laptop order", "stage": "New", "pipeline": "Sales", "creator_flag": "bot"}


def mint(http: httpx.Client, room_id: str = "room-1", **extra: object) -> str:
    response = http.post("/api/v1/embed-tokens", json={"room_id": room_id, "agent_id": "agent-1", **extra})
    assert response.status_code == 201, response.text
    return response.json()["token"]


@pytest.fixture
def http(live: tuple[LiveServer, Tenant]) -> Iterator[httpx.Client]:
    server, tenant = live
    with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=10) as client:
        yield client


def events_url(token: str, room_id: str = "room-1") -> str:
    return f"/embed/rooms/{room_id}/events?token={token}"


def dispatched(source) -> Iterator[ServerSentEvent]:  # type: ignore[no-untyped-def]
    """Events a browser would dispatch: those with data (a bare retry/comment is not one)."""
    return (event for event in source.iter_sse() if event.data)


# -- HTTP level -----------------------------------------------------------------------


def test_first_message_is_the_snapshot_then_one_per_change(http: httpx.Client) -> None:
    token = mint(http)
    with connect_sse(http, "GET", events_url(token)) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        assert source.response.headers["cache-control"] == "no-store"
        events = source.iter_sse()
        first = next(events)
        assert (first.event, first.id, first.retry) == ("room", "0", 2000)
        assert json.loads(first.data) == {"room_id": "room-1", "version": 0, "deal": None, "ticket": None}

        created = http.post("/api/v1/deals", json={**DEAL, "room_id": "room-1"}).json()
        change = next(events)
        snapshot = json.loads(change.data)
        assert change.id == "1" and snapshot["version"] == 1
        assert snapshot["deal"]["id"] == created["id"] and snapshot["deal"]["creator"] == "Bot"

        http.patch(f"/api/v1/deals/{created['id']}", json={"stage": "Won"})
        assert json.loads(next(events).data)["deal"]["stage"] == "Won"
        http.delete(f"/api/v1/deals/{created['id']}")
        gone = next(events)
        assert gone.id == "3" and json.loads(gone.data)["deal"] is None


def test_resume_skips_the_snapshot_only_when_the_version_matches(http: httpx.Client) -> None:
    http.post("/api/v1/deals", json={**DEAL, "room_id": "room-1"})
    token = mint(http)
    with connect_sse(http, "GET", events_url(token), headers={"Last-Event-ID": "1"}) as source:
        events = dispatched(source)
        http.post("/api/v1/tickets", json={"name": "Refund", "status": "Open", "creator_flag": "bot",
                                           "room_id": "room-1"})
        assert next(events).id == "2"  # the version-1 snapshot was skipped
    with connect_sse(http, "GET", events_url(token) + "&last_event_id=1") as source:
        assert next(dispatched(source)).id == "2"  # stale id: the snapshot is sent


def test_other_rooms_changes_do_not_reach_the_stream(http: httpx.Client) -> None:
    token = mint(http)
    with connect_sse(http, "GET", events_url(token)) as source:
        events = source.iter_sse()
        assert next(events).id == "0"
        http.post("/api/v1/deals", json={**DEAL, "room_id": "room-2"})
        http.post("/api/v1/deals", json={**DEAL, "room_id": "room-1"})
        event = next(events)
        assert json.loads(event.data)["room_id"] == "room-1" and event.id == "1"


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [("", 401, "invalid_token"), ("garbage", 401, "invalid_token")],
)
def test_bad_tokens_are_refused_before_streaming(http: httpx.Client, token: str, status: int, code: str) -> None:
    response = http.get(events_url(token))
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_token_for_another_room_is_forbidden(http: httpx.Client) -> None:
    response = http.get(events_url(mint(http, "room-2"), "room-1"))
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def test_expired_token_is_refused_and_an_open_stream_ends_at_expiry(
    http: httpx.Client, clock: FakeClock
) -> None:
    token = mint(http, ttl_seconds=1)
    with connect_sse(http, "GET", events_url(token)) as source:
        events = source.iter_sse()
        assert next(events).event == "room"
        clock.advance(2)  # the stream re-checks the clock once the remaining second passes
        ended = next(events)
        assert ended.event == "token-expired"
        assert list(events) == []  # and the server closes the stream
    response = http.get(events_url(token))
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_expired"


def test_subscription_is_released_when_the_client_goes_away(live: tuple[LiveServer, Tenant], http: httpx.Client) -> None:
    server, tenant = live
    app: Starlette = server.server.config.app
    broker = app.state.runtime.broker
    channel = room_channel(tenant.id, "room-1")
    with connect_sse(http, "GET", events_url(mint(http))) as source:
        # Keep the iterator: a discarded ``next(source.iter_sse())`` is finalized at once,
        # and its GeneratorExit reaches httpcore's stream, which closes the connection
        # (the client going away here, not at the end of the block: a race, not a test).
        events = source.iter_sse()
        next(events)
        time.sleep(0.2)  # the server would have seen a hang-up by now
        assert broker.subscriber_count(channel) == 1
    deadline = time.monotonic() + 5
    while broker.subscriber_count(channel) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broker.subscriber_count(channel) == 0


def test_pings_keep_an_idle_stream_alive(tmp_path, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    from tests.support import make_settings, seed_company
    from widget.app import create_app

    settings = make_settings(tmp_path, sse_ping=0.2)
    tenant = seed_company(settings)
    with LiveServer(create_app(settings, clock)) as server, httpx.Client(
        base_url=server.url, headers=tenant.headers, timeout=10
    ) as http:
        token = mint(http)
        lines: list[str] = []
        with http.stream("GET", events_url(token)) as response:
            for line in response.iter_lines():
                lines.append(line)
                if sum(1 for seen in lines if seen.startswith(":")) >= 2:
                    break
        assert lines[0] == "id: 0"
        assert sum(1 for seen in lines if seen.startswith(": ping")) >= 2


# -- generator level ------------------------------------------------------------------


async def test_stream_never_goes_back_and_ends_when_the_broker_closes(runtime: Runtime, tenant: Tenant) -> None:
    far_future = runtime.now() + 3600 * 1_000_000
    stream = room_events(runtime, tenant.id, "room-9", far_future, None)
    first = await anext(stream)
    assert first.id == "0"
    channel = room_channel(tenant.id, "room-9")
    stale = {"room_id": "room-9", "version": 0, "deal": None, "ticket": None}
    newer = {**stale, "version": 5}
    next_event = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    await runtime.broker.publish(channel, stale)  # not newer than what was sent: dropped
    await runtime.broker.publish(channel, newer)
    assert (await next_event).id == "5"
    next_event = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    await runtime.broker.publish(channel, {**stale, "version": 4})
    await runtime.broker.close()
    with pytest.raises(StopAsyncIteration):
        await next_event


async def test_a_slow_stream_sends_the_newest_buffered_snapshot_not_each_one(runtime: Runtime, tenant: Tenant) -> None:
    stream = room_events(runtime, tenant.id, "room-9", runtime.now() + 3600 * 1_000_000, None)
    assert (await anext(stream)).id == "0"
    channel = room_channel(tenant.id, "room-9")
    # The client reads nothing while more snapshots arrive than a buffer holds.
    async with runtime.broker.subscribe(channel) as control:
        for version in range(1, 31):
            await runtime.broker.publish(channel, {"room_id": "room-9", "version": version, "deal": None, "ticket": None})
        # Every local subscriber gets a message in one hand-over: once this one has the
        # last (through Redis on the scale stack), so does the stream's buffer.
        while (await next_message(control))["version"] < 30:
            pass
    assert (await anext(stream)).id == "30"  # straight to the newest
    next_event = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    await runtime.broker.publish(channel, {"room_id": "room-9", "version": 31, "deal": None, "ticket": None})
    assert (await asyncio.wait_for(next_event, 2)).id == "31"
    await stream.aclose()
