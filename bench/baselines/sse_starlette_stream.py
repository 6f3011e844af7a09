"""Baseline (a) for the stream figures: sse-starlette as its README uses it, and
nothing of ours. A Starlette app; each stream is an ``EventSourceResponse`` over an
``asyncio.Queue`` of its own, and a change is fanned out in-process to the queues of
its room.

- ``GET /embed/rooms/{room_id}/events``: the room's snapshot, then one message per
  change (``id:/event: room/data:``); sse-starlette's ping every 15 s (our
  ``WIDGET_SSE_PING`` default). The token is not checked, nothing is read from a store.
- ``POST /publish/{room_id}``: the change: the version goes up, the snapshot is
  encoded once and put in every queue of the room.
- ``GET /healthz``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.baselines.stream_rooms import serve, snapshot_json

Change = tuple[int, str]  # (version, snapshot JSON)


class Room:
    __slots__ = ("room_id", "version", "data", "queues")

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.queues: set[asyncio.Queue[Change]] = set()
        self.version = 0
        self.change()

    def change(self) -> None:
        self.version += 1
        self.data = snapshot_json(self.room_id, self.version)
        for queue in self.queues:
            queue.put_nowait((self.version, self.data))


rooms: dict[str, Room] = {}


def room(room_id: str) -> Room:
    found = rooms.get(room_id)
    if found is None:
        found = rooms[room_id] = Room(room_id)
    return found


async def changes(shown_room: Room) -> AsyncIterator[ServerSentEvent]:
    queue: asyncio.Queue[Change] = asyncio.Queue()
    shown_room.queues.add(queue)
    try:
        yield ServerSentEvent(data=shown_room.data, event="room", id=str(shown_room.version))
        while True:
            version, data = await queue.get()
            yield ServerSentEvent(data=data, event="room", id=str(version))
    finally:
        shown_room.queues.discard(queue)


async def events(request: Request) -> Response:
    return EventSourceResponse(changes(room(request.path_params["room_id"])), headers={"Cache-Control": "no-store"})


async def publish(request: Request) -> Response:
    changed = room(request.path_params["room_id"])
    changed.change()
    return JSONResponse({"version": changed.version})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[
    Route("/embed/rooms/{room_id}/events", events, methods=["GET"]),
    Route("/publish/{room_id}", publish, methods=["POST"]),
    Route("/healthz", healthz),
])

if __name__ == "__main__":
    serve(app)
