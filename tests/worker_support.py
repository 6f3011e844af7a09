"""What the worker tests share: a runtime on a real SQLite file whose Chat Panel is an
``httpx.MockTransport`` handler, bot records made through the store (the record's
own transaction: record, pending timeline entry, outbox row), and a way to run the
worker until its work is done."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.helpers import rows_of
from tests.support import FakeClock, make_settings
from widget.runtime import Clock, Runtime, open_runtime
from widget.store import Row, schema
from widget.worker import nudge, run_worker

CHAT_PANEL = "http://chat-panel.test"
COMPANY = "acme"


@asynccontextmanager
async def worker_runtime(
    tmp_path: Path, clock: Clock, chat_panel: Callable[..., Any] | None = None, **overrides: Any
) -> AsyncIterator[Runtime]:
    """A runtime with one company; ``chat_panel`` answers the Chat Panel's requests
    (without it, requests go to the network: a real server named in the settings)."""
    settings = make_settings(tmp_path, **{"chat_panel_url": CHAT_PANEL, **overrides})
    transport = httpx.MockTransport(chat_panel) if chat_panel else None
    async with open_runtime(settings, clock, upstream=transport) as rt:
        if await rt.store.get_company(COMPANY) is None:
            await rt.store.create_company({
                "id": COMPANY, "name": "Acme", "api_key_hash": secrets.token_hex(32),
                "frame_origins": "[]", "omnichannel_url": None, "omnichannel_secret": None,
                "last_created_at": 0, "ticket_seq": 0, "created_at": rt.now(),
            })
        yield rt


async def bot_record(
    rt: Runtime, room_id: str, kind: str = "deal", *, at: int | None = None,
    topics: tuple[str, ...] = ("chat_history",),
) -> str:
    """A bot record in ``room_id`` created now (or exactly ``at``); returns its id."""
    record_id = f"{kind}_{secrets.token_hex(12)}"
    fields = {"stage": "New", "pipeline": "Sales"} if kind == "deal" else {"status": "Open"}
    entry = {
        "id": f"tl_{secrets.token_hex(12)}", "company_id": COMPANY, "kind": "bot_creation",
        "creator": "Bot", "room_id": room_id, "chat_preview": None, "chat_preview_status": "pending",
    }
    await rt.store.create_record(
        kind,
        {"id": record_id, "company_id": COMPANY, "name": "Laptop order", **fields, "room_id": room_id,
         "contact_id": None, "creator_flag": "bot", "source": "chatbot", "external_url": None},
        # exact_time: created (and due) at the clock's now, not a µs past the last record
        now=rt.now() if at is None else at, exact_time=True, link_room=True,
        timeline=entry, outbox_topics=topics,
    )
    return record_id


async def entry(rt: Runtime, record_id: str, kind: str = "deal") -> Row:
    [row] = await rt.store.timeline(kind, record_id)
    return row


def preview(row: Row) -> Any:
    return json.loads(row["chat_preview"]) if row["chat_preview"] is not None else None


async def outbox(rt: Runtime, topic: str | None = None) -> list[Row]:
    rows = await rt.store.outbox_rows(COMPANY)
    return [row for row in rows if topic is None or row["topic"] == topic]


async def stored_events(rt: Runtime, name: str) -> list[dict[str, Any]]:
    a = schema.analytics_events.c
    return [json.loads(row["props"]) for row in await rows_of(rt, select(a.props).where(a.name == name).order_by(a.id))]


async def drain(
    rt: Runtime, clock: FakeClock | None = None, *, topic: str | None = "chat_history", loops: int = 1,
    timeout: float = 5.0, **options: Any,
) -> None:
    """Run ``loops`` worker loops until every outbox row of ``topic`` (None: of every
    topic, of any company) is done. With ``clock``, time moves on by 0.5 s whenever the test looks (so
    backoffs pass; leases of 30 s are never outlived by an instant mock answer)."""
    stop = asyncio.Event()
    o = schema.outbox.c
    unfinished = select(o.id).where(o.done_at.is_(None), *([o.topic == topic] if topic else [])).limit(1)
    tasks = [asyncio.create_task(run_worker(rt, stop, poll_interval=0.01, **options)) for _ in range(loops)]
    try:
        async with asyncio.timeout(timeout):
            while await rows_of(rt, unfinished):
                if clock is not None:
                    clock.advance(0.5)
                    nudge()
                await asyncio.sleep(0.005)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def wait_until(condition: Callable[[], Any], timeout: float = 3.0) -> None:
    """Poll ``condition`` (plain or async) until it holds."""

    async def holds() -> bool:
        result = condition()
        return bool(await result if inspect.isawaitable(result) else result)

    async with asyncio.timeout(timeout):
        while not await holds():
            await asyncio.sleep(0.005)


@contextmanager
def widget_logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Every record of the ``widget`` loggers while the block runs, once each: caplog's
    handler is attached to ``widget`` itself (the app's log set-up may have stopped it
    propagating), and propagation is off meanwhile so the root's copy does not double it."""
    logger = logging.getLogger("widget")
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="widget"):
            yield caplog.records
    finally:
        logger.removeHandler(caplog.handler)
        logger.propagate = propagate
