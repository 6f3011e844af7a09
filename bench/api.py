"""Record-API figures: bot deal creates (sequential and 32 concurrent clients), the SQL
a create costs with and without an ``Idempotency-Key``, and create → SSE event.

Each figure's baseline is ``bench/baselines/minimal_api.py`` (the same HTTP call done as
simply as it can be), run in the same process set-up on the same stack's database.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench import load
from bench.baselines.minimal_api import INSERT_PG, INSERT_SQLITE, SCHEMA, open_sqlite
from bench.report import Figure, median, percentile
from bench.server import Baseline, Server, baseline_database, settle, stack_env, start_baseline
from bench.sse import EventReader

MINIMAL = "bench.baselines.minimal_api"
CREATE_BODY = (b'{"name":"Bench deal","stage":"New","pipeline":"Sales","room_id":"%s-{n}",'
               b'"creator_flag":"bot","source":"wa"}')
IN_ROOM_BODY = b'{"name":"Bench deal %d","stage":"New","pipeline":"Sales","room_id":"%s","creator_flag":"bot","source":"wa"}'

METHODS = """
**Bot deal create (sequential).** One keep-alive connection from a client process of its
own (`bench/load.py`: raw asyncio streams under uvloop, requests prebuilt) sends
`POST /api/v1/deals` `{name, stage, pipeline, room_id, creator_flag: "bot", source: "wa"}`,
a new `room_id` each time, one after the other (50 warm-up, then 500); the latency is the
client's, from writing the request to reading the whole response. Baseline:
`bench/baselines/minimal_api.py`, a pure-ASGI app under uvicorn with the same loop and
HTTP parser, that parses the JSON and does one INSERT + COMMIT (SQLite: `sqlite3` inline,
WAL, `synchronous=NORMAL`; PostgreSQL: `asyncpg`, pool of 10). Context: the create's p50
against a bare INSERT + COMMIT loop on the same database, no HTTP (`sqlite3` / `asyncpg`).

**Creates/s, 32 clients.** The same client with 32 keep-alive connections, each sending
its next create as soon as the last one answered, 3,000 creates after 100 warm-up;
rate = creates / wall time. Closed like this, 32 requests are always in flight, so the
latency is 32 / rate: the p99 goal is measured open loop instead, the same 32
connections offering 300 creates/s (request i due at i / 300 s, its latency counted from
then), 10 s of them. Same baseline. Each phase
starts once the server is idle (its embedded worker done with the previous phase's
outbox rows, waited for up to 60 s; the note says how long it stayed busy after the
burst). Every
load phase stops sending after 12 s, so a slow server gets fewer samples (n= in the
note) and the run stays bounded.

**SQL per create, with and without `Idempotency-Key`.** Our app in the bench process
(`widget.app.create_app` under uvicorn in a thread, `tests/support.LiveServer`, no
embedded worker), with SQLAlchemy `before_cursor_execute` and `commit` listeners on its
engine: statements are what reaches the driver's cursor (`BEGIN` included; `COMMIT` is the
driver's `commit()`, counted apart). Averaged over 20 creates each, after 5 warm-up.

**Create → SSE event.** In one process (one clock): a raw-socket SSE reader holds
`GET /embed/rooms/{room}/events?token=…` open and has read the first snapshot; a raw
keep-alive connection POSTs a bot deal into that room; the time is from just before the
POST is written to the moment the `event: room` with the new version is read. 200
sequential samples after 10 warm-up, 20 ms apart (latency at a light load; the load
figures above cover bursts), measured first, on an idle server. Baseline: the minimal app's
`GET /rooms/{room}/events`, a raw-ASGI stream fed by an in-process fan-out of its inserts.
"""

CREATE_P50_GOAL_MS = 4.0
RATE_GOAL = 300.0
P99_GOAL_MS = 50.0
EVENT_P95_GOAL_MS = 5.0
DRAIN_TIMEOUT = 60.0  # seconds to wait for the server to go idle after a burst of creates
EVENT_PAUSE = 0.02  # seconds between create → event samples: latency at a light load


def figures(server: Server, quick: bool) -> list[Figure]:
    sizes = Sizes(quick)
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp_name:
        tmp = Path(tmp_name)
        with start_baseline(MINIMAL, tmp / "minimal", BASELINE_DATABASE=baseline_database(server.stack, tmp)) as minimal:
            base = Measured.of(minimal, "/deals", {}, "/rooms/{room}/events", sizes, lambda room: None)
        ours = Measured.of(server, "/api/v1/deals", server.headers, "/embed/rooms/{room}/events?token={token}",
                           sizes, server.mint_token)
        floor_us = insert_floor_us(server.stack, tmp, sizes.sequential)
        counts = statement_counts(server.stack, tmp / "counted", sizes.counted)
    return [
        Figure("bot deal create, sequential: p50", "ms", ours.sequential.p50, base.sequential.p50,
               "minimal ASGI + 1 INSERT", f"≤ {CREATE_P50_GOAL_MS:g} ms", ours.sequential.p50 <= CREATE_P50_GOAL_MS,
               f"p95 {ours.sequential.p(0.95):.2f} ms vs {base.sequential.p(0.95):.2f} ms; "
               f"n={len(ours.sequential.latencies_ms)}"),
        Figure("bot deal create p50 vs a bare INSERT + COMMIT (no HTTP)", "µs", ours.sequential.p50 * 1000, floor_us,
               "sqlite3 loop" if server.stack == "sqlite" else "asyncpg loop", "", None, "context: the store's floor"),
        Figure("creates/s, 32 concurrent clients", "/s", ours.concurrent.rate, base.concurrent.rate,
               "minimal ASGI + 1 INSERT", f"≥ {RATE_GOAL:g}/s", ours.concurrent.rate >= RATE_GOAL,
               f"n={len(ours.concurrent.latencies_ms)}; afterwards busy {ours.drained_s:.1f} s "
               f"(the embedded worker on the burst's outbox rows; the baseline {base.drained_s:.1f} s)"),
        Figure(f"create latency p99, 32 clients offering {RATE_GOAL:g} creates/s", "ms", ours.paced.p(0.99),
               base.paced.p(0.99), "minimal ASGI + 1 INSERT", f"≤ {P99_GOAL_MS:g} ms",
               ours.paced.p(0.99) <= P99_GOAL_MS,
               f"p50 {ours.paced.p50:.1f} ms vs {base.paced.p50:.1f} ms; achieved {ours.paced.rate:.0f}/s; "
               f"closed loop (32 always in flight, latency = 32 / rate): p99 {ours.concurrent.p(0.99):.0f} ms "
               f"vs {base.concurrent.p(0.99):.0f} ms"),
        *counts,
        Figure("bot deal create → SSE event: p95", "ms", percentile(ours.event_ms, 0.95),
               percentile(base.event_ms, 0.95), "minimal ASGI stream", f"≤ {EVENT_P95_GOAL_MS:g} ms",
               percentile(ours.event_ms, 0.95) <= EVENT_P95_GOAL_MS,
               f"p50 {percentile(ours.event_ms, 0.5):.2f} ms vs {percentile(base.event_ms, 0.5):.2f} ms; "
               f"n={len(ours.event_ms)}"),
    ]


class Sizes:
    """Samples per figure; a load phase also stops after ``seconds`` (fewer samples
    from a slow server, shown as n=)."""

    def __init__(self, quick: bool) -> None:
        self.sequential, self.sequential_warmup = (100, 20) if quick else (500, 50)
        self.concurrent, self.concurrent_warmup = (600, 50) if quick else (3000, 100)
        self.paced = int(RATE_GOAL * (3 if quick else 10))  # seconds at the goal rate
        self.seconds = 3.0 if quick else 12.0
        self.events, self.events_warmup = (30, 5) if quick else (200, 10)
        self.counted = 10 if quick else 20
        self.clients = 32


class Measured:
    """One server's create and create → event measurements, each phase started with
    the server idle (the embedded worker done with the last phase's outbox rows)."""

    def __init__(self, event_ms: list[float], sequential: load.LoadResult, concurrent: load.LoadResult,
                 paced: load.LoadResult, drained_s: float) -> None:
        self.event_ms, self.sequential, self.concurrent, self.paced = event_ms, sequential, concurrent, paced
        self.drained_s = drained_s

    @classmethod
    def of(cls, target: Server | Baseline, create_path: str, headers: dict[str, str], events_path: str,
           sizes: Sizes, token: object) -> Measured:
        room = "bench-events"
        stream_path = events_path.format(room=room, token=token(room))  # type: ignore[operator]
        settle(target.pid)
        event_ms = asyncio.run(create_to_event(target.url, create_path, headers, stream_path, room, sizes))
        settle(target.pid, DRAIN_TIMEOUT)
        sequential = load.run(target.url, "POST", create_path, headers, body=CREATE_BODY % b"seq",
                              requests=sizes.sequential, warmup=sizes.sequential_warmup,
                              seconds=sizes.seconds).check(201)
        settle(target.pid, DRAIN_TIMEOUT)
        concurrent = load.run(target.url, "POST", create_path, headers, body=CREATE_BODY % b"load",
                              concurrency=sizes.clients, requests=sizes.concurrent,
                              warmup=sizes.concurrent_warmup, seconds=sizes.seconds).check(201)
        drained_s = settle(target.pid, DRAIN_TIMEOUT)
        paced = load.run(target.url, "POST", create_path, headers, body=CREATE_BODY % b"paced",
                         concurrency=sizes.clients, requests=sizes.paced, warmup=sizes.concurrent_warmup,
                         seconds=sizes.seconds, rate=RATE_GOAL).check(201)
        settle(target.pid, DRAIN_TIMEOUT)  # the next figures (bench.streams) start from an idle server too
        return cls(event_ms, sequential, concurrent, paced, drained_s)


async def create_to_event(url: str, create_path: str, headers: dict[str, str], stream_path: str, room: str,
                          sizes: Sizes) -> list[float]:
    """Milliseconds from writing a create into ``room`` to reading its ``event: room``."""
    reader = await EventReader.open(url, stream_path)
    poster = await load.Connection.open(url)
    try:
        version = int((await reader.next_room_event())["id"])
        samples = []
        for n in range(sizes.events_warmup + sizes.events):
            request = load.request_bytes("POST", url, create_path, headers, IN_ROOM_BODY % (n, room.encode()))
            started = time.perf_counter()
            (status, _), arrived = await asyncio.gather(poster.request(request), reader.until_version(version + 1))
            if status != 201:
                raise RuntimeError(f"create into {room} answered {status}")
            version += 1
            if n >= sizes.events_warmup:
                samples.append((arrived - started) * 1000)
            await asyncio.sleep(EVENT_PAUSE)
        return samples
    finally:
        poster.close()
        reader.close()


def floor_row(n: int) -> tuple[object, ...]:
    return (f"floor-{n}", "Bench deal", "New", "Sales", f"room-{n}", "bot", "wa", n)


def insert_floor_us(stack: str, tmp: Path, count: int) -> float:
    """Median µs of one INSERT + COMMIT of a deal row, straight to the database."""
    if stack != "sqlite":
        return asyncio.run(_asyncpg_floor_us(baseline_database(stack, tmp / "floor"), count))
    db = open_sqlite(str(tmp / "floor.db"))
    samples = []
    try:
        for n in range(count):
            started = time.perf_counter()
            db.execute("BEGIN")
            db.execute(INSERT_SQLITE, floor_row(n))
            db.execute("COMMIT")
            samples.append((time.perf_counter() - started) * 1_000_000)
    finally:
        db.close()
    return median(samples)


async def _asyncpg_floor_us(dsn: str, count: int) -> float:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    samples = []
    try:
        await conn.execute(SCHEMA)
        for n in range(count):
            started = time.perf_counter()
            await conn.execute(INSERT_PG, *floor_row(n))  # autocommitted: INSERT + COMMIT
            samples.append((time.perf_counter() - started) * 1_000_000)
    finally:
        await conn.close()
    return median(samples)


def statement_counts(stack: str, tmp: Path, count: int) -> list[Figure]:
    """SQL per bot deal create, without and with an ``Idempotency-Key``, counted on
    our app's engine in this process."""
    from bench.counting import count_creates

    urls = {k.removeprefix("WIDGET_").lower(): v for k, v in stack_env(stack, tmp / "data").items()}
    unkeyed, keyed = count_creates(tmp, urls, count)
    minimal = 2 if stack == "sqlite" else 1  # BEGIN + INSERT; asyncpg: one autocommitted INSERT
    return [
        Figure("SQL statements per bot deal create", "statements", unkeyed.statements, minimal,
               "minimal: " + ("BEGIN, INSERT" if stack == "sqlite" else "INSERT"), "", None,
               f"{unkeyed.commits:g} commit(s)"),
        Figure("SQL statements per keyed create (Idempotency-Key)", "statements", keyed.statements,
               unkeyed.statements, "the same create unkeyed", "≤ unkeyed + 1",
               keyed.statements <= unkeyed.statements + 1,
               f"+{keyed.statements - unkeyed.statements:g} statements"),
        Figure("commits per keyed create", "commits", keyed.commits, unkeyed.commits, "the same create unkeyed",
               "= unkeyed (one write transaction)", keyed.commits == unkeyed.commits),
    ]
