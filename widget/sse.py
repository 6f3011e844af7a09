"""Server-sent event streams over pure ASGI, lean enough for thousands of idle ones.

One task runs a stream, the server's request task: it sends what the stream's frames
(an async generator) yield. The generator waits on the stream's ``Wakeup``, set by
whatever can happen to an idle stream: a message for it (its broker subscription calls
``set``), its own deadline (next ping, token expiry), the client going away, the server
shutting down. Deadlines share one timer per event loop (a loop timer per stream weighs
~0.5 KB), in ``TICK`` steps. The client going away is the one thing that needs a task
of its own: a bare ``receive()`` (ASGI has no other way to tell). sse-starlette's
response had four tasks, cancel scopes and events per stream: ~48 KB. A message for a
waiting stream need not wake it at all: ``Wakeup.write`` sends its frame from the
caller.

Server shutdown: uvicorn stops accepting and waits for open responses to end (5 s in
``widget serve``), but tells the app nothing until they have (the lifespan's shutdown
comes after). As sse-starlette does, we find the uvicorn server through its SIGTERM
handler (a bound ``Server.handle_exit``) and, while streams are open, look at its
``should_exit`` every ``SHUTDOWN_POLL`` seconds: then every stream ends with its last
chunk, so a proxy does not log a cut response, and the browser reconnects (after
``retry``) to another process. uvicorn run in a thread (tests) installs no signal
handler: its streams end when its graceful timeout cancels them.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import signal
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any

from starlette.types import Message, Receive, Scope, Send

TICK = 0.1  # seconds: how precisely a stream's deadline is kept
SHUTDOWN_POLL = 0.5  # seconds between looks at the server's should_exit
_LINE_END = "\r\n"  # sse-starlette's; EventSource takes \r\n, \n and \r alike


def event(name: str, data: str, *, id: str | None = None, retry: int | None = None) -> bytes:
    """One message. ``data`` is one line (JSON escapes newlines)."""
    lines = [f"id: {id}"] if id is not None else []
    lines += [f"event: {name}", f"data: {data}"]
    if retry is not None:
        lines.append(f"retry: {retry}")
    return (_LINE_END.join(lines) + _LINE_END * 2).encode()


def comment(text: str, *, retry: int | None = None) -> bytes:
    """A comment (the browser dispatches nothing), with ``retry`` if given."""
    lines = [f": {text}"] + ([f"retry: {retry}"] if retry is not None else [])
    return (_LINE_END.join(lines) + _LINE_END * 2).encode()


PING = comment("ping")


def ends_at(max_age: float) -> float:
    """When a stream opened now reaches its maximum age (loop time; never, for 0). Past
    it the stream ends cleanly and the client resumes it (``Last-Event-ID``), maybe on
    another process; up to 10 % earlier, so that streams opened together (a restart)
    end apart."""
    if not max_age:
        return math.inf
    return asyncio.get_running_loop().time() + max_age * random.uniform(0.9, 1.0)


class Wakeup:
    """What a stream waits on. ``set`` wakes it (or its next wait returns at once);
    ``end`` also tells it to stop: the client went away or the server is shutting
    down.

    Once its response streams, ``write`` sends a frame from the caller (the broker's
    fan-out) while the stream's task is parked in ``wait``: a change reaches a room's
    thousand streams as a thousand socket writes, not a thousand task wake-ups (each
    one's scheduling, generator resumption and re-armed wait cost about as much as the
    write itself). A send the server cannot finish at once (its flow control: a slow
    client) goes on in a task, ``writing``, that the stream's task waits for before it
    sends anything else; until then the stream takes its frames the usual way."""

    __slots__ = ("_waiter", "_pending", "_tick", "ended", "send", "writing")

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None
        self._pending = False  # set while nobody waited
        self._tick: int | None = None  # the tick the loop's ticker wakes it at
        self.ended = False
        self.send: Send | None = None  # the response's, once it streams: what ``write`` uses
        self.writing: asyncio.Future[None] | None = None  # a send of ``write`` still going on

    def set(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None:
            self._pending = True
        elif not waiter.done():  # (cancelled if its stream was)
            waiter.set_result(None)

    def end(self, *_: object) -> None:
        """(Also a done-callback.)"""
        self.ended = True
        self.set()

    def wait(self, until: float = math.inf) -> asyncio.Future[None]:
        """Done once ``set`` is called or the loop's clock reaches ``until`` (at most
        ``TICK`` later). A future, not a coroutine: nothing more to keep per stream."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if self._pending or self.ended:
            self._pending = False
            waiter.set_result(None)
            return waiter
        self._waiter = waiter
        if until < math.inf:
            tick = math.ceil(until / TICK)
            if tick != self._tick:  # (mostly it is the same deadline as last time)
                _Ticker.of(loop).wake_at(self, tick)
        return waiter

    def write(self, frame: bytes) -> bool:
        """Send ``frame`` now if the stream's task is parked in ``wait`` (nothing else
        is sending) and no earlier ``write`` is still going on: True once it is sent or
        its send goes on in ``writing``. False if not sent (the stream's task takes it
        the usual way), or if the send failed: that ends the stream, and its task
        raises the error."""
        waiter = self._waiter
        if waiter is None or waiter.done() or self.send is None or self.writing is not None:
            return False
        steps = self.send({"type": "http.response.body", "body": frame, "more_body": True}).__await__()
        try:
            blocked = steps.send(None)
        except StopIteration:
            return True  # written: the common case
        except Exception as exc:
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            self.writing = failed
            self.end()
            return False
        self.writing = asyncio.ensure_future(_Rest(steps, blocked))
        self.writing.add_done_callback(self._written)
        return True

    def _written(self, writing: asyncio.Future[None]) -> None:
        if writing.cancelled() or writing.exception() is not None:
            self.end()  # kept in ``writing``: the stream's task raises it
        else:
            self.writing = None


class _Rest:
    """The rest of a send that ``Wakeup.write`` began: it waits for what the send was
    blocked on (a future the server resolves), then resumes the send where it stopped."""

    __slots__ = ("_steps", "_blocked")

    def __init__(self, steps: Generator[Any, None, None], blocked: Any) -> None:
        self._steps, self._blocked = steps, blocked

    def __await__(self) -> Generator[Any, None, None]:
        yield self._blocked  # to the task running this, as the send would have yielded it
        return (yield from self._steps)


def _server_exiting() -> bool:
    """The uvicorn server of this process is shutting down (found as sse-starlette
    finds it: uvicorn's SIGTERM handler is its ``handle_exit``, bound to it)."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return getattr(server, "should_exit", False) is True


class _Ticker:
    """One per event loop, with one timer that runs every ``TICK`` while there is work:
    the streams' deadlines (buckets by tick, earliest first), and, while responses are
    open, ending them all once the server shuts down."""

    _of_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Ticker] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._due: dict[int, list[Wakeup]] = {}
        self._ticks: list[int] = []  # a heap of _due's keys
        self.open: set[Wakeup] = set()  # the responses sending now
        self._timer: asyncio.TimerHandle | None = None
        self._next_shutdown_look = 0.0

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Ticker:
        ticker = cls._of_loop.get(loop)
        if ticker is None:
            ticker = cls._of_loop[loop] = cls()
        return ticker

    def wake_at(self, wakeup: Wakeup, tick: int) -> None:
        wakeup._tick = tick  # an entry of an earlier deadline is stale now: skipped
        bucket = self._due.get(tick)
        if bucket is None:
            bucket = self._due[tick] = []
            heapq.heappush(self._ticks, tick)
        bucket.append(wakeup)
        self._run()

    def opened(self, wakeup: Wakeup) -> None:
        self.open.add(wakeup)
        if _server_exiting():
            wakeup.end()
        self._run()

    def _run(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(TICK, self._on_tick)

    def _on_tick(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        while self._ticks and self._ticks[0] * TICK <= now:
            tick = heapq.heappop(self._ticks)
            for wakeup in self._due.pop(tick):
                if wakeup._tick == tick:
                    wakeup._tick = None
                    wakeup.set()
        if self.open and now >= self._next_shutdown_look:
            self._next_shutdown_look = now + SHUTDOWN_POLL
            if _server_exiting():
                for wakeup in self.open:
                    wakeup.end()
        if self._ticks or self.open:
            self._run()


class EventStream:
    """An ASGI app that answers with an event stream. ``open(scope, wakeup)`` checks
    the request and returns the stream's frames, which wait on ``wakeup`` and end once
    ``wakeup.ended``; what it raises refuses the request, answered by ``refuse`` (before
    anything was sent). The response ends with its last chunk when the frames end."""

    HEADERS = (
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-store"),
        (b"connection", b"keep-alive"),
        (b"x-accel-buffering", b"no"),  # nginx: pass each frame on at once
    )

    def __init__(
        self,
        open: Callable[[Scope, Wakeup], AsyncGenerator[bytes, None]],
        refuse: Callable[[Exception, Scope, Receive, Send], Awaitable[None]],
    ) -> None:
        self._open = open
        self._refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wakeup = Wakeup()
        try:
            frames = self._open(scope, wakeup)
            # The first frame before the headers: what the frames raise until then (a
            # cap, the store) still refuses the request. HEAD: headers only, an endless
            # body would never end.
            first = b"" if scope["method"] == "HEAD" else await frames.__anext__()
        except Exception as exc:
            await self._refuse(exc, scope, receive, send)
            return
        ticker = _Ticker.of(asyncio.get_running_loop())
        client: asyncio.Future[Message] | None = None
        try:
            # A new headers list each time: middleware edits the message in place.
            await send({"type": "http.response.start", "status": 200, "headers": list(self.HEADERS)})
            if first:
                await send({"type": "http.response.body", "body": first, "more_body": True})
                del first  # an idle stream keeps nothing it sent (thousands of them)
                await receive()  # the request (a GET: no body)
                # What receive() gives next is http.disconnect: the client went away (or
                # the response is complete).
                client = asyncio.ensure_future(receive())
                client.add_done_callback(wakeup.end)
                ticker.opened(wakeup)
                wakeup.send = send
                async for frame in frames:
                    if wakeup.writing is not None:
                        await wakeup.writing
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
                if wakeup.writing is not None:
                    await wakeup.writing
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            wakeup.send = None
            ticker.open.discard(wakeup)
            if client is not None:
                client.cancel()
            if wakeup.writing is not None:
                wakeup.writing.cancel()  # (the client went away while a send was blocked)
            await frames.aclose()  # its subscription is released now, whatever ended it
