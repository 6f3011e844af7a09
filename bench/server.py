"""Our real server for the benchmarks: ``widget serve`` as a subprocess (uvicorn with
uvloop + httptools, as deployed), on a temp data dir, with a company and its API key.

Stacks: ``sqlite`` (SQLite file + memory:// broker, the embedded default) and ``scale``
(a private PostgreSQL 15 + Redis, started once per bench process by the test suite's
helpers and stopped at exit). The server's output goes to ``<tmp>/widget-serve.log``,
never to the printed table.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support import free_port, wait_ready

STACKS = ("sqlite", "scale")
COMPANY = "bench"
FRAME_ORIGIN = "http://localhost:8001"
# The record API's per-company rate limit is off: the bench is one company driving
# hundreds of creates a second, which the limit (50/s by default) exists to refuse.
DEFAULTS = {
    "WIDGET_SECRET_KEYS": "bench-key-0123456789abcdef",
    "WIDGET_LOG_FORMAT": "json",
    "WIDGET_RATE_LIMIT": "0",
    # The stream figures hold 1,000 streams on one token and room, 11,000 of one company.
    "WIDGET_STREAMS_PER_TOKEN": "0",
    "WIDGET_STREAMS_PER_ROOM": "0",
    "WIDGET_STREAMS_PER_COMPANY": "0",
}


def raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit (the servers started later inherit it):
    the stream figures hold thousands of connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def stack_env(stack: str, data_dir: Path) -> dict[str, str]:
    """The database and broker URLs of a stack, for a server on ``data_dir``."""
    if stack == "sqlite":
        return {"WIDGET_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'widget.db'}", "WIDGET_BROKER_URL": "memory://"}
    if stack == "scale":
        from tests import postgres_support, redis_support

        return {"WIDGET_DATABASE_URL": postgres_support.database_url(data_dir),
                "WIDGET_BROKER_URL": redis_support.broker_url()}
    raise ValueError(f"stack must be one of {STACKS}, not {stack!r}")


def settings_env(**settings: str) -> dict[str, str]:
    """``sse_ping="1"`` or ``WIDGET_SSE_PING="1"`` → ``{"WIDGET_SSE_PING": "1"}``."""
    return {(k.upper() if k.upper().startswith("WIDGET_") else f"WIDGET_{k.upper()}"): str(v)
            for k, v in settings.items()}


@dataclass
class Server:
    stack: str
    url: str
    process: subprocess.Popen[bytes]
    api_key: str
    env: dict[str, str]  # the WIDGET_* settings it runs with
    log: Path
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, headers=self.headers, timeout=10)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def mint_token(self, room_id: str) -> str:
        response = self.http.post("/api/v1/embed-tokens", json={"room_id": room_id, "agent_id": "bench"})
        response.raise_for_status()
        return response.json()["token"]

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def close(self) -> None:
        self.http.close()
        stop(self.process)


@dataclass
class Baseline:
    """A baseline server (``bench/baselines/``) running as a subprocess."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def close(self) -> None:
        stop(self.process)


def rss_kb(pid: int) -> int:
    """Resident memory of a process (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's threads so far, from their schedstat (ns): /proc/PID/stat
    counts 10 ms ticks, which round a short phase of a fast server to nothing. (A thread
    that ended is not counted; the servers keep theirs.)"""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except FileNotFoundError:
            pass  # the thread ended meanwhile
    return total / 1e9


def settle(pid: int, timeout: float = 10.0) -> float:
    """Wait until the process is idle (under 5% of a core over 0.5 s): e.g. its
    embedded worker done with the outbox rows of a burst of creates. At most
    ``timeout`` seconds; returns the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        used = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - used < 0.025:
            break
    return time.monotonic() - began


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def baseline_database(stack: str, tmp: Path) -> str:
    """Where a baseline writes on a stack: a SQLite file in ``tmp``, or a PostgreSQL
    database of its own on the stack's server (for asyncpg itself)."""
    if stack == "sqlite":
        return str(tmp / "baseline.db")
    url = stack_env(stack, tmp / "baseline")["WIDGET_DATABASE_URL"]
    return url.replace("postgresql+asyncpg://", "postgresql://")


@contextmanager
def start_baseline(module: str, tmp: Path, **env: str) -> Iterator[Baseline]:
    """``python -m <module> --port P`` on a free port with ``env`` added; ready once it
    accepts a connection (uvicorn listens after its lifespan started). Output goes to
    ``tmp/<module>.log``."""
    raise_fd_limit()
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = tmp / f"{module.rsplit('.', 1)[-1]}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", module, "--port", str(port)], env={**os.environ, **env},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    baseline = Baseline(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{module} did not start: {log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield baseline
    finally:
        baseline.close()


@contextmanager
def start_widget(stack: str, tmp: Path, *, frame_origin: str = FRAME_ORIGIN, **settings: str) -> Iterator[Server]:
    """``widget serve`` on a free port of 127.0.0.1, data in
    ``tmp/data``, its company framed by ``frame_origin``; ``settings`` are more
    WIDGET_* settings (``sse_ping="1"``)."""
    raise_fd_limit()
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **DEFAULTS,
        "WIDGET_DATA_DIR": str(data_dir),
        "WIDGET_PUBLIC_URL": f"http://127.0.0.1:{port}",
        **stack_env(stack, data_dir),
        **settings_env(**settings),
    }
    process_env = {**os.environ, **env}
    created = subprocess.run(
        [sys.executable, "-m", "widget", "company", "create", COMPANY, "--name", "Bench",
         "--frame-origin", frame_origin, "--json"],
        env=process_env, capture_output=True, text=True, timeout=120, check=False,
    )
    if created.returncode != 0:
        raise RuntimeError(f"widget company create failed: {created.stderr.strip()}")
    api_key = json.loads(created.stdout)["api_key"]
    log = tmp / "widget-serve.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "widget", "serve", "--port", str(port)], env=process_env,
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server(stack, f"http://127.0.0.1:{port}", process, api_key, env, log)
    try:
        wait_ready(server.url, process, log, timeout=60)
        yield server
    finally:
        server.close()
