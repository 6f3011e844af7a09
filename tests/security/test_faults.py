"""Faults (issue 11, point 5) not already proven elsewhere (see the module list below):

- the store goes away and comes back, with no restart: ``/readyz`` and the API answer
  503 in the RFC error shape meanwhile (never a 500, never a half-written record), then
  the same process recovers by itself;
- SIGTERM of ``widget serve`` with streams open and notifications still owed: each
  stream ends cleanly after its ``retry:``, the client resumes on the next process with
  ``Last-Event-ID`` and gets only what is newer, and the outbox delivers every owed
  notification, each under the one event id it always had.

- the Chat Panel and Omnichannel answering bytes that are not HTTP at all (a port
  taken by something else, a broken proxy): each call fails as a network error and is
  retried; once they answer properly the chat preview and the notification arrive,
  the notification once.

Already covered (not repeated here): Chat Panel down / slow / garbage JSON
(``tests/test_chat_history.py``, ``tests/test_crm_pages.py::test_room_check_outcomes``),
Omnichannel down / slow / 5xx / 4xx / 429 (``tests/test_notify_delivery.py``), kill -9
mid-write (``tests/test_idempotency_crash.py``, ``tests/test_notify_delivery.py::
test_bar_30_…``, ``tests/test_worker.py::test_a_worker_killed_mid_batch_…``), a
stream's clean end at SIGTERM (``tests/test_stream.py::test_at_sigterm_…``)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from httpx_sse import connect_sse

from tests.helpers import assert_error, deal, wait_for
from tests.support import SCALE, FakeClock, LiveServer, Tenant, WidgetServer, make_settings, seed_company, serving_http
from widget.app import create_app

# -- the store goes away and comes back ---------------------------------------------------


def _admin(database_url: str, sql: str) -> None:
    """SQL on the server's maintenance database, as the test server's superuser."""
    from tests import postgres_support

    base, _, _ = database_url.rpartition("/")
    postgres_support.fetch(f"{base}/postgres", sql)


@pytest.fixture
def pg_live(tmp_path: Path) -> Iterator[tuple[LiveServer, Tenant, str]]:
    settings = make_settings(tmp_path)
    tenant = seed_company(settings)
    name = settings.database_url.rpartition("/")[2].split("?")[0]
    with LiveServer(create_app(settings, FakeClock())) as server:
        try:
            yield server, tenant, name
        finally:
            _admin(settings.database_url, f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")


@pytest.mark.scale_only("a PostgreSQL server can refuse and drop connections while the process runs; a SQLite "
                        "file a process holds open cannot be taken away from it (the embedded store's 503 on an "
                        "unopenable file: tests/test_limits.py::test_store_outage_answers_503_never_500)")
def test_postgresql_going_away_is_503_everywhere_then_the_process_recovers_by_itself(
    pg_live: tuple[LiveServer, Tenant, str],
) -> None:
    server, tenant, name = pg_live
    url = server.app.state.runtime.settings.database_url
    with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=15) as api:
        made = api.post("/api/v1/deals", json=deal(room_id="room-1", creator_flag="bot"))
        assert made.status_code == 201
        token = api.post("/api/v1/embed-tokens", json={"room_id": "room-1", "agent_id": "a"}).json()["token"]
        assert api.get("/readyz").status_code == 200

        # The outage: no new connection is let in, and the pool's are ended.
        _admin(url, f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
        _admin(url, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        ready = api.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["store"].startswith("unavailable"), ready.text
        answers = {
            "read": api.get(f"/api/v1/deals/{made.json()['id']}"),
            "write": api.post("/api/v1/deals", json=deal(name="During the outage", room_id="room-1",
                                                         creator_flag="bot")),
            "patch": api.patch(f"/api/v1/deals/{made.json()['id']}", json={"name": "During the outage"}),
            "room": api.get("/api/v1/rooms/room-1"),
            "component state": api.get("/embed/rooms/room-1/state", params={"token": token}),
            "stream": api.get("/embed/rooms/room-1/events", params={"token": token}),
        }
        for what, response in answers.items():
            assert_error(response, 503, "unavailable")
            assert response.headers["retry-after"] == "5", what

        # Back: the same process answers again, with nothing of the refused writes.
        _admin(url, f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
        assert wait_for(lambda: api.get("/readyz").status_code == 200, 15)
        assert api.get(f"/api/v1/deals/{made.json()['id']}").json() == made.json()
        room = api.get("/api/v1/rooms/room-1").json()
        assert (room["version"], room["deal"]["name"]) == (1, made.json()["name"])
        again = api.post("/api/v1/deals", json=deal(name="After", room_id="room-1", creator_flag="bot"))
        assert again.status_code == 201 and api.get("/api/v1/rooms/room-1").json()["version"] == 2


# -- SIGTERM with open streams and notifications owed -----------------------------------------


class Omnichannel(BaseHTTPRequestHandler):
    """A fake Omnichannel: answers ``status`` and notes (path, event id, status) of every call."""

    status: ClassVar[int] = 503
    calls: ClassVar[list[tuple[str, str, int]]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with self.lock:
            status = type(self).status
            type(self).calls.append((self.path, self.headers.get("x-widget-event-id", ""), status))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _room_events(source: Any) -> Iterator[Any]:
    return (event for event in source.iter_sse() if event.event == "room")


async def test_sigterm_ends_open_streams_cleanly_they_resume_on_the_next_process_and_no_notification_is_lost(
    widget_server: WidgetServer,
) -> None:
    Omnichannel.status, Omnichannel.calls = 503, []
    with serving_http(Omnichannel) as omnichannel:
        created = json.loads(widget_server.cli(
            "company", "create", "acme", "--name", "Acme", "--frame-origin", "http://localhost:8001",
            "--omnichannel-url", omnichannel, "--omnichannel-secret", "s3cret", "--json"))
        headers = {"Authorization": f"Bearer {created['api_key']}"}
        await widget_server.start()
        assert widget_server.process is not None
        with httpx.Client(base_url=widget_server.url, headers=headers, timeout=10) as api:
            token = api.post("/api/v1/embed-tokens", json={"room_id": "room-1", "agent_id": "a"}).json()["token"]
            deals = []
            with connect_sse(api, "GET", "/embed/rooms/room-1/events", params={"token": token}) as one, \
                    connect_sse(api, "GET", "/embed/rooms/room-1/events", params={"token": token}) as two:
                streams = [_room_events(one), _room_events(two)]
                firsts = [next(events) for events in streams]
                assert [(e.id, e.retry) for e in firsts] == [("0", 2000)] * 2  # "reconnect after 2 s"
                for n in range(3):
                    deals.append(api.post("/api/v1/deals", json=deal(name=f"Deal {n}", room_id="room-1",
                                                                      creator_flag="bot")).json()["id"])
                    assert [next(events).id for events in streams] == [str(n + 1)] * 2
                # Every notification has been tried (and refused) at least once: then SIGTERM.
                assert wait_for(lambda: {c[0] for c in Omnichannel.calls} == {"/deals"}
                                and len(Omnichannel.calls) >= 3, 15)
                widget_server.process.send_signal(signal.SIGTERM)
                # Each stream ends with its body's last chunk: iteration stops, nothing raised.
                assert [list(events) for events in streams] == [[], []]
            assert widget_server.process.wait(15) in (0, -signal.SIGTERM)
            owed = len(Omnichannel.calls)

            Omnichannel.status = 200  # Omnichannel is back; the next process takes over
            await widget_server.start()
            with connect_sse(api, "GET", "/embed/rooms/room-1/events", params={"token": token},
                             headers={"Last-Event-ID": "3"}) as resumed:
                events = _room_events(resumed)
                # Nothing again for version 3; the control: the next change arrives.
                api.post("/api/v1/deals", json=deal(name="Deal 3", room_id="room-1", creator_flag="bot"))
                after = next(events)
            assert (after.id, json.loads(after.data)["deal"]["name"]) == ("4", "Deal 3")

        def delivered() -> set[str]:
            return {event_id for _, event_id, status in Omnichannel.calls if status == 200}

        assert wait_for(lambda: len(delivered()) == 4, 30), Omnichannel.calls
    # Every call before and after the SIGTERM carried one of four event ids, each delivered.
    assert {event_id for _, event_id, _ in Omnichannel.calls} == delivered()
    refused_before = {event_id for _, event_id, _ in Omnichannel.calls[:owed]}
    assert len(refused_before) == len(deals) == 3 and refused_before <= delivered()


# -- the systems we don't own answer bytes that are not HTTP -----------------------------

JUNK = b"\x00\xff\xfeNOT HTTP AT ALL\r\n\r\n<html>\x1b[31m"


class NotHttpFirst:
    """A raw TCP server for both upstreams: the first request on each path answers
    ``JUNK`` and hangs up; later ones get a proper answer (the Chat Panel's messages,
    Omnichannel's 200). Notes every request line."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[tuple[str, str]] = []  # (request line, what it got)
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            method, target, _ = lines[0].split(" ", 2)
            path = target.split("?")[0]
            with self.lock:
                first = not any(line.split(" ")[1].split("?")[0] == path for line, _ in self.requests)
                self.requests.append((f"{method} {target}", "junk" if first else "ok"))
            if first:
                conn.sendall(JUNK)
                return
            answer = json.dumps({"messages": [{"sender_type": "customer", "text": "Hello from the room",
                                               "sent_at": "2026-11-25T08:59:00Z"}]}).encode() \
                if path.endswith("/messages") else b"{}"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         + f"Content-Length: {len(answer)}\r\n\r\n".encode() + answer)

    def close(self) -> None:
        self.sock.close()


async def test_upstreams_answering_bytes_that_are_not_http_are_retried_until_they_answer(
    widget_server: WidgetServer,
) -> None:
    upstream = NotHttpFirst()
    try:
        widget_server.env["WIDGET_CHAT_PANEL_URL"] = f"{upstream.url}/chat"
        created = json.loads(widget_server.cli(
            "company", "create", "acme", "--name", "Acme", "--frame-origin", "http://localhost:8001",
            "--omnichannel-url", f"{upstream.url}/omni", "--omnichannel-secret", "s3cret", "--json"))
        await widget_server.start()
        async with httpx.AsyncClient(base_url=f"{widget_server.url}/api/v1", timeout=10,
                                     headers={"Authorization": f"Bearer {created['api_key']}"}) as api:
            made = (await api.post("/deals", json=deal(room_id="room-1", creator_flag="bot"))).json()

            async def settled() -> list[dict[str, Any]]:
                return (await api.get(f"/deals/{made['id']}/timeline")).json()["entries"]

            deadline = asyncio.get_running_loop().time() + 20
            while not ((entries := await settled())[0]["chat_preview_status"] == "ok"
                       and ("POST /omni/deals", "ok") in upstream.requests):
                assert asyncio.get_running_loop().time() < deadline, (entries, upstream.requests)
                await asyncio.sleep(0.05)
    finally:
        upstream.close()
    assert entries[0]["chat_preview"] == [{"sender_type": "customer", "text": "Hello from the room",
                                           "sent_at": "2026-11-25T08:59:00Z"}]
    calls = [request for request, _ in upstream.requests]
    assert calls.count("POST /omni/deals") == 2  # the junk, then the one delivery
    assert [got for request, got in upstream.requests if request.startswith("GET /chat/rooms/room-1/messages")] \
        == ["junk", "ok"]
    log = widget_server.log(widget_server.starts).read_text()
    assert "Traceback" not in log and '"level": "error"' not in log
