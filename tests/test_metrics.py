"""``GET /metrics`` (RFC section 10) and the samples behind it.

Metrics are process-global (prometheus-client's default registry), so every test reads a
value before and after what it does and asserts the DELTA. Streams are tested against
real uvicorn in a thread (``LiveServer``) read with httpx-sse; the worker is driven as
tests/test_notify.py does, with the systems we don't own as an ``httpx.MockTransport``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from tests.helpers import wait_for
from tests.support import FakeClock, LiveServer, Tenant, asgi_client, make_settings
from tests.worker_support import drain
from widget import companies, metrics, records
from widget.events import EVENTS
from widget.metrics import MULTIPROC_DIR, TOPICS
from widget.models import DealIn
from widget.runtime import Runtime, open_runtime

CHECKOUT = Path(__file__).resolve().parent.parent
OMNI = "http://omni.test/hooks"
CHAT_PANEL = "http://chat-panel.test"
ORIGINS = ["http://localhost:8001"]
BOT_DEAL = {"name": "Laptop order", "stage": "New", "pipeline": "Sales", "creator_flag": "bot"}
REQUESTS = "widget_http_request_duration_seconds"

# Family (as in `# TYPE`) -> type: what RFC section 10 asks /metrics to show.
FAMILIES = {
    REQUESTS: "histogram",
    "widget_open_streams": "gauge",
    "widget_room_events_published": "counter",
    "widget_room_events_delivered": "counter",
    "widget_room_event_delivery_lag_seconds": "histogram",
    "widget_outbox_depth": "gauge",
    "widget_outbox_oldest_age_seconds": "gauge",
    "widget_outbox_attempt_failures": "counter",
    "widget_outbox_gave_up": "counter",
    "widget_product_events": "counter",
}


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default registry unless a test turns multiprocess mode on itself."""
    monkeypatch.delenv(MULTIPROC_DIR, raising=False)


def value(name: str, **labels: str) -> float:
    """A sample of this process's default registry (0 while the series does not exist)."""
    sample = REGISTRY.get_sample_value(name, labels)
    return 0.0 if sample is None else sample


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """(family -> type, (sample name, labels) -> value) of a /metrics answer."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return types, samples


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(http: httpx.AsyncClient) -> tuple[dict[str, str], Samples, str]:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return (*parse(response.text), response.text)


# -- the endpoint ---------------------------------------------------------------------------


async def test_metrics_answers_prometheus_text_with_every_family(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert response.headers["content-type"].startswith("text/plain; version=")
    types, samples = parse(response.text)
    assert {name: types.get(name) for name in FAMILIES} == FAMILIES
    # Series that exist from the start, so increase() sees their first event.
    for topic in TOPICS:
        assert sample(samples, "widget_outbox_attempt_failures_total", topic=topic) is not None
        assert sample(samples, "widget_outbox_gave_up_total", topic=topic) is not None
        assert sample(samples, "widget_outbox_depth", topic=topic) is not None
    for event in EVENTS:
        assert sample(samples, "widget_product_events_total", event=event) is not None


async def test_requests_are_counted_by_route_template_never_by_path(
    app: Starlette, api: httpx.AsyncClient
) -> None:
    template = "/api/v1/deals/{id}"

    def count(method: str, route: str, status: str) -> float:
        return value(f"{REQUESTS}_count", method=method, route=route, status=status)

    created = await api.post("/api/v1/deals", json={"name": "Laptop order", "stage": "New", "pipeline": "Sales"})
    assert created.status_code == 201, created.text
    deal_id = created.json()["id"]
    before = {key: count(*key) for key in [("GET", template, "200"), ("GET", template, "404"),
                                           ("PUT", template, "405"), ("GET", "unmatched", "404"),
                                           ("POST", "/api/v1/deals", "201")]}

    assert (await api.get(f"/api/v1/deals/{deal_id}?token=not-a-label")).status_code == 200
    assert (await api.get("/api/v1/deals/deal_no_such_thing")).status_code == 404
    assert (await api.put(f"/api/v1/deals/{deal_id}", json={})).status_code == 405
    assert (await api.get("/no/such/path/unknown-page")).status_code == 404

    assert {key: count(*key) - was for key, was in before.items()} == {
        ("GET", template, "200"): 1, ("GET", template, "404"): 1, ("PUT", template, "405"): 1,
        ("GET", "unmatched", "404"): 1, ("POST", "/api/v1/deals", "201"): 0,
    }
    types, samples, text = await scrape(api)
    # (words, not digits: a sample's value could contain any digits by chance)
    assert deal_id not in text and "deal_no_such_thing" not in text and "unknown-page" not in text
    assert "not-a-label" not in text
    # Every route label is a template of the app (or "unmatched"): no raw path anywhere.
    templates = {getattr(route, "path") for route in app.routes} | {"unmatched"}
    routes = {dict(labels)["route"] for (name, labels) in samples if name.startswith(REQUESTS)}
    assert template in routes and routes <= templates, routes - templates


# -- streams ----------------------------------------------------------------------------------


@pytest.fixture
def http(live: tuple[LiveServer, Tenant]) -> Iterator[httpx.Client]:
    server, tenant = live
    with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=10) as client:
        yield client


def stream_url(http: httpx.Client, room_id: str = "room-1") -> str:
    minted = http.post("/api/v1/embed-tokens", json={"room_id": room_id, "agent_id": "agent-1"})
    assert minted.status_code == 201, minted.text
    return f"/embed/rooms/{room_id}/events?token={minted.json()['token']}"


def test_open_streams_gauge_follows_the_streams(http: httpx.Client) -> None:
    before = value("widget_open_streams")
    url = stream_url(http)

    def open_streams() -> float:
        return value("widget_open_streams") - before

    # Keep each event iterator: a dropped one is closed, and closes the response with it.
    with connect_sse(http, "GET", url) as first:
        first_events = first.iter_sse()
        assert next(first_events).event == "room"
        assert wait_for(lambda: open_streams() == 1), open_streams()
        with connect_sse(http, "GET", url) as second:
            second_events = second.iter_sse()
            assert next(second_events).event == "room"
            assert wait_for(lambda: open_streams() == 2), open_streams()
        # The second client went away: its stream is closed on the server.
        assert wait_for(lambda: open_streams() == 1), open_streams()
    assert wait_for(lambda: open_streams() == 0), open_streams()


def test_a_published_change_is_counted_published_and_delivered_with_its_lag(http: httpx.Client) -> None:
    names = ("widget_room_events_published_total", "widget_room_events_delivered_total",
             "widget_room_event_delivery_lag_seconds_count", "widget_room_event_delivery_lag_seconds_sum")
    with connect_sse(http, "GET", stream_url(http)) as source:
        events = source.iter_sse()
        assert next(events).id == "0"  # the stored snapshot: neither published nor delivered
        before = {name: value(name) for name in names}
        started = time.monotonic()
        assert http.post("/api/v1/deals", json={**BOT_DEAL, "room_id": "room-1"}).status_code == 201
        assert next(events).id == "1"
        took = time.monotonic() - started
        delta = {name: value(name) - before[name] for name in names}
    lag = delta.pop("widget_room_event_delivery_lag_seconds_sum")
    assert delta == {"widget_room_events_published_total": 1, "widget_room_events_delivered_total": 1,
                     "widget_room_event_delivery_lag_seconds_count": 1}
    assert 0 <= lag <= took + 0.05


# -- the outbox ----------------------------------------------------------------------------------


async def omni_company(runtime: Runtime, company_id: str = "omni") -> tuple[dict[str, Any], str]:
    return await companies.create_company(runtime, company_id, "Omni", ORIGINS,
                                          omnichannel_url=OMNI, omnichannel_secret="whsec-0123456789")


async def test_outbox_depth_and_oldest_age_per_topic(app: Starlette, runtime: Runtime, clock: FakeClock) -> None:
    _, key = await omni_company(runtime)
    async with asgi_client(app, headers={"Authorization": f"Bearer {key}"}) as http:
        first = await http.post("/api/v1/deals", json={**BOT_DEAL, "room_id": "room-1"})  # T0
        assert first.status_code == 201, first.text
        clock.advance(30)
        second = await http.post("/api/v1/deals", json={**BOT_DEAL, "room_id": "room-2"})  # T0 + 30
        assert second.status_code == 201, second.text
        clock.advance(10)
        patched = await http.patch(f"/api/v1/deals/{first.json()['id']}", json={"stage": "Won"})  # T0 + 40
        assert patched.status_code == 200, patched.text
        clock.advance(2.5)
        deleted = await http.delete(f"/api/v1/deals/{second.json()['id']}")  # T0 + 42.5
        assert deleted.status_code in (200, 204), deleted.text
        clock.advance(1.25)
        _, samples, _ = await scrape(http)  # T0 + 43.75
    depth = {topic: sample(samples, "widget_outbox_depth", topic=topic) for topic in TOPICS}
    age = {topic: sample(samples, "widget_outbox_oldest_age_seconds", topic=topic) for topic in TOPICS}
    assert depth == {"chat_history": 2, "notify.created": 2, "notify.updated": 1, "notify.deleted": 1}
    assert age == {"chat_history": 43.75, "notify.created": 43.75, "notify.updated": 3.75,
                   "notify.deleted": 1.25}


async def test_an_empty_outbox_reads_zero_depth_and_zero_age(client: httpx.AsyncClient, clock: FakeClock) -> None:
    clock.advance(3600)
    _, samples, _ = await scrape(client)
    for topic in TOPICS:
        assert sample(samples, "widget_outbox_depth", topic=topic) == 0
        assert sample(samples, "widget_outbox_oldest_age_seconds", topic=topic) == 0


async def test_attempt_failures_and_give_ups_are_counted_per_topic(tmp_path: Path, clock: FakeClock) -> None:
    """The Chat Panel answers 500 every time (3 attempts, then given up); Omnichannel
    answers 503 (a retry) and then 400 (given up at once)."""
    omni_script = [503, 400]
    calls: list[str] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.host)
        if request.url.host == "chat-panel.test":
            return httpx.Response(500, json={})
        assert request.url.host == "omni.test", request.url
        return httpx.Response(omni_script.pop(0) if omni_script else 200, json={})

    def counts() -> dict[tuple[str, str], float]:
        return {(name, topic): value(f"widget_outbox_{name}_total", topic=topic)
                for name in ("attempt_failures", "gave_up") for topic in TOPICS}

    def events() -> dict[str, float]:
        return {name: value("widget_product_events_total", event=name) for name in EVENTS}

    settings = make_settings(tmp_path, chat_panel_url=CHAT_PANEL)
    async with open_runtime(settings, clock, upstream=httpx.MockTransport(upstream)) as rt:
        company, _ = await omni_company(rt)
        before, events_before = counts(), events()
        body = DealIn(name="Laptop order", stage="New", pipeline="Sales", room_id="room-1", creator_flag="bot")
        await records.create(rt, "deal", company, body)
        await drain(rt, clock, topic=None)
        delta = {key: n - before[key] for key, n in counts().items() if n != before[key]}
        event_delta = {name: n - events_before[name] for name, n in events().items() if n != events_before[name]}
    assert sorted(calls) == ["chat-panel.test"] * 3 + ["omni.test"] * 2
    assert delta == {
        ("attempt_failures", "chat_history"): 3, ("gave_up", "chat_history"): 1,
        ("attempt_failures", "notify.created"): 2, ("gave_up", "notify.created"): 1,
    }
    assert event_delta == {"bot_deal_created": 1, "timeline_log_creation_failed": 1,
                           "omnichannel_notify_failed": 1}


# -- product events ------------------------------------------------------------------------------


async def test_product_events_are_counted_by_name(api: httpx.AsyncClient) -> None:
    def events() -> dict[str, float]:
        return {name: value("widget_product_events_total", event=name) for name in EVENTS}

    before = events()
    bot = await api.post("/api/v1/deals", json={**BOT_DEAL, "room_id": "room-1", "contact_id": "contact_gone"})
    assert bot.status_code == 201, bot.text
    middle = events()
    plain = await api.post("/api/v1/deals", json={"name": "Mail order", "stage": "New", "pipeline": "Sales"})
    assert plain.status_code == 201, plain.text
    after = events()
    assert {n: middle[n] - before[n] for n in EVENTS if middle[n] != before[n]} == {
        "bot_deal_created": 1, "contact_association_failed": 1,
    }
    assert {n: after[n] - middle[n] for n in EVENTS if after[n] != middle[n]} == {"actor_filtered": 1}
    _, samples, _ = await scrape(api)
    assert sample(samples, "widget_product_events_total", event="bot_deal_created") == after["bot_deal_created"]


# -- several processes ----------------------------------------------------------------------------

INCREMENT = (
    "import sys; from widget import metrics; "
    "metrics.PRODUCT_EVENTS.labels('bot_deal_created').inc(int(sys.argv[1]))"
)


def run_writers(directory: Path, *increments: int) -> None:
    """Processes that each import widget.metrics with PROMETHEUS_MULTIPROC_DIR set (as a
    `widget serve --workers N` process would), count, and exit."""
    env = {**os.environ, MULTIPROC_DIR: str(directory)}
    procs = [subprocess.Popen([sys.executable, "-c", INCREMENT, str(n)], cwd=CHECKOUT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in increments]
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()


async def test_multiprocess_scrape_sums_the_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: httpx.AsyncClient
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    run_writers(directory, 1, 2)
    assert len(list(directory.glob("counter_*.db"))) == 2  # one file per process
    monkeypatch.setenv(MULTIPROC_DIR, str(directory))
    types, samples, _ = await scrape(client)
    # 1 + 2 from the files. This (scraping) process imported prometheus-client without the
    # variable: its own samples are in memory, not in the directory, so not in the sum.
    assert sample(samples, "widget_product_events_total", event="bot_deal_created") == 3
    # Every event's series is there (each process creates them at import), at 0.
    assert sample(samples, "widget_product_events_total", event="ai_deal_created") == 0
    assert types["widget_product_events"] == "counter"


async def test_multiprocess_scrape_still_reports_the_outbox_backlog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: httpx.AsyncClient, clock: FakeClock
) -> None:
    """The outbox gauges come from the store at scrape time, so they are there in
    multiprocess mode even from a process that writes nothing to the directory."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    run_writers(directory, 1)
    assert (await api.post("/api/v1/deals", json={**BOT_DEAL, "room_id": "room-1"})).status_code == 201
    clock.advance(7)
    monkeypatch.setenv(MULTIPROC_DIR, str(directory))
    types, samples, _ = await scrape(api)
    assert types["widget_outbox_depth"] == types["widget_outbox_oldest_age_seconds"] == "gauge"
    assert {topic: sample(samples, "widget_outbox_depth", topic=topic) for topic in TOPICS} == {
        "chat_history": 1, "notify.created": 0, "notify.updated": 0, "notify.deleted": 0}
    assert sample(samples, "widget_outbox_oldest_age_seconds", topic="chat_history") == 7


async def test_a_process_that_ends_cleanly_stops_counting_its_open_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: httpx.AsyncClient
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {**os.environ, MULTIPROC_DIR: str(directory)}
    script = "import sys; from widget import metrics; metrics.OPEN_STREAMS.inc(); {}"
    for ending in ("metrics.process_ended()", "pass"):  # a clean shutdown, then a killed process
        subprocess.run([sys.executable, "-c", script.format(ending)], cwd=CHECKOUT, env=env,
                       check=True, timeout=30, capture_output=True)
    monkeypatch.setenv(MULTIPROC_DIR, str(directory))
    _, samples, _ = await scrape(client)
    assert sample(samples, "widget_open_streams") == 1  # only the one that did not end cleanly


@pytest.mark.parametrize("amount", [0.0, 0.001, 0.0025, 0.07, 3.0, 1e9])
def test_many_deliveries_observed_at_once_equal_as_many_observations(amount: float) -> None:
    """The delivery lag of a change sent to 1,000 streams is one histogram update
    (metrics._observe): the same buckets, count and sum as 1,000 observations."""
    one_by_one, at_once = (Histogram("lag", "lag", buckets=[0.001, 0.0025, 0.05, 1.0], registry=CollectorRegistry())
                           for _ in range(2))
    for _ in range(1000):
        one_by_one.observe(amount)
    metrics._observe(at_once, amount, 1000)

    def samples(histogram: Histogram) -> dict[tuple[str, str], float]:
        return {(s.name, s.labels.get("le", "")): s.value for s in histogram.collect()[0].samples
                if not s.name.endswith("_created")}

    assert samples(at_once) == pytest.approx(samples(one_by_one))
