"""Stream figures (issue 10): memory per idle stream, /healthz under 10,000 idle streams,
stream opens per second, one room's fan-out to 1,000 streams, and change → client
latency with 10,000 streams under a steady rate of changes.

Each is measured on our server and, in the same run and by the same client code
(``bench/sse_client.py``), on two bare baselines under the same uvicorn
(``bench/baselines/``): a raw-ASGI stream (the floor; the figures' baseline) and
sse-starlette alone (in the notes; our server no longer uses it, so only if installed).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench.report import Figure, median, percentile
from bench.server import COMPANY, FRAME_ORIGIN, Server, cpu_seconds, rss_kb, settle, start_baseline
from bench.sse_client import HttpConnection, StreamClients, http_request
from widget.models import PERMISSIONS
from widget.tokens import EMBED, Signer

METHODS = """
**Streams.** One server process at a time: ours, then the two baselines of
`bench/baselines/` under the same uvicorn settings (uvloop, httptools, no access log):
`raw_asgi_stream` (one coroutine per stream, a dict room → wake-ups; the figures'
baseline) and `sse_starlette_stream` (an `EventSourceResponse` over an `asyncio.Queue`
per stream; in the notes, when sse-starlette is installed). They use no database or
broker, so they are measured once per run, beside the first stack. Both send a
snapshot of our size and change a room on
`POST /publish/{room}`; ours changes one on a `PATCH` of the room's bot deal name (made
through the API first). The client (`bench/sse_client.py`) is the same for all three:
raw asyncio protocols in 2 worker processes on uvloop, reading only the chunked framing
and each message's `id:`/`event:` lines; send and receipt times are CLOCK_MONOTONIC, one
clock for every process. Embed tokens are signed in the bench process with the
server's key, as `POST /api/v1/embed-tokens` signs them. A figure's note gives the CPU
time the server and the client workers spent per unit, to show which one was busy.
A server that cannot keep up makes its figures worse, never the run endless: each
phase's streams get 120 s to open (those that do not are counted, with the reason, and
the goal is not met), the opens/s figure at most 30 s, a delivery 10 s.

- *memory per idle stream*: the serving process's VmRSS before and after opening the
  streams (each until its first `event: room`, then until the server is idle),
  divided by their number; one stream per room, so each also pays its room's
  subscription. 20 streams were opened and closed before, so lazily built state is
  not counted. The 10,000 figure adds one stream to each of 3,000 more rooms and a
  second to all 5,000.
- *healthz*: 50 `GET /healthz`, each on a new connection, 50 ms apart, while those
  10,000 streams are open and idle.
- *opens/s*: 16 concurrent openers each connect, `GET` a stream with a valid token,
  read until the first `event: room`, close, and start over.
- *one room, 1,000 streams*: one change, then the time from sending it until the last
  of the 1,000 streams received that version; 10 changes, 200 ms apart.
- *change → client at a steady rate*: with the 10,000 streams open, changes paced at
  500/s for 10 s, each to a random room without a change in flight (so the version it
  makes is known), on 16 keep-alive connections. A change due while all 16 wait for an
  answer waits for one; those never sent by the end are the backlog. Latency: from
  sending a change until its version (or a newer one) arrived on a stream of the room,
  for every stream of the room. Lost: streams not on their room's final version 10 s
  after the last answer.
"""


@dataclass(frozen=True)
class Sizes:
    idle_rooms: int  # rooms of the memory figure, one stream each (≤ busy_rooms)
    busy_rooms: int  # rooms of the 10k figures, two streams each
    opens: int  # stream opens of the opens/s figure
    fan_streams: int  # streams of the one-room figure
    fan_changes: int
    change_rate: float  # changes per second at a steady rate
    change_seconds: float


FULL = Sizes(idle_rooms=2000, busy_rooms=5000, opens=3000, fan_streams=1000, fan_changes=10,
             change_rate=500, change_seconds=10)
QUICK = Sizes(idle_rooms=200, busy_rooms=200, opens=400, fan_streams=200, fan_changes=3,
              change_rate=500, change_seconds=2)
HEALTHZ_SAMPLES = 50
CHANGE_CONNECTIONS = 16  # a host's backend sending changes on a pool of connections
OPENERS = 8  # per client worker (2 workers): 16 concurrent stream opens
DELIVERY_TIMEOUT = 10.0  # s for every stream to show a version
# Bounds, so a server that cannot keep up makes the figures worse, not the run endless:
OPEN_SECONDS = 120.0  # for opening the streams of one phase (ours opened ~150/s here)
CHURN_SECONDS = 30.0  # for the opens/s figure
TOKEN_TTL = 900  # s: the default WIDGET_TOKEN_MAX_AGE, longer than the figures take
SETUP_CONNECTIONS = 8  # for creating the rooms' deals


def log(message: str) -> None:
    print(f"  [streams] {message}", file=sys.stderr, flush=True)


# --- the servers measured -------------------------------------------------------------

class OurTarget:
    """``widget serve``: each room gets a bot deal through the API (version 1); a change
    is a PATCH of the deal's name, which bumps the room's version by one."""

    def __init__(self, server: Server) -> None:
        self.name = "ours"
        self.server = server
        self.url = server.url
        self.pid = server.pid
        self._host = self.url.split("://", 1)[1]
        keys = [key.strip() for key in server.env["WIDGET_SECRET_KEYS"].split(",") if key.strip()]
        self._signer = Signer(keys, lambda: time.time_ns() // 1000)
        self._tokens: dict[str, str] = {}
        self._deals: dict[str, str] = {}

    def stream_path(self, room: str) -> str:
        return f"/embed/rooms/{room}/events?token={self._tokens[room]}"

    def change(self, room: str, version: int) -> bytes:
        body = json.dumps({"name": f"Deal {room} v{version}"}).encode()
        return http_request("PATCH", f"/api/v1/deals/{self._deals[room]}", self._host, self.server.headers, body)

    async def prepare(self, rooms: list[str]) -> None:
        """A bot deal in each room, and an embed token for it signed as ``POST
        /api/v1/embed-tokens`` signs one (thousands through the API would take long)."""
        for room in rooms:
            self._tokens[room] = self._signer.sign(EMBED, {
                "company": COMPANY, "room_id": room, "agent_id": "bench", "permissions": list(PERMISSIONS),
                "parent_origin": FRAME_ORIGIN, "locale": "en"}, TOKEN_TTL)[0]
        todo = iter(rooms)

        async def creator() -> None:
            connection = await connect(self.url)
            try:
                for room in todo:
                    body = json.dumps({"name": f"Deal {room} v1", "stage": "New", "pipeline": "Sales",
                                       "room_id": room, "creator_flag": "bot"}).encode()
                    status, answer = await connection.request(
                        http_request("POST", "/api/v1/deals", self._host, self.server.headers, body))
                    if status != 201:
                        raise RuntimeError(f"deal for {room}: HTTP {status} {answer[:200]!r}")
                    self._deals[room] = json.loads(answer)["id"]
            finally:
                connection.close()

        await asyncio.gather(*(creator() for _ in range(SETUP_CONNECTIONS)))


class BaselineTarget:
    """A server of ``bench/baselines/``: a room exists once used, at version 1; a
    change is ``POST /publish/{room}``."""

    def __init__(self, name: str, url: str, pid: int) -> None:
        self.name = name
        self.url = url
        self.pid = pid
        self._host = url.split("://", 1)[1]

    def stream_path(self, room: str) -> str:
        return f"/embed/rooms/{room}/events"

    def change(self, room: str, version: int) -> bytes:
        return http_request("POST", f"/publish/{room}", self._host)

    async def prepare(self, rooms: list[str]) -> None:
        return None


Target = OurTarget | BaselineTarget


async def connect(url: str) -> HttpConnection:
    host, port = url.split("://", 1)[1].split(":")
    return await HttpConnection.connect(host, int(port))


# --- what is measured on each server ---------------------------------------------------

@dataclass
class Usage:
    """CPU seconds the server and the client workers spent in a phase of ``wall`` seconds."""

    server: float
    clients: float
    wall: float

    @property
    def share(self) -> float:
        """The server's CPU time over the wall time: how busy it was, in cores."""
        return self.server / self.wall

    def per(self, count: float, unit: str) -> str:
        if not count:
            return f"no {unit}"
        return (f"CPU per {unit}: server {self.server / count * 1e6:,.0f} µs, "
                f"clients {self.clients / count * 1e6:,.0f} µs")


class Phase:
    def __init__(self, pid: int, clients: StreamClients) -> None:
        self.pid, self.clients = pid, clients
        self.server = cpu_seconds(pid)
        self.client = clients.cpu_seconds
        self.started = time.monotonic()

    def usage(self) -> Usage:
        return Usage(cpu_seconds(self.pid) - self.server, self.clients.cpu_seconds - self.client,
                     time.monotonic() - self.started)


@dataclass
class Sent:
    room: str
    version: int  # the version it makes
    at: float  # time.monotonic() it was sent
    status: int = 0
    answer_seconds: float = 0.0  # until its answer came


@dataclass
class Steady:
    sent: list[Sent]
    due: int
    seconds: float  # from the first send to the last answer
    lateness: list[float]  # s each change was sent after it was due
    latencies: list[float]  # s from a send to its version on one stream
    undelivered: int  # (change, stream) pairs that never showed it
    lost: int  # streams not on their room's final version
    dropped: int  # streams the server ended or cut so far
    usage: Usage

    @property
    def errors(self) -> dict[int, int]:
        """Answers other than 200, by status."""
        return dict(Counter(change.status for change in self.sent if change.status != 200))

    @property
    def backlog(self) -> int:
        return self.due - len(self.sent)

    @property
    def rate(self) -> float:
        answered = len(self.sent) - sum(self.errors.values())
        return answered / self.seconds if self.seconds else 0.0


class Failures(dict[str, list[str]]):
    """Per phase, why each of its streams that did not open did not."""

    def note(self, *phases: str) -> str:
        """For a figure's note: how many streams of ``phases`` did not open, and why."""
        reasons = Counter(failure for phase in phases for failure in self.get(phase, []))
        if not reasons:
            return ""
        why = ", ".join(f"{count:,} {reason}" for reason, count in reasons.most_common(3))
        return f"; {reasons.total():,} streams did not open ({why})"


@dataclass
class FanOut:
    seconds: list[float]  # per change, until all of the room's streams had it
    missed: int  # (change, stream) pairs not delivered within DELIVERY_TIMEOUT
    refused: int  # changes answered other than 200
    usage: Usage


@dataclass
class Measured:
    memory_kb: float  # per idle stream, idle_rooms streams
    memory_busy_kb: float  # per stream, at 2 × busy_rooms streams
    healthz: list[float]  # s
    healthz_usage: Usage  # while the streams were idle
    steady: Steady
    fanout: FanOut
    opens: int
    opens_per_s: float
    open_seconds: list[float]  # each open: connect → first room message
    opens_usage: Usage
    failures: Failures


def first_at_least(received: list[tuple[int, float]], version: int) -> float | None:
    return next((at for seen, at in received if seen >= version), None)


def open_streams(clients: StreamClients, target: Target, rooms: list[str], failures: Failures, phase: str) -> None:
    """One more stream per room of ``rooms``; those that do not open go to ``failures``."""
    failed = clients.open([(room, target.stream_path(room)) for room in rooms], OPEN_SECONDS)
    if failed:
        failures[phase] = failed
        log(f"{target.name}: {len(failed):,} of {len(rooms):,} streams did not open{failures.note(phase)}")


def memory_per_stream(clients: StreamClients, target: Target, rooms: list[str], before_kb: int,
                      failures: Failures, phase: str) -> float:
    """KB per open stream, after opening one more per room of ``rooms``."""
    open_streams(clients, target, rooms, failures, phase)
    settle(target.pid)
    return (rss_kb(target.pid) - before_kb) / max(clients.open_streams, 1)


async def healthz_samples(url: str) -> list[float]:
    host = url.split("://", 1)[1]
    samples = []
    for _ in range(HEALTHZ_SAMPLES):
        started = time.monotonic()
        connection = await connect(url)
        try:
            status, _ = await connection.request(http_request("GET", "/healthz", host))
        finally:
            connection.close()
        samples.append(time.monotonic() - started)
        if status != 200:
            raise RuntimeError(f"/healthz answered {status}")
        await asyncio.sleep(0.05)
    return samples


async def send_change(target: Target, room: str, version: int) -> tuple[float, int]:
    """Sends one change on a new connection; the time it was sent and the answer's status."""
    connection = await connect(target.url)
    try:
        request = target.change(room, version)
        sent = time.monotonic()
        status, _ = await connection.request(request)
    finally:
        connection.close()
    return sent, status


def fan_out(runner: asyncio.Runner, clients: StreamClients, target: Target, room: str, changes: int) -> FanOut:
    """Per change, the seconds from sending it until every stream of the room had it
    (a stream that did not within DELIVERY_TIMEOUT is counted apart)."""
    phase = Phase(target.pid, clients)
    version = clients.shown_versions()[room]
    seconds: list[float] = []
    missed = refused = 0
    for _ in range(changes):
        version += 1
        sent, status = runner.run(send_change(target, room, version))
        if status != 200:
            refused += 1
            time.sleep(1.0)
            version = clients.shown_versions()[room]  # applied or not: what the streams show
            continue
        receipts = clients.wait_for({room: version}, DELIVERY_TIMEOUT)
        arrivals = [first_at_least(received, version) for received in receipts.receipts.values()]
        missed += arrivals.count(None)
        seconds.append(max((at for at in arrivals if at is not None), default=sent + DELIVERY_TIMEOUT) - sent)
        clients.forget_receipts()
        time.sleep(0.2)
    return FanOut(seconds, missed, refused, phase.usage())


async def paced_changes(target: Target, versions: dict[str, int], rate: float, seconds: float,
                        ) -> tuple[list[Sent], list[float]]:
    """Changes at ``rate``/s for ``seconds`` to random rooms of ``versions``, which it
    keeps up to date. At most one change is in flight per room: the server may answer
    two of one room in any order, but one at a time each makes the room's next version.
    A room whose change was refused gets no more (its version is unknown now).
    Returns the changes sent and how late each was sent."""
    rng = random.Random(10)
    rooms = list(versions)
    free: asyncio.Queue[HttpConnection] = asyncio.Queue()
    connections = [await connect(target.url) for _ in range(CHANGE_CONNECTIONS)]
    for connection in connections:
        free.put_nowait(connection)
    in_flight: set[str] = set()  # also the rooms whose version is unknown: a change failed
    sent: list[Sent] = []
    lateness: list[float] = []

    async def change(connection: HttpConnection, room: str) -> None:
        versions[room] += 1
        request = target.change(room, versions[room])
        record = Sent(room, versions[room], time.monotonic())
        sent.append(record)
        record.status, _ = await connection.request(request)
        record.answer_seconds = time.monotonic() - record.at
        if record.status == 200:
            in_flight.discard(room)
        free.put_nowait(connection)

    start = time.monotonic()
    end = start + seconds
    answers: list[asyncio.Task[None]] = []
    try:
        for due in range(int(rate * seconds)):
            at = start + due / rate
            if (delay := at - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            if free.empty():  # all 16 wait for an answer: so does this change
                try:
                    connection = await asyncio.wait_for(free.get(), max(0.001, end - time.monotonic()))
                except TimeoutError:
                    break  # the window is over: the rest is the backlog
            else:
                connection = free.get_nowait()
            if len(in_flight) == len(rooms):
                free.put_nowait(connection)
                break  # no room left to change
            while (room := rng.choice(rooms)) in in_flight:
                pass
            in_flight.add(room)
            lateness.append(time.monotonic() - at)
            answers.append(asyncio.create_task(change(connection, room)))
        await asyncio.gather(*answers)
    finally:
        for connection in connections:
            connection.close()
    return sent, lateness


def steady_changes(runner: asyncio.Runner, clients: StreamClients, target: Target, sizes: Sizes) -> Steady:
    clients.forget_receipts()
    versions = clients.shown_versions()
    phase = Phase(target.pid, clients)
    sent, lateness = runner.run(paced_changes(target, versions, sizes.change_rate, sizes.change_seconds))
    last_answer = time.monotonic()
    usage = phase.usage()
    receipts = clients.wait_for(versions, DELIVERY_TIMEOUT)
    by_room: dict[str, list[Sent]] = {}
    for change in sent:
        if change.status == 200:
            by_room.setdefault(change.room, []).append(change)
    latencies: list[float] = []
    undelivered = 0
    for stream_id, received in receipts.receipts.items():
        for change in by_room.get(clients.room_of(stream_id), ()):
            arrived = first_at_least(received, change.version)
            if arrived is None:
                undelivered += 1
            else:
                latencies.append(arrived - change.at)
    unknown = {change.room for change in sent if change.status != 200}  # refused: applied or not?
    lost = sum(1 for stream_id, latest in receipts.latest.items()
               if clients.room_of(stream_id) not in unknown and latest != versions[clients.room_of(stream_id)])
    seconds = last_answer - sent[0].at if sent else 0.0
    return Steady(sent, int(sizes.change_rate * sizes.change_seconds), seconds, lateness, latencies,
                  undelivered, lost, receipts.dropped, usage)


def measure(target: Target, sizes: Sizes) -> Measured:
    """Every stream figure on one server, in an order that keeps them apart: memory
    first (on a heap the streams have not grown yet), then the 10,000 idle streams
    (healthz) and the steady changes on those same streams, then the one-room fan-out,
    then opens/s (whose closed connections come last)."""
    began = time.monotonic()
    failures = Failures()
    prefix = f"st-{secrets.token_hex(3)}-"  # rooms of their own on a server others use too
    busy = [f"{prefix}{i}" for i in range(sizes.busy_rooms)]
    idle = busy[:sizes.idle_rooms]
    fan_room = f"{prefix}fan"
    warm_up = [f"{prefix}warm-{i}" for i in range(20)]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner, StreamClients(target.url) as clients:
        runner.run(target.prepare([*busy, fan_room, *warm_up]))
        log(f"{target.name}: {len(busy) + 21:,} rooms ready ({time.monotonic() - began:.0f} s)")
        open_streams(clients, target, warm_up, failures, "warm-up")  # what streams build lazily, once
        clients.close_streams()
        settle(target.pid)
        before_kb = rss_kb(target.pid)
        memory_kb = memory_per_stream(clients, target, idle, before_kb, failures, "idle")
        memory_busy_kb = memory_per_stream(clients, target, busy[len(idle):] + busy, before_kb, failures, "busy")
        log(f"{target.name}: {clients.open_streams:,} streams open ({time.monotonic() - began:.0f} s)")
        phase = Phase(target.pid, clients)
        healthz = runner.run(healthz_samples(target.url))
        healthz_usage = phase.usage()
        steady = steady_changes(runner, clients, target, sizes)
        log(f"{target.name}: steady changes done ({time.monotonic() - began:.0f} s)")
        clients.close_streams()
        settle(target.pid)

        open_streams(clients, target, [fan_room] * sizes.fan_streams, failures, "fan-out")
        fanout = fan_out(runner, clients, target, fan_room, sizes.fan_changes)
        clients.close_streams()
        settle(target.pid)

        paths = [target.stream_path(room) for room in (busy * (sizes.opens // len(busy) + 1))[:sizes.opens]]
        phase = Phase(target.pid, clients)
        churned = clients.churn(paths, OPENERS, CHURN_SECONDS)
        opens_usage = phase.usage()
        if churned.failures:
            failures["opens/s"] = churned.failures
    log(f"{target.name}: done ({time.monotonic() - began:.0f} s)")
    return Measured(memory_kb, memory_busy_kb, healthz, healthz_usage, steady, fanout, churned.opens,
                    churned.opens / churned.seconds, churned.open_seconds, opens_usage, failures)


# --- the figures ------------------------------------------------------------------------

_baselines: dict[Sizes, tuple[Measured, Measured | None]] = {}  # measured once per run


def baselines(sizes: Sizes) -> tuple[Measured, Measured | None]:
    """(raw ASGI, sse-starlette alone), measured the first time they are asked for. Our
    server no longer uses sse-starlette: without it installed there is no second."""
    if sizes not in _baselines:
        sse = None
        with tempfile.TemporaryDirectory(prefix="bench-stream-baselines-") as tmp:
            with start_baseline("bench.baselines.raw_asgi_stream", Path(tmp)) as server:
                raw = measure(BaselineTarget("raw ASGI", server.url, server.pid), sizes)
            if importlib.util.find_spec("sse_starlette") is not None:
                with start_baseline("bench.baselines.sse_starlette_stream", Path(tmp)) as server:
                    sse = measure(BaselineTarget("sse-starlette", server.url, server.pid), sizes)
        _baselines[sizes] = raw, sse
    return _baselines[sizes]


def figures(server: Server, quick: bool) -> list[Figure]:
    sizes = QUICK if quick else FULL
    ours = measure(OurTarget(server), sizes)
    raw, sse = baselines(sizes)
    return stream_figures(ours, raw, sse, sizes)


def _ms(seconds: float) -> float:
    return seconds * 1000


def _ms_at(values: list[float], q: float) -> float:
    """The q-percentile of ``values`` (seconds) in ms; NaN if there are none."""
    return _ms(percentile(values, q)) if values else float("nan")


def _ms_median(values: list[float]) -> float:
    return _ms(median(values)) if values else float("nan")


def alone(sse: Measured | None, value: Callable[[Measured], str]) -> str:
    """The note's word on the second baseline."""
    return f"sse-starlette alone {value(sse)}" if sse else "no sse-starlette baseline (not installed)"


def stream_figures(ours: Measured, raw: Measured, sse: Measured | None, sizes: Sizes) -> list[Figure]:
    """Each goal's figure: ours beside raw ASGI (the floor), sse-starlette alone in the
    note. A goal counts as met only if every stream it needed opened."""
    idle, busy, rooms, fan = sizes.idle_rooms, 2 * sizes.busy_rooms, sizes.busy_rooms, sizes.fan_streams
    failed_idle, failed_busy = ours.failures.note("idle"), ours.failures.note("idle", "busy")
    steady = ours.steady
    kept_up = steady.backlog == 0 and not steady.errors
    fan_median = _ms_median(ours.fanout.seconds)
    fan_changes = len(ours.fanout.seconds)
    fan_failed = ours.failures.note("fan-out") + (
        f"; {ours.fanout.missed:,} deliveries missing after {DELIVERY_TIMEOUT:.0f} s" if ours.fanout.missed else ""
    ) + (f"; {ours.fanout.refused} changes refused" if ours.fanout.refused else "")
    healthz_p50 = _ms(median(ours.healthz))
    steady_p99 = _ms_at(steady.latencies, 0.99)
    return [
        Figure(f"memory per idle stream ({idle:,} streams, {idle:,} rooms)", "KB", ours.memory_kb, raw.memory_kb,
               "raw ASGI", "≤ 16 KB (hard limit 24 KB)", not failed_idle and ours.memory_kb <= 16,
               f"hard limit {'met' if ours.memory_kb <= 24 else 'not met'}; "
               f"{alone(sse, lambda m: f'{m.memory_kb:.1f} KB')}{failed_idle}"),
        Figure(f"memory per idle stream ({busy:,} streams, {rooms:,} rooms)", "KB", ours.memory_busy_kb,
               raw.memory_busy_kb, "raw ASGI", "", None,
               f"{alone(sse, lambda m: f'{m.memory_busy_kb:.1f} KB')}{failed_busy}"),
        Figure(f"/healthz p50 with {busy:,} idle streams open", "ms", healthz_p50, _ms(median(raw.healthz)),
               "raw ASGI", "< 50 ms", not failed_busy and healthz_p50 < 50,
               f"{HEALTHZ_SAMPLES} requests, each on a new connection; meanwhile the server used "
               f"{ours.healthz_usage.share:.0%} of a core (raw ASGI {raw.healthz_usage.share:.0%}); "
               f"{alone(sse, lambda m: f'{_ms(median(m.healthz)):.1f} ms')}{failed_busy}"),
        Figure(f"/healthz p95 with {busy:,} idle streams open", "ms", _ms(percentile(ours.healthz, 0.95)),
               _ms(percentile(raw.healthz, 0.95)), "raw ASGI", "", None,
               alone(sse, lambda m: f"{_ms(percentile(m.healthz, 0.95)):.1f} ms")),
        Figure("stream opens/s (connect, GET, first event, close)", "/s", ours.opens_per_s, raw.opens_per_s,
               "raw ASGI", "≥ 600/s", "opens/s" not in ours.failures and ours.opens_per_s >= 600,
               f"{2 * OPENERS} concurrent openers, {ours.opens:,} opens, each p50 "
               f"{_ms_at(ours.open_seconds, 0.5):.1f} ms; {ours.opens_usage.per(ours.opens, 'open')}; "
               f"{alone(sse, lambda m: f'{m.opens_per_s:,.0f}/s')}{ours.failures.note('opens/s')}"),
        Figure(f"one room, {fan:,} streams: change → all received (median of {fan_changes})", "ms",
               fan_median, _ms_median(raw.fanout.seconds), "raw ASGI", "≤ 50 ms",
               not fan_failed and fan_median <= 50,
               f"{fan / fan_median * 1000:,.0f} deliveries/s (goal ≥ 20,000/s); "
               f"{ours.fanout.usage.per(fan * fan_changes, 'delivery')}; "
               f"{alone(sse, lambda m: f'{_ms_median(m.fanout.seconds):.1f} ms')}{fan_failed}"),
        Figure(f"one room, {fan:,} streams: change → all received (max of {fan_changes})", "ms",
               _ms_at(ours.fanout.seconds, 1), _ms_at(raw.fanout.seconds, 1), "raw ASGI", "", None,
               alone(sse, lambda m: f"{_ms_at(m.fanout.seconds, 1):.1f} ms")),
        Figure(f"{busy:,} streams, {rooms:,} rooms, changes paced at {sizes.change_rate:,.0f}/s: "
               f"change → client p99", "ms", steady_p99, _ms_at(raw.steady.latencies, 0.99), "raw ASGI",
               "≤ 50 ms at that rate", not failed_busy and kept_up and steady_p99 <= 50,
               f"p50 {_ms_at(steady.latencies, 0.5):.1f} ms over {len(steady.latencies):,} deliveries of the "
               f"{len(steady.sent):,} changes sent (of {steady.due:,} due); the changes' own answers took "
               f"p50 {_ms_at([change.answer_seconds for change in steady.sent], 0.5):.1f} ms, "
               f"p99 {_ms_at([change.answer_seconds for change in steady.sent], 0.99):.1f} ms; "
               + alone(sse, lambda m: f"{_ms_at(m.steady.latencies, 0.99):.1f} ms")),
        Figure(f"{busy:,} streams, {rooms:,} rooms: change rate achieved (paced at {sizes.change_rate:,.0f}/s)",
               "/s", steady.rate, raw.steady.rate, "raw ASGI", f"{sizes.change_rate:,.0f}/s, no backlog", kept_up,
               f"backlog {steady.backlog:,} changes never sent; sent up to {max(steady.lateness, default=0):.2f} s "
               f"late; {steady.usage.per(len(steady.sent), 'change')}"
               + (f"; answers other than 200: {steady.errors}" if steady.errors else "")),
        Figure(f"{busy:,} streams, {rooms:,} rooms: streams not on their room's final version", "streams",
               steady.lost, raw.steady.lost, "raw ASGI", "0 (no lost update)",
               not failed_busy and steady.lost == steady.undelivered == steady.dropped == 0,
               f"{steady.undelivered:,} (change, stream) pairs never delivered; {steady.dropped:,} streams "
               f"ended by the server; {alone(sse, lambda m: f'{m.steady.lost} streams')}{failed_busy}"
               + (f"; {sum(steady.errors.values()):,} rooms left out: a change to them was refused"
                  if steady.errors else "")),
        client_capacity(raw, sizes),
    ]


def client_capacity(raw: Measured, sizes: Sizes) -> Figure:
    """What the bench's SSE client can take, from its own CPU time against the fastest
    server there is (the raw-ASGI baseline). An upper bound of its cost per message:
    it includes handing the receipts to the bench process."""
    messages = len(raw.fanout.seconds) * sizes.fan_streams
    return Figure(
        "the bench's SSE client (not our server): room messages read per client CPU second", "/s",
        messages / raw.fanout.usage.clients, None, "", "", None,
        f"against raw ASGI, one-room fan-out: {raw.fanout.usage.per(messages, 'message')}; "
        f"opens: {raw.opens_usage.per(raw.opens, 'open')}")
