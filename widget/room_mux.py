"""``POST /embed/streams``: the event streams of many rooms on one connection (issue 12).

A browser opens at most 6 HTTP/1.1 connections per site, so the 7th component with an
EventSource of its own would wait for a free one forever. ``static/room-worker.js``, a
SharedWorker, holds this one stream for every component of the browser instead and
routes each room's messages to its frames (``static/room-feed.js``).

Body ``{"rooms": [{"token": "…", "last_event_id": "7" | null}, …]}``, at most
``MAX_ROOMS`` (tokens travel in the body: never in a URL, so never in a log). Per room
the stream sends what the room's own stream would (``widget/stream.py``, the very same
frames): the stored snapshot first (skipped if ``last_event_id`` is its version), then
each newer one; at its token's expiry ``token-expired`` ``{"room_id"}`` and the room
leaves. A room whose token is refused, or that is over a stream cap
(``stream_limits.py``: each room holds its place as a stream of its own would), gets
``room-error`` ``{"index", "room_id", "status", "code"}`` (``index``: its place in the
body; ``room_id`` null when the token says nothing) and the others go on. The stream
pings, ends at its maximum age (the worker resumes each room) and once no room is left.

Routed through Starlette as usual, not run apart like the single-room stream
(``StreamFirst`` in ``app.py``): one of these serves a whole browser, so the ~3.5 KB
Starlette keeps per open response does not matter here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated

from pydantic import Field, StrictInt, StrictStr, StringConstraints
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from widget import metrics, sse
from widget.bodies import read_json
from widget.broker import Subscription, room_channel
from widget.embed import EmbedDenied, verify_token
from widget.http_errors import ApiError, answer_exception
from widget.models import Body, parse
from widget.recheck import Recheck
from widget.runtime import Runtime
from widget.stream import catch_up, first_frame
from widget.stream_limits import StreamLimits

MAX_ROOMS = 50  # per connection; a browser with more rooms streams the rest room by room

# The worker's own policy (a worker obeys the one its script came with, not its page's):
# it fetches this stream and nothing else.
WORKER_CSP = "default-src 'none'; connect-src 'self'"


class RoomIn(Body):
    token: Annotated[StrictStr, StringConstraints(max_length=4096)]
    last_event_id: Annotated[StrictStr, StringConstraints(max_length=20)] | StrictInt | None = None


class StreamsIn(Body):
    rooms: Annotated[list[RoomIn], Field(min_length=1, max_length=MAX_ROOMS)]


class _Room:
    """A room of the stream: its place under the caps, its subscription and its
    re-check, all given back at once (``resources``)."""

    __slots__ = ("company_id", "room_id", "expires_at", "subscription", "resources")

    def __init__(self, company_id: str, room_id: str, expires_at: int) -> None:
        self.company_id, self.room_id, self.expires_at = company_id, room_id, expires_at
        self.resources = AsyncExitStack()
        self.subscription: Subscription


def _room_event(name: str, **data: object) -> bytes:
    return sse.event(name, json.dumps(data, ensure_ascii=False, separators=(",", ":")))


async def _join(
    rt: Runtime, limits: StreamLimits, index: int, wanted: RoomIn, wakeup: sse.Wakeup,
    live: dict[str, _Room], recheck: Recheck | None,
) -> bytes:
    """Add the body's ``index``-th room to ``live``; its first frame (or its ``room-error``)."""
    try:
        claims = verify_token(rt, wanted.token)
    except EmbedDenied as denied:
        room_id = (denied.claims or {}).get("room_id")
        return _room_event("room-error", index=index, room_id=room_id, status=denied.status, code=denied.code)
    company_id, room_id = claims["company"], claims["room_id"]
    if room_id in live:  # messages are told apart by room_id alone
        return _room_event("room-error", index=index, room_id=room_id, status=422, code="validation_failed")
    room = _Room(company_id, room_id, claims["exp"])
    try:
        room.resources.enter_context(limits.held(claims))
    except ApiError as over:
        return _room_event("room-error", index=index, room_id=room_id, status=over.status, code=over.code)
    live[room_id] = room  # given back at the end, whatever happens next
    channel = room_channel(company_id, room_id)
    room.subscription = await room.resources.enter_async_context(rt.broker.subscribe(channel, wakeup.set))
    last_event_id = None if wanted.last_event_id is None else str(wanted.last_event_id)
    room.subscription.version, first = await first_frame(rt, company_id, room_id, last_event_id)
    if recheck is not None:
        recheck.watch((company_id, room_id), room.subscription)
        room.resources.callback(recheck.unwatch, (company_id, room_id), room.subscription)
    return first


async def rooms_events(
    rt: Runtime, limits: StreamLimits, wanted: list[RoomIn], wakeup: sse.Wakeup,
) -> AsyncGenerator[bytes, None]:
    """The stream's frames. It waits on ``wakeup`` alone, which every room's
    subscription sets; after each wake-up it sends what every room has, in one chunk."""
    loop = asyncio.get_running_loop()
    recheck = Recheck.of(rt) if rt.broker.may_lose_messages and rt.settings.stream_recheck else None
    live: dict[str, _Room] = {}
    try:
        first = [await _join(rt, limits, i, room, wakeup, live, recheck) for i, room in enumerate(wanted)]
        with metrics.OPEN_STREAMS.track_inprogress():
            yield b"".join(first)  # never empty: each room sends something first
            del first
            ping = rt.settings.sse_ping
            next_ping = loop.time() + ping
            ends_at = sse.ends_at(rt.settings.stream_max_age)
            while live:
                now_us = rt.now()
                expired = [room for room in live.values() if room.expires_at <= now_us]
                for room in expired:
                    del live[room.room_id]
                    await room.resources.aclose()
                if expired:
                    yield b"".join(_room_event("token-expired", room_id=room.room_id) for room in expired)
                    continue
                now = loop.time()
                if now >= ends_at:
                    return
                if now >= next_ping:
                    yield sse.PING
                    next_ping = now + ping
                soonest = min(room.expires_at for room in live.values())
                await wakeup.wait(min(now + (soonest - now_us) / 1_000_000, next_ping, ends_at))
                if wakeup.ended:  # the client went away, or the server is shutting down
                    return
                frames = []
                for room in live.values():
                    items = room.subscription.drain()
                    if not items:
                        if room.subscription.closed:  # its broker closed (app shutdown)
                            return
                        continue
                    frame = await catch_up(rt, room.company_id, room.room_id, room.subscription, items)
                    if frame is not None:
                        frames.append(frame)
                if frames:
                    yield b"".join(frames)
    finally:
        for room in live.values():
            await room.resources.aclose()


def _body_read(receive: Receive) -> Receive:
    """``receive`` for ``sse.EventStream`` once the body has been read here: its first
    call (the request) is answered at once; the next waits for the client to go away."""
    answered = False

    async def receive_after_the_body() -> Message:
        nonlocal answered
        if not answered:
            answered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return await receive()

    return receive_after_the_body


class RoomsStream:
    """The route's ASGI app (an object: Starlette would take a function for a request →
    response endpoint). It reads the body, then answers as ``sse.EventStream``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        # A bad body raises to the app's handlers: 413, 415, 400, 422 in the RFC's shape.
        body = parse(StreamsIn, await read_json(request))
        assert isinstance(body, StreamsIn)
        rt: Runtime = request.app.state.runtime
        limits: StreamLimits = request.app.state.stream_limits

        def frames(_: Scope, wakeup: sse.Wakeup) -> AsyncGenerator[bytes, None]:
            return rooms_events(rt, limits, body.rooms, wakeup)

        await sse.EventStream(frames, answer_exception)(scope, _body_read(receive), send)


async def worker_script(request: Request) -> Response:
    """``static/room-worker.js`` with its own policy (``WORKER_CSP``): as a static file
    it would get the default ``default-src 'none'``, which forbids its fetch."""
    path = Path(request.app.state.runtime.settings.static_dir) / "room-worker.js"
    return FileResponse(path, media_type="text/javascript", headers={"Content-Security-Policy": WORKER_CSP})


routes = [
    Route("/embed/streams", RoomsStream(), methods=["POST"]),
    Route("/static/room-worker.js", worker_script, methods=["GET", "HEAD"]),  # before the /static mount
]
