"""``GET /embed/rooms/{room_id}/events``: the room's snapshots as server-sent events.

Subscribe first, then read the snapshot from the store, so no change can fall
between the two. The first message is the stored snapshot (skipped only when the
client already has that exact version); then one message per newer version; at
the token's ``exp`` a ``token-expired`` event ends the stream.

A stream that fell behind (a slow client) sends the newest snapshot buffered for it,
not each one in turn. When the broker may have lost messages it says so (a ``Resync``
marker, after a Redis outage) and the stream re-reads its room from the store (the
process's streams of one room share that read); with a broker that can lose a message
at all (``redis://``: a publish that failed) the process also checks its streams'
rooms every ``WIDGET_STREAM_RECHECK`` seconds and gives a marker to those behind
(``widget/recheck.py``). Either way a stream sends the stored snapshot only if it is
newer than what it sent.

The response is ``widget/sse.py``'s: one task per stream, which waits on one
``Wakeup``, set by the broker subscription, the stream's timer (its next ping, its
token's expiry), the client going away or the server shutting down.
A published snapshot is encoded once per process, not once per stream: the broker hands
every local stream of the room the same ``Message``, and the first stream to send it
keeps its frame on it for the others (``published_at`` is never sent). While the stream
waits, a newer snapshot is written from the fan-out itself (``send_now``, through
``Wakeup.write``), without waking the stream's task.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Scope

from widget import metrics, rooms, sse
from widget.broker import Message, Resync, Subscription, room_channel
from widget.embed import authorize
from widget.http_errors import answer_exception
from widget.recheck import Recheck
from widget.runtime import Runtime

RETRY_MS = 2000
UP_TO_DATE = sse.comment("up to date", retry=RETRY_MS)  # the client has the stored version
TOKEN_EXPIRED = sse.event("token-expired", "{}")


def _encode(snapshot: Mapping[str, Any], *, retry: int | None = None) -> bytes:
    shown = {key: value for key, value in snapshot.items() if key != rooms.PUBLISHED_AT}
    # json.dumps escapes newlines, so data is always one line.
    data = json.dumps(shown, ensure_ascii=False, separators=(",", ":"))
    return sse.event("room", data, id=str(snapshot["version"]), retry=retry)


def _frame(message: Message) -> bytes:
    """The message's frame: made by the first stream that sends it, reused by the rest."""
    if message.encoded is None:
        message.encoded = _encode(message)
    return message.encoded


async def first_frame(rt: Runtime, company_id: str, room_id: str, last_event_id: str | None) -> tuple[int, bytes]:
    """The stored version and the stream's first frame: that snapshot, or a comment
    if the client has that version already."""
    snapshot = await rooms.current(rt, company_id, room_id)
    version = snapshot["version"]
    return version, UP_TO_DATE if last_event_id == str(version) else _encode(snapshot, retry=RETRY_MS)


_shared_reads: dict[tuple[int, str, str, Resync], asyncio.Future[Message]] = {}


def _newest(items: list[Message | Resync]) -> Message | Resync:
    """What a stream that fell behind sends: the store's state if messages were lost
    (the read comes after all of them), else the newest snapshot."""
    if len(items) == 1:
        return items[0]
    markers = [item for item in items if isinstance(item, Resync)]
    if markers:
        return markers[-1]
    return max(items, key=lambda item: item["version"])  # type: ignore[index]


async def _stored(rt: Runtime, company_id: str, room_id: str) -> Message:
    return Message(await rooms.current(rt, company_id, room_id))


async def _read_room(rt: Runtime, company_id: str, room_id: str, marker: Resync) -> Message:
    """The room as stored now. The streams of a room that got the same broker marker
    share one read (it starts after the marker was made, which is all each needs), and
    its frame: after an outage a process reads each open room once, not once per stream."""
    key = (id(rt), company_id, room_id, marker)
    read = _shared_reads.get(key)
    if read is None:
        read = asyncio.ensure_future(_stored(rt, company_id, room_id))
        _shared_reads[key] = read

        def forget(done: asyncio.Future[Message]) -> None:
            _shared_reads.pop(key, None)
            if not done.cancelled():
                done.exception()  # retrieved, even if every reader went away meanwhile

        read.add_done_callback(forget)
    return await asyncio.shield(read)  # one stream going away does not cancel the others'


async def catch_up(
    rt: Runtime, company_id: str, room_id: str, subscription: Subscription, items: list[Message | Resync],
) -> bytes | None:
    """The frame a stream sends for ``items`` (drained from its subscription): the newest
    snapshot, or the store's after a ``Resync``, if newer than the version it sent
    (``subscription.version``, moved on here); else None. Also the multiplexed stream's
    (``widget/room_mux.py``), per room."""
    item = _newest(items)
    if isinstance(item, Resync):
        try:
            item = await _read_room(rt, company_id, room_id, item)
        except Exception:  # the store is out: /readyz says so; the re-check tries again
            return None
    if item["version"] <= subscription.version:
        return None
    _sent(subscription, item)
    return _frame(item)


def _sent(subscription: Subscription, item: Message) -> None:
    """What a stream notes when a snapshot goes out: its version, and the delivery."""
    subscription.version = item["version"]
    metrics.stream_delivered(item.get(rooms.PUBLISHED_AT))  # (a stored read has none)


async def room_events(
    rt: Runtime, company_id: str, room_id: str, expires_at: int, last_event_id: str | None,
    wakeup: sse.Wakeup, held: AbstractContextManager[None] = nullcontext(),
) -> AsyncGenerator[bytes, None]:
    """The stream's frames, until its token expires, it reaches its maximum age, its
    broker closes or ``wakeup`` ends. It waits on ``wakeup`` alone, which its
    subscription sets. ``held`` holds its place under the stream caps (entered first:
    a stream over a cap is refused before anything is sent)."""
    loop = asyncio.get_running_loop()
    ping = rt.settings.sse_ping
    next_ping = loop.time() + ping
    ends_at = sse.ends_at(rt.settings.stream_max_age)
    room = (company_id, room_id)
    # The gauge also goes down when the client goes away (the generator is closed).
    with held, metrics.OPEN_STREAMS.track_inprogress():
        async with rt.broker.subscribe(room_channel(company_id, room_id), wakeup.set) as subscription:
            recheck = Recheck.of(rt) if rt.broker.may_lose_messages and rt.settings.stream_recheck else None
            subscription.version, first = await first_frame(rt, company_id, room_id, last_event_id)
            if recheck is not None:
                recheck.watch(room, subscription)

            def send_now(message: Message) -> bool:
                """A newer snapshot, written from the fan-out while this waits."""
                if message["version"] <= subscription.version or not wakeup.write(_frame(message)):
                    return False  # as drained: catch_up decides
                _sent(subscription, message)
                return True

            try:
                yield first
                del first  # an idle stream keeps nothing it sent (thousands of them)
                subscription.send_now = send_now
                while True:
                    remaining = (expires_at - rt.now()) / 1_000_000
                    if remaining <= 0:
                        yield TOKEN_EXPIRED
                        return
                    now = loop.time()
                    if now >= ends_at:
                        return
                    if now >= next_ping:
                        yield sse.PING
                        next_ping = now + ping
                    await wakeup.wait(min(now + remaining, next_ping, ends_at))
                    if wakeup.ended:  # the client went away, or the server is shutting down
                        return
                    items = subscription.drain()
                    if not items:
                        if subscription.closed:  # its broker closed (app shutdown)
                            return
                        continue  # the ping's, the token's or the age's time: checked above
                    frame = await catch_up(rt, company_id, room_id, subscription, items)
                    if frame is not None:
                        yield frame
            finally:
                if recheck is not None:
                    recheck.unwatch(room, subscription)


def _open(scope: Scope, wakeup: sse.Wakeup) -> AsyncGenerator[bytes, None]:
    request = Request(scope)
    claims = authorize(request)  # refused: answered as any route's error, before the stream starts
    rt: Runtime = request.app.state.runtime
    last_event_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    held = request.app.state.stream_limits.held(claims)
    return room_events(rt, claims["company"], claims["room_id"], claims["exp"], last_event_id, wakeup, held)


# An ASGI app as the endpoint, not a request → response function: Starlette would wrap
# that in a Request, closures and frames of its own, alive as long as the stream. The
# app runs it outside Starlette's middleware and router too (``widget/app.py``), so it
# answers its refusals (a bad token) itself, as the app's handlers would.
route = Route("/embed/rooms/{room_id}/events", sse.EventStream(_open, answer_exception), methods=["GET"])
