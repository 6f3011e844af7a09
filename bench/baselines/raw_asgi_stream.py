"""Baseline (b) for the stream figures: the least an SSE endpoint under uvicorn can
be. Raw ASGI, one coroutine per stream (plus the task that waits for the client to
go), and an in-process dict room → the set of its streams' wake-ups.

- ``GET /embed/rooms/{room}/events``: the room's snapshot as ``id:/event: room/data:``,
  then the newest one after each change (a stream that fell behind skips versions,
  as ours does). The token is not checked, nothing is read from a store.
- ``POST /publish/{room}``: the change: the version goes up, the message is encoded
  once, every stream of the room is woken.
- ``GET /healthz``.

No pings: an idle stream costs nothing but its memory here.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import Message, Receive, Scope, Send

from bench.baselines.stream_rooms import serve, snapshot_json

EVENT_STREAM = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]


class Wakeup:
    """How a change reaches a stream waiting for it."""

    __slots__ = ("future", "gone")

    def __init__(self) -> None:
        self.future: asyncio.Future[None] | None = None
        self.gone = False

    def __call__(self) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(None)

    def client_gone(self, _: object) -> None:
        self.gone = True
        self()

    async def wait(self) -> None:
        self.future = asyncio.get_running_loop().create_future()
        await self.future


class Room:
    __slots__ = ("room_id", "version", "message", "streams")

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.streams: set[Wakeup] = set()
        self.version = 0
        self.change()

    def change(self) -> None:
        self.version += 1
        data = snapshot_json(self.room_id, self.version)
        self.message = f"id: {self.version}\nevent: room\ndata: {data}\n\n".encode()
        for wakeup in self.streams:
            wakeup()


rooms: dict[str, Room] = {}


def room(room_id: str) -> Room:
    found = rooms.get(room_id)
    if found is None:
        found = rooms[room_id] = Room(room_id)
    return found


async def until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def stream(shown_room: Room, receive: Receive, send: Send) -> None:
    wakeup = Wakeup()
    shown_room.streams.add(wakeup)
    watcher = asyncio.ensure_future(until_disconnect(receive))
    watcher.add_done_callback(wakeup.client_gone)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": EVENT_STREAM})
        shown = 0
        while not wakeup.gone:
            if shown_room.version > shown:
                shown = shown_room.version
                await send({"type": "http.response.body", "body": shown_room.message, "more_body": True})
            else:
                await wakeup.wait()
    finally:
        shown_room.streams.discard(wakeup)
        watcher.cancel()


async def respond(send: Send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message: Message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    path, method = scope["path"], scope["method"]
    if method == "GET" and path.startswith("/embed/rooms/") and path.endswith("/events"):
        await stream(room(path[len("/embed/rooms/"):-len("/events")]), receive, send)
    elif method == "POST" and path.startswith("/publish/"):
        changed = room(path[len("/publish/"):])
        changed.change()
        await respond(send, 200, {"version": changed.version})
    elif path == "/healthz":
        await respond(send, 200, {"status": "ok"})
    else:
        await respond(send, 404, {"error": "not found"})


if __name__ == "__main__":
    serve(app)
