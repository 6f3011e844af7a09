"""The request log (one INFO line per request on ``widget.access``, by route template,
without the query string), a client that hangs up mid-body (499, no error), the thinning
of bursts of identical warnings, and how uvicorn's server lines are named."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import wait_for
from tests.support import FakeClock, LiveServer, Tenant, WidgetLog, make_settings, mint_token, seed_company
from widget import logs
from widget.app import create_app

SECRET_LOOKING = "secret-looking-value"
# Loggers that logs.configure stops from propagating; everything else reaches the root.
CONFIGURED = ("widget", "uvicorn", "uvicorn.error", "asyncio")


@pytest.fixture(autouse=True)
def _restore_asyncio_logger() -> Iterator[None]:
    """``logs.configure`` also rewires ``asyncio``, which conftest does not put back."""
    logger = logging.getLogger("asyncio")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    yield
    logger.handlers, logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


def request_lines(widget_log: WidgetLog) -> list[logging.LogRecord]:
    return widget_log.events("http_request")


# -- one line per request ------------------------------------------------------------------


async def test_one_info_line_per_request_by_route_template_without_the_query(
    api: httpx.AsyncClient, widget_log: WidgetLog
) -> None:
    widget_log.clear()
    created = await api.post("/api/v1/deals", json={"name": "Laptop order", "stage": "New", "pipeline": "Sales"})
    deal_id = created.json()["id"]
    assert (await api.get(f"/api/v1/deals/{deal_id}")).status_code == 200
    token = await mint_token(api)
    assert (await api.get(f"/embed/rooms/room-1/state?token={token}")).status_code == 200
    assert (await api.get(f"/embed/rooms/room-1/state?token={SECRET_LOOKING}")).status_code == 401
    assert (await api.get(f"/no/such/page?token={SECRET_LOOKING}")).status_code == 404

    lines = request_lines(widget_log)
    assert [(r.props["method"], r.props["route"], r.props["status"]) for r in lines] == [  # type: ignore[attr-defined]
        ("POST", "/api/v1/deals", 201),
        ("GET", "/api/v1/deals/{id}", 200),
        ("POST", "/api/v1/embed-tokens", 201),
        ("GET", "/embed/rooms/{room_id}/state", 200),
        ("GET", "/embed/rooms/{room_id}/state", 401),
        ("GET", "unmatched", 404),
    ]
    for record in lines:
        assert record.name == "widget.access" and record.levelno == logging.INFO
        props: dict[str, Any] = record.props  # type: ignore[attr-defined]
        assert set(props) == {"method", "route", "status", "ms"}
        assert isinstance(props["ms"], float) and 0 <= props["ms"] < 10_000
        # Before any redaction: the record itself carries no query, id or token.
        raw = record.getMessage() + json.dumps(props)
        for leak in ("?", "token=", SECRET_LOOKING, token, deal_id, "/no/such"):
            assert leak not in raw, (leak, raw)
        line = json.loads(logs._JsonFormatter().format(record))
        assert line["event"] == "http_request" and line["logger"] == "widget.access"
        assert line["level"] == "info"
    # No other line of the widget's either has the token in it.
    everything = "\n".join(r.getMessage() + json.dumps(getattr(r, "props", {}), default=str)
                           for r in widget_log.caplog.records)
    assert token not in everything and SECRET_LOOKING not in everything


# -- a client that hangs up -----------------------------------------------------------------


class Recorder(logging.Handler):
    """Every record of every logger: attached to the root and to the loggers that
    ``logs.configure`` stops from propagating."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def requests(self) -> list[dict[str, Any]]:
        return [dict(r.props) for r in self.records if getattr(r, "event", None) == "http_request"]  # type: ignore[attr-defined]


@pytest.fixture
def recorder(live: tuple[LiveServer, Tenant]) -> Iterator[Recorder]:
    """Attached once the live server has started (its lifespan ran ``logs.configure``)."""
    handler = Recorder()
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in CONFIGURED)]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def test_a_client_gone_mid_body_is_a_499_at_info_and_no_error(
    live: tuple[LiveServer, Tenant], recorder: Recorder
) -> None:
    server, tenant = live
    head = (
        "POST /api/v1/deals HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {tenant.api_key}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head.encode() + b'{"name": "')  # 10 of the 1000 bytes
        time.sleep(0.1)  # the app is reading the body when the client goes
    gone = {"method": "POST", "route": "/api/v1/deals", "status": 499}
    assert wait_for(lambda: any({k: p[k] for k in gone} == gone for p in recorder.requests())), recorder.requests()
    [record] = [r for r in recorder.records if getattr(r, "props", {}).get("status") == 499]
    assert record.levelno == logging.INFO and record.name == "widget.access"

    # Positive control: a later request's line arrives (so would a late error have).
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    control = {"method": "GET", "route": "/healthz", "status": 200}
    assert wait_for(lambda: any({k: p[k] for k in control} == control for p in recorder.requests()))
    errors = [(r.name, r.levelname, r.getMessage()) for r in recorder.records if r.levelno >= logging.WARNING]
    assert errors == []
    assert [p["status"] for p in recorder.requests()] == [499, 200]


# -- bursts ----------------------------------------------------------------------------------


class _FakeTime:
    """``widget.logs.time`` with a ``monotonic`` the test moves (the rest is ``time``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> _FakeTime:
    fake = _FakeTime()
    monkeypatch.setattr(logs, "time", fake)
    return fake


@pytest.fixture
def output() -> Callable[[], list[dict[str, Any]]]:
    """The JSON lines written by the handler ``logs.configure`` installs (its stream
    swapped for a buffer); conftest puts the loggers back afterwards."""
    logs.configure("json")
    buffer = io.StringIO()
    handler = logging.getLogger("widget").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    return lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_identical_warnings_are_thinned_to_ten_per_minute(
    output: Callable[[], list[dict[str, Any]]], fake_time: _FakeTime
) -> None:
    worker = logging.getLogger("widget.worker")
    for row in range(50):  # one template, different arguments: "identical"
        worker.warning("%s row %s: lease lost, outcome dropped", "chat_history", row)
        fake_time.now += 0.5  # 25 s in all: one window
    lines = output()
    assert [line["message"] for line in lines] == [
        f"chat_history row {row}: lease lost, outcome dropped" for row in range(10)]
    assert not any("similar_lines_suppressed" in line for line in lines)

    fake_time.now += 60  # the window has passed
    for row in range(50, 62):
        worker.warning("%s row %s: lease lost, outcome dropped", "chat_history", row)
    later = output()[10:]
    assert [line["message"] for line in later] == [
        f"chat_history row {row}: lease lost, outcome dropped" for row in range(50, 60)]
    assert later[0]["similar_lines_suppressed"] == 40
    assert not any("similar_lines_suppressed" in line for line in later[1:])


def test_events_that_are_not_product_events_are_thinned_by_name(
    output: Callable[[], list[dict[str, Any]]], fake_time: _FakeTime
) -> None:
    for row in range(30):
        logs.event("outbox_retry", logging.WARNING, topic="chat_history", outbox_id=row, reason="http_503")
    assert [line["outbox_id"] for line in output()] == list(range(10))


def test_product_events_distinct_messages_and_info_lines_are_never_thinned(
    output: Callable[[], list[dict[str, Any]]], fake_time: _FakeTime
) -> None:
    for n in range(50):
        logs.event("contact_association_failed", logging.WARNING, deal_id=f"de_{n}", contact_id="c", reason="not_found")
    for n in range(50):
        logs.log.warning(f"distinct problem number {n}")
    for n in range(50):
        logs.log.info("same info line")
    lines = output()
    assert [line["deal_id"] for line in lines if line.get("event") == "contact_association_failed"] == [
        f"de_{n}" for n in range(50)]
    assert [line["message"] for line in lines if line.get("level") == "warning" and "event" not in line] == [
        f"distinct problem number {n}" for n in range(50)]
    assert sum(line.get("message") == "same info line" for line in lines) == 50


def test_the_same_message_on_two_loggers_is_two_bursts(
    output: Callable[[], list[dict[str, Any]]], fake_time: _FakeTime
) -> None:
    for _ in range(15):
        logging.getLogger("widget.worker").error("could not claim outbox rows")
        logging.getLogger("widget.store").error("could not claim outbox rows")
        logging.getLogger("widget.store").warning("could not claim outbox rows")
    counts: dict[tuple[str, str], int] = {}
    for line in output():
        counts[(line["logger"], line["level"])] = counts.get((line["logger"], line["level"]), 0) + 1
    assert counts == {("widget.worker", "error"): 10, ("widget.store", "error"): 10,
                      ("widget.store", "warning"): 10}


def test_asyncio_accept_errors_are_thinned_too(
    output: Callable[[], list[dict[str, Any]]], fake_time: _FakeTime
) -> None:
    """What asyncio logs per failed ``accept()`` when the process is out of descriptors."""
    loop = asyncio.new_event_loop()
    try:
        for _ in range(40):
            loop.call_exception_handler({
                "message": "socket.accept() out of system resource",
                "exception": OSError(24, "Too many open files"),
            })
    finally:
        loop.close()
    lines = output()  # one readable line per 10 s with a count (tests/security/test_accept_log.py)
    assert len(lines) == 1
    assert lines[0]["logger"] == "asyncio" and lines[0]["level"] == "warning"
    assert lines[0]["message"].startswith("accept() failed: Too many open files; 1 failed accept(s)")


# -- uvicorn's lines ----------------------------------------------------------------------------


def test_uvicorn_server_lines_are_labelled_uvicorn_server(
    tmp_path: Any, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path)  # log_format json
    seed_company(settings)
    capsys.readouterr()
    # Started here, so logs.configure (in the lifespan) binds its handler to capsys's stderr.
    with LiveServer(create_app(settings, clock)) as server:
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    by_logger: dict[str, list[str]] = {}
    for line in lines:
        by_logger.setdefault(line["logger"], []).append(line.get("message") or line.get("event"))
    assert "uvicorn.error" not in by_logger
    server_lines = by_logger.get("uvicorn.server", [])
    assert "Application startup complete." in server_lines
    assert any(message.startswith("Uvicorn running on") for message in server_lines)
    assert "Shutting down" in server_lines
    assert by_logger["widget.access"] == ["http_request"]  # and uvicorn's access log is off
