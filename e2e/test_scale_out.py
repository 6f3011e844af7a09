"""Two widget processes on one database and one Redis (RFC section 2, scale-out): the
agent's component streams from one, the chatbot's API calls land on the other, and the
component still updates live."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import expect_state, open_tab
from e2e.stack import Stack, start_stack
from tests.redis_support import RedisServer
from tests.support import free_port, wait_ready

CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def two_workers(tmp_path: Path, redis: RedisServer) -> Iterator[tuple[Stack, str]]:
    """Worker A (in this process, serving the host's iframe) and worker B (`widget serve`
    in a process of its own) sharing A's database and the Redis broker."""
    # No periodic re-read on A: only Redis can bring it a change made on B.
    stack = start_stack(tmp_path / "a", broker_url=redis.url(), stream_recheck=0)
    settings = stack.widget.app.state.runtime.settings
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WIDGET_")},
        "WIDGET_DATABASE_URL": settings.db_url, "WIDGET_BROKER_URL": redis.url(),
        "WIDGET_SECRET_KEYS": ",".join(settings.secret_keys), "WIDGET_DATA_DIR": str(settings.data_dir),
        "WIDGET_PUBLIC_URL": f"http://127.0.0.1:{port}", "WIDGET_EMBEDDED_WORKER": "false",
    }
    log = tmp_path / "worker-b.log"
    with open(log, "wb") as stderr:
        worker_b = subprocess.Popen([sys.executable, "-m", "widget", "serve", "--port", str(port)], cwd=CHECKOUT,
                                    env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, worker_b, log)
        yield stack, url
    finally:
        worker_b.kill()
        worker_b.wait()
        stack.close()


def test_a_deal_posted_to_one_worker_reaches_the_component_streaming_from_the_other(
    two_workers: tuple[Stack, str], page: Page, room_id: str  # the page closes before the servers stop
) -> None:
    stack, worker_b = two_workers
    frame = open_tab(page, stack, room_id)  # its stream is held by worker A
    expect_state(frame, "empty")

    with httpx.Client(base_url=f"{worker_b}/api/v1", headers=stack.tenant.headers, timeout=10) as api_b:
        created = api_b.post("/deals", json={"name": "Scaled order", "stage": "New", "pipeline": "Sales",
                                             "room_id": room_id, "creator_flag": "bot"})
        assert created.status_code == 201, created.text
        expect(frame.get_by_test_id("deal-name")).to_have_text("Scaled order")
        expect_state(frame, "ready")

        renamed = api_b.patch(f"/deals/{created.json()['id']}", json={"stage": "Won"})
        assert renamed.status_code == 200, renamed.text
        expect(frame.get_by_test_id("deal-stage")).to_have_text("Won")
    # Worker B holds no stream of the room: the change crossed processes through Redis.
    assert stack.widget.app.state.runtime.broker.subscriber_count(
        f"room:{stack.tenant.id}:{room_id}") == 1
