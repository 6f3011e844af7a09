"""Redis pub/sub broker (``redis://host:port/db``, ``rediss://`` for TLS).

Transport only: publishing is one ``PUBLISH`` of the snapshot as JSON (``published_at``
included); receiving is ONE subscriber connection per process, owned by one reader
task, holding one Redis subscription per room that has local streams. A message is
decoded once per process and handed to the fan-out, which gives every local stream of
the room that same object (so it is encoded for them once, too). The local
subscribers (the streams) live in the shared fan-out (``fanout.py``), which is
reference-counted by channel: the first local subscriber of a room makes the reader
``SUBSCRIBE``, the last one leaving makes it ``UNSUBSCRIBE``.

``subscribe`` returns once Redis confirmed the subscription, so a stream that then
reads its snapshot from the store cannot miss a change published after that read.

The connection is ours, not redis-py's ``PubSub``: that one reconnects and resubscribes
by itself inside its calls (redis-py issues #2089, #1572, #2417), which would hide
exactly the moment we must act on. Here every lost connection is seen by the reader,
which then:

1. marks the broker down (``ping`` fails, so ``/readyz`` says unavailable) and logs one
   ``broker_unavailable`` warning per outage, no traceback;
2. reconnects with capped, jittered exponential backoff;
3. resubscribes every room with local streams and waits for Redis to confirm;
4. delivers a ``Resync`` marker to every local subscriber (each stream re-reads its
   room from the store and sends it if newer than what it sent: messages published
   meanwhile are gone), and logs one ``broker_recovered`` info line.

A silent dead peer is found by a ``PING`` on the subscriber connection every
``health_interval`` seconds: no reply at all within two intervals ends the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from widget import logs
from widget.broker import BrokerUnavailable
from widget.broker.fanout import Fanout, Subscribed, Subscriber

CONNECT_TIMEOUT = 2.0  # seconds to open a connection (refused: at once)
COMMAND_TIMEOUT = 2.0  # seconds for a command (PUBLISH, PING) or a write


def _reason(exc: BaseException) -> str:
    """One short line naming the failure (redis-py messages name host and port, never
    the password)."""
    text = str(exc).strip().rstrip(".")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait until it is done. Cancelled again until it is: on Python
    3.11 ``asyncio.wait_for`` (which redis-py uses to bound a write) can swallow a
    cancellation that lands as its inner call completes, and the task would go on."""
    while not task.done():
        task.cancel()
        await asyncio.wait((task,), timeout=0.5)  # our own cancellation propagates
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" later


class RedisBroker:
    may_lose_messages = True

    def __init__(
        self,
        url: str,
        *,
        health_interval: float = 5.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 2.0,
        confirm_timeout: float = 2.0,
    ) -> None:
        try:
            options = parse_url(url)
        except ValueError as exc:
            raise BrokerUnavailable(f"invalid setting WIDGET_BROKER_URL: {exc}") from None
        self.where = f"{options.get('host', 'localhost')}:{options.get('port', 6379)}"
        self._client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 1),  # one retry: a pooled connection from before a restart
        )
        self._health = health_interval
        self._backoff_base, self._backoff_cap = backoff_base, backoff_cap
        self._confirm_timeout = confirm_timeout
        self._fanout = Fanout()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._live = False  # subscriber connection up and every wanted room subscribed
        self._wake = asyncio.Event()  # the reader re-checks its subscriptions
        self._up = asyncio.Event()  # set while live
        self._dirty: set[str] = set()  # rooms whose first stream came or last one left
        # Per subscriber connection (reset when it is lost):
        self._sent: set[str] = set()  # channels whose last command sent was SUBSCRIBE
        self._pending: dict[str, deque[str]] = {}  # replies due per channel, in order
        self._active: set[str] = set()  # subscribed, confirmed by Redis
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._down_since: float | None = None

    # -- the broker's face ---------------------------------------------------------

    async def start(self) -> None:
        """Connect the subscriber connection (and check the server answers), then start
        the reader. Unreachable at start: BrokerUnavailable, one line."""
        conn = self._new_connection()
        try:
            await conn.connect()
            await conn.send_command("PING", check_health=False)
            await conn.read_response(timeout=COMMAND_TIMEOUT)
        except (RedisError, OSError) as exc:
            await conn.disconnect(nowait=True)
            raise BrokerUnavailable(
                f"cannot reach Redis at {self.where} (WIDGET_BROKER_URL): {_reason(exc)}"
            ) from None
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        self._task = asyncio.create_task(self._run(conn), name="widget-redis-broker")
        # Live before the first stream subscribes, so its subscription is confirmed
        # (at once: no rooms yet; if not, the reader goes on and a Resync follows).
        try:
            async with asyncio.timeout(self._confirm_timeout):
                await self._up.wait()
        except TimeoutError:
            pass

    async def publish(self, channel: str, message: Mapping[str, Any]) -> None:
        if self._closed:
            raise RedisConnectionError("the broker is closed")
        payload = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        await self._client.publish(channel, payload)

    def subscribe(self, channel: str, notify: Callable[[], None] | None = None) -> Subscribed:
        return Subscribed(self, channel, notify)

    async def _join(self, channel: str, notify: Callable[[], None] | None) -> Subscriber:
        subscriber, first = self._fanout.add(channel, notify)
        if first:
            self._dirty.add(channel)
            self._wake.set()
        try:
            if self._live and channel not in self._active:
                await self._confirmed(channel)
        except BaseException:
            self._leave(channel, subscriber)
            raise
        return subscriber

    def _leave(self, channel: str, subscriber: Subscriber) -> None:
        if self._fanout.remove(channel, subscriber):  # the last one here: unsubscribe
            self._dirty.add(channel)
            self._wake.set()

    def subscriber_count(self, channel: str) -> int:
        return self._fanout.count(channel)

    async def ping(self) -> None:
        if self._closed:
            raise RedisConnectionError("the broker is closed")
        if not self._live:
            raise RedisConnectionError(f"no subscriber connection to Redis at {self.where}")
        await self._client.ping()

    async def close(self) -> None:
        """End every local subscription (streams finish), stop the reader, close the
        connections."""
        self._closed = True
        self._fanout.close()
        self._wake.set()
        if self._task is not None:
            await _stop(self._task)
        await self._client.aclose()

    # -- subscriptions ---------------------------------------------------------------

    async def _confirmed(self, channel: str) -> None:
        """Wait until Redis confirmed the channel's subscription. Bounded: if it takes
        longer (or the connection is lost meanwhile: then a Resync follows), go on."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        self._wake.set()
        try:
            async with asyncio.timeout(self._confirm_timeout):
                await waiter
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(channel, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(channel, None)

    def _release(self, channel: str | None = None) -> None:
        """Let the subscribers waiting for a confirmation (of ``channel``, or all) go on."""
        groups = self._waiters.values() if channel is None else [self._waiters.get(channel, [])]
        for waiters in groups:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _sync(self, conn: AbstractConnection) -> None:
        """Bring the connection's subscriptions to the rooms that have local streams
        (only the rooms that changed: thousands of streams arriving stay linear)."""
        dirty, self._dirty = self._dirty, set()
        drop = [c for c in dirty if c in self._sent and not self._fanout.count(c)]
        add = [c for c in dirty if c not in self._sent and self._fanout.count(c)]
        if drop:  # never an empty UNSUBSCRIBE: that would drop them all
            for channel in drop:
                self._sent.discard(channel)
                self._active.discard(channel)
                self._pending.setdefault(channel, deque()).append("unsubscribe")
            await conn.send_command("UNSUBSCRIBE", *drop, check_health=False)
        if add:
            for channel in add:
                self._sent.add(channel)
                self._pending.setdefault(channel, deque()).append("subscribe")
            await conn.send_command("SUBSCRIBE", *add, check_health=False)

    def _on_reply(self, reply: Any) -> None:
        if not isinstance(reply, list) or not reply:
            return  # PONG outside subscribed mode
        kind = reply[0]
        if kind == b"message":
            try:
                message = json.loads(reply[2])
            except ValueError:
                return  # not ours
            if isinstance(message, dict) and "version" in message:
                self._fanout.deliver(reply[1].decode(), message)
        elif kind in (b"subscribe", b"unsubscribe"):
            channel = reply[1].decode()
            pending = self._pending.get(channel)
            if pending:
                pending.popleft()
                if not pending:
                    del self._pending[channel]
            if kind == b"subscribe" and channel in self._sent and channel not in self._pending:
                self._active.add(channel)
                self._release(channel)
                self._wake.set()

    # -- the reader ------------------------------------------------------------------

    def _new_connection(self) -> AbstractConnection:
        pool = self._client.connection_pool
        # RESP2, bytes: replies are plain arrays ([b"message", channel, data], ...). No
        # maintenance notifications (RESP3 only) on this private connection.
        options = {name: value for name, value in pool.connection_kwargs.items()
                   if not name.startswith("maint_notifications")}
        options.update(decode_responses=False, protocol=2)
        return pool.connection_class(**options)

    def _backoff(self, failures: int) -> float:
        """Capped exponential backoff with jitter (half to all of the step)."""
        step = min(self._backoff_cap, self._backoff_base * 2 ** max(0, failures - 1))
        return random.uniform(step / 2, step)

    async def _run(self, conn: AbstractConnection | None) -> None:
        failures = 0
        while not self._closed:
            if conn is None:
                conn = self._new_connection()
                try:
                    await conn.connect()
                except (RedisError, OSError) as exc:
                    await conn.disconnect(nowait=True)
                    conn = None
                    failures += 1
                    self._went_down(exc)
                    await asyncio.sleep(self._backoff(failures))
                    continue
                except BaseException:
                    await conn.disconnect(nowait=True)
                    raise
            try:
                await self._session(conn)
            except Exception as exc:  # (RedisError, OSError, or a bug: never a traceback loop)
                self._went_down(exc)
            finally:
                was_live = self._live
                await self._lost(conn)
            if self._closed:
                return
            conn = None
            failures = 1 if was_live else failures + 1
            await asyncio.sleep(self._backoff(failures))

    async def _session(self, conn: AbstractConnection) -> None:
        """Serve one subscriber connection until it fails (raises) or the broker closes."""
        loop = asyncio.get_running_loop()
        reader = asyncio.create_task(self._read(conn))
        self._dirty = self._fanout.channels()  # a new connection: every room again
        live_by = loop.time() + self._confirm_timeout
        next_ping = loop.time() + self._health
        try:
            while not self._closed:
                self._wake.clear()
                await self._sync(conn)
                now = loop.time()
                # _active only holds channels of _sent: equal sizes, all confirmed.
                confirmed = not self._dirty and len(self._active) == len(self._sent)
                if not self._live and (confirmed or now >= live_by):
                    self._went_live()
                if now >= next_ping:
                    await conn.send_command("PING", check_health=False)
                    next_ping = now + self._health
                deadline = next_ping if self._live else min(next_ping, live_by)
                woken = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait((reader, woken), timeout=max(0.0, deadline - loop.time()),
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
                if reader.done():
                    reader.result()  # the read's error
                    raise RedisConnectionError("the subscriber connection ended")
        finally:
            await _stop(reader)

    async def _read(self, conn: AbstractConnection) -> None:
        silence = 2 * self._health + COMMAND_TIMEOUT  # a PING goes out every interval
        while True:
            reply = await conn.read_response(timeout=silence, disconnect_on_error=False)
            if reply is None:
                raise RedisConnectionError(f"no reply from Redis at {self.where} in {silence:g} s")
            self._on_reply(reply)

    def _went_live(self) -> None:
        self._live = True
        self._up.set()
        if self._down_since is not None:
            logs.event("broker_recovered", logging.INFO, broker=self.where,
                       down_seconds=round(time.monotonic() - self._down_since, 2))
            self._down_since = None
        self._release()
        # Whatever was published while we were not subscribed is gone: every stream
        # re-reads its room from the store (after the resubscription, so nothing can
        # fall between the two).
        self._fanout.resync()

    def _went_down(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            logs.event("broker_unavailable", logging.WARNING, broker=self.where, error=_reason(exc))

    async def _lost(self, conn: AbstractConnection) -> None:
        self._live = False
        self._up.clear()
        self._sent.clear()
        self._pending.clear()
        self._active.clear()
        self._release()  # waiting subscribers go on: the Resync after reconnecting covers them
        await conn.disconnect(nowait=True)
