"""Chat history in the timeline (RFC section 8, PRD S04, E4): the worker fetches the
room's last messages from the Chat Panel and settles the creation entry ``ok``,
``empty`` or ``failed`` (never left ``pending``), logging ``timeline_log_creation_failed``
with the reason on failure. The Chat Panel is faked with ``httpx.MockTransport`` and,
for real timing and URL handling, a real HTTP server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support import T0, FakeClock, LiveServer
from tests.worker_support import (
    CHAT_PANEL, COMPANY, bot_record, drain, entry, outbox, preview, stored_events, widget_logs,
    worker_runtime,
)
from widget import records
from widget.models import TicketIn, to_micros
from widget.worker import chat_history


def message(n: int, sender_type: str = "customer", **extra: Any) -> dict[str, Any]:
    return {"sender_type": sender_type, "text": f"message {n}", "sent_at": f"2026-11-25T08:5{n}:00Z", **extra}


def answer(body: Any, status: int = 200) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        # json.dumps escapes to ASCII, so a lone surrogate travels as "\ud83d".
        return httpx.Response(status, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    return handler


async def test_preview_is_the_last_five_messages_cut_to_160_characters(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    long_text = "x" * 158 + "👍🏽 and more"  # the cut would fall between 👍 and its skin tone
    messages = [message(n) for n in range(5)] + [
        message(5, "bot", sender_name="Qontak Bot", text=long_text),
        message(6, "agent", sender_name="Rina", text="é" * 160),  # exactly 160: kept whole
    ]
    requests: list[httpx.Request] = []

    def chat_panel(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"messages": messages})

    with widget_logs(caplog) as records:
        async with worker_runtime(tmp_path, clock, chat_panel) as rt:
            record_id = await bot_record(rt, "room-1")
            await drain(rt)
            row = await entry(rt, record_id)
    assert row["chat_preview_status"] == "ok"
    assert preview(row) == [
        {"sender_type": "customer", "text": "message 2", "sent_at": "2026-11-25T08:52:00Z"},
        {"sender_type": "customer", "text": "message 3", "sent_at": "2026-11-25T08:53:00Z"},
        {"sender_type": "customer", "text": "message 4", "sent_at": "2026-11-25T08:54:00Z"},
        {"sender_type": "bot", "sender_name": "Qontak Bot", "text": "x" * 158 + "…",
         "sent_at": "2026-11-25T08:55:00Z"},
        {"sender_type": "agent", "sender_name": "Rina", "text": "é" * 160, "sent_at": "2026-11-25T08:56:00Z"},
    ]
    [request] = requests
    assert request.method == "GET"
    assert str(request.url) == f"{CHAT_PANEL}/rooms/room-1/messages?limit=5"
    assert request.headers["X-Company-Id"] == COMPANY
    assert not any("message 2" in r.getMessage() or "message 2" in str(getattr(r, "props", ""))
                   for r in records)  # message texts never reach the logs


CUTS = [  # (text, what stays before the ellipsis)
    ("a" * 158 + "🇮🇩🇯🇵", "a" * 158),  # a flag is two code points: never half of one
    ("a" * 157 + "🇮🇩🇯🇵", "a" * 157 + "🇮🇩"),
    ("a" * 157 + "👨\u200d👩\u200d👧", "a" * 157),  # a ZWJ family stays whole or goes
    ("a" * 158 + "e\u0301\u0301", "a" * 158),  # a letter with its combining accents
    ("\ud83d" + "b" * 200, "?" + "b" * 158),  # a lone surrogate cannot be stored as UTF-8
]


async def test_the_cut_never_splits_a_character(tmp_path: Path, clock: FakeClock) -> None:
    messages = [message(n, text=text) for n, (text, _) in enumerate(CUTS)]
    async with worker_runtime(tmp_path, clock, answer({"messages": messages})) as rt:
        record_id = await bot_record(rt, "room-1")
        await drain(rt)
        texts = [item["text"] for item in preview(await entry(rt, record_id))]
    assert texts == [kept + "…" for _, kept in CUTS]
    assert all(len(text) <= 160 for text in texts)


async def test_a_room_without_messages_is_empty_and_not_a_failure(tmp_path: Path, clock: FakeClock) -> None:
    async with worker_runtime(tmp_path, clock, answer({"messages": []})) as rt:
        empty = await bot_record(rt, "room-1", "ticket")
        await drain(rt)
        row = await entry(rt, empty, "ticket")
        assert (row["chat_preview_status"], row["chat_preview"]) == ("empty", None)
        assert await stored_events(rt, "timeline_log_creation_failed") == []


async def test_messages_that_cannot_be_shown_are_skipped(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    messages = [
        message(1), message(2, "system"), {"sender_type": "bot", "sent_at": "x"}, "hello",
        message(3, "agent", text=5), message(4, ["bot"]), message(5, "agentic_ai", sender_name=None),
    ]
    with widget_logs(caplog) as records:
        async with worker_runtime(tmp_path, clock, answer({"messages": messages})) as rt:
            record_id = await bot_record(rt, "room-1")
            await drain(rt)
            row = await entry(rt, record_id)
    assert row["chat_preview_status"] == "ok"
    assert [m["text"] for m in preview(row)] == ["message 1", "message 5"]
    assert "sender_name" not in preview(row)[1]
    [skipped] = [r for r in records if getattr(r, "event", None) == "chat_history_messages_skipped"]
    assert skipped.props["skipped"] == 5  # type: ignore[attr-defined]


def raises(error: type[httpx.TransportError]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("simulated", request=request)
    return handler


def text_answer(body: bytes, status: int = 200) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})
    return handler


FAILURES = {
    # room: (Chat Panel, error_reason, attempts) — transient failures get 3 attempts
    "timeout": (raises(httpx.ReadTimeout), "timeout", 3),
    "connect": (raises(httpx.ConnectError), "connect_error", 3),
    "dropped": (raises(httpx.RemoteProtocolError), "network_error", 3),
    "503": (answer({"error": "busy"}, 503), "http_503", 3),
    "429": (answer({"error": "slow down"}, 429), "http_429", 3),
    "404": (answer({"error": "no room"}, 404), "http_404", 1),
    "403": (answer({"error": "forbidden"}, 403), "http_403", 1),
    "html": (text_answer(b"<html>oops</html>"), "malformed_json", 1),
    "truncated": (text_answer(b'{"messages": [{"sender_type": "bot", "te'), "malformed_json", 1),
    "no-body": (text_answer(b"", 200), "malformed_json", 1),
    "no-messages": (answer({"items": []}), "malformed_response", 1),
    "not-a-list": (answer({"messages": {"text": "hi"}}), "malformed_response", 1),
    "top-level-list": (answer([message(1)]), "malformed_response", 1),
    "nothing-showable": (answer({"messages": [{"text": "hi"}, message(2, "robot")]}), "malformed_response", 1),
}


async def test_every_failure_leaves_badge_and_link_only_and_is_logged_once(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """One record per failure mode, in one room each (named after the mode), plus one
    that succeeds: the Chat Panel answers each room its way."""
    calls: dict[str, int] = {}

    def chat_panel(request: httpx.Request) -> httpx.Response:
        room_id = unquote(request.url.raw_path.decode().split("/")[2])
        calls[room_id] = calls.get(room_id, 0) + 1
        if room_id == "fine":
            return httpx.Response(200, json={"messages": [message(1)]})
        return FAILURES[room_id][0](request)

    with widget_logs(caplog) as records:
        async with worker_runtime(tmp_path, clock, chat_panel) as rt:
            failing = {name: await bot_record(rt, name) for name in FAILURES}
            fine = await bot_record(rt, "fine")
            await drain(rt, clock)
            rows = {name: await entry(rt, record_id) for name, record_id in failing.items()}
            events = await stored_events(rt, "timeline_log_creation_failed")
            jobs = {json.loads(job["payload"])["room_id"]: job for job in await outbox(rt)}
            assert preview(await entry(rt, fine)) == [message(1)]  # the positive control
    assert calls == {"fine": 1} | {name: attempts for name, (_, _, attempts) in FAILURES.items()}
    for name, row in rows.items():
        assert (row["chat_preview_status"], row["chat_preview"]) == ("failed", None), name
        assert (row["creator"], row["room_id"]) == ("Bot", name)  # badge and link stay
        assert jobs[name]["done_at"] is not None and FAILURES[name][1] in jobs[name]["last_error"]
    assert len(events) == len(FAILURES)  # one each
    for event in events:
        name = event["room_id"]
        assert event == {"deal_id": failing[name], "room_id": name, "error_reason": FAILURES[name][1],
                         "timestamp": event["timestamp"]}
        assert T0 <= to_micros(datetime.fromisoformat(event["timestamp"])) <= clock.now
        assert event["timestamp"].endswith("Z") and len(event["timestamp"]) == 27  # RFC 3339, µs
    logged = [getattr(r, "props") for r in records if getattr(r, "event", None) == "timeline_log_creation_failed"]
    assert sorted(props["error_reason"] for props in logged) == sorted(reason for _, reason, _ in FAILURES.values())


async def test_without_a_chat_panel_configured_the_entry_fails_at_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with worker_runtime(tmp_path, clock, answer({"messages": []}), chat_panel_url=None) as rt:
        record_id = await bot_record(rt, "room-1", "ticket")
        await drain(rt)
        assert (await entry(rt, record_id, "ticket"))["chat_preview_status"] == "failed"
        [event] = await stored_events(rt, "timeline_log_creation_failed")
    assert event["ticket_id"] == record_id and event["error_reason"] == "not_configured"


async def test_a_record_created_without_a_chat_panel_fails_its_entry_in_the_create_itself(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Nothing to fetch from: the create settles the entry as ``failed`` with its event,
    in its own transaction, and leaves the worker no chat-history job."""
    async with worker_runtime(tmp_path, clock, chat_panel_url=None) as rt:
        company = await rt.store.get_company(COMPANY)
        assert company is not None
        created = await records.create(rt, "ticket", company, TicketIn(
            name="Refund", status="Open", room_id="room-1", creator_flag="agentic_ai"))
        assert (await entry(rt, created["id"], "ticket"))["chat_preview_status"] == "failed"
        assert await outbox(rt, "chat_history") == []
        [event] = await stored_events(rt, "timeline_log_creation_failed")
    assert event["ticket_id"] == created["id"] and event["error_reason"] == "not_configured"
    assert event["room_id"] == "room-1" and event["timestamp"] == created["created_at"]


async def test_a_transient_failure_then_an_answer_is_ok_without_a_failure_event(
    tmp_path: Path, clock: FakeClock
) -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, json={"messages": [message(1)]})])
    async with worker_runtime(tmp_path, clock, lambda request: next(answers)) as rt:
        record_id = await bot_record(rt, "room-1")
        await drain(rt, clock)
        assert (await entry(rt, record_id))["chat_preview_status"] == "ok"
        assert await stored_events(rt, "timeline_log_creation_failed") == []
        [job] = await outbox(rt)
    assert (job["attempts"], job["last_error"]) == (2, None)


ROOM_IDS = ["a.b_c:d@e-f", "..", ".", "user@example.com:42", "A-Z_0.9"]


async def test_room_ids_arrive_intact_as_one_path_segment(tmp_path: Path, clock: FakeClock) -> None:
    seen: list[str] = []

    def chat_panel(request: httpx.Request) -> httpx.Response:
        empty, rooms, segment, tail = request.url.raw_path.split(b"?")[0].split(b"/")
        assert (empty, rooms, tail) == (b"", b"rooms", b"messages")
        seen.append(unquote(segment.decode()))
        return httpx.Response(200, json={"messages": []})

    async with worker_runtime(tmp_path, clock, chat_panel) as rt:
        for room_id in ROOM_IDS:
            await bot_record(rt, room_id)
        await drain(rt)
    assert sorted(seen) == sorted(ROOM_IDS)


def chat_panel_server(delay: float) -> Starlette:
    """A real Chat Panel: the room id as the server decodes it, after ``delay`` for
    the room "slow"."""

    async def messages(request: Request) -> JSONResponse:
        room_id = request.path_params["room_id"]
        if room_id == "slow":
            await asyncio.sleep(delay)
        return JSONResponse({"messages": [message(1, text=f"in {room_id}")]})

    return Starlette(routes=[Route("/rooms/{room_id}/messages", messages)])


async def test_a_real_chat_panel_slower_than_2_seconds_times_out(tmp_path: Path, clock: FakeClock) -> None:
    one_attempt = {"chat_history": dataclasses.replace(chat_history.HANDLER, max_attempts=1)}
    with LiveServer(chat_panel_server(delay=2.2)) as server:
        async with worker_runtime(tmp_path, clock, chat_panel_url=server.url) as rt:
            rooms = {room_id: await bot_record(rt, room_id) for room_id in ["..", "a.b_c:d@e-f", "slow"]}
            started = asyncio.get_running_loop().time()
            await drain(rt, handlers=one_attempt)
            elapsed = asyncio.get_running_loop().time() - started
            rows = {room_id: await entry(rt, record_id) for room_id, record_id in rooms.items()}
            [event] = await stored_events(rt, "timeline_log_creation_failed")
    assert 1.9 < elapsed < 3.5  # the 2 s deadline and start-up (loose: machines get busy)
    assert [m["text"] for m in preview(rows[".."])] == ["in .."]
    assert [m["text"] for m in preview(rows["a.b_c:d@e-f"])] == ["in a.b_c:d@e-f"]
    assert rows["slow"]["chat_preview_status"] == "failed"
    assert (event["room_id"], event["error_reason"]) == ("slow", "timeout")


async def test_an_entry_settled_already_is_not_fetched_or_overwritten(tmp_path: Path, clock: FakeClock) -> None:
    """A row run again after its process died between writing the entry and marking
    the row done: the Chat Panel is not asked again and the entry stays as written."""
    calls: list[str] = []

    def chat_panel(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"messages": [message(9)]})

    async with worker_runtime(tmp_path, clock, chat_panel) as rt:
        settled = await bot_record(rt, "room-settled")
        fresh = await bot_record(rt, "room-fresh")
        written = json.dumps([message(1)])
        assert await rt.store.set_chat_preview(COMPANY, "deal", settled, "ok", written)
        await drain(rt)
        assert (await entry(rt, settled))["chat_preview"] == written
        assert preview(await entry(rt, fresh)) == [message(9)]
        assert all(row["done_at"] is not None for row in await outbox(rt))
    assert calls == ["/rooms/room-fresh/messages"]
