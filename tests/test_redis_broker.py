"""The Redis broker against real redis-servers (``tests/redis_support.py``): several
processes (brokers) on one Redis, one Redis subscription per room per process shared by
its streams, slow streams, Redis restarted under open streams of two workers (the bar:
every stream on the room's latest version within 5 s of Redis being back), a lost
message healed by the streams' timed re-read, ``/readyz`` during an outage, shutdown,
and a server unreachable at start.

The broker contract (what the memory broker does too) is in ``tests/test_broker.py``."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from httpx_sse import connect_sse
from redis.exceptions import RedisError

from tests.helpers import next_after_quiet, next_message, wait_for
from tests.redis_support import RedisServer
from tests.support import LiveServer, asgi_client, make_settings, new_tenant, running_app, seed_company
from widget.app import create_app
from widget.broker import Broker, Resync, create_broker, room_channel
from widget.rooms import PUBLISHED_AT
from tests.test_stream import fields
from widget.settings import SettingsError
from widget.sse import Wakeup
from widget.stream import room_events

CHANNEL = room_channel("acme", "r-1")
DEAL = {"name": "Laptop order", "stage": "New", "pipeline": "Sales", "creator_flag": "bot", "room_id": "room-1"}


def snapshot(version: int) -> dict[str, object]:
    return {"room_id": "r-1", "version": version, "deal": None, "ticket": None, PUBLISHED_AT: time.time()}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def outage_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, to stop and start again on the same port."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def observer(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client to ask Redis what it sees (PUBSUB NUMSUB, CLIENT LIST)."""
    client = aioredis.Redis.from_url(redis_server.url())
    try:
        yield client
    finally:
        await client.aclose()


async def started(url: str) -> Broker:
    broker = create_broker(url)
    await broker.start()
    return broker


async def numsub(client: aioredis.Redis, channel: str) -> int:
    [(_, count)] = await client.pubsub_numsub(channel)
    return int(count)


async def eventually(probe: Callable[[], Any], expected: object, timeout: float = 3.0) -> None:
    """Poll an async probe until it returns ``expected``."""
    deadline = time.monotonic() + timeout
    while (value := await probe()) != expected:
        assert time.monotonic() < deadline, f"still {value!r}, not {expected!r}"
        await asyncio.sleep(0.02)


class Captured(logging.Handler):
    """Records of the loggers that would carry a failure's noise: ours, asyncio's
    ("Task exception was never retrieved") and uvicorn's ("Exception in ASGI app")."""

    NAMES = ("widget", "asyncio", "uvicorn.error")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, name: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "event", None) == name]

    def tracebacks(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.exc_info or r.levelno >= logging.ERROR
                and getattr(r, "event", None) != "room_publish_failed"]

    def __enter__(self) -> Captured:
        self.levels = {name: logging.getLogger(name).level for name in self.NAMES}
        for name in self.NAMES:
            logger = logging.getLogger(name)
            logger.addHandler(self)
            logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.NAMES:
            logging.getLogger(name).removeHandler(self)
            logging.getLogger(name).setLevel(self.levels[name])


# -- several processes, one subscription per room per process ---------------------------


async def test_a_publish_in_one_process_reaches_the_subscribers_of_another(
    redis_server: RedisServer, observer: aioredis.Redis
) -> None:
    first, second = await started(redis_server.url()), await started(redis_server.url())
    try:
        async with second.subscribe(CHANNEL) as there, first.subscribe(CHANNEL) as here:
            assert await numsub(observer, CHANNEL) == 2  # one subscription per process
            message = snapshot(1)
            await first.publish(CHANNEL, message)
            assert await next_message(there) == message  # published_at kept through JSON
            assert await next_message(here) == message
            await second.publish(CHANNEL, snapshot(2))
            assert (await next_message(here))["version"] == 2
    finally:
        await first.close()
        await second.close()


async def test_the_streams_of_a_room_share_one_redis_subscription_until_the_last_leaves(
    redis_server: RedisServer, observer: aioredis.Redis
) -> None:
    broker = await started(redis_server.url())
    other = room_channel("acme", "r-2")
    try:
        entered = [broker.subscribe(CHANNEL) for _ in range(5)]
        subs = [await cm.__aenter__() for cm in entered]
        async with broker.subscribe(other):
            assert broker.subscriber_count(CHANNEL) == 5
            assert await numsub(observer, CHANNEL) == 1  # five streams, one subscription
            assert await numsub(observer, other) == 1
            await broker.publish(CHANNEL, snapshot(1))
            assert [(await next_message(sub))["version"] for sub in subs] == [1] * 5
            await broker.publish(CHANNEL, snapshot(2))  # and once each: next comes this one
            assert [(await next_message(sub))["version"] for sub in subs] == [2] * 5
            for cm in entered[1:]:
                await cm.__aexit__(None, None, None)
            # Four left, one stays: still subscribed (a round trip through Redis proves
            # the reader has handled those exits by now).
            control = broker.publish(CHANNEL, snapshot(3))
            assert (await next_after_quiet(subs[0], control))["version"] == 3
            assert await numsub(observer, CHANNEL) == 1
            await entered[0].__aexit__(None, None, None)  # the last one: UNSUBSCRIBE
            await eventually(lambda: numsub(observer, CHANNEL), 0)
            assert await numsub(observer, other) == 1  # the other room's is untouched
        await eventually(lambda: numsub(observer, other), 0)
        # And back again: subscribed on entry, so the very next publish arrives.
        async with broker.subscribe(CHANNEL) as again:
            assert await numsub(observer, CHANNEL) == 1
            await broker.publish(CHANNEL, snapshot(4))
            assert (await next_message(again))["version"] == 4
    finally:
        await broker.close()


async def test_subscriptions_coming_and_going_fast_stay_consistent(
    redis_server: RedisServer, observer: aioredis.Redis
) -> None:
    """SUBSCRIBE and UNSUBSCRIBE of one room racing each other: whatever the order of
    Redis's confirmations, a subscriber that entered receives the next publish."""
    broker = await started(redis_server.url())
    try:
        async def visit(i: int) -> None:
            async with broker.subscribe(CHANNEL):
                await asyncio.sleep(0.001 * (i % 5))

        for _ in range(5):
            await asyncio.gather(*(visit(i) for i in range(40)))
            async with broker.subscribe(CHANNEL) as sub:
                await broker.publish(CHANNEL, snapshot(7))
                assert (await next_message(sub))["version"] == 7
        await eventually(lambda: numsub(observer, CHANNEL), 0)
    finally:
        await broker.close()


async def test_a_slow_stream_sends_the_newest_snapshot_not_each_one(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with running_app(make_settings(tmp_path, broker_url=redis_server.url())) as app:
        runtime = app.state.runtime
        tenant = await new_tenant(runtime)
        channel = room_channel(tenant.id, "room-9")
        stream = room_events(runtime, tenant.id, "room-9", runtime.now() + 3600 * 1_000_000, None, Wakeup())
        try:
            assert fields(await anext(stream))["id"] == "0"
            # The client reads nothing while 30 snapshots arrive (more than a buffer holds).
            async with runtime.broker.subscribe(channel) as control:
                for version in range(1, 31):
                    await runtime.broker.publish(channel, {**snapshot(version), "room_id": "room-9"})
                while (await next_message(control))["version"] < 30:
                    pass
            assert fields(await anext(stream))["id"] == "30"  # straight to the newest
            next_event = asyncio.ensure_future(anext(stream))
            await runtime.broker.publish(channel, {**snapshot(31), "room_id": "room-9"})
            assert fields(await asyncio.wait_for(next_event, 2))["id"] == "31"
        finally:
            await stream.aclose()


# -- outages -------------------------------------------------------------------------


async def test_after_a_restart_it_resubscribes_and_every_subscriber_resyncs(
    outage_server: RedisServer,
) -> None:
    broker = await started(outage_server.url())
    observer = aioredis.Redis.from_url(outage_server.url())
    try:
        with Captured() as log:
            async with broker.subscribe(CHANNEL) as a, broker.subscribe(CHANNEL) as b, \
                    broker.subscribe(room_channel("acme", "r-2")) as c:
                outage_server.stop()
                await eventually(lambda: ping_fails(broker), True)
                with pytest.raises(RedisError):  # a failed publish is not silent
                    await broker.publish(CHANNEL, snapshot(5))
                await asyncio.sleep(1.5)  # a few reconnect attempts fail meanwhile
                outage_server.start()
                back = time.monotonic()
                markers = [await next_message(sub, 5) for sub in (a, b, c)]
                assert all(isinstance(marker, Resync) for marker in markers)
                assert markers[0] is markers[1] is markers[2]  # one per reconnection
                assert time.monotonic() - back < 5
                await broker.ping()
                # Resubscribed, one subscription per room again, and messages flow.
                assert await numsub(observer, CHANNEL) == 1
                assert await numsub(observer, room_channel("acme", "r-2")) == 1
                await broker.publish(CHANNEL, snapshot(6))
                assert (await next_message(a))["version"] == 6
                assert (await next_message(b))["version"] == 6
                assert c.drain() == []
        # One warning for the outage, one info line when it is over, no tracebacks.
        assert [r.levelno for r in log.events("broker_unavailable")] == [logging.WARNING]
        assert len(log.events("broker_recovered")) == 1
        assert log.tracebacks() == []
    finally:
        await broker.close()
        await observer.aclose()


async def ping_fails(broker: Broker) -> bool:
    try:
        await broker.ping()
    except Exception:
        return True
    return False


async def test_readyz_says_the_broker_is_unavailable_while_redis_is_down(
    tmp_path: Path, outage_server: RedisServer
) -> None:
    settings = make_settings(tmp_path, broker_url=outage_server.url())
    async with running_app(settings) as app, asgi_client(app) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["broker"] == "ok"
        outage_server.stop()

        async def status() -> tuple[int, dict[str, Any]]:
            response = await http.get("/readyz")
            return response.status_code, response.json()

        await eventually(status, (503, {"status": "unavailable", "checks": {
            "store": "ok", "broker": "unavailable: ConnectionError"}}))
        outage_server.start()
        await eventually(status, (200, {"status": "ok", "checks": {"store": "ok", "broker": "ok"}}), 5)


# -- the bar: Redis restarted under the open streams of two workers --------------------


class Watcher(threading.Thread):
    """One SSE stream read in a thread (httpx-sse): every version it was sent, and when.

    It reads lines itself so that a ping comment (``sse_ping``) lets it notice ``stop``."""

    def __init__(self, base_url: str, path: str) -> None:
        super().__init__(daemon=True)
        self.base_url, self.path = base_url, path
        self.seen: list[tuple[float, int]] = []
        self.opened = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    @property
    def versions(self) -> list[int]:
        return [version for _, version in list(self.seen)]

    @property
    def latest(self) -> int:
        return self.seen[-1][1] if self.seen else -1

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(10.0, read=5.0)) as http, \
                    connect_sse(http, "GET", self.path) as source:
                assert source.response.status_code == 200
                for line in source.response.iter_lines():
                    if line.startswith("id:"):
                        self.seen.append((time.monotonic(), int(line[3:].strip())))
                        self.opened.set()
                    if self.stop.is_set():
                        return
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            self.error = exc


def mint(http: httpx.Client, room_id: str = "room-1") -> str:
    response = http.post("/api/v1/embed-tokens", json={"room_id": room_id, "agent_id": "agent-1"})
    assert response.status_code == 201, response.text
    return response.json()["token"]


@contextmanager
def watching(servers: list[LiveServer], token: str, per_server: int) -> Iterator[list[Watcher]]:
    watchers = [Watcher(server.url, f"/embed/rooms/room-1/events?token={token}")
                for server in servers for _ in range(per_server)]
    for watcher in watchers:
        watcher.start()
    try:
        for watcher in watchers:
            assert watcher.opened.wait(10), watcher.error
        yield watchers
    finally:
        for watcher in watchers:
            watcher.stop.set()
        for watcher in watchers:
            watcher.join(5)


def ready(server: LiveServer) -> int:
    return httpx.get(f"{server.url}/readyz", timeout=5).status_code


def test_the_bar_redis_restarted_under_8_streams_on_2_workers(tmp_path: Path, outage_server: RedisServer) -> None:
    """Two workers (two apps, one database, one Redis), four streams on each; Redis
    stops, the room changes through one worker's API meanwhile (its publishes fail),
    Redis starts again on the same port: every stream is on the room's latest version
    within 5 s. The timed re-read is set to a minute so only the resync can do it."""
    settings = make_settings(tmp_path, broker_url=outage_server.url(), stream_recheck=60, sse_ping=0.25)
    tenant = seed_company(settings)
    with LiveServer(create_app(settings)) as first, LiveServer(create_app(settings)) as second, \
            httpx.Client(base_url=first.url, headers=tenant.headers, timeout=10) as api:
        deal = api.post("/api/v1/deals", json=DEAL).json()
        token = mint(api)
        with watching([first, second], token, per_server=4) as watchers, Captured() as log:
            assert {w.latest for w in watchers} == {1}
            for server in (first, second):
                assert server.app.state.runtime.broker.subscriber_count(room_channel(tenant.id, "room-1")) == 4
            assert asyncio.run(count_subscriptions(outage_server, room_channel(tenant.id, "room-1"))) == 2

            outage_server.stop()
            assert wait_for(lambda: ready(first) == 503 and ready(second) == 503, 5)
            for stage in ("Qualified", "Proposal", "Negotiation"):
                assert api.patch(f"/api/v1/deals/{deal['id']}", json={"stage": stage}).status_code == 200
            with httpx.Client(base_url=second.url, headers=tenant.headers, timeout=10) as other:
                assert other.post("/api/v1/tickets", json={
                    "name": "Refund", "status": "Open", "creator_flag": "bot", "room_id": "room-1"}).status_code == 201
            latest = api.get(f"/embed/rooms/room-1/state?token={token}").json()["version"]
            assert latest == 5
            time.sleep(1)  # Redis stays down a while: several reconnect attempts fail
            assert {w.latest for w in watchers} == {1}  # nothing got through meanwhile

            reads = [count_reads(server) for server in (first, second)]
            outage_server.start()
            back = time.monotonic()
            reached = wait_for(lambda: all(w.latest == latest for w in watchers), 5)
            took = [next(t for t, v in w.seen if v == latest) - back for w in watchers if w.latest == latest]
            print(f"\nthe bar: {len(took)}/8 streams on version {latest}; "
                  f"time to latest after Redis was back: max {max(took, default=float('nan')):.2f} s, "
                  f"min {min(took, default=float('nan')):.2f} s")
            assert reached, [w.versions for w in watchers]
            assert max(took) < 5
            assert all(w.versions == [1, latest] for w in watchers)  # the stored state, once
            assert [len(calls) for calls in reads] == [1, 1]  # per worker one read of the room, shared
            assert wait_for(lambda: ready(first) == 200 and ready(second) == 200, 5)

            # The live path is back too: the next change reaches every stream.
            api.patch(f"/api/v1/deals/{deal['id']}", json={"stage": "Won"})
            assert wait_for(lambda: all(w.latest == latest + 1 for w in watchers), 3)

        assert all(w.error is None for w in watchers), [w.error for w in watchers]
        # Per worker one warning for the outage and one info line after it; the failed
        # publishes logged as errors; no tracebacks anywhere.
        assert len(log.events("broker_unavailable")) == 2
        assert len(log.events("broker_recovered")) == 2
        assert len(log.events("room_publish_failed")) == 4
        assert log.tracebacks() == []


def count_rechecks(server: LiveServer) -> list[list[tuple[str, str]]]:
    """From now on, the rooms each of a worker's timed re-checks looked at."""
    store = server.app.state.runtime.store
    versions = store.room_versions
    rounds: list[list[tuple[str, str]]] = []

    async def counted(rooms: Any) -> Any:
        rounds.append(list(rooms))
        return await versions(rounds[-1])

    store.room_versions = counted
    return rounds


def count_reads(server: LiveServer) -> list[tuple[str, str]]:
    """From now on, the room reads of a worker's store (its streams' re-reads)."""
    store = server.app.state.runtime.store
    read = store.room_state
    calls: list[tuple[str, str]] = []

    async def counted(company_id: str, room_id: str) -> Any:
        calls.append((company_id, room_id))
        return await read(company_id, room_id)

    store.room_state = counted
    return calls


async def count_subscriptions(server: RedisServer, channel: str) -> int:
    client = aioredis.Redis.from_url(server.url())
    try:
        return await numsub(client, channel)
    finally:
        await client.aclose()


def test_a_lost_message_heals_by_the_streams_timed_re_read(tmp_path: Path, redis_server: RedisServer) -> None:
    """A change whose message never reaches the streams' Redis (here its writer
    publishes on its own memory:// broker: the same as a publish that failed) reaches
    them by the process's timed re-check (WIDGET_STREAM_RECHECK): one read of the
    rooms' versions per interval, and a read of the room only when a stream is behind,
    shared by its streams. Control: a worker with the re-check off never sees that
    version, and sees the next published one."""
    settings = make_settings(tmp_path, broker_url=redis_server.url(), stream_recheck=0.5, sse_ping=0.25)
    tenant = seed_company(settings)
    lossy_writer = make_settings(tmp_path, broker_url="memory://")
    no_recheck = make_settings(tmp_path, broker_url=redis_server.url(), stream_recheck=0, sse_ping=0.25)
    with LiveServer(create_app(settings)) as healing, LiveServer(create_app(no_recheck)) as control, \
            LiveServer(create_app(lossy_writer)) as writer, \
            httpx.Client(base_url=writer.url, headers=tenant.headers, timeout=10) as lost, \
            httpx.Client(base_url=healing.url, headers=tenant.headers, timeout=10) as api:
        token = mint(api)
        with watching([healing], token, per_server=3) as healed, watching([control], token, per_server=1) as [plain]:
            assert {w.latest for w in [*healed, plain]} == {0}
            reads, rounds = count_reads(healing), count_rechecks(healing)
            assert wait_for(lambda: len(rounds) >= 2, 3)
            assert reads == [] and rounds[-1] == [(tenant.id, "room-1")]  # up to date: no stream re-read
            created = lost.post("/api/v1/deals", json=DEAL)
            assert created.status_code == 201
            started_at = time.monotonic()
            assert wait_for(lambda: all(w.latest == 1 for w in healed), 3), [w.versions for w in healed]
            assert reads == [(tenant.id, "room-1")]  # the three streams shared one read
            print(f"\nlost message healed by the timed re-read in "
                  f"{max(next(t for t, v in w.seen if v == 1) for w in healed) - started_at:.2f} s")
            api.patch(f"/api/v1/deals/{created.json()['id']}", json={"stage": "Won"})  # published
            assert wait_for(lambda: all(w.latest == 2 for w in [*healed, plain]), 3)
            assert plain.versions == [0, 2]  # never saw 1: the re-read did it
            assert all(w.versions == [0, 1, 2] for w in healed)


# -- shutdown and start --------------------------------------------------------------


async def test_close_ends_every_subscription_stops_the_reader_and_closes_connections(
    redis_server: RedisServer, observer: aioredis.Redis
) -> None:
    baseline = len(await observer.client_list())
    broker = await started(redis_server.url())
    async with AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(broker.subscribe(CHANNEL)) for _ in range(3)]
        await broker.publish(CHANNEL, snapshot(1))  # the publishing connection is open too
        assert len(await observer.client_list()) == baseline + 2
        waiters = [asyncio.ensure_future(sub.get()) for sub in subs]
        await asyncio.sleep(0.05)
        for waiter in waiters:
            assert (await waiter)["version"] == 1  # type: ignore[index]
        waiters = [asyncio.ensure_future(sub.get()) for sub in subs]
        await asyncio.sleep(0)
        await broker.close()
        assert [await asyncio.wait_for(waiter, 1) for waiter in waiters] == [None] * 3
        assert broker._task is not None and broker._task.done()  # type: ignore[attr-defined]
    await eventually(lambda: numsub(observer, CHANNEL), 0)

    async def clients() -> int:
        return len(await observer.client_list())

    await eventually(clients, baseline)
    with pytest.raises(RedisError):
        await broker.publish(CHANNEL, snapshot(2))
    with pytest.raises(RedisError):
        await broker.ping()


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:notaport/0", "redis://127.0.0.1:6379/zero", "redis:///0",
     "rediss://:hunter2-secret@127.0.0.1:65536/0", "unix:///tmp/redis.sock"],
)
def test_a_malformed_broker_url_is_one_readable_line_without_the_url(tmp_path: Path, url: str) -> None:
    with pytest.raises(SettingsError) as failure:
        make_settings(tmp_path, broker_url=url)
    message = str(failure.value)
    assert message.startswith("invalid setting WIDGET_BROKER_URL: ") and "\n" not in message
    assert "hunter2" not in message and "notaport" not in message


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://:hunter2-secret@127.0.0.1:{closed}/0", "cannot reach Redis at 127.0.0.1:{closed}"),
        ("redis://127.0.0.1:notaport/0", "invalid setting WIDGET_BROKER_URL"),
    ],
)
def test_serve_with_a_bad_or_unreachable_redis_prints_one_line(tmp_path: Path, url: str, says: str) -> None:
    closed = str(RedisServer(tmp_path / "never").port)  # a free port nobody listens on
    env = {name: value for name, value in os.environ.items() if not name.startswith("WIDGET_")}
    env.update(WIDGET_DATA_DIR=str(tmp_path / "data"), WIDGET_BROKER_URL=url.format(closed=closed),
               WIDGET_SECRET_KEYS="test-key-0123456789abcdef")
    done = subprocess.run([sys.executable, "-m", "widget", "serve", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("widget: error: ") and says.format(closed=closed) in lines[0], lines[0]
    assert "WIDGET_BROKER_URL" in lines[0] and "hunter2" not in lines[0]
