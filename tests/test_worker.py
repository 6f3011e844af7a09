"""The outbox worker: claims with a lease, retries with backoff and jitter, gives up
after a bounded number of attempts, never runs a row on two loops at once, leaves
topics it has no handler for alone, and loses nothing when stopped or killed.

Loop mechanics use a handler written here (the handler registry is the worker's
plug-in point); the rest runs the real chat-history handler against a fake Chat Panel."""

from __future__ import annotations

import asyncio
import json
import os
import signal
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

from tests.support import FakeClock, serving_http, stack_env
from tests.worker_support import (
    bot_record, drain, entry, outbox, preview, stored_events, wait_until, worker_runtime,
)
from widget.runtime import Runtime, system_clock
from widget.worker import Fail, Handler, Job, Retry, nudge, run_worker
from widget.worker.loop import LEASE, SECOND

MESSAGES = {"messages": [{"sender_type": "customer", "text": "hi", "sent_at": "2026-11-25T08:59:00Z"}]}


def room_of(request: httpx.Request) -> str:
    return unquote(request.url.raw_path.decode().split("/")[2])


async def test_a_claim_leases_due_rows_oldest_first_and_fences_outcomes(tmp_path: Path, clock: FakeClock) -> None:
    async with worker_runtime(tmp_path, clock) as rt:
        for n in range(3):
            await bot_record(rt, f"room-{n}", topics=("chat_history", "notify.created"))
        await bot_record(rt, "later", at=clock.now + 60 * SECOND)  # due after the lease ends
        lease_until = clock.now + 30 * SECOND
        first = await rt.store.claim_outbox(["chat_history"], now=clock.now, lease_until=lease_until, limit=2)
        second = await rt.store.claim_outbox(["chat_history"], now=clock.now, lease_until=lease_until, limit=2)
        assert [json.loads(r["payload"])["room_id"] for r in first + second] == ["room-0", "room-1", "room-2"]
        assert {(r["attempts"], r["next_attempt_at"]) for r in first + second} == {(1, lease_until)}
        # Leased rows are not claimed again before their lease ends; other topics never.
        assert await rt.store.claim_outbox(["chat_history"], now=lease_until - 1, lease_until=0, limit=9) == []
        notify = await outbox(rt, "notify.created")
        assert {(r["attempts"], r["next_attempt_at"], r["done_at"]) for r in notify} == {(0, clock.now, None)}
        # The lease ends: the rows are due again, with the claim counted.
        again = await rt.store.claim_outbox(["chat_history"], now=lease_until, lease_until=lease_until + 1, limit=9)
        assert [(r["id"], r["attempts"]) for r in again] == [(r["id"], 2) for r in first + second]
        # The worker that held the first lease lost it: its outcome is dropped.
        stale = first[0]
        assert not await rt.store.outbox_done(stale["id"], 1, now=clock.now)
        assert await rt.store.outbox_done(stale["id"], 2, now=clock.now)


def test_retry_delays_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    handler = Handler(lambda rt, job: asyncio.sleep(0), backoff=1.0, backoff_cap=10.0)
    for attempts, step in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        delays = {handler.retry_delay(attempts) for _ in range(50)}
        assert all(step / 2 <= d <= step for d in delays), (attempts, delays)
        assert len(delays) > 40  # spread out, not one value


class Scripted:
    """A handler whose behaviour is the record's room id: "flaky" fails twice,
    "down" always, "bad" is final, "bug" raises something unexpected."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, int]] = []
        self.gave_up: list[tuple[str, str]] = []
        self.handler = Handler(self.run, self.give_up, max_attempts=3, backoff=1.0, backoff_cap=60.0)

    async def run(self, rt: Runtime, job: Job) -> None:
        room = job.payload["room_id"]
        self.runs.append((room, job.attempts))
        if room == "flaky" and job.attempts < 3 or room == "down":
            raise Retry(room)
        if room == "bad":
            raise Fail(room)
        if room == "bug":
            raise KeyError(room)

    async def give_up(self, rt: Runtime, job: Job, reason: str) -> None:
        self.gave_up.append((job.payload["room_id"], reason))


async def test_a_failed_attempt_is_retried_after_a_growing_delay(tmp_path: Path, clock: FakeClock) -> None:
    scripted = Scripted()
    async with worker_runtime(tmp_path, clock) as rt:
        await bot_record(rt, "flaky")
        stop = asyncio.Event()
        task = asyncio.create_task(run_worker(rt, stop, handlers={"chat_history": scripted.handler},
                                              poll_interval=0.01))

        async def failed(attempts: int) -> bool:
            """The attempt's retry is written (not just its claim, which keeps the
            previous attempt's error and holds the row for the lease)."""
            [row] = await outbox(rt)
            return (row["attempts"] == attempts and row["last_error"] == "flaky"
                    and row["next_attempt_at"] < clock.now + int(LEASE * SECOND))

        for attempts, step in [(1, 1.0), (2, 2.0)]:
            await wait_until(lambda: failed(attempts))
            [row] = await outbox(rt)
            assert clock.now + step / 2 * SECOND <= row["next_attempt_at"] <= clock.now + step * SECOND
            await asyncio.sleep(0.05)
            assert len(scripted.runs) == attempts  # not due yet, so not run again
            clock.now = row["next_attempt_at"]
            nudge()
        await wait_until(lambda: outbox_done(rt))
        stop.set()
        await task
        [row] = await outbox(rt)
    assert scripted.runs == [("flaky", 1), ("flaky", 2), ("flaky", 3)]
    assert (row["done_at"], row["last_error"], scripted.gave_up) == (clock.now, None, [])


async def outbox_done(rt: Runtime) -> bool:
    return all(row["done_at"] is not None for row in await outbox(rt, "chat_history"))


async def test_the_worker_gives_up_after_three_attempts_or_at_once_on_a_final_failure(
    tmp_path: Path, clock: FakeClock
) -> None:
    scripted = Scripted()
    async with worker_runtime(tmp_path, clock) as rt:
        for room in ["fine", "down", "bad", "bug"]:
            await bot_record(rt, room)
        await drain(rt, clock, handlers={"chat_history": scripted.handler})
        rows = {json.loads(r["payload"])["room_id"]: r for r in await outbox(rt)}
    assert {room: (r["attempts"], r["last_error"]) for room, r in rows.items()} == {
        "fine": (1, None),
        "down": (3, "gave up after 3 attempts: down"),
        "bad": (1, "failed: bad"),
        "bug": (3, "gave up after 3 attempts: internal_error"),
    }
    assert all(r["done_at"] is not None for r in rows.values())
    assert sorted(scripted.gave_up) == [("bad", "bad"), ("bug", "internal_error"), ("down", "down")]
    assert Counter(room for room, _ in scripted.runs) == {"fine": 1, "down": 3, "bad": 1, "bug": 3}


async def test_a_row_held_by_a_dead_worker_runs_again_when_its_lease_ends(tmp_path: Path, clock: FakeClock) -> None:
    asked: list[str] = []

    def chat_panel(request: httpx.Request) -> httpx.Response:
        asked.append(room_of(request))
        return httpx.Response(200, json=MESSAGES)

    async with worker_runtime(tmp_path, clock, chat_panel) as rt:
        orphan = await bot_record(rt, "orphan")
        # A worker claims it and dies.
        await rt.store.claim_outbox(["chat_history"], now=clock.now, lease_until=clock.now + int(LEASE * SECOND),
                                    limit=1)
        fresh = await bot_record(rt, "fresh")
        stop = asyncio.Event()
        task = asyncio.create_task(run_worker(rt, stop, poll_interval=0.01))
        await wait_until(lambda: settled(rt, fresh))
        assert asked == ["fresh"]  # the leased row waits for its lease to end
        assert (await entry(rt, orphan))["chat_preview_status"] == "pending"
        clock.advance(LEASE)
        nudge()
        await wait_until(lambda: settled(rt, orphan))
        stop.set()
        await task
        orphan_row = next(r for r in await outbox(rt) if json.loads(r["payload"])["record_id"] == orphan)
    assert asked == ["fresh", "orphan"]
    assert orphan_row["attempts"] == 2 and orphan_row["done_at"] == clock.now


async def settled(rt: Runtime, record_id: str) -> bool:
    return (await entry(rt, record_id))["chat_preview_status"] != "pending"


async def test_a_row_claimed_too_often_without_an_outcome_is_given_up(tmp_path: Path, clock: FakeClock) -> None:
    """Its workers keep dying while running it: after the last attempt's lease the
    worker gives up without running it again, and the entry does not stay pending."""
    asked: list[str] = []

    def chat_panel(request: httpx.Request) -> httpx.Response:
        asked.append(room_of(request))
        return httpx.Response(200, json=MESSAGES)

    async with worker_runtime(tmp_path, clock, chat_panel) as rt:
        poison = await bot_record(rt, "poison")
        for _ in range(3):
            await rt.store.claim_outbox(["chat_history"], now=clock.now, lease_until=clock.now, limit=1)
        fine = await bot_record(rt, "fine")
        await drain(rt)
        assert (await entry(rt, poison))["chat_preview_status"] == "failed"
        assert preview(await entry(rt, fine)) == MESSAGES["messages"]
        [event] = await stored_events(rt, "timeline_log_creation_failed")
    assert (event["deal_id"], event["error_reason"]) == (poison, "abandoned")
    assert asked == ["fine"]


async def test_topics_without_a_handler_are_left_alone(tmp_path: Path, clock: FakeClock) -> None:
    async with worker_runtime(tmp_path, clock, lambda request: httpx.Response(200, json=MESSAGES)) as rt:
        record_id = await bot_record(rt, "room-1", topics=("unknown.first", "chat_history", "unknown.second"))
        before = await outbox(rt)
        await drain(rt, clock)
        after = {r["id"]: r for r in await outbox(rt)}
        assert (await entry(rt, record_id))["chat_preview_status"] == "ok"
    for row in before:
        if row["topic"] == "chat_history":
            assert after[row["id"]]["done_at"] is not None  # the positive control
        else:
            assert after[row["id"]] == row


async def test_stopping_mid_batch_hands_unfinished_rows_back(tmp_path: Path, clock: FakeClock) -> None:
    asked: list[str] = []
    hold = True

    async def chat_panel(request: httpx.Request) -> httpx.Response:
        asked.append(room_of(request))
        if hold and room_of(request) != "quick":
            await asyncio.Event().wait()  # a Chat Panel that never answers, until cancelled
        return httpx.Response(200, json=MESSAGES)

    async with worker_runtime(tmp_path, clock, chat_panel) as rt:
        quick = await bot_record(rt, "quick")
        slow = [await bot_record(rt, "slow-1"), await bot_record(rt, "slow-2", topics=("chat_history",) * 2)]
        stop = asyncio.Event()
        task = asyncio.create_task(run_worker(rt, stop, poll_interval=0.01))
        await wait_until(lambda: settled(rt, quick))
        await wait_until(lambda: len(asked) == 3)
        stop.set()
        await asyncio.wait_for(task, 2)
        rows = await outbox(rt)
        assert [(r["attempts"], r["next_attempt_at"], r["done_at"] is None) for r in rows] == [
            (1, clock.now + int(LEASE * SECOND), False)] + [(0, clock.now, True)] * 3
        assert [(await entry(rt, record_id))["chat_preview_status"] for record_id in slow] == ["pending"] * 2
        # Started again, the worker finishes them: slow-2's second row finds its entry settled.
        hold = False
        await drain(rt)
        assert [preview(await entry(rt, record_id)) for record_id in slow] == [MESSAGES["messages"]] * 2
    assert Counter(asked) == {"quick": 1, "slow-1": 2, "slow-2": 2}


async def test_two_loops_on_one_database_never_run_a_row_twice(tmp_path: Path, clock: FakeClock) -> None:
    asked: Counter[str] = Counter()
    by_loop: Counter[str] = Counter()
    both_asking = asyncio.Event()

    def chat_panel(loop: str):  # type: ignore[no-untyped-def]
        async def answer(request: httpx.Request) -> httpx.Response:
            asked[room_of(request)] += 1
            by_loop[loop] += 1
            if by_loop["a"] and by_loop["b"]:
                both_asking.set()
            # Each loop's first answers wait (up to 5 s) until the other loop has asked
            # too, so the two run side by side however the machine schedules them (not
            # one loop draining every row before the other's first claim). Past that it
            # answers anyway: a loop that never worked fails the assertion below, not a
            # cascade of retries the fake clock never makes due.
            try:
                await asyncio.wait_for(both_asking.wait(), 5)
            except TimeoutError:
                pass
            return httpx.Response(200, json=MESSAGES)
        return answer

    async with worker_runtime(tmp_path, clock, chat_panel("a")) as a, \
            worker_runtime(tmp_path, clock, chat_panel("b")) as b:
        records = [await bot_record(a, f"room-{n}") for n in range(24)]
        stop = asyncio.Event()
        loops = [asyncio.create_task(run_worker(rt, stop, poll_interval=0.005, batch_size=3)) for rt in (a, b)]
        await wait_until(lambda: outbox_done(a), timeout=30)
        stop.set()
        await asyncio.gather(*loops)
        statuses = {(await entry(b, record_id))["chat_preview_status"] for record_id in records}
        attempts = {row["attempts"] for row in await outbox(b)}
    assert asked == {f"room-{n}": 1 for n in range(24)}
    assert by_loop["a"] > 0 and by_loop["b"] > 0  # both loops did work
    assert (statuses, attempts) == ({"ok"}, {1})


async def test_a_nudge_wakes_an_idle_worker_at_once(tmp_path: Path, clock: FakeClock) -> None:
    async with worker_runtime(tmp_path, clock, lambda request: httpx.Response(200, json=MESSAGES)) as rt:
        stop = asyncio.Event()
        task = asyncio.create_task(run_worker(rt, stop, poll_interval=60))
        await asyncio.sleep(0.1)  # started, found nothing, now waiting for its next poll
        record_id = await bot_record(rt, "room-1")
        await asyncio.sleep(0.2)
        assert (await entry(rt, record_id))["chat_preview_status"] == "pending"
        nudge()
        await wait_until(lambda: settled(rt, record_id), timeout=2)  # not the 60 s poll
        stop.set()
        await asyncio.wait_for(task, 2)  # the stop wakes it too


# -- kill -9 -------------------------------------------------------------------

class SlowChatPanel(BaseHTTPRequestHandler):
    """A real Chat Panel taking 50 ms per answer. Rooms "ok-*" have a message,
    "empty-*" none, "gone-*" answer 404."""

    asked: list[str] = []
    lock = threading.Lock()

    def do_GET(self) -> None:
        room = unquote(self.path.split("?")[0].split("/")[2])
        with self.lock:
            self.asked.append(room)
        time.sleep(0.05)
        status, body = {"ok": (200, MESSAGES), "empty": (200, {"messages": []})}.get(
            room.split("-")[0], (404, {"error": "no such room"}))
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the worker was killed while we slept
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_chat_panel() -> Iterator[str]:
    SlowChatPanel.asked = []
    with serving_http(SlowChatPanel) as url:
        yield url


async def test_a_worker_killed_mid_batch_loses_nothing_and_completes_each_entry_once(
    tmp_path: Path, slow_chat_panel: str
) -> None:
    env = {**os.environ, "WIDGET_DATA_DIR": str(tmp_path / "data"), "WIDGET_SECRET_KEYS": "test-key-0123456789abcdef",
           "WIDGET_CHAT_PANEL_URL": slow_chat_panel, "WIDGET_LOG_FORMAT": "json", **stack_env(tmp_path / "data")}
    async with worker_runtime(tmp_path, system_clock, chat_panel_url=slow_chat_panel) as rt:
        rooms = {f"{('ok', 'empty', 'gone')[n % 3]}-{n}": await bot_record(rt, f"{('ok', 'empty', 'gone')[n % 3]}-{n}")
                 for n in range(30)}
        with open(tmp_path / "worker.log", "wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "widget.worker"], env=env, stderr=log,
                                      cwd=Path(__file__).resolve().parent.parent)
            try:
                # Killed once the store shows five rows settled: the rest (three more
                # batches of 50 ms answers at least) are pending or in flight then,
                # however slowly the worker got there.
                deadline = time.monotonic() + 20
                while sum(row["done_at"] is not None for row in await outbox(rt)) < 5:
                    assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
                    await asyncio.sleep(0.01)
            finally:
                worker.send_signal(signal.SIGKILL)
                worker.wait()
    first_run = Counter(SlowChatPanel.asked)
    SlowChatPanel.asked.clear()

    # Restarted after the dead worker's leases ended.
    clock = FakeClock(system_clock() + int((LEASE + 1) * SECOND))
    async with worker_runtime(tmp_path, clock, chat_panel_url=slow_chat_panel) as rt:
        at_kill = {room: await entry(rt, record_id) for room, record_id in rooms.items()}
        done_at_kill = {r["id"]: r["done_at"] for r in await outbox(rt) if r["done_at"] is not None}
        await drain(rt, timeout=10)
        final = {room: await entry(rt, record_id) for room, record_id in rooms.items()}
        jobs = await outbox(rt)
        events = await stored_events(rt, "timeline_log_creation_failed")
    pending_at_kill = {room for room, row in at_kill.items() if row["chat_preview_status"] == "pending"}
    assert 0 < len(pending_at_kill) < len(rooms)  # killed mid-run
    assert max(first_run.values()) == 1
    # Only entries still pending were fetched again, once each; settled ones kept what they had.
    assert Counter(SlowChatPanel.asked) == {room: 1 for room in pending_at_kill}
    for room, row in at_kill.items():
        if room not in pending_at_kill:
            assert final[room] == row
    expected = {"ok": "ok", "empty": "empty", "gone": "failed"}
    assert {room: row["chat_preview_status"] for room, row in final.items()} == {
        room: expected[room.split("-")[0]] for room in rooms}
    assert all(job["done_at"] is not None for job in jobs)
    assert {job["id"]: job["done_at"] for job in jobs if job["id"] in done_at_kill} == done_at_kill
    assert sorted(e["room_id"] for e in events) == sorted(room for room in rooms if room.startswith("gone"))
