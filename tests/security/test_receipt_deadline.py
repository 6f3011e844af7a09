"""Slow clients against the request-receipt deadline (``widget.server``): a request
must arrive whole within ``WIDGET_REQUEST_RECEIPT_TIMEOUT`` (2 s here) of the moment
the connection can take one, else the connection is closed; long responses (streams)
are not affected. The server (``conftest.py``) has a file limit of 1,024, as in issue
11's probe."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.security.live import (
    RECEIPT_DEADLINE,
    LimitedServer,
    healthz,
    raw_connection,
    read_response_head,
    seconds_until_closed,
)

pytestmark = pytest.mark.any_stack  # touches neither the store nor the broker: run on one stack

DEADLINE = RECEIPT_DEADLINE
SLOW_CLIENTS = 1500
BAR = 20.0  # issue 11: a client that never completes its headers is gone within 20 s


def test_a_connection_that_sends_nothing_is_closed(server: LimitedServer) -> None:
    with raw_connection(server) as sock:
        assert DEADLINE - 0.5 < seconds_until_closed(sock, BAR) < DEADLINE + 2


def test_headers_trickled_a_line_at_a_time_are_cut_off(server: LimitedServer) -> None:
    with raw_connection(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert seconds_until_closed(sock, BAR, trickle=b"X-Slow: 1\r\n", every=0.3) < DEADLINE + 2


def test_a_stalled_body_is_cut_off(server: LimitedServer) -> None:
    with raw_connection(server) as sock:
        sock.sendall(b"POST /api/v1/deals HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + server.api_key.encode() + b"\r\n"
                     b"Content-Length: 100\r\n\r\n{\"name\": ")
        assert seconds_until_closed(sock, BAR, trickle=b" ", every=0.3) < DEADLINE + 2


def test_bytes_after_a_kept_alive_response_do_not_hold_the_connection(server: LimitedServer) -> None:
    """Bare CRLFs between requests cancel uvicorn's keep-alive timer and start no
    request: the deadline armed when the response ended still runs."""
    with raw_connection(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response_head(sock)[0] == 200
        assert seconds_until_closed(sock, BAR, trickle=b"\r\n", every=0.3) < DEADLINE + 2


def test_kept_alive_requests_each_get_their_own_deadline(server: LimitedServer) -> None:
    with raw_connection(server) as sock:
        for _ in range(3):  # 3 x 1.2 s: longer than one deadline in all
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response_head(sock)[0] == 200
            time.sleep(1.2)


def test_a_stream_outlives_the_deadline(server: LimitedServer) -> None:
    minted = httpx.post(f"{server.url}/api/v1/embed-tokens", json={"room_id": "room-1", "agent_id": "a-1"},
                        headers={"Authorization": f"Bearer {server.api_key}"})
    token = minted.json()["token"]
    with httpx.stream("GET", f"{server.url}/embed/rooms/room-1/events", params={"token": token},
                      timeout=5) as response:
        assert response.status_code == 200
        started, last_bytes = time.monotonic(), 0.0
        for _ in response.iter_bytes():  # the snapshot, then a ping every 0.5 s
            last_bytes = time.monotonic() - started
            if last_bytes > 2 * DEADLINE:
                break
    assert last_bytes > 2 * DEADLINE


async def _slow_client(server: LimitedServer, gone_after: list[float]) -> None:
    """Sends a header line every second and never ends its headers; notes when the
    server drops it (a connection refused or reset at once counts as dropped at 0 s)."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    except OSError:
        gone_after.append(0.0)
        return
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        while time.monotonic() - started < BAR:
            try:
                if not await asyncio.wait_for(reader.read(1024), 1.0):
                    break
            except TimeoutError:
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
        else:
            return  # still connected at the bar: not noted
    except OSError:
        pass
    finally:
        writer.close()
    gone_after.append(time.monotonic() - started)


async def _healthz_answers(server: LimitedServer) -> float:
    """Seconds until ``/healthz`` answers 200 (tries every 0.2 s), ``inf`` past the bar."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=1) as http:
        while time.monotonic() - started < BAR:
            try:
                if (await http.get(f"{server.url}/healthz")).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    return float("inf")


@pytest.fixture
def file_limit_for_the_clients() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = SLOW_CLIENTS + 500
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("file_limit_for_the_clients")
async def test_1500_slow_clients_are_dropped_and_healthz_answers(server: LimitedServer) -> None:
    """More slow clients than the server has file descriptors (issue 11's outage)."""
    gone_after: list[float] = []
    clients = [asyncio.create_task(_slow_client(server, gone_after)) for _ in range(SLOW_CLIENTS)]
    try:
        await asyncio.sleep(0.5)  # they are connecting and trickling
        answered_after = await _healthz_answers(server)
        await asyncio.gather(*clients)
    finally:
        for client in clients:
            client.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    assert answered_after < DEADLINE + 5, answered_after
    assert len(gone_after) == SLOW_CLIENTS, f"{SLOW_CLIENTS - len(gone_after)} slow clients still connected"
    assert max(gone_after) < DEADLINE + 5
    # The server's file limit was the bottleneck: it held about a thousand until their
    # deadline and closed the excess at once (libuv accepts and closes under EMFILE).
    assert sum(after > DEADLINE - 0.5 for after in gone_after) > 500
    assert healthz(server) == 200
