"""The SQL a create costs, counted where it runs: our app in this process (uvicorn in a
thread), with listeners on its SQLAlchemy engine."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine, event

from bench.inprocess import logs_to
from tests.support import LiveServer, make_settings, seed_company
from widget.app import create_app

BODY = {"name": "Counted deal", "stage": "New", "pipeline": "Sales", "creator_flag": "bot", "source": "wa"}
WARMUP = 5


@dataclass
class PerCreate:
    statements: float  # what reached the driver's cursor, BEGIN included
    commits: float
    sample: list[str]  # the statements of one create, for reading


class Counter:
    def __init__(self) -> None:
        self.statements: list[str] = []
        self.commits = 0

    def on_statement(self, conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        self.statements.append(" ".join(statement.split()))

    def on_commit(self, conn) -> None:  # type: ignore[no-untyped-def]
        self.commits += 1

    def reset(self) -> None:
        self.statements, self.commits = [], 0


def sync_engine(store: object) -> Engine:
    """The store's SQLAlchemy engine, where events are listened to (an async engine's
    ``sync_engine``)."""
    engine = store.db.engine  # type: ignore[attr-defined]
    return getattr(engine, "sync_engine", engine)


def count_creates(tmp: Path, urls: dict[str, str], count: int) -> tuple[PerCreate, PerCreate]:
    """Per bot deal create (each in a room of its own), averaged over ``count``: without
    an ``Idempotency-Key``, then with a new key each time. ``urls``: the stack's
    ``database_url`` / ``broker_url`` settings."""
    tmp.mkdir(parents=True, exist_ok=True)
    settings = make_settings(tmp, **urls)
    with logs_to(tmp / "counting.log"):
        tenant = seed_company(settings)
        application = create_app(settings)
        with LiveServer(application) as live, httpx.Client(base_url=live.url, headers=tenant.headers) as http:
            creates = Creates(http)
            counter = Counter()
            engine = sync_engine(application.state.runtime.store)
            event.listen(engine, "before_cursor_execute", counter.on_statement)
            event.listen(engine, "commit", counter.on_commit)
            try:
                return creates.counted(counter, count, keyed=False), creates.counted(counter, count, keyed=True)
            finally:
                event.remove(engine, "before_cursor_execute", counter.on_statement)
                event.remove(engine, "commit", counter.on_commit)


class Creates:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.rooms = itertools.count()

    def post(self, n: int, keyed: bool) -> None:
        for _ in range(n):
            room = f"counted-{next(self.rooms)}"
            headers = {"Idempotency-Key": f"key-{room}"} if keyed else {}
            self.http.post("/api/v1/deals", json={**BODY, "room_id": room}, headers=headers).raise_for_status()

    def counted(self, counter: Counter, count: int, keyed: bool) -> PerCreate:
        self.post(WARMUP, keyed)
        counter.reset()
        self.post(1, keyed)
        sample = list(counter.statements)
        self.post(count - 1, keyed)
        return PerCreate(len(counter.statements) / count, counter.commits / count, sample)
