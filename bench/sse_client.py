"""The client side of the stream figures: thousands of SSE connections held by worker
processes on uvloop, driven from the bench process, and a keep-alive HTTP/1.1
connection for the requests that cause changes and probe ``/healthz``.

Both are raw asyncio protocols, not httpx: on 2 cores the client shares the machine
with the server under test, so every microsecond it spends per event is one the
server does not get (and a late receipt would be blamed on the server). A stream
parses only what the figures need: the status line, the chunked framing and each
message's ``id:`` and ``event:`` lines.

Times are ``time.monotonic()``: CLOCK_MONOTONIC is one clock for every process on the
machine, so a receipt taken in a worker compares with a send taken in the parent.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHECKOUT = Path(__file__).resolve().parent.parent  # where ``bench`` can be imported from

Receipt = tuple[int, float]  # (version, time.monotonic() when it arrived)


class StreamFailed(Exception):
    """The stream ended or was refused before its first room message."""


def _head(buffer: bytes | bytearray) -> tuple[int, dict[bytes, bytes], int] | None:
    """(status, headers by lower-cased name, end of head) once the response head is whole."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    headers = dict(line.lower().split(b":", 1) for line in lines[1:])
    return int(lines[0][9:12]), {name: value.strip() for name, value in headers.items()}, end + 4


class SseStream(asyncio.Protocol):
    """One ``GET …/events`` connection. Keeps the newest version it saw (``latest``)
    and, while ``receipts`` is not None, every room message as a ``Receipt``."""

    __slots__ = ("fleet", "room", "request", "transport", "latest", "receipts", "first",
                 "_buffer", "_head_done", "_chunked", "_lines", "_id", "_event", "_closing")

    def __init__(self, fleet: Fleet | None, room: str, request: bytes, record: bool) -> None:
        self.fleet = fleet  # told of each version, for its waits (None: a churn open)
        self.room = room
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.latest = -1
        self.receipts: list[Receipt] | None = [] if record else None
        self.first: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._buffer = b""  # a response head or chunk not yet whole
        self._head_done = False
        self._chunked = False
        self._lines = b""  # an SSE line not yet ended
        self._id = -1
        self._event = b""
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()  # one arrival time for everything in this read
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        if not self._head_done:
            head = _head(data)
            if head is None:
                self._buffer = data
                return
            status, headers, end = head
            if status != 200:
                self._fail(f"HTTP {status}")
                return
            self._head_done = True
            self._chunked = headers.get(b"transfer-encoding") == b"chunked"
            data = data[end:]
        if not self._chunked:
            self._sse(data, now)
            return
        # Whole chunks only (no extensions: uvicorn sends none); an event is one chunk,
        # far smaller than a TCP segment, so waiting for a chunk's end costs nothing.
        pos = 0
        while (eol := data.find(b"\r\n", pos)) >= 0:
            end = eol + 2 + int(data[pos:eol], 16)
            if len(data) < end + 2:
                break
            if end == eol + 2:
                self._fail("the server ended the stream")
                return
            self._sse(data[eol + 2:end], now)
            pos = end + 2
        self._buffer = data[pos:]

    def _sse(self, payload: bytes, now: float) -> None:
        lines = (self._lines + payload).split(b"\n")
        self._lines = lines.pop()
        for line in lines:
            if line == b"" or line == b"\r":  # end of a message
                if self._event == b"room":
                    self._room_message(self._id, now)
                self._event = b""
            elif line.startswith(b"id:"):
                self._id = int(line[3:])
            elif line.startswith(b"event:"):
                self._event = line[6:].strip()

    def _room_message(self, version: int, now: float) -> None:
        previous = self.latest
        self.latest = max(previous, version)
        if self.receipts is not None:
            self.receipts.append((version, now))
        if not self.first.done():
            self.first.set_result(now)
        if self.fleet is not None and self.latest > previous:
            self.fleet.advanced(self, previous)

    def _fail(self, reason: str) -> None:
        """The server refused or ended the stream."""
        if not self.first.done():
            self.first.set_exception(StreamFailed(reason))
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        """We are done with the stream."""
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.first.done():
            self.first.set_exception(StreamFailed(f"connection lost: {exc or 'closed by the server'}"))
        elif not self._closing and self.fleet is not None:
            self.fleet.dropped += 1  # it was open and we did not close it


def stream_request(host: str, port: int, path: str) -> bytes:
    """What a browser's EventSource sends, less the headers no server reads."""
    return (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
            f"Cache-Control: no-cache\r\n\r\n").encode()


@dataclass
class Wait:
    """Until every stream of the rooms in ``targets`` has seen at least its version."""

    targets: dict[str, int]
    missing: int
    done: asyncio.Future[None]


class Fleet:
    """The streams one worker process holds, and the commands it runs on them."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.streams: dict[int, SseStream] = {}
        self.by_room: dict[str, list[SseStream]] = {}
        self.wait: Wait | None = None
        self.dropped = 0  # streams the server ended or cut

    def advanced(self, stream: SseStream, previous: int) -> None:
        wait = self.wait
        if wait is None:
            return
        target = wait.targets.get(stream.room)
        if target is not None and previous < target <= stream.latest:
            wait.missing -= 1
            if wait.missing == 0 and not wait.done.done():
                wait.done.set_result(None)

    async def _connect(self, stream: SseStream, deadline: float) -> float:
        """Connects ``stream``; the time its first room message came. Raises StreamFailed,
        also when that did not happen by ``deadline`` (time.monotonic())."""
        loop = asyncio.get_running_loop()
        if time.monotonic() >= deadline:
            raise StreamFailed("not tried: the time for opening streams was over")
        try:
            async with asyncio.timeout_at(loop.time() + deadline - time.monotonic()):
                await loop.create_connection(lambda: stream, self.host, self.port)
                return await stream.first
        except TimeoutError:
            raise StreamFailed("no first event before the time for opening streams was over") from None
        except OSError as exc:
            raise StreamFailed(f"connect: {exc}") from None

    async def open(self, streams: list[tuple[int, str, str]], concurrency: int, seconds: float) -> dict[str, Any]:
        """Opens (id, room, path) streams, ``concurrency`` at a time, each until its first
        room message, for at most ``seconds``; they stay open. Returns the ids opened and
        the failures."""
        deadline = time.monotonic() + seconds
        limit = asyncio.Semaphore(concurrency)
        opened: list[int] = []
        failures: list[str] = []

        async def one(stream_id: int, room: str, path: str) -> None:
            async with limit:
                stream = SseStream(self, room, stream_request(self.host, self.port, path), record=True)
                try:
                    await self._connect(stream, deadline)
                except StreamFailed as exc:
                    stream.close()
                    failures.append(str(exc))
                    return
                opened.append(stream_id)
                self.streams[stream_id] = stream
                self.by_room.setdefault(room, []).append(stream)

        await asyncio.gather(*(one(*spec) for spec in streams))
        return {"opened": opened, "failures": failures}

    async def wait_for(self, targets: dict[str, int], timeout: float) -> dict[str, Any]:
        """Waits until every stream of ``targets``' rooms saw its version (or ``timeout``
        seconds); returns those streams' newest version and receipts by stream id."""
        ours = {room: version for room, version in targets.items() if room in self.by_room}
        missing = sum(1 for room, version in ours.items() for s in self.by_room[room] if s.latest < version)
        if missing:
            self.wait = Wait(ours, missing, asyncio.get_running_loop().create_future())
            try:
                await asyncio.wait_for(self.wait.done, timeout)
            except TimeoutError:
                pass
            finally:
                self.wait = None
        return {"streams": {stream_id: (s.latest, s.receipts) for stream_id, s in self.streams.items()
                            if s.room in ours},
                "dropped": self.dropped}

    async def cpu(self) -> None:
        """Nothing: the answer carries the CPU time."""

    async def forget_receipts(self) -> None:
        for stream in self.streams.values():
            stream.receipts = []

    async def close_streams(self) -> None:
        for stream in self.streams.values():
            stream.close()
        self.streams.clear()
        self.by_room.clear()
        await asyncio.sleep(0.1)  # the FINs leave before the next command

    async def churn(self, paths: list[str], concurrency: int, seconds: float) -> dict[str, Any]:
        """Stream opens back to back on ``concurrency`` connections: connect, GET, read
        until the first room message, close. Each path is opened once, for at most
        ``seconds``."""
        deadline = time.monotonic() + seconds
        queue = iter(paths)
        took: list[float] = []
        failures: list[str] = []

        async def opener() -> None:
            for path in queue:
                if time.monotonic() >= deadline:
                    return
                stream = SseStream(None, "", stream_request(self.host, self.port, path), record=False)
                started = time.monotonic()
                try:
                    took.append(await self._connect(stream, deadline) - started)
                except StreamFailed as exc:
                    failures.append(str(exc))
                stream.close()

        started = time.monotonic()
        await asyncio.gather(*(opener() for _ in range(concurrency)))
        return {"started": started, "ended": time.monotonic(), "seconds": took, "failures": failures}


async def _serve(commands: Connection, host: str, port: int) -> None:
    """Runs the parent's commands in order; each answer carries the process's CPU
    seconds so far (most of its work, reading messages, happens between commands)."""
    fleet = Fleet(host, port)
    loop = asyncio.get_running_loop()
    commands.send("ready")
    while True:
        name, arguments = await loop.run_in_executor(None, commands.recv)
        if name == "stop":
            await fleet.close_streams()
            commands.send(None)
            return
        result = await getattr(fleet, name)(**arguments)
        commands.send({"result": result, "cpu": time.process_time()})


def worker_main() -> None:
    """A worker process: ``python -c "…worker_main()" <socket fd> <host> <port>``, its
    commands coming on the inherited socket."""
    import uvloop

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of sockets
    fd, host, port = sys.argv[1:4]
    uvloop.run(_serve(Connection(int(fd)), host, int(port)))


@dataclass
class Receipts:
    latest: dict[int, int]  # stream id → newest version seen
    receipts: dict[int, list[Receipt]]
    dropped: int  # streams the server ended or cut, over the clients' life


@dataclass
class Churned:
    opens: int
    seconds: float  # from the first worker's start to the last one's end
    open_seconds: list[float]
    failures: list[str]


class StreamClients:
    """Worker processes holding SSE connections to the server at ``url``. Streams are
    spread over the workers in turn; every command goes to all and returns when all
    answered."""

    def __init__(self, url: str, processes: int = 2) -> None:
        self.processes = processes
        self._cpu: list[float] = []  # each worker's CPU seconds, as of its last answer
        self._workers: list[tuple[subprocess.Popen[bytes], Connection]] = []
        self._rooms: dict[int, str] = {}  # open stream's id → its room
        self._next_id = 0
        parts = urlsplit(url)
        try:
            for _ in range(self.processes):
                # A new interpreter that imports this module alone (multiprocessing's
                # spawn would import the bench's __main__ and all it imports: seconds).
                ours, theirs = socket.socketpair()
                with theirs:
                    process = subprocess.Popen(
                        [sys.executable, "-c", "from bench.sse_client import worker_main; worker_main()",
                         str(theirs.fileno()), str(parts.hostname), str(parts.port)],
                        pass_fds=[theirs.fileno()], cwd=CHECKOUT, stdin=subprocess.DEVNULL)
                self._workers.append((process, Connection(ours.detach())))
            for _, commands in self._workers:  # started and imported: no command's time includes that
                if commands.recv() != "ready":
                    raise RuntimeError("an SSE client worker did not start")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> StreamClients:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, name: str, arguments: Iterable[dict[str, Any]]) -> list[Any]:
        arguments = list(arguments)
        for (_, commands), each in zip(self._workers, arguments, strict=True):
            commands.send((name, each))
        answers = [commands.recv() for _, commands in self._workers]
        self._cpu = [answer["cpu"] for answer in answers]
        return [answer["result"] for answer in answers]

    def _spread(self, items: list[Any]) -> Iterator[list[Any]]:
        return (items[i::self.processes] for i in range(self.processes))

    def open(self, streams: list[tuple[str, str]], seconds: float, concurrency: int = 64) -> list[str]:
        """Opens one stream per (room, path) and keeps it, ``concurrency`` opens in
        flight per worker, for at most ``seconds``. Returns why those that did not open
        did not."""
        specs = [(self._next_id + i, room, path) for i, (room, path) in enumerate(streams)]
        self._next_id += len(specs)
        answers = self._run("open", ({"streams": part, "concurrency": concurrency, "seconds": seconds}
                                     for part in self._spread(specs)))
        rooms = {stream_id: room for stream_id, room, _ in specs}
        self._rooms.update({stream_id: rooms[stream_id] for answer in answers for stream_id in answer["opened"]})
        return [failure for answer in answers for failure in answer["failures"]]

    def wait_for(self, targets: dict[str, int], timeout: float) -> Receipts:
        """Until every open stream of each room saw at least its target version."""
        answers = self._run("wait_for", ({"targets": targets, "timeout": timeout} for _ in self._workers))
        latest: dict[int, int] = {}
        receipts: dict[int, list[Receipt]] = {}
        for answer in answers:
            for stream_id, (newest, received) in answer["streams"].items():
                latest[stream_id] = newest
                receipts[stream_id] = received
        return Receipts(latest, receipts, sum(a["dropped"] for a in answers))

    def room_of(self, stream_id: int) -> str:
        return self._rooms[stream_id]

    @property
    def open_streams(self) -> int:
        return len(self._rooms)

    def shown_versions(self) -> dict[str, int]:
        """The version each room with open streams shows now (the newest any of its
        streams saw)."""
        receipts = self.wait_for({room: 0 for room in set(self._rooms.values())}, 0)
        versions: dict[str, int] = {}
        for stream_id, latest in receipts.latest.items():
            room = self._rooms[stream_id]
            versions[room] = max(versions.get(room, 0), latest)
        return versions

    @property
    def cpu_seconds(self) -> float:
        """The CPU time the workers have used so far."""
        self._run("cpu", ({} for _ in self._workers))
        return sum(self._cpu)

    def forget_receipts(self) -> None:
        self._run("forget_receipts", ({} for _ in self._workers))

    def close_streams(self) -> None:
        self._run("close_streams", ({} for _ in self._workers))
        self._rooms.clear()

    def churn(self, paths: list[str], concurrency: int, seconds: float) -> Churned:
        """Opens and closes a stream per path, ``concurrency`` openers per worker, for
        at most ``seconds``."""
        answers = self._run("churn", ({"paths": part, "concurrency": concurrency, "seconds": seconds}
                                      for part in self._spread(paths)))
        seconds = [s for a in answers for s in a["seconds"]]
        return Churned(len(seconds), max(a["ended"] for a in answers) - min(a["started"] for a in answers),
                       seconds, [f for a in answers for f in a["failures"]])

    def close(self) -> None:
        """Closes every stream and ends the workers (killed if they do not stop)."""
        for process, commands in self._workers:
            try:
                commands.send(("stop", {}))
            except OSError:
                pass
        for process, commands in self._workers:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            commands.close()
        self._workers.clear()


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time; responses must carry
    a Content-Length (every JSON answer of ours and of the baselines does)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._response: asyncio.Future[tuple[int, bytes]] | None = None
        self._lost = False

    @classmethod
    async def connect(cls, host: str, port: int) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(cls, host, port)
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        head = _head(self._buffer)
        if head is None or self._response is None:
            return
        status, headers, end = head
        if b"content-length" not in headers:
            self._response.set_exception(RuntimeError(f"HTTP {status} without a Content-Length"))
            return
        length = int(headers[b"content-length"])
        if len(self._buffer) < end + length:
            return
        body = bytes(self._buffer[end:end + length])
        del self._buffer[:end + length]
        self._response.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._response is not None and not self._response.done():
            self._response.set_exception(ConnectionError(f"connection lost: {exc or 'closed'}"))

    async def request(self, request: bytes) -> tuple[int, bytes]:
        """Sends a whole request (``http_request``); its (status, body)."""
        assert self.transport is not None and not self._lost, "connection closed"
        self._response = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await self._response
        finally:
            self._response = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def http_request(method: str, path: str, host: str, headers: dict[str, str] | None = None,
                 body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
