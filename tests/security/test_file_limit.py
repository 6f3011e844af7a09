"""``widget serve`` and ``widget worker`` raise their soft RLIMIT_NOFILE to the hard limit
at start and say so in one INFO line (issue 11: the default soft 1,024 is a few hundred
streams)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.security.live import FILE_LIMIT, LimitedServer

pytestmark = pytest.mark.any_stack  # touches neither the store nor the broker: run on one stack


def _soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")


def _limit_lines(log: str) -> list[dict[str, str]]:
    return [line for line in map(json.loads, log.splitlines()) if "RLIMIT_NOFILE" in line.get("message", "")]


def _assert_raised_and_logged(process: LimitedServer, soft: int, hard: int) -> None:
    assert process.process is not None
    assert _soft_limit(process.process.pid) == hard
    [line] = _limit_lines(process.log_text())
    assert line["level"] == "info"
    assert f"{soft} -> {hard}" in line["message"]


def test_serve_raises_its_soft_file_limit(server: LimitedServer) -> None:
    _assert_raised_and_logged(server, *FILE_LIMIT)


def test_worker_raises_its_soft_file_limit(tmp_path: Path) -> None:
    worker = LimitedServer(tmp_path, nofile=(256, 2048))
    try:
        worker.run("worker")
        deadline = time.monotonic() + 20
        while not _limit_lines(worker.log_text()):
            assert worker.process.poll() is None and time.monotonic() < deadline, worker.log_text()
            time.sleep(0.1)
        _assert_raised_and_logged(worker, 256, 2048)
    finally:
        worker.stop()
