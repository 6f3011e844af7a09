"""``widget serve --workers 2`` on a Redis broker: whichever process accepted a stream,
a change made through any of them reaches it, and /metrics sums the processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.redis_support import RedisServer
from tests.support import free_port, stack_env, wait_ready

CHECKOUT = Path(__file__).resolve().parent.parent
STREAMS = 6


@pytest.fixture
def two_process_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    redis = RedisServer(tmp_path / "redis").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WIDGET_", "PROMETHEUS_"))}
    env.update(WIDGET_DATA_DIR=str(tmp_path / "data"), WIDGET_SECRET_KEYS="workers-test-key-0123456789",
               WIDGET_LOG_FORMAT="json", **stack_env(tmp_path / "data", migrated=False))
    env["WIDGET_BROKER_URL"] = redis.url()
    env["WIDGET_STREAM_RECHECK"] = "0"  # only Redis carries a change to the other process
    created = subprocess.run(
        [sys.executable, "-m", "widget", "company", "create", "acme", "--name", "Acme",
         "--frame-origin", "http://localhost:8001", "--json"],
        cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=60, check=True)
    headers = {"Authorization": f"Bearer {json.loads(created.stdout)['api_key']}"}
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as stderr:
        server = subprocess.Popen([sys.executable, "-m", "widget", "serve", "--port", str(port), "--workers", "2"],
                                  cwd=CHECKOUT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server, log)
        yield url, headers
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        redis.stop()
    assert '"level": "error"' not in log.read_text(), log.read_text()


def test_every_stream_gets_every_change_whichever_process_holds_it(
    two_process_server: tuple[str, dict[str, str]]
) -> None:
    url, headers = two_process_server
    last_ids: dict[int, str] = {}
    opened = threading.Barrier(STREAMS + 1)

    def listen(n: int, token: str) -> None:
        with httpx.Client(timeout=20) as client, client.stream(
            "GET", f"{url}/embed/rooms/room-1/events", params={"token": token}
        ) as response:
            lines = response.iter_lines()
            for line in lines:
                if line.startswith("id:"):
                    last_ids[n] = line
                    if line == "id: 0":
                        opened.wait(10)
                    if line == "id: 3":
                        return

    tokens = [httpx.post(f"{url}/api/v1/embed-tokens", headers=headers, timeout=10,
                         json={"room_id": "room-1", "agent_id": f"agent-{n}"}).json()["token"] for n in range(STREAMS)]
    listeners = [threading.Thread(target=listen, args=(n, token), daemon=True) for n, token in enumerate(tokens)]
    for listener in listeners:
        listener.start()
    opened.wait(20)
    for n in range(3):  # each on a new connection: the processes share the accepts
        created = httpx.post(f"{url}/api/v1/deals", headers=headers, timeout=10, json={
            "name": f"Order {n}", "stage": "New", "pipeline": "Sales", "room_id": "room-1", "creator_flag": "bot"})
        assert created.status_code == 201, created.text
    for listener in listeners:
        listener.join(15)
    assert last_ids == {n: "id: 3" for n in range(STREAMS)}

    metrics = httpx.get(f"{url}/metrics", timeout=10).text  # either process sums both
    assert 'widget_product_events_total{event="bot_deal_created"} 3.0' in metrics
