"""The SSE stream, at three levels: the frames generator in-process (ordering rules,
one encode per publish), the HTTP endpoint against real uvicorn read with httpx-sse
(and raw sockets where counts matter), and ``widget serve`` ending its streams at
SIGTERM."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse
from starlette.applications import Starlette

from tests.helpers import next_message, wait_for
from tests.support import FakeClock, LiveServer, Tenant, WidgetServer
from tests.worker_support import wait_until
from widget import sse
from widget import stream as stream_module
from widget.broker import room_channel
from widget.runtime import Runtime
from widget.sse import Wakeup
from widget.stream import room_events

DEAL = {"name": "Laptop order", "stage": "New", "pipeline": "Sales", "creator_flag": "bot"}


def mint(http: httpx.Client, room_id: str = "room-1", **extra: object) -> str:
    response = http.post("/api/v1/embed-tokens", json={"room_id": room_id, "agent_id": "agent-1", **extra})
    assert response.status_code == 201, response.text
    return response.json()["token"]


@pytest.fixture
def http(live: tuple[LiveServer, Tenant]) -> Iterator[httpx.Client]:
    server, tenant = live
    with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=10) as client:
        yield client


def events_url(token: str, room_id: str = "room-1") -> str:
    return f"/embed/rooms/{room_id}/events?token={token}"


def dispatched(source) -> Iterator[ServerSentEvent]:  # type: ignore[no-untyped-def]
    """Events a browser would dispatch: those with data (a bare retry/comment is not one)."""
    return (event for event in source.iter_sse() if event.data)


def fields(frame: bytes) -> dict[str, str]:
    """A frame's fields as the browser reads them (a comment's text under "")."""
    lines = frame.decode().split("\r\n")
    assert lines[-2:] == ["", ""], frame  # one message, ended by a blank line
    return {name: value for name, _, value in (line.partition(": ") for line in lines[:-2])}


# -- HTTP level -----------------------------------------------------------------------


def test_first_message_is_the_snapshot_then_one_per_change(http: httpx.Client) -> None:
    token = mint(http)
    with connect_sse(http, "GET", events_url(token)) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        assert source.response.headers["cache-control"] == "no-store"
        events = source.iter_sse()
        first = next(events)
        assert (first.event, first.id, first.retry) == ("room", "0", 2000)
        assert json.loads(first.data) == {"room_id": "room-1", "version": 0, "deal": None, "ticket": None}

        created = http.post("/api/v1/deals", json={**DEAL, "room_id": "room-1"}).json()
        change = next(events)
        snapshot = json.loads(change.data)
        assert change.id == "1" and snapshot["version"] == 1
        assert snapshot["deal"]["id"] == created["id"] and snapshot["deal"]["creator"] == "Bot"

        http.patch(f"/api/v1/deals/{created['id']}", json={"stage": "Won"})
        assert json.loads(next(events).data)["deal"]["stage"] == "Won"
        http.delete(f"/api/v1/deals/{created['id']}")
        gone = next(events)
        assert gone.id == "3" and json.loads(gone.data)["deal"] is None


def test_resume_skips_the_snapshot_only_when_the_version_matches(http: httpx.Client) -> None:
    http.post("/api/v1/deals", json={**DEAL, "room_id": "room-1"})
    token = mint(http)
    with connect_sse(http, "GET", events_url(token), headers={"Last-Event-ID": "1"}) as source:
        events = dispatched(source)
        http.post("/api/v1/tickets", json={"name": "Refund", "status": "Open", "creator_flag": "bot",
                                           "room_id": "room-1"})
        assert next(events).id == "2"  # the version-1 snapshot was skipped
    with connect_sse(http, "GET", events_url(token) + "&last_event_id=1") as source:
        assert next(dispatched(source)).id == "2"  # stale id: the snapshot is sent


def test_other_rooms_changes_do_not_reach_the_stream(http: httpx.Client) -> None:
    token = mint(http)
    with connect_sse(http, "GET", events_url(token)) as source:
        events = source.iter_sse()
        assert next(events).id == "0"
        http.post("/api/v1/deals", json={**DEAL, "room_id": "room-2"})
        http.post("/api/v1/deals", json={**DEAL, "room_id": "room-1"})
        event = next(events)
        assert json.loads(event.data)["room_id"] == "room-1" and event.id == "1"


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [("", 401, "invalid_token"), ("garbage", 401, "invalid_token")],
)
def test_bad_tokens_are_refused_before_streaming(http: httpx.Client, token: str, status: int, code: str) -> None:
    response = http.get(events_url(token))
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_token_for_another_room_is_forbidden(http: httpx.Client) -> None:
    response = http.get(events_url(mint(http, "room-2"), "room-1"))
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def test_expired_token_is_refused_and_an_open_stream_ends_at_expiry(
    http: httpx.Client, clock: FakeClock
) -> None:
    token = mint(http, ttl_seconds=1)
    with connect_sse(http, "GET", events_url(token)) as source:
        events = source.iter_sse()
        assert next(events).event == "room"
        clock.advance(2)  # the stream re-checks the clock once the remaining second passes
        ended = next(events)
        assert ended.event == "token-expired"
        assert list(events) == []  # and the server closes the stream
    response = http.get(events_url(token))
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_expired"


def test_subscription_is_released_when_the_client_goes_away(live: tuple[LiveServer, Tenant], http: httpx.Client) -> None:
    server, tenant = live
    app: Starlette = server.server.config.app
    broker = app.state.runtime.broker
    channel = room_channel(tenant.id, "room-1")
    with connect_sse(http, "GET", events_url(mint(http))) as source:
        # Keep the iterator: a discarded ``next(source.iter_sse())`` is finalized at once,
        # and its GeneratorExit reaches httpcore's stream, which closes the connection
        # (the client going away here, not at the end of the block: a race, not a test).
        events = source.iter_sse()
        next(events)
        time.sleep(0.2)  # the server would have seen a hang-up by now
        assert broker.subscriber_count(channel) == 1
    left = time.monotonic()
    assert wait_for(lambda: broker.subscriber_count(channel) == 0, 5)
    assert time.monotonic() - left < 1, "released, but not promptly"


def test_a_client_that_stops_reading_gets_every_change_in_order_once_it_reads_again(
    live: tuple[LiveServer, Tenant], http: httpx.Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Changes are written from the fan-out while a stream waits (``Wakeup.write``).
    A client that reads nothing fills the server's buffers until uvicorn's flow control
    blocks a send: that send goes on in a task and the stream's later frames wait for
    it. Positive control: a send was blocked. Then every frame arrives whole, versions
    only go up (some skipped: latest wins), and the last is the last change. (Large
    snapshots, published to the server's broker: the buffers fill in a few.)"""
    server, tenant = live
    blocked: list[sse._Rest] = []

    class CountedRest(sse._Rest):
        __slots__ = ()

        def __init__(self, *args: object) -> None:
            super().__init__(*args)  # type: ignore[arg-type]
            blocked.append(self)

    monkeypatch.setattr(sse, "_Rest", CountedRest)
    broker = server.app.state.runtime.broker
    loop = server.server.servers[0].get_loop()

    def publish(version: int) -> None:
        snapshot = {"room_id": "room-1", "version": version, "deal": {"name": f"{version} " + "字" * 20_000},
                    "ticket": None}
        asyncio.run_coroutine_threadsafe(broker.publish(room_channel(tenant.id, "room-1"), snapshot), loop).result(5)

    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(f"GET {events_url(mint(http))} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = b""
        while b"event: room" not in received:
            received += sock.recv(4096)
        version = 0
        while not blocked and version < 2000:
            version += 1
            publish(version)
        assert blocked, "no send was ever blocked: the scenario did not happen"
        for _ in range(3):  # a few more while it is blocked: buffered, the newest wins
            version += 1
            publish(version)
        while f"id: {version}\r\n".encode() not in received:
            chunk = sock.recv(1 << 20)
            assert chunk, "the stream ended"
            received += chunk
    finally:
        sock.close()
    frames = re.findall(rb"id: (\d+)\r\nevent: room\r\ndata: ([^\r]*)\r\n", received)
    ids = [int(number) for number, _ in frames]
    assert ids == sorted(set(ids)) and ids[-1] == version, ids
    assert [json.loads(data)["version"] for _, data in frames] == ids  # each frame whole
    assert set(range(1, version + 1)) - set(ids), ids  # some skipped while blocked: the newest buffered went

def test_head_answers_the_headers_without_opening_a_stream(http: httpx.Client) -> None:
    response = http.head(events_url(mint(http)))
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-type"].startswith("text/event-stream")


def raw_stream(server: LiveServer, path: str) -> socket.socket:
    """A stream opened on a plain socket (nothing buffered, nothing read after the first
    message): what an idle browser tab is to the server."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    received = b""
    while b"event: room" not in received:
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    return sock


def server_tasks(server: LiveServer) -> int:
    """The asyncio tasks alive in the live server's event loop."""
    async def count() -> int:
        return len(asyncio.all_tasks())

    return asyncio.run_coroutine_threadsafe(count(), server.server.servers[0].get_loop()).result(5)


def test_an_open_stream_costs_at_most_two_tasks(live: tuple[LiveServer, Tenant], http: httpx.Client) -> None:
    """The request's own and one waiting for the client to go away (sse-starlette's
    response had five); with a broker that can lose messages, one more per process
    (widget/recheck.py). Positive control: the 50 streams are open in that loop."""
    server, tenant = live
    tokens = [mint(http) for _ in range(50)]  # 50 agents (one token has at most 8 streams)
    broker = server.app.state.runtime.broker
    before = server_tasks(server)
    sockets = [raw_stream(server, events_url(token)) for token in tokens]
    try:
        during = server_tasks(server)
        assert broker.subscriber_count(room_channel(tenant.id, "room-1")) == 50
        per_process = 1 if broker.may_lose_messages else 0
        assert 50 <= during - before <= 2 * 50 + per_process, (before, during)
    finally:
        for sock in sockets:
            sock.close()
    assert wait_for(lambda: server_tasks(server) == before, 5)
    assert broker.subscriber_count(room_channel(tenant.id, "room-1")) == 0


async def test_at_sigterm_widget_serve_ends_each_stream_with_its_last_chunk(widget_server: WidgetServer) -> None:
    """uvicorn waits for open responses before it tells the app anything: the stream
    notices the shutdown itself and ends cleanly (the chunked body's last chunk), at
    once, so the browser reconnects to another process. Without that, uvicorn's
    graceful-shutdown timeout (5 s) cuts it: no last chunk."""
    created = widget_server.cli("company", "create", "acme", "--name", "Acme",
                                "--frame-origin", "http://localhost:8001", "--json")
    await widget_server.start()
    assert widget_server.process is not None
    async with httpx.AsyncClient(base_url=widget_server.url, timeout=10,
                                 headers={"Authorization": f"Bearer {json.loads(created)['api_key']}"}) as api:
        token = (await api.post("/api/v1/embed-tokens", json={"room_id": "room-1", "agent_id": "a"})).json()["token"]
    reader, writer = await asyncio.open_connection("127.0.0.1", widget_server.port)
    try:
        writer.write(f"GET {events_url(token)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = b""
        while b"event: room" not in received:
            chunk = await asyncio.wait_for(reader.read(4096), 10)
            assert chunk, received
            received += chunk
        widget_server.process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), 10)  # until the server closes the connection
        took = time.monotonic() - stopping
    finally:
        writer.close()
    assert (received + rest).endswith(b"\r\n0\r\n\r\n"), rest  # the last chunk: a clean end
    assert took < 2, took
    assert await asyncio.to_thread(widget_server.process.wait, 10) in (0, -signal.SIGTERM)


def test_pings_keep_an_idle_stream_alive(tmp_path, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    from tests.support import make_settings, seed_company
    from widget.app import create_app

    settings = make_settings(tmp_path, sse_ping=0.2)
    tenant = seed_company(settings)
    with LiveServer(create_app(settings, clock)) as server, httpx.Client(
        base_url=server.url, headers=tenant.headers, timeout=10
    ) as http:
        token = mint(http)
        lines: list[str] = []
        with http.stream("GET", events_url(token)) as response:
            for line in response.iter_lines():
                lines.append(line)
                if sum(1 for seen in lines if seen.startswith(":")) >= 2:
                    break
        assert lines[0] == "id: 0"
        assert sum(1 for seen in lines if seen.startswith(": ping")) >= 2


# -- generator level ------------------------------------------------------------------


async def test_stream_never_goes_back_and_ends_when_the_broker_closes(runtime: Runtime, tenant: Tenant) -> None:
    far_future = runtime.now() + 3600 * 1_000_000
    stream = room_events(runtime, tenant.id, "room-9", far_future, None, Wakeup())
    first = fields(await anext(stream))
    assert (first["id"], first["event"], first["retry"]) == ("0", "room", "2000")
    channel = room_channel(tenant.id, "room-9")
    stale = {"room_id": "room-9", "version": 0, "deal": None, "ticket": None}
    newer = {**stale, "version": 5}
    next_event = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    await runtime.broker.publish(channel, stale)  # not newer than what was sent: dropped
    await runtime.broker.publish(channel, newer)
    assert fields(await next_event)["id"] == "5"
    next_event = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    await runtime.broker.publish(channel, {**stale, "version": 4})
    await runtime.broker.close()
    with pytest.raises(StopAsyncIteration):
        await next_event


async def test_a_slow_stream_sends_the_newest_buffered_snapshot_not_each_one(runtime: Runtime, tenant: Tenant) -> None:
    stream = room_events(runtime, tenant.id, "room-9", runtime.now() + 3600 * 1_000_000, None, Wakeup())
    assert fields(await anext(stream))["id"] == "0"
    channel = room_channel(tenant.id, "room-9")
    # The client reads nothing while more snapshots arrive than a buffer holds.
    async with runtime.broker.subscribe(channel) as control:
        for version in range(1, 31):
            await runtime.broker.publish(channel, {"room_id": "room-9", "version": version, "deal": None, "ticket": None})
        # Every local subscriber gets a message in one hand-over: once this one has the
        # last (through Redis on the scale stack), so does the stream's buffer.
        while (await next_message(control))["version"] < 30:
            pass
    assert fields(await anext(stream))["id"] == "30"  # straight to the newest
    next_event = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    await runtime.broker.publish(channel, {"room_id": "room-9", "version": 31, "deal": None, "ticket": None})
    assert fields(await asyncio.wait_for(next_event, 2))["id"] == "31"
    await stream.aclose()


async def test_a_snapshot_is_encoded_once_for_all_the_streams_of_a_room(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three streams of one room in one process (on the scale stack the message comes
    through Redis: decoded once too), one publish: one encode, the same bytes object
    sent on each, without published_at. Each stream's first message is its own store
    read, so it is encoded per stream: the count's positive control."""
    encoded: list[int] = []
    encode = stream_module._encode

    def counted(snapshot: dict, **extra: object) -> bytes:  # type: ignore[type-arg]
        encoded.append(snapshot["version"])
        return encode(snapshot, **extra)  # type: ignore[arg-type]

    monkeypatch.setattr(stream_module, "_encode", counted)
    far_future = runtime.now() + 3600 * 1_000_000
    streams = [room_events(runtime, tenant.id, "room-9", far_future, None, Wakeup()) for _ in range(3)]
    try:
        for stream in streams:
            await anext(stream)
        assert encoded == [0, 0, 0]
        waiting = [asyncio.ensure_future(anext(stream)) for stream in streams]
        await asyncio.sleep(0)
        await runtime.broker.publish(room_channel(tenant.id, "room-9"), {
            "room_id": "room-9", "version": 1, "deal": None, "ticket": None, "published_at": time.time()})
        frames = await asyncio.wait_for(asyncio.gather(*waiting), 2)
        assert encoded == [0, 0, 0, 1]
        assert frames[0] is frames[1] is frames[2]
        assert json.loads(fields(frames[0])["data"]) == {"room_id": "room-9", "version": 1, "deal": None, "ticket": None}
    finally:
        for stream in streams:
            await stream.aclose()


async def test_an_ended_wakeup_ends_the_stream_and_releases_its_subscription(runtime: Runtime, tenant: Tenant) -> None:
    """What the response does when the client goes away or the server shuts down."""
    wakeup = Wakeup()
    channel = room_channel(tenant.id, "room-9")
    stream = room_events(runtime, tenant.id, "room-9", runtime.now() + 3600 * 1_000_000, None, wakeup)
    await anext(stream)
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    assert not waiting.done() and runtime.broker.subscriber_count(channel) == 1  # positive control: it waits
    wakeup.end()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)
    assert runtime.broker.subscriber_count(channel) == 0


# -- the fan-out's direct write (Wakeup.write) --------------------------------------


class Sent:
    """A response's ``send`` as a server gives it: records bodies; ``gate`` (when set)
    makes the next send wait for it, as a server's flow control does."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.gate: asyncio.Future[None] | None = None
        self.error: Exception | None = None

    async def __call__(self, message: dict) -> None:  # type: ignore[type-arg]
        if self.error is not None:
            raise self.error
        if self.gate is not None:
            gate, self.gate = self.gate, None
            await gate
        if message["type"] == "http.response.body":
            self.bodies.append(message["body"])


async def test_a_waiting_stream_gets_a_change_written_without_its_task_waking(runtime: Runtime, tenant: Tenant) -> None:
    wakeup = Wakeup()
    stream = room_events(runtime, tenant.id, "room-9", runtime.now() + 3600 * 1_000_000, None, wakeup)
    await anext(stream)
    wakeup.send = sent = Sent()
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    channel = room_channel(tenant.id, "room-9")
    for version in (1, 2):
        await runtime.broker.publish(channel, {"room_id": "room-9", "version": version, "deal": None, "ticket": None})
    await wait_until(lambda: len(sent.bodies) == 2)  # (through Redis on the scale stack)
    assert [fields(body)["id"] for body in sent.bodies] == ["1", "2"]
    assert not waiting.done()  # written from the fan-out: the stream's task never woke
    wakeup.end()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)


async def test_write_only_while_the_task_waits_and_no_earlier_write_is_blocked() -> None:
    wakeup = Wakeup()
    wakeup.send = sent = Sent()
    assert not wakeup.write(b"a")  # the task is not waiting: it sends itself
    waiter = wakeup.wait()
    gate = sent.gate = asyncio.get_running_loop().create_future()
    assert wakeup.write(b"a")  # taken, though the send could not finish
    assert wakeup.writing is not None and sent.bodies == []
    assert not wakeup.write(b"b")  # behind a blocked send: the task sends it, after
    assert not waiter.done()
    gate.set_result(None)
    await asyncio.wait_for(wakeup.writing, 1)
    await asyncio.sleep(0)  # (the done-callback)
    assert sent.bodies == [b"a"] and wakeup.writing is None
    assert wakeup.write(b"b") and sent.bodies == [b"a", b"b"]  # free again: at once


async def test_a_write_that_fails_ends_the_stream_with_the_error_kept() -> None:
    wakeup = Wakeup()
    wakeup.send = sent = Sent()
    waiter = wakeup.wait()
    sent.error = RuntimeError("the server refused it")
    assert not wakeup.write(b"a")  # not sent
    assert wakeup.ended and waiter.done()
    with pytest.raises(RuntimeError, match="refused"):
        await wakeup.writing  # type: ignore[misc]


async def test_a_blocked_write_that_fails_ends_the_stream_with_the_error_kept() -> None:
    wakeup = Wakeup()
    wakeup.send = sent = Sent()
    wakeup.wait()
    gate = sent.gate = asyncio.get_running_loop().create_future()
    assert wakeup.write(b"a") and not wakeup.ended
    gate.set_exception(ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(wakeup.writing, 1)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert wakeup.ended


async def test_the_stream_task_sends_only_after_a_blocked_write_went_out() -> None:
    """The response (``sse.EventStream``) with frames of its own: the stream's next
    frame waits for the write still blocked, then the last chunk."""
    sent = Sent()
    wakeups: list[Wakeup] = []

    async def frames(wakeup: Wakeup) -> AsyncIterator[bytes]:
        yield b"first"
        await wakeup.wait()
        yield b"from the task"

    def open_stream(scope: object, wakeup: Wakeup) -> AsyncIterator[bytes]:
        wakeups.append(wakeup)
        return frames(wakeup)

    async def refuse(*_: object) -> None:
        raise AssertionError("not refused")

    requested = False

    async def receive() -> dict[str, str]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request"}
        await asyncio.Event().wait()  # the client stays
        raise AssertionError

    response = asyncio.ensure_future(sse.EventStream(open_stream, refuse)(  # type: ignore[arg-type]
        {"type": "http", "method": "GET"}, receive, sent))
    await wait_until(lambda: sent.bodies == [b"first"])
    gate = sent.gate = asyncio.get_running_loop().create_future()
    assert wakeups[0].write(b"written")  # blocked
    wakeups[0].set()  # the task goes on: its next frame must wait
    await asyncio.sleep(0.05)
    assert sent.bodies == [b"first"] and not response.done()
    gate.set_result(None)
    await asyncio.wait_for(response, 1)
    assert sent.bodies == [b"first", b"written", b"from the task", b""]
