"""PostgreSQL for real: several OS processes on one database.

- Writers in 3 processes (each with several connections) creating bot deals and
  tickets in one room at once: room versions dense and exact, the room shows the
  newest of each, ticket numbers unique and in creation order, no lost outbox row,
  timeline entry or event.
- ``widget worker`` in 3 processes claiming one outbox (``FOR UPDATE SKIP LOCKED``):
  every row run once, by more than one process.
- Two processes migrating one empty database at the same moment (the advisory lock):
  both succeed, the schema is at head once; without the lock the same race breaks.
- A store that cannot be opened says why in one line (``StoreUnavailable``); those
  that need no server run on both stacks.

Processes start together on a barrier: each gets ready (runtime open, connections
made), touches ``ready-<n>``, then waits for the test's ``go`` file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy import func, select, text

from tests.helpers import assert_error, deal
from tests.support import SCALE, head_revision, make_settings, schema_revision, seed_company, serving_http, stack_env
from tests.worker_support import bot_record, entry, worker_runtime
from widget.broker import room_channel
from widget.errors import Invalid
from widget.runtime import Runtime, open_runtime, system_clock
from widget.store import Store, StoreUnavailable, schema

CHECKOUT = Path(__file__).resolve().parent.parent
scale_only = pytest.mark.scale_only("needs the session's PostgreSQL server")

# -- the barrier ------------------------------------------------------------------

BARRIER = """
import asyncio, os, sys
from pathlib import Path

async def barrier(n: int) -> None:
    go = Path(os.environ["TEST_GO"])
    (go.parent / f"ready-{n}").touch()
    while not go.exists():
        await asyncio.sleep(0.002)
"""


def start_together(tmp_path: Path, script: str, args: list[list[str]], env: dict[str, str],
                   timeout: float = 60) -> list[str]:
    """Run ``script`` once per argument list, release them at once, return their
    stdouts (each must exit 0)."""
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIDGET_")} | env | {
        "TEST_GO": str(go), "PYTHONPATH": str(CHECKOUT)}
    logs = [tmp_path / f"process-{n}.log" for n in range(len(args))]
    processes = []
    for n, argv in enumerate(args):
        with open(logs[n], "wb") as log:
            processes.append(subprocess.Popen([sys.executable, "-c", BARRIER + script, str(n), *argv],
                                              cwd=CHECKOUT, env=env, stdout=subprocess.PIPE, stderr=log))
    try:
        deadline = time.monotonic() + timeout
        while not all((tmp_path / f"ready-{n}").exists() for n in range(len(args))):
            for n, p in enumerate(processes):
                assert p.poll() is None, logs[n].read_text()
            assert time.monotonic() < deadline, "the processes did not get ready"
            time.sleep(0.01)
        go.touch()
        outputs = []
        for n, p in enumerate(processes):
            out, _ = p.communicate(timeout=timeout)
            assert p.returncode == 0, logs[n].read_text()
            outputs.append(out.decode())
        return outputs
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
            assert p.stdout is not None
            p.stdout.close()


# -- writers ----------------------------------------------------------------------

WRITER = """
import json
from widget import records
from widget.models import DealIn, TicketIn
from widget.runtime import open_runtime
from widget.settings import load_settings

async def main(n: int, count: int) -> None:
    async with open_runtime(load_settings(), migrate=False) as rt:
        company = await rt.store.get_company("acme")
        versions = []
        create_record = rt.store.create_record

        async def recording(*args, **kwargs):  # the version each create gave the room
            change = await create_record(*args, **kwargs)
            versions.append(change.room.version if change.room is not None else None)
            return change

        rt.store.create_record = recording
        await rt.store.ping()
        await barrier(n)
        made = await asyncio.gather(*(
            records.create(rt, kind, company, body)
            for i in range(count)
            for kind, body in (
                ("deal", DealIn(name=f"deal {n}.{i}", stage="New", pipeline="P", room_id="busy",
                                creator_flag="bot")),
                ("ticket", TicketIn(name=f"ticket {n}.{i}", status="Open", room_id="busy",
                                    creator_flag="agentic_ai")),
            )
        ))
        print(json.dumps({"records": made, "versions": versions}))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


@scale_only
async def test_writers_in_three_processes_keep_one_room_exact(tmp_path: Path) -> None:
    processes, each = 3, 10  # deals and as many tickets per process, all in one room
    settings = make_settings(tmp_path)
    seed_company(settings)
    async with open_runtime(settings, migrate=False) as rt:  # a company notified by Omnichannel
        await rt.store.update_company("acme", {"omnichannel_url": "http://omni.test/hook", "omnichannel_secret": "s"})
        async with rt.broker.subscribe(room_channel("acme", "busy")) as subscription:
            outputs = await asyncio.to_thread(
                start_together, tmp_path, WRITER, [[str(each)]] * processes,
                stack_env(tmp_path / "data") | {"WIDGET_CHAT_PANEL_URL": str(settings.chat_panel_url)})
            published = []
            while True:  # what reached this process: all of it on Redis, nothing on memory://
                try:
                    published.append(await asyncio.wait_for(subscription.get(), 0.3))
                except TimeoutError:
                    break
        results = [json.loads(out) for out in outputs]
        made = [record for result in results for record in result["records"]]
        total = processes * each * 2
        # Every create took the room once: versions 1..total, none twice, none skipped.
        versions = sorted(v for result in results for v in result["versions"])
        assert versions == list(range(1, total + 1))
        assert all(result["versions"] for result in results)
        # created_at strictly increasing per company: no two records share one.
        assert len({r["created_at"] for r in made}) == total
        deals = [r for r in made if "unique_id" not in r]
        tickets = [r for r in made if "unique_id" in r]
        newest = {kind: max(rows, key=lambda r: (r["created_at"], r["id"]))
                  for kind, rows in (("deal", deals), ("ticket", tickets))}
        room = await rt.store.room_state("acme", "busy")
        assert room.version == total
        assert room.deal is not None and room.deal["id"] == newest["deal"]["id"]
        assert room.ticket is not None and room.ticket["id"] == newest["ticket"]["id"]
        # Ticket numbers: unique, dense, in creation order.
        numbers = [r["unique_id"] for r in sorted(tickets, key=lambda r: r["created_at"])]
        assert numbers == [f"TCK-{n:06d}" for n in range(1, len(tickets) + 1)]
        # The outbox: a chat-history fetch and a created notification per record, once.
        rows = await rt.store.outbox_rows("acme")
        assert Counter((row["topic"], json.loads(row["payload"])["record_id"]) for row in rows) == {
            (topic, r["id"]): 1 for r in made for topic in ("chat_history", "notify.created")}
        for record in made:
            kind = "ticket" if "unique_id" in record else "deal"
            assert len(await rt.store.timeline(kind, record["id"])) == 1
        a = schema.analytics_events.c
        counts = await rt.store.db.read(lambda conn: dict(conn.execute(select(a.name, func.count()).group_by(a.name)).all()))
        assert counts == {"bot_deal_created": processes * each, "ai_ticket_created": processes * each}
        if published:  # a shared broker: the newest snapshot reached this process too
            last = max(published, key=lambda m: m["version"])
            assert last["version"] == total
            assert last["deal"]["id"] == newest["deal"]["id"] and last["ticket"]["id"] == newest["ticket"]["id"]


# -- workers ----------------------------------------------------------------------

class ChatPanel(BaseHTTPRequestHandler):
    """A real Chat Panel answering in 20 ms with one message, counting the asks per room."""

    asked: Counter[str] = Counter()
    lock = threading.Lock()

    def do_GET(self) -> None:
        room = unquote(self.path.split("?")[0].split("/")[2])
        with self.lock:
            self.asked[room] += 1
        time.sleep(0.02)
        body = json.dumps({"messages": [{"sender_type": "customer", "text": "hi",
                                         "sent_at": "2026-11-25T08:59:00Z"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def chat_panel() -> Iterator[str]:
    ChatPanel.asked = Counter()
    with serving_http(ChatPanel) as url:
        yield url


WORKER = """
from widget import worker
from widget.runtime import open_runtime
from widget.settings import load_settings

async def main(n: int) -> None:
    stop = asyncio.Event()
    runs = 0
    chat_history = worker.HANDLERS["chat_history"]

    async def counting(rt, job):
        nonlocal runs
        runs += 1
        return await chat_history.run(rt, job)

    async def until_done(rt) -> None:  # every row finished (by anyone): stop
        while await rt.store.outbox_backlog():
            await asyncio.sleep(0.05)
        stop.set()

    async with open_runtime(load_settings(), migrate=False) as rt:
        handlers = {"chat_history": worker.Handler(counting, chat_history.give_up)}
        await rt.store.ping()
        await barrier(n)
        await asyncio.gather(until_done(rt), worker.run_worker(rt, stop, handlers=handlers, poll_interval=0.01,
                                                               batch_size=3))
    print(runs)

asyncio.run(main(int(sys.argv[1])))
"""


@scale_only
async def test_workers_in_three_processes_run_every_row_once(tmp_path: Path, chat_panel: str) -> None:
    rooms = 45
    async with worker_runtime(tmp_path, system_clock, chat_panel_url=chat_panel) as rt:
        ids = [await bot_record(rt, f"room-{n}") for n in range(rooms)]
    env = stack_env(tmp_path / "data") | {"WIDGET_CHAT_PANEL_URL": chat_panel,
                                          "WIDGET_SECRET_KEYS": "test-key-0123456789abcdef"}
    runs = [int(out) for out in await asyncio.to_thread(start_together, tmp_path, WORKER, [[]] * 3, env)]
    assert ChatPanel.asked == {f"room-{n}": 1 for n in range(rooms)}
    assert sum(runs) == rooms and sum(1 for r in runs if r) >= 2, runs  # shared out, each row once
    async with worker_runtime(tmp_path, system_clock) as rt:
        rows = await rt.store.outbox_rows("acme")
        assert {(row["attempts"], row["done_at"] is not None) for row in rows} == {(1, True)}
        for record_id in ids:
            assert (await entry(rt, record_id))["chat_preview_status"] == "ok"


# -- migrations ---------------------------------------------------------------------

MIGRATOR = """
from sqlalchemy import text
from widget.store import Store
from widget.store.engine import alembic_config, command

async def main(n: int, url: str, locked: str) -> None:
    store = Store(url)
    try:
        await store.ping()  # connected: the race starts at the migration itself
        await barrier(n)
        if locked == "locked":
            await store.migrate()
        else:  # the same upgrade without the advisory lock (the control)
            def upgrade(sync_conn):
                cfg = alembic_config()
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, "head")
            await store.db.write(upgrade)
    finally:
        await store.close()

asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
"""


def migrate_at_once(tmp_path: Path, name: str, how: str) -> tuple[str, str | None]:
    """Two processes migrate one new, empty database at the same moment: the
    database's URL and the first failure (None if both succeeded)."""
    from tests import postgres_support

    url = postgres_support.database_url(tmp_path / f"data-{name}", empty=True)
    (tmp_path / name).mkdir()
    try:
        start_together(tmp_path / name, MIGRATOR, [[url, how]] * 2, {})
    except AssertionError as exc:
        return url, str(exc)
    return url, None


@scale_only
def test_two_processes_migrating_at_once_on_postgresql(tmp_path: Path) -> None:
    from tests import postgres_support

    for round_ in range(2):
        url, failure = migrate_at_once(tmp_path, f"locked-{round_}", "locked")
        assert failure is None, failure
        assert schema_revision(tmp_path / f"data-locked-{round_}") == head_revision()
        assert postgres_support.fetch(url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    # The control: without the lock the same race breaks (a table or the version row
    # created twice), so the rounds above did race.
    _, failure = migrate_at_once(tmp_path, "unlocked", "unlocked")
    assert failure is not None and ("already exists" in failure or "duplicate key" in failure), failure


# -- a store that cannot be opened ----------------------------------------------------

def one_line(exc: StoreUnavailable) -> str:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message, message
    return message


@pytest.mark.parametrize("url", [
    "postgresql+asyncpg://u:hunter2@127.0.0.1:notaport/db",
    "postgresql+asyncpg://u:hunter2@[::1/db",
])
def test_a_malformed_url_is_one_line_without_the_password(url: str) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        Store(url)
    assert "hunter2" not in one_line(caught.value) and "invalid database URL" in str(caught.value)


async def test_an_unreachable_server_is_one_line_naming_it(tmp_path: Path) -> None:
    from tests.support import free_port

    port = free_port()  # nothing listens there
    settings = make_settings(tmp_path, database_url=f"postgresql+asyncpg://u:hunter2@127.0.0.1:{port}/db")
    with pytest.raises(StoreUnavailable) as caught:
        async with open_runtime(settings):
            pass
    message = one_line(caught.value)
    assert f"127.0.0.1:{port}/db" in message and "cannot connect" in message and "hunter2" not in message


def test_without_the_scale_extra_postgresql_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from widget.store import engine

    real = importlib.util.find_spec
    monkeypatch.setattr(engine.importlib.util, "find_spec", lambda name, *a: None if name == "asyncpg" else real(name, *a))
    with pytest.raises(StoreUnavailable) as caught:
        Store("postgresql+asyncpg://u@localhost/db")
    assert "widget[scale]" in one_line(caught.value)


@scale_only
async def test_a_missing_database_or_role_is_one_line(tmp_path: Path) -> None:
    url = make_settings(tmp_path).database_url
    base = url.rsplit("/", 1)[0]
    for wrong, says in ((f"{base}/no_such_db", 'database "no_such_db" does not exist'),
                        (base.replace("postgres@", "nobody:hunter2@") + "/postgres", 'role "nobody" does not exist')):
        store = Store(wrong)
        try:
            with pytest.raises(StoreUnavailable) as caught:
                await store.migrate()
        finally:
            await store.close()
        message = one_line(caught.value)
        assert says in message and "hunter2" not in message, message


def test_the_stack_under_test(tmp_path: Path) -> None:
    """The scale run really is on PostgreSQL (and the embedded one on SQLite)."""
    settings = make_settings(tmp_path)
    assert settings.db_url.startswith("postgresql+asyncpg://" if SCALE else "sqlite+aiosqlite://")


# -- U+0000 ---------------------------------------------------------------------------

async def test_text_with_nul_is_refused_or_not_found_alike_on_both_stacks(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    """PostgreSQL text cannot hold U+0000 (SQLite's can): the document says no text
    field takes it, the API refuses it (422) and a lookup by it finds nothing (404),
    on both stacks alike, never a 5xx. The store refuses it too, behind the API."""
    error = assert_error(await api.post("/api/v1/deals", json=deal(name="a\x00b", source="\x00")),
                         422, "validation_failed", {"name", "source"})
    assert all("NUL" in d["message"] for d in error["details"]), error
    assert_error(await api.post("/api/v1/contacts", json={"name": "Budi", "phone": "\x00"}),
                 422, "validation_failed", {"phone"})
    assert_error(await api.post("/api/v1/deals", json=deal(contact_id="c\x00", creator_flag="b\x00")),
                 422, "validation_failed", {"contact_id", "creator_flag"})
    record_id = (await api.post("/api/v1/deals", json=deal())).json()["id"]
    assert_error(await api.patch(f"/api/v1/deals/{record_id}", json={"stage": "\x00"}),
                 422, "validation_failed", {"stage"})
    for method in ("GET", "PATCH", "DELETE"):
        response = await api.request(method, "/api/v1/deals/%00", json={"stage": "x"} if method == "PATCH" else None)
        assert_error(response, 404, "not_found")
    assert (await api.get(f"/api/v1/deals/{record_id}")).json()["stage"] == "New"
    with pytest.raises(Invalid) as refused:  # the store's own guard
        await runtime.store.create_contact({"id": "ct_1", "company_id": "acme", "name": "\x00", "phone": None,
                                            "email": None, "created_at": 0})
    assert refused.value.details == [{"field": "name", "message": "must not contain the NUL character (U+0000)"}]


# -- stale pooled connections ------------------------------------------------------

@scale_only
async def test_pooled_connections_the_server_dropped_cost_no_read_and_at_most_one_write(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    """What a PostgreSQL restart does to the pool (without a pre-ping per checkout): the
    server ends every pooled connection; a read meeting one is tried again on a fresh
    one, a write answers 503 at most once, and everything after that works."""
    created = await asyncio.gather(*(  # several connections in the pool
        api.post("/api/v1/deals", json={"name": f"d{n}", "stage": "New", "pipeline": "P"}) for n in range(6)))
    assert {r.status_code for r in created} == {201}
    dropped = await runtime.store.db.write(lambda conn: conn.execute(text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE pid <> pg_backend_pid() AND datname = current_database()"
    )).scalar_one())
    assert dropped >= 1
    for _ in range(6):
        assert (await api.get("/api/v1/rooms/r-1")).status_code == 200
    statuses = [(await api.post("/api/v1/deals", json={"name": "after", "stage": "New", "pipeline": "P"})).status_code
                for _ in range(6)]
    assert statuses.count(503) <= 1 and statuses[-1] == 201, statuses
