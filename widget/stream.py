"""``GET /embed/rooms/{room_id}/events``: the room's snapshots as server-sent events.

Subscribe first, then read the snapshot from the store, so no change can fall
between the two. The first message is the stored snapshot (skipped only when the
client already has that exact version); then one message per newer version; at
the token's ``exp`` a ``token-expired`` event ends the stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from widget import metrics, rooms
from widget.broker import room_channel
from widget.embed import authorize
from widget.runtime import Runtime

RETRY_MS = 2000


def _room_event(snapshot: dict, *, retry: int | None = None) -> ServerSentEvent:
    # json.dumps escapes newlines, so data is always one line.
    shown = {key: value for key, value in snapshot.items() if key != rooms.PUBLISHED_AT}
    return ServerSentEvent(
        data=json.dumps(shown, ensure_ascii=False, separators=(",", ":")),
        event="room", id=str(snapshot["version"]), retry=retry,
    )


async def room_events(
    rt: Runtime, company_id: str, room_id: str, expires_at: int, last_event_id: str | None
) -> AsyncIterator[ServerSentEvent]:
    # The gauge also goes down when the client goes away (the generator is closed).
    with metrics.OPEN_STREAMS.track_inprogress():
        async with rt.broker.subscribe(room_channel(company_id, room_id)) as subscription:
            snapshot = await rooms.current(rt, company_id, room_id)
            shown = snapshot["version"]
            if last_event_id == str(shown):
                yield ServerSentEvent(comment="up to date", retry=RETRY_MS)
            else:
                yield _room_event(snapshot, retry=RETRY_MS)
            while True:
                remaining = (expires_at - rt.now()) / 1_000_000
                if remaining <= 0:
                    yield ServerSentEvent(data="{}", event="token-expired")
                    return
                try:
                    message = await asyncio.wait_for(subscription.get(), timeout=remaining)
                except TimeoutError:
                    continue
                if message is None:  # broker closed: the app is shutting down
                    return
                if message["version"] > shown:
                    shown = message["version"]
                    metrics.stream_delivered(message.get(rooms.PUBLISHED_AT))
                    yield _room_event(message)


async def events(request: Request) -> Response:
    claims = authorize(request)
    rt: Runtime = request.app.state.runtime
    last_event_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    return EventSourceResponse(
        room_events(rt, claims["company"], claims["room_id"], claims["exp"], last_event_id),
        ping=rt.settings.sse_ping,
        headers={"Cache-Control": "no-store"},
    )


routes = [Route("/embed/rooms/{room_id}/events", events, methods=["GET"])]
