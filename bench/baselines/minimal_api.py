"""The floor for the record API: the same HTTP calls done as simply as they can be.

A pure ASGI app (no framework) under uvicorn with the settings ``widget serve`` uses
(uvloop, httptools, no access log):

- ``POST /deals``: parse the JSON body, one INSERT + COMMIT, answer 201 with the row
  as JSON. SQLite: ``sqlite3`` called inline on the event loop (WAL,
  ``synchronous=NORMAL``, as our store sets them). PostgreSQL: ``asyncpg``, a pool of
  10 connections (our engine's pool size), one autocommitted INSERT.
- ``GET /rooms/{room}/events``: ``text/event-stream``; a first event, then one per
  deal inserted into that room, fanned out in-process to the room's subscribers.
- ``GET /rooms/{room}``: a static page whose inline script follows that stream and
  writes each version into ``#widget[data-version]`` (the browser figures' floor).

No authentication, validation, room slots, timeline, outbox or logging: what is left
is the HTTP server, the JSON and one write, which any implementation pays.

Run: ``BASELINE_DATABASE=<sqlite path | postgresql://…> python -m bench.baselines.minimal_api --port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import time
import uuid
from collections import defaultdict
from typing import Any

SCHEMA = ("CREATE TABLE IF NOT EXISTS bench_deals (id TEXT PRIMARY KEY, name TEXT NOT NULL, stage TEXT NOT NULL, "
          "pipeline TEXT NOT NULL, room_id TEXT, creator_flag TEXT, source TEXT, created_at BIGINT NOT NULL)")
INSERT_SQLITE = "INSERT INTO bench_deals VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_PG = "INSERT INTO bench_deals VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
EVENT_STREAM = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]
PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>Room</title></head><body>
<div id="widget" data-version="0" data-state="empty">No deal yet</div>
<script>
const root = document.getElementById("widget");
new EventSource(location.pathname + "/events").addEventListener("room", (message) => {
  const room = JSON.parse(message.data);
  root.textContent = room.deal ? room.deal.name : "No deal yet";
  root.dataset.state = room.deal ? "ready" : "empty";
  root.dataset.version = room.version;
});
</script></body></html>"""


def open_sqlite(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(SCHEMA)
    return db


class MinimalApi:
    def __init__(self, database: str) -> None:
        self.database = database
        self.sqlite: sqlite3.Connection | None = None
        self.pool: Any = None
        self.versions: dict[str, int] = defaultdict(int)
        self.subscribers: dict[str, set[asyncio.Queue[bytes | None]]] = defaultdict(set)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["method"] == "POST" and scope["path"] == "/deals":
            await self.create(receive, send)
        elif scope["method"] == "GET" and scope["path"].startswith("/rooms/") and scope["path"].endswith("/events"):
            await self.stream(scope["path"][len("/rooms/"):-len("/events")], receive, send)
        elif scope["method"] == "GET" and scope["path"].startswith("/rooms/"):
            await respond(send, 200, PAGE, b"text/html; charset=utf-8")
        else:
            await respond(send, 404 if scope["path"] != "/healthz" else 200, b"{}")

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.database.startswith("postgresql://"):
                    import asyncpg

                    self.pool = await asyncpg.create_pool(self.database, min_size=10, max_size=10)
                    await self.pool.execute(SCHEMA)
                else:
                    self.sqlite = open_sqlite(self.database)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                if self.sqlite is not None:
                    self.sqlite.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def create(self, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        fields = json.loads(body)
        row = {"id": uuid.uuid4().hex, "name": fields["name"], "stage": fields["stage"],
               "pipeline": fields["pipeline"], "room_id": fields.get("room_id"),
               "creator_flag": fields.get("creator_flag"), "source": fields.get("source"),
               "created_at": time.time_ns() // 1000}
        values = tuple(row.values())
        if self.pool is not None:
            await self.pool.execute(INSERT_PG, *values)
        else:
            assert self.sqlite is not None
            self.sqlite.execute("BEGIN")
            self.sqlite.execute(INSERT_SQLITE, values)
            self.sqlite.execute("COMMIT")
        await respond(send, 201, json.dumps(row).encode())
        if row["room_id"]:
            self.publish(row["room_id"], row)

    def publish(self, room_id: str, row: dict) -> None:
        self.versions[room_id] += 1
        event = self.event(room_id, row)
        for queue in self.subscribers.get(room_id, ()):
            queue.put_nowait(event)

    def event(self, room_id: str, deal: dict | None) -> bytes:
        version = self.versions[room_id]
        data = json.dumps({"room_id": room_id, "version": version, "deal": deal}, separators=(",", ":"))
        return f"id: {version}\r\nevent: room\r\ndata: {data}\r\n\r\n".encode()

    async def stream(self, room_id: str, receive: Any, send: Any) -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            queue.put_nowait(None)

        watcher = asyncio.ensure_future(until_disconnect())
        self.subscribers[room_id].add(queue)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": EVENT_STREAM})
            await send({"type": "http.response.body", "body": self.event(room_id, None), "more_body": True})
            while (event := await queue.get()) is not None:
                await send({"type": "http.response.body", "body": event, "more_body": True})
        finally:
            self.subscribers[room_id].discard(queue)
            watcher.cancel()


async def respond(send: Any, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # As widget/cli.py's cmd_serve runs uvicorn (loop and http "auto": uvloop, httptools).
    uvicorn.run(MinimalApi(os.environ["BASELINE_DATABASE"]), host="127.0.0.1", port=args.port,
                access_log=False, log_config=None, timeout_graceful_shutdown=5, proxy_headers=False)


if __name__ == "__main__":
    main()
