"""Prometheus metrics (RFC section 10), served at ``GET /metrics``.

One process: the default registry. Several (``widget serve --workers N``): each
process writes its samples to files under ``PROMETHEUS_MULTIPROC_DIR`` (``cli`` sets it
up before the workers start) and whichever process answers the scrape sums them. A
``widget worker`` on the same host that shares the directory is summed in as well.

The outbox gauges are read from the store at each scrape (a collector for that one
scrape, not a stored gauge), so every process reports the whole backlog, whoever
writes or works it, in either mode.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import tempfile
import time
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from widget.events import EVENTS
from widget.runtime import Runtime

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
TOPICS = ("chat_history", "notify.created", "notify.updated", "notify.deleted")
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_SECONDS = Histogram(
    "widget_http_request_duration_seconds",
    "HTTP requests by route template and status (time to the end of the response; "
    "a stream's is its lifetime). _count is the request count.",
    ["method", "route", "status"], buckets=_FAST,
)
OPEN_STREAMS = Gauge("widget_open_streams", "Open room event streams.", multiprocess_mode="livesum")
PUBLISHED = Counter("widget_room_events_published", "Room snapshots published to the broker.")
DELIVERED = Counter("widget_room_events_delivered", "Room snapshots sent to a stream.")
DELIVERY_LAG = Histogram(
    "widget_room_event_delivery_lag_seconds", "From publishing a room snapshot to sending it on a stream.",
    buckets=_FAST,
)
ATTEMPT_FAILURES = Counter(
    "widget_outbox_attempt_failures", "Failed outbox attempts by topic (each retry counts).", ["topic"],
)
GAVE_UP = Counter(
    "widget_outbox_gave_up", "Outbox rows given up after their last attempt, by topic.", ["topic"],
)
PRODUCT_EVENTS = Counter("widget_product_events", "PRD events recorded, by name.", ["event"])

# Every series exists from the start at 0, so increase() sees the first event too.
for _topic in TOPICS:
    ATTEMPT_FAILURES.labels(_topic)
    GAVE_UP.labels(_topic)
for _name in EVENTS:
    PRODUCT_EVENTS.labels(_name)


def share_between_processes() -> None:
    """Before starting several worker processes: give them one fresh directory for
    their samples unless the operator chose one (which they must empty on restart)."""
    if not os.environ.get(MULTIPROC_DIR):
        os.environ[MULTIPROC_DIR] = tempfile.mkdtemp(prefix="widget-metrics-")


def serve_alone(port: int) -> None:
    """``/metrics`` of a process without an HTTP server of its own (``widget worker``),
    from a thread: its counters (failed and given-up attempts, timeline failures,
    notification failures) feed the alerts. The outbox backlog comes from the web
    processes, which read it from the store."""
    start_http_server(port, addr="0.0.0.0")


def process_ended() -> None:
    """At a clean shutdown: this process's open-streams gauge stops counting. (A worker
    killed outright keeps its last value until the directory is emptied.)"""
    if os.environ.get(MULTIPROC_DIR):
        mark_process_dead(os.getpid())


# Per event loop: the snapshots sent on streams in its current iteration, by when
# each was published.
_sent: dict[asyncio.AbstractEventLoop, dict[float | None, int]] = {}


def stream_delivered(published_at: float | None) -> None:
    """A snapshot sent on a stream (``published_at``: when it was published; None for
    one read from the store). Counted at the end of the loop iteration with the rest
    sent in it: a change reaching 1,000 streams here is one counter update and one
    histogram update, not 1,000 of each (each takes a lock). Its lag is measured then,
    once its frames are written."""
    loop = asyncio.get_running_loop()
    batch = _sent.get(loop)
    if batch is None:
        batch = _sent[loop] = {}
        loop.call_soon(_count_sent, loop)
    batch[published_at] = batch.get(published_at, 0) + 1


def _count_sent(loop: asyncio.AbstractEventLoop) -> None:
    batch = _sent.pop(loop)
    DELIVERED.inc(sum(batch.values()))
    now = time.time()
    for published_at, times in batch.items():
        if published_at is not None:
            _observe(DELIVERY_LAG, max(0.0, now - published_at), times)


def _observe(histogram: Histogram, amount: float, times: int) -> None:
    """``histogram.observe(amount)`` ``times`` times, as one update: what its
    ``observe`` does, by the attributes of the pinned prometheus_client (it has no
    weighted observe)."""
    histogram._sum.inc(amount * times)
    histogram._buckets[bisect.bisect_left(histogram._upper_bounds, amount)].inc(times)


class _Backlog:
    """The outbox as read for one scrape."""

    def __init__(self, backlog: dict[str, tuple[int, int]], now: int) -> None:
        self.backlog, self.now = backlog, now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("widget_outbox_depth", "Unfinished outbox rows by topic.", labels=["topic"])
        oldest = GaugeMetricFamily(
            "widget_outbox_oldest_age_seconds", "Age of the oldest unfinished outbox row by topic (0: none).",
            labels=["topic"],
        )
        for topic in sorted({*TOPICS, *self.backlog}):
            count, first = self.backlog.get(topic, (0, self.now))
            depth.add_metric([topic], count)
            oldest.add_metric([topic], max(0, self.now - first) / 1_000_000)
        yield depth
        yield oldest


async def metrics(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_DIR):
        MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)  # this process's metrics
    registry.register(_Backlog(await rt.store.outbox_backlog(), rt.now()))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
