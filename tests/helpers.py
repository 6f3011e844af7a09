"""Small helpers shared by the record-API tests (no fakes of our own code here)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import httpx

from widget.rooms import PUBLISHED_AT
from widget.runtime import Runtime

RFC3339_US = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
DEAL_KEYS = {"id", "number", "name", "stage", "pipeline", "room_id", "contact_id", "creator_flag",
             "creator", "source", "url", "created_at", "updated_at"}
TICKET_KEYS = (DEAL_KEYS - {"number", "stage", "pipeline"}) | {"unique_id", "status"}
DEAL_PREVIEW_KEYS = {"id", "number", "name", "stage", "pipeline", "url", "creator", "created_at"}
TICKET_PREVIEW_KEYS = {"id", "unique_id", "name", "status", "url", "creator", "created_at"}


def deal(**extra: Any) -> dict[str, Any]:
    return {"name": "Laptop order", "stage": "New", "pipeline": "Sales", **extra}


def ticket(**extra: Any) -> dict[str, Any]:
    return {"name": "Refund request", "status": "Open", **extra}


def body_for(kind: str, **extra: Any) -> dict[str, Any]:
    return deal(**extra) if kind == "deal" else ticket(**extra)


def assert_error(
    response: httpx.Response, status: int, code: str, fields: set[str] | None = None
) -> dict[str, Any]:
    """The RFC error shape with this status and code; ``fields`` = the fields in details."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    if error["details"] is not None:
        assert isinstance(error["details"], list) and error["details"], error
        for item in error["details"]:
            assert set(item) == {"field", "message"}, item
            assert isinstance(item["field"], str) and isinstance(item["message"], str)
    if fields is not None:
        assert error["details"] is not None, error
        assert {d["field"] for d in error["details"]} == fields, error["details"]
    return error


def detail(error: dict[str, Any], field: str) -> str:
    return next(d["message"] for d in error["details"] if d["field"] == field)


async def next_message(subscription: Any, timeout: float = 2.0) -> dict[str, Any]:
    """The next message of a broker subscription (``get()`` or async iteration)."""
    if hasattr(subscription, "get"):
        message = await asyncio.wait_for(subscription.get(), timeout)
    else:
        message = await asyncio.wait_for(anext(aiter(subscription)), timeout)
    assert message is not None, "subscription closed"
    return message


# PRD section 11's table (plus our three operational events): the properties each
# event must carry. A record's id is deal_id or ticket_id, whichever it is.
_CREATED = {"room_id", "creator_flag", "contact_id_present", "timestamp"}
PRD_EVENT_PROPERTIES: dict[str, set[str]] = {
    "bot_deal_created": _CREATED | {"source"},
    "ai_deal_created": _CREATED,
    "bot_ticket_created": _CREATED,
    "ai_ticket_created": _CREATED,
    "deal_preview_displayed": {"room_id", "deal_id", "creator_source", "timestamp"},
    "ticket_preview_displayed": {"room_id", "ticket_id", "creator_source", "timestamp"},
    "deal_preview_clicked": {"room_id", "deal_id", "agent_id", "timestamp"},
    "ticket_preview_clicked": {"room_id", "ticket_id", "agent_id", "timestamp"},
    "deal_timeline_chatroom_clicked": {"deal_id", "room_id", "agent_id", "timestamp"},
    "ticket_timeline_chatroom_clicked": {"ticket_id", "room_id", "agent_id", "timestamp"},
    "timeline_log_creation_failed": {"room_id", "error_reason", "timestamp"},
    "contact_association_failed": {"contact_id", "reason", "timestamp"},
    "actor_filtered": {"kind", "record_id", "action", "creator_flag", "timestamp"},
    "omnichannel_notify_failed": {"room_id", "event", "event_id", "error_reason", "timestamp"},
}
RECORD_SCOPED = {"timeline_log_creation_failed", "contact_association_failed", "omnichannel_notify_failed"}


def assert_prd_properties(name: str, props: dict[str, Any]) -> None:
    missing = PRD_EVENT_PROPERTIES[name] - set(props)
    assert not missing, (name, missing, props)
    if name in RECORD_SCOPED:
        assert ("deal_id" in props) != ("ticket_id" in props), (name, props)
    assert RFC3339_US.fullmatch(str(props["timestamp"])), props


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def snapshot_of(message: dict[str, Any]) -> dict[str, Any]:
    """A published room message without its publishing time (which only the
    delivery-lag metric reads; streams never send it)."""
    rest = dict(message)
    published_at = rest.pop(PUBLISHED_AT)
    assert abs(time.time() - published_at) < 60, published_at
    return rest


async def next_after_quiet(subscription: Any, control: Any) -> dict[str, Any]:
    """Absence with a positive control: run ``control`` (an awaitable that must publish
    on this channel) and return the next message, which the caller asserts is the
    control's. Messages arrive in publish order, so anything published before the
    control would come first and fail that assertion."""
    await control
    return await next_message(subscription)


class _Audit(HTMLParser):
    """Collects what CSP forbids: inline scripts, inline handlers, style attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts = 0
        self.bad_attributes: list[str] = []
        self.testids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and "src" not in names and names.get("type") != "application/json":
            self.inline_scripts += 1
        self.bad_attributes += [n for n in names if n == "style" or n.startswith("on")]
        if names.get("data-testid"):
            self.testids.add(names["data-testid"] or "")


def audit(html: str) -> _Audit:
    parser = _Audit()
    parser.feed(html)
    return parser


async def rows_of(rt: Runtime, query: Any) -> list[dict[str, Any]]:
    """A test's own query, straight on the store's database."""
    return await rt.store.db.read(lambda conn: [dict(row._mapping) for row in conn.execute(query)])


async def scalar_of(rt: Runtime, query: Any) -> Any:
    return await rt.store.db.read(lambda conn: conn.execute(query).scalar_one())


async def execute(rt: Runtime, statement: Any) -> None:
    """A test's own write (e.g. what the worker would have written), in one transaction."""
    await rt.store.db.write(lambda conn: conn.execute(statement))


async def hold_the_write_lock(db: Any) -> tuple[threading.Event, asyncio.Future[Any]]:
    """What another process writing does to a SQLite store: a connection of its own
    holds the database's write lock (``BEGIN IMMEDIATE``) until the returned event is
    set; the future is that holder, done once it let go."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        other = sqlite3.connect(db.engine.url.database, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            entered.set()
            release.wait(10)
            other.execute("COMMIT")
        finally:
            other.close()

    holding = asyncio.ensure_future(asyncio.to_thread(hold))
    await asyncio.to_thread(entered.wait, 10)
    return release, holding
