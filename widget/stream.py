"""``GET /embed/rooms/{room_id}/events``: the room's snapshots as server-sent events.

Subscribe first, then read the snapshot from the store, so no change can fall
between the two. The first message is the stored snapshot (skipped only when the
client already has that exact version); then one message per newer version; at
the token's ``exp`` a ``token-expired`` event ends the stream.

A stream that fell behind (a slow client) sends the newest snapshot buffered for it,
not each one in turn. When the broker may have lost messages it says so (a ``Resync``
marker, after a Redis outage) and the stream re-reads its room from the store (the
process's streams of one room share that read); with a broker that can lose a message
at all (``redis://``: a publish that failed) the stream also re-reads it every
``WIDGET_STREAM_RECHECK`` seconds. Either way it sends the stored snapshot only if it
is newer than what it sent.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from widget import metrics, rooms
from widget.broker import Message, Resync, room_channel
from widget.broker.fanout import Subscriber
from widget.embed import authorize
from widget.runtime import Runtime

RETRY_MS = 2000
SHUTDOWN_GRACE = 3.0  # seconds; below uvicorn's graceful-shutdown timeout (cli: 5 s)


class EndOnShutdown:
    """Handed to sse-starlette as its ``shutdown_event``: when the server shuts down it
    calls ``set()``, which closes the stream's subscription, so the generator returns
    and the response ends with its last chunk instead of being cut (a proxy would log
    a cut stream as an error, request line and token included). The browser then
    reconnects after ``retry`` and resumes with ``Last-Event-ID`` on another process."""

    def __init__(self) -> None:
        self.subscription: Subscriber | None = None
        self.happened = False

    def set(self) -> None:
        self.happened = True
        if self.subscription is not None:
            self.subscription.close()

    def watch(self, subscription: Subscriber) -> None:
        self.subscription = subscription
        if self.happened:
            subscription.close()


def _room_event(snapshot: dict, *, retry: int | None = None) -> ServerSentEvent:
    # json.dumps escapes newlines, so data is always one line.
    shown = {key: value for key, value in snapshot.items() if key != rooms.PUBLISHED_AT}
    return ServerSentEvent(
        data=json.dumps(shown, ensure_ascii=False, separators=(",", ":")),
        event="room", id=str(snapshot["version"]), retry=retry,
    )


_RECHECK = Resync()  # the stream's own timer: a read of its own
_shared_reads: dict[tuple[int, str, str, Resync], asyncio.Future[dict[str, Any]]] = {}


def _newest(items: list[Message | Resync]) -> Message | Resync:
    """What a stream that fell behind sends: the store's state if messages were lost
    (the read comes after all of them), else the newest snapshot."""
    markers = [item for item in items if isinstance(item, Resync)]
    if markers:
        return markers[-1]
    return max(items, key=lambda item: item["version"])  # type: ignore[index]


async def _read_room(rt: Runtime, company_id: str, room_id: str, marker: Resync) -> dict[str, Any]:
    """The room as stored now. The streams of a room that got the same broker marker
    share one read (it starts after the marker was made, which is all each needs):
    after an outage a process reads each open room once, not once per stream."""
    if marker is _RECHECK:
        return await rooms.current(rt, company_id, room_id)
    key = (id(rt), company_id, room_id, marker)
    read = _shared_reads.get(key)
    if read is None:
        read = asyncio.ensure_future(rooms.current(rt, company_id, room_id))
        _shared_reads[key] = read

        def forget(done: asyncio.Future[dict[str, Any]]) -> None:
            _shared_reads.pop(key, None)
            if not done.cancelled():
                done.exception()  # retrieved, even if every reader went away meanwhile

        read.add_done_callback(forget)
    return await asyncio.shield(read)  # one stream going away does not cancel the others'


async def room_events(
    rt: Runtime, company_id: str, room_id: str, expires_at: int, last_event_id: str | None,
    shutdown: EndOnShutdown | None = None,
) -> AsyncIterator[ServerSentEvent]:
    loop = asyncio.get_running_loop()
    recheck = rt.settings.stream_recheck if rt.broker.may_lose_messages else 0.0
    # The first re-read at a random point of the interval: streams opened together
    # (a restart, a burst of page loads) spread their reads.
    next_check = loop.time() + recheck * random.uniform(0.5, 1.0) if recheck else math.inf
    # The gauge also goes down when the client goes away (the generator is closed).
    with metrics.OPEN_STREAMS.track_inprogress():
        async with rt.broker.subscribe(room_channel(company_id, room_id)) as subscription:
            if shutdown is not None:
                shutdown.watch(subscription)
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
                item: Message | Resync | None
                try:
                    async with asyncio.timeout(max(0.0, min(remaining, next_check - loop.time()))):
                        item = await subscription.get()
                except TimeoutError:
                    if loop.time() < next_check:
                        continue  # the token's time: checked above
                    item = _RECHECK
                if item is None:  # the server is shutting down (or its broker closed)
                    return
                item = _newest([item, *subscription.drain()])
                if isinstance(item, Resync):
                    next_check = loop.time() + recheck if recheck else math.inf
                    try:
                        snapshot = await _read_room(rt, company_id, room_id, item)
                    except Exception:  # the store is out: /readyz says so; try again later
                        continue
                    if snapshot["version"] > shown:
                        shown = snapshot["version"]
                        metrics.stream_delivered(None)
                        yield _room_event(snapshot)
                elif item["version"] > shown:
                    shown = item["version"]
                    metrics.stream_delivered(item.get(rooms.PUBLISHED_AT))
                    yield _room_event(item)


async def events(request: Request) -> Response:
    claims = authorize(request)
    rt: Runtime = request.app.state.runtime
    last_event_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    shutdown = EndOnShutdown()
    return EventSourceResponse(
        room_events(rt, claims["company"], claims["room_id"], claims["exp"], last_event_id, shutdown),
        ping=rt.settings.sse_ping,
        headers={"Cache-Control": "no-store"},
        shutdown_event=shutdown,  # type: ignore[arg-type]  # only its set() is called
        shutdown_grace_period=SHUTDOWN_GRACE,
    )


routes = [Route("/embed/rooms/{room_id}/events", events, methods=["GET"])]
