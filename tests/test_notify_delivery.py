"""Omnichannel notifications delivered to a real receiver (issue 8, sections 1 and 5):
the example host's app (``examples.host_page.app.create_host_app``), which verifies
every signature and drops a repeated ``X-Widget-Event-Id``, served by uvicorn in a
thread, instead of test_notify.py's ``httpx.MockTransport``.

Receiver faults are played by ``FaultyReceiver``, a test-only ASGI wrapper around the
host's app whose answer to the notification paths can be switched while it runs:
503 / 500 / 400 / 429 with ``Retry-After``, hold the request N s before passing it on,
or pass it through. "Receiver down" is nothing listening on its port; it comes back on
the same port.

The worker runs as ``widget.worker.run_worker`` on a ``FakeClock`` that starts at the
real time (the host checks the signature's ``t`` against its own clock, within 300 s)
and is moved on to the next due row whenever nothing is at the receiver, so backoffs
pass at once. The last test is the issue's bar: a real ``widget serve`` killed with
SIGKILL while Omnichannel answers 503, started again, and every notification arriving
once.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.host_page.app import create_host_app
from examples.host_page.fakes import verify_signature
from tests.support import FakeClock, LiveServer, WidgetLog, WidgetServer, free_port, make_settings
from tests.worker_support import outbox, wait_until
from widget import companies, records
from widget.models import DealIn
from widget.runtime import Runtime, open_runtime, system_clock
from widget.settings import Settings
from widget.store import Row
from widget.worker import notify, nudge, run_worker

SECRET = "whsec-delivery-0123456789"
ORIGINS = ["http://localhost:8001"]
SECOND = 1_000_000
NOTIFICATION = re.compile(r"^/omnichannel/(deals|tickets)(/[^/]+)?$")


# -- the receiver and its faults ---------------------------------------------------------

@dataclass(frozen=True)
class Fault:
    """How the receiver answers one notification. ``status``: answer it instead of the
    host (with ``through``, only after the host has verified and stored or deduped it);
    ``delay``: hold the request that long (its body already read) before going on."""

    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    through: bool = False


PASS = Fault()


@dataclass
class Seen:
    """One notification as it reached the receiver, and what became of it."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    at: float = field(default_factory=time.monotonic)
    status: int | None = None  # what the receiver answered; None while held
    host_status: int | None = None  # the host's own answer, if it got the request
    host_body: dict[str, Any] | None = None

    @property
    def event_id(self) -> str:
        return self.headers["x-widget-event-id"]

    @property
    def signature(self) -> str:
        return self.headers["x-widget-signature"]

    @property
    def t(self) -> int:
        """The signature's timestamp: the worker's clock (unix s) when it signed."""
        return int(self.signature.split(",")[0].removeprefix("t="))

    @property
    def record_id(self) -> str:
        body = json.loads(self.raw)
        return str(body.get("external_id") or body.get("crm_ticket_id") or self.path.rsplit("/", 1)[-1])


class FaultyReceiver:
    """ASGI wrapper of the host's app: notifications get ``script``'s faults first, one
    per request, then ``mode``; everything else (``/omnichannel/received``, lifespan)
    goes straight through. Runs on uvicorn's thread; the test switches it from its own
    (plain attribute writes and list appends)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.mode = PASS
        self.script: list[Fault] = []
        self.seen: list[Seen] = []
        self.in_flight = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not NOTIFICATION.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        fault = self.script.pop(0) if self.script else self.mode
        raw = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # The sender hung up before its body was in (a worker stopped mid-send):
                # as with any server, an incomplete request reaches no application.
                return
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        seen = Seen(scope["method"], scope["path"], headers, raw)
        self.seen.append(seen)
        self.in_flight += 1
        try:
            if fault.delay:
                await asyncio.sleep(fault.delay)  # the sender may give up meanwhile
            answer: tuple[int, list[tuple[bytes, bytes]], bytes]
            if fault.status is None or fault.through:
                answer = await self._host(scope, raw, receive)
                seen.host_status, seen.host_body = answer[0], json.loads(answer[2])
            if fault.status is not None:
                body = json.dumps({"error": f"fault {fault.status}"}).encode()
                extra = [(b"retry-after", fault.retry_after.encode())] if fault.retry_after else []
                answer = (fault.status, [(b"content-type", b"application/json"),
                                         (b"content-length", str(len(body)).encode()), *extra], body)
            status, response_headers, body = answer
            seen.status = status
            # After the sender has hung up uvicorn drops these.
            await send({"type": "http.response.start", "status": status, "headers": response_headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            self.in_flight -= 1

    async def _host(self, scope: Any, raw: bytes, receive: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The host's answer to the request (its body replayed), however the sender is."""
        replayed = False
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, replay, capture)
        return start["status"], list(start.get("headers", [])), b"".join(chunks)

    def delivered(self) -> list[Seen]:
        return [s for s in self.seen if s.status is not None and 200 <= s.status < 300]


class Receiver:
    """The example host playing Omnichannel, behind ``FaultyReceiver``, on a port of its
    own that stays the same when it is stopped (down) and started again."""

    def __init__(self) -> None:
        # The workers sign with a fake clock that jumps over backoffs and leases, so it
        # can run minutes ahead of the host's real one: a day's window, not 300 s (the
        # window itself is tested in tests/test_host_page.py).
        host = create_host_app("http://127.0.0.1:9", "unused-api-key", "acme", omnichannel_secret=SECRET,
                               signature_tolerance=24 * 3600)
        self.faults = FaultyReceiver(host)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: LiveServer | None = None

    @property
    def omnichannel_url(self) -> str:
        return f"{self.url}/omnichannel"

    def start(self) -> None:
        self.server = LiveServer(self.faults, port=self.port).__enter__()  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.server is not None:
            self.server.__exit__()
            self.server = None

    async def received(self) -> list[dict[str, Any]]:
        """The notifications the host accepted, in arrival order, one per event id
        (``GET /omnichannel/received``). It lists refused calls too (a bad signature:
        ``verified`` false, 401): none may be."""
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"{self.url}/omnichannel/received")
        assert response.status_code == 200, response.text
        events = response.json()["events"]
        refused = [{k: e.get(k) for k in ("event_id", "action", "verified", "status", "reason")}
                   for e in events if not e["verified"] or e["status"] != 200]
        assert refused == []
        return events


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """No Chat Panel: bot records get no chat-history job beside their notifications."""
    return make_settings(tmp_path, chat_panel_url=None)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    omni = Receiver()
    omni.start()
    try:
        yield omni
    finally:
        omni.stop()


# -- the widget side, in process ---------------------------------------------------------

@pytest.fixture
def clock() -> FakeClock:
    """Standing still from the real time of now (the host checks signatures against its
    own clock, within 300 s); conftest's ``app``/``runtime`` run on it."""
    return FakeClock(system_clock())


async def company(rt: Runtime, receiver: Receiver) -> Row:
    row, _ = await companies.create_company(rt, "acme", "Acme", ORIGINS, omnichannel_url=receiver.omnichannel_url,
                                            omnichannel_secret=SECRET)
    return row


async def deal(rt: Runtime, co: Row, room: str = "room-1") -> str:
    body = DealIn(name="Laptop order", stage="New", pipeline="Sales", room_id=room, creator_flag="bot")
    return (await records.create(rt, "deal", co, body))["id"]


async def notify_rows(rt: Runtime) -> list[Row]:
    return [r for r in await outbox(rt) if r["topic"].startswith("notify.")]


async def all_sent(rt: Runtime) -> bool:
    return all(r["done_at"] is not None for r in await notify_rows(rt))


@asynccontextmanager
async def worker(rt: Runtime) -> AsyncIterator[None]:
    """One worker loop for the body's duration; it stops cleanly (handing rows back)."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(rt, stop, poll_interval=0.01))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def deliver(
    rt: Runtime, clock: FakeClock, receiver: Receiver,
    until: Callable[[], Awaitable[bool]] | None = None, *, timeout: float = 10.0,
) -> None:
    """Run one worker loop until ``until`` (default: every notification row finished).
    Whenever nothing is at the receiver the clock jumps to the next row due later, so a
    backoff passes at once; with one loop a jump past a lease cannot hand its row to
    anyone else. A few attempts move the clock by well under the host's 300 s."""
    until = until or (lambda: all_sent(rt))
    async with worker(rt):
        async with asyncio.timeout(timeout):
            while not await until():
                if receiver.faults.in_flight == 0:
                    # (rows already due may be held back behind an earlier row of their record)
                    later = [r["next_attempt_at"] for r in await outbox(rt)
                             if r["done_at"] is None and r["next_attempt_at"] > clock.now]
                    if later:
                        clock.now = min(later)
                        nudge()
                await asyncio.sleep(0.01)


def assert_signed(seen: Seen, event_id: str) -> None:
    """Signed over the exact bytes at its own ``t`` with our secret, and nothing else."""
    assert seen.event_id == event_id
    assert seen.headers["content-type"] == "application/json"
    assert verify_signature(seen.signature, seen.raw, SECRET, 300, seen.t) is None
    assert verify_signature(seen.signature, seen.raw, "another-secret", 300, seen.t) is not None
    assert verify_signature(seen.signature, seen.raw + b" ", SECRET, 300, seen.t) is not None


# -- faults one at a time ----------------------------------------------------------------

async def test_a_receiver_that_is_down_gets_the_notification_once_it_is_back(
    runtime: Runtime, clock: FakeClock, receiver: Receiver
) -> None:
    acme = await company(runtime, receiver)
    receiver.stop()  # nothing listens on its port
    deal_id = await deal(runtime, acme)
    [row] = await notify_rows(runtime)
    async with worker(runtime):
        await wait_until(lambda: last_error(runtime, "connect_error"))
    [row] = await notify_rows(runtime)
    assert row["done_at"] is None and row["attempts"] == 1  # refused, waiting for a retry

    receiver.start()  # the same port
    await deliver(runtime, clock, receiver)
    [row] = await notify_rows(runtime)
    [received] = await receiver.received()
    assert (received["event_id"], received["action"], received["record_id"]) == (f"evt_{row['id']}", "created",
                                                                                   deal_id)
    assert received["deliveries"] == 1
    [seen] = receiver.faults.seen
    assert (seen.status, seen.host_body) == (200, {"status": "received", "event_id": f"evt_{row['id']}"})
    assert row["attempts"] == 2 and row["last_error"] is None


async def last_error(rt: Runtime, reason: str) -> bool:
    return any(r["last_error"] == reason for r in await notify_rows(rt))


async def test_a_receiver_slower_than_the_timeout_is_retried_and_dedupes_the_late_copy(
    runtime: Runtime, clock: FakeClock, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notifier gives up on a call after ``notify.TIMEOUT`` (5 s) of real time; it is
    shortened here so the test stays fast. The receiver holds the first call past it,
    then stores it anyway; the retry carries the same event id and the host drops it."""
    monkeypatch.setattr(notify, "TIMEOUT", 0.5)
    acme = await company(runtime, receiver)
    receiver.faults.script = [Fault(delay=1.0)]
    deal_id = await deal(runtime, acme)

    async def both_arrived() -> bool:
        return len(receiver.faults.seen) == 2 and receiver.faults.in_flight == 0 and await all_sent(runtime)

    await deliver(runtime, clock, receiver, both_arrived)
    [row] = await notify_rows(runtime)
    late, retry = receiver.faults.seen
    event_id = f"evt_{row['id']}"
    assert row["attempts"] == 2 and row["last_error"] is None  # the first attempt timed out
    assert (late.event_id, retry.event_id) == (event_id, event_id)
    # Both reached the host and were verified (401 otherwise); it kept the first only.
    assert {late.host_status, retry.host_status} == {200}
    assert {late.host_body["status"], retry.host_body["status"]} == {"received", "duplicate"}  # type: ignore[index]
    [received] = await receiver.received()
    assert (received["event_id"], received["record_id"], received["deliveries"]) == (event_id, deal_id, 2)


async def test_a_receiver_answering_within_the_five_second_timeout_is_not_cut_off(
    runtime: Runtime, clock: FakeClock, receiver: Receiver
) -> None:
    acme = await company(runtime, receiver)
    receiver.faults.script = [Fault(delay=2.5)]  # well inside notify.TIMEOUT
    await deal(runtime, acme)
    try:
        async with worker(runtime):
            await wait_until(lambda: notify_rows_settled(runtime), timeout=notify.TIMEOUT + 1)
        [row] = await notify_rows(runtime)
        assert (row["attempts"], row["last_error"]) == (1, None)
    finally:  # let the held call finish before the receiver stops
        await wait_until(lambda: receiver.faults.in_flight == 0, timeout=5)


async def notify_rows_settled(rt: Runtime) -> bool:
    """The first attempt has an outcome: done, or waiting for a retry."""
    return all(r["done_at"] is not None or r["last_error"] is not None for r in await notify_rows(rt))


async def test_a_500_is_retried_under_the_same_event_id_signed_afresh(
    runtime: Runtime, clock: FakeClock, receiver: Receiver
) -> None:
    """The receiver stores the first call and then answers 500 (so the host verifies
    both attempts); the retry has the same event id and a signature of its own."""
    acme = await company(runtime, receiver)
    receiver.faults.script = [Fault(500, through=True)]
    deal_id = await deal(runtime, acme)
    clock.advance(0.001)
    async with worker(runtime):
        await wait_until(lambda: last_error(runtime, "http_500"))
    clock.advance(1.0)  # past the first backoff step (0.5-1 s), and into another second
    await deliver(runtime, clock, receiver)
    [row] = await notify_rows(runtime)
    first, second = receiver.faults.seen
    event_id = f"evt_{row['id']}"
    assert (first.status, second.status) == (500, 200)
    assert (first.host_status, second.host_status) == (200, 200)  # verified by the host, both
    assert (first.host_body["status"], second.host_body["status"]) == ("received", "duplicate")  # type: ignore[index]
    for seen in (first, second):
        assert_signed(seen, event_id)
    assert second.t > first.t and second.signature != first.signature
    assert second.raw == first.raw
    [received] = await receiver.received()
    assert (received["event_id"], received["record_id"], received["deliveries"]) == (event_id, deal_id, 2)
    assert row["attempts"] == 2 and row["done_at"] is not None and row["last_error"] is None


async def test_a_400_is_not_retried_and_logs_omnichannel_notify_failed(
    runtime: Runtime, clock: FakeClock, receiver: Receiver, widget_log: WidgetLog
) -> None:
    acme = await company(runtime, receiver)
    receiver.faults.mode = Fault(400)
    deal_id = await deal(runtime, acme)
    async with worker(runtime):
        await wait_until(lambda: all_sent(runtime))
        clock.advance(3600)  # whatever a retry would have waited
        nudge()
        await asyncio.sleep(0.3)
    [row] = await notify_rows(runtime)
    [seen] = receiver.faults.seen
    assert seen.status == 400 and seen.host_status is None
    assert row["attempts"] == 1 and row["last_error"] == "failed: http_400"
    [failed] = widget_log.props("omnichannel_notify_failed")
    assert {k: failed[k] for k in ("deal_id", "event", "event_id", "error_reason", "attempts")} == {
        "deal_id": deal_id, "event": "deal_created", "event_id": f"evt_{row['id']}",
        "error_reason": "http_400", "attempts": 1}
    assert widget_log.events("outbox_retry") == []
    assert await receiver.received() == []


async def test_a_429_is_retried_no_sooner_than_its_retry_after(
    runtime: Runtime, clock: FakeClock, receiver: Receiver
) -> None:
    acme = await company(runtime, receiver)
    receiver.faults.script = [Fault(429, retry_after="120")]
    await deal(runtime, acme)
    clock.advance(0.001)
    async with worker(runtime):
        await wait_until(lambda: last_error(runtime, "http_429"))
        [row] = await notify_rows(runtime)
        assert row["next_attempt_at"] == clock.now + 120 * SECOND  # the clock stood still since
        clock.advance(119.9)
        nudge()
        await asyncio.sleep(0.3)
        assert len(receiver.faults.seen) == 1  # not yet
        clock.advance(0.1)
        nudge()
        await wait_until(lambda: all_sent(runtime))
    first, second = receiver.faults.seen
    assert (first.status, second.status, second.host_status) == (429, 200, 200)
    assert second.t - first.t >= 120
    assert first.event_id == second.event_id == f"evt_{row['id']}"
    assert len(await receiver.received()) == 1


async def test_a_record_s_create_update_and_delete_arrive_in_order_when_the_create_first_failed(
    runtime: Runtime, clock: FakeClock, receiver: Receiver
) -> None:
    acme = await company(runtime, receiver)
    receiver.faults.script = [Fault(503)]  # the first call of all: this record's create
    deal_id = await deal(runtime, acme)
    await records.patch(runtime, "deal", acme, deal_id, {"stage": "Won"})
    await records.delete(runtime, "deal", acme, deal_id)
    rows = await notify_rows(runtime)
    await deliver(runtime, clock, receiver)
    assert [(s.method, s.status) for s in receiver.faults.seen] == [
        ("POST", 503), ("POST", 200), ("PUT", 200), ("DELETE", 200)]
    received = await receiver.received()
    assert [(e["action"], e["record_id"], e["event_id"]) for e in received] == [
        ("created", deal_id, f"evt_{rows[0]['id']}"),
        ("updated", deal_id, f"evt_{rows[1]['id']}"),
        ("deleted", deal_id, f"evt_{rows[2]['id']}"),
    ]
    assert received[1]["body"]["stage"] == "Won"
    assert all(e["deliveries"] == 1 for e in received)


async def test_a_worker_stopped_mid_delivery_leaves_the_rest_to_the_next_one_under_the_same_event_ids(
    tmp_path: Path, clock: FakeClock, receiver: Receiver
) -> None:
    """Omnichannel answers 503, then holds calls for 1 s: the first worker stops while
    calls are held (handing its rows back), its runtime closes; a new runtime on the
    same database delivers everything. The held calls reach the host late, and the
    new worker's copies are dropped as duplicates or the other way round."""
    settings = make_settings(tmp_path, chat_panel_url=None)
    receiver.faults.mode = Fault(503)
    async with open_runtime(settings, clock) as first:
        acme = await company(first, receiver)
        deals = [await deal(first, acme, room=f"room-{n}") for n in range(4)]
        for deal_id in deals[:2]:
            await records.patch(first, "deal", acme, deal_id, {"stage": "Won"})
        clock.advance(0.001)  # creation times are a µs apart: all due now
        rows = await notify_rows(first)
        async with worker(first):
            await wait_until(lambda: {s.record_id for s in receiver.faults.seen} == set(deals))

            async def first_attempts_settled() -> bool:  # before the clock moves: their retries are due
                return all(r["last_error"] for r in await notify_rows(first) if r["topic"] == "notify.created")

            await wait_until(first_attempts_settled)
            receiver.faults.mode = Fault(delay=1.0)
            clock.advance(2)  # past the first backoff (0.5-1 s)
            nudge()
            await wait_until(lambda: receiver.faults.in_flight >= 1)
            held = receiver.faults.in_flight
        unfinished = [r for r in await notify_rows(first) if r["done_at"] is None]
    assert held >= 1 and len(unfinished) == len(rows)

    receiver.faults.mode = PASS
    async with open_runtime(settings, clock) as second:
        await deliver(second, clock, receiver, lambda: settled(second, receiver))
        rows = await notify_rows(second)
    event_of = {(json.loads(r["payload"])["record_id"], r["topic"]): f"evt_{r['id']}" for r in rows}
    received = await receiver.received()
    assert sorted((e["record_id"], "notify." + e["action"], e["event_id"]) for e in received) == sorted(
        (record_id, topic, event_id) for (record_id, topic), event_id in event_of.items())
    # Every call of a record's notification, before and after the restart, under its one id.
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for seen in receiver.faults.seen:
        ids[(seen.record_id, seen.method)].add(seen.event_id)
    assert ids == {(record_id, "PUT" if topic == "notify.updated" else "POST"): {event_id}
                   for (record_id, topic), event_id in event_of.items()}
    assert all(r["done_at"] is not None and r["last_error"] is None for r in rows)
    # The held calls reached the host after all: some notification was delivered twice.
    assert sum(e["deliveries"] for e in received) > len(received)


async def settled(rt: Runtime, receiver: Receiver) -> bool:
    return receiver.faults.in_flight == 0 and await all_sent(rt)


# -- the bar: kill -9 of `widget serve` while Omnichannel is down --------------------------

async def test_bar_30_creations_survive_kill_9_during_an_omnichannel_outage_each_once_under_one_event_id(
    tmp_path: Path, receiver: Receiver, widget_server: WidgetServer
) -> None:
    began = time.monotonic()
    receiver.faults.mode = Fault(503)
    created = json.loads(widget_server.cli(
        "company", "create", "acme", "--name", "Acme", "--frame-origin", ORIGINS[0],
        "--omnichannel-url", receiver.omnichannel_url, "--omnichannel-secret", SECRET, "--json"))
    company_made = time.monotonic()
    await widget_server.start()
    serving = time.monotonic()
    async with httpx.AsyncClient(base_url=f"{widget_server.url}/api/v1", timeout=10,
                                 headers={"Authorization": f"Bearer {created['api_key']}"}) as api:
        deals = []
        for n in range(30):
            response = await api.post("/deals", json={"name": f"Laptop order {n}", "stage": "New",
                                                     "pipeline": "Sales", "room_id": f"room-{n}",
                                                     "creator_flag": "bot"})
            assert response.status_code == 201, response.text
            deals.append(response.json()["id"])
    posted = time.monotonic()

    # Every create has met a 503, and the worker is between attempts (rows handed back
    # with a next attempt, not leased): kill -9.
    async def attempted_and_quiet() -> bool:
        seen = receiver.faults.seen
        return ({s.record_id for s in seen} == set(deals) and receiver.faults.in_flight == 0
                and time.monotonic() - seen[-1].at > 0.15)

    await wait_until(attempted_and_quiet, timeout=20)
    widget_server.kill()
    killed = time.monotonic()
    before_kill = list(receiver.faults.seen)
    assert {s.status for s in before_kill} == {503} and await receiver.received() == []

    await widget_server.start()
    restarted = time.monotonic()
    await wait_until(lambda: len(receiver.faults.seen) > len(before_kill), timeout=30)  # still 503
    receiver.faults.mode = PASS  # Omnichannel recovers
    recovered = time.monotonic()

    async def all_received() -> bool:
        return {e["record_id"] for e in await receiver.received()} == set(deals)

    await wait_until(all_received, timeout=90)
    arrived = time.monotonic()

    received = await receiver.received()
    assert len(received) == 30
    assert all((e["kind"], e["action"], e["method"], e["path"]) == ("deal", "created", "POST", "/omnichannel/deals")
               for e in received)
    assert sorted(e["record_id"] for e in received) == sorted(deals)  # each record exactly once
    assert len({e["event_id"] for e in received}) == 30
    # Every call ever made for a record, before and after the kill, carried one event id.
    ids: dict[str, set[str]] = defaultdict(set)
    for seen in receiver.faults.seen:
        ids[seen.record_id].add(seen.event_id)
    assert all(len(event_ids) == 1 for event_ids in ids.values()), ids
    assert {next(iter(v)) for v in ids.values()} == {e["event_id"] for e in received}
    # Every call that reached the host was verified (401 otherwise).
    assert {s.host_status for s in receiver.faults.seen if s.host_body is not None} == {200}

    # The database agrees: one notify.created row per deal, finished, named by the event id.
    async with open_runtime(make_settings(tmp_path), migrate=False) as rt:
        await wait_until(lambda: all_sent(rt), timeout=10)
        rows = await notify_rows(rt)
    assert sorted((json.loads(r["payload"])["record_id"], f"evt_{r['id']}") for r in rows) == sorted(
        (e["record_id"], e["event_id"]) for e in received)
    assert all(r["last_error"] is None for r in rows)

    attempts = defaultdict(int)
    for seen in receiver.faults.seen:
        attempts[seen.record_id] += 1
    print(
        f"\nbar: {time.monotonic() - began:.1f}s in all; company {company_made - began:.1f}s, serve up "
        f"{serving - company_made:.1f}s, 30 POSTs {posted - serving:.1f}s, killed {killed - posted:.1f}s later "
        f"({len(before_kill)} calls, all 503); restarted in {restarted - killed:.1f}s; recovery declared "
        f"{recovered - restarted:.1f}s later; all 30 arrived {arrived - recovered:.1f}s after recovery; "
        f"calls per record {min(attempts.values())}-{max(attempts.values())}, "
        f"deliveries {sum(e['deliveries'] for e in received)}"
    )
