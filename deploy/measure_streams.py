"""Memory and descriptors per idle stream of one ``widget serve`` process.

    .venv/bin/python deploy/measure_streams.py [--streams 500] [--rooms 500] [--broker-url redis://…]

Starts ``widget serve`` (SQLite in a temp dir, the memory broker or ``--broker-url``, no
embedded worker) on a free port, warms it up, reads its resident memory (VmRSS) and open descriptors, opens
``--streams`` room event streams spread over ``--rooms`` rooms (one embed token per
room) and holds them idle, waits until the server counts them all
(``widget_open_streams``), reads again, and prints the difference per stream. The
client is this process (raw sockets, nothing buffered); the server is measured alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CHECKOUT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def open_stream(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    received = b""
    while b"event: room" not in received:  # headers and the first snapshot
        chunk = await reader.read(4096)
        if not chunk:
            raise RuntimeError(f"stream closed early: {received[:200]!r}")
        received += chunk
    return reader, writer


async def open_streams_count(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    return float(re.search(r"^widget_open_streams (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]


async def measure(streams: int, rooms: int, broker_url: str) -> dict[str, float | str]:
    tmp = Path(tempfile.mkdtemp(prefix="widget-streams-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WIDGET_", "PROMETHEUS_MULTIPROC_DIR"))} | {
        "WIDGET_DATA_DIR": str(tmp / "data"), "WIDGET_SECRET_KEYS": "measure-key-0123456789abcdef",
        "WIDGET_PUBLIC_URL": f"http://127.0.0.1:{port}", "WIDGET_RATE_LIMIT": "0",
        "WIDGET_EMBEDDED_WORKER": "false", "WIDGET_LOG_FORMAT": "json", "WIDGET_BROKER_URL": broker_url,
    }
    created = subprocess.run(
        [sys.executable, "-m", "widget", "company", "create", "acme", "--name", "Acme",
         "--frame-origin", "http://localhost:8001", "--json"],
        env=env, cwd=CHECKOUT, capture_output=True, text=True, check=True, timeout=60)
    key = json.loads(created.stdout)["api_key"]
    with open(tmp / "serve.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "widget", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=CHECKOUT, stdout=log, stderr=log)
    held: list[asyncio.StreamWriter] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10,
                                     headers={"Authorization": f"Bearer {key}"}) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError((tmp / "serve.log").read_text()[-2000:])
                await asyncio.sleep(0.1)
            tokens = []
            for n in range(rooms):
                answer = await http.post("/api/v1/embed-tokens", json={"room_id": f"room-{n}", "agent_id": "a"})
                tokens.append(answer.json()["token"])
            # Warm up: every code path a stream takes, once, then closed.
            for _ in range(3):
                _, writer = await open_stream(port, f"/embed/rooms/room-0/events?token={tokens[0]}")
                writer.close()
            await asyncio.sleep(1)
            before_rss, before_fds = rss_kib(server.pid), fds(server.pid)
            began = time.monotonic()
            for start in range(0, streams, 50):  # 50 at a time: no accept-queue overflow
                batch = await asyncio.gather(*(
                    open_stream(port, f"/embed/rooms/room-{n % rooms}/events?token={tokens[n % rooms]}")
                    for n in range(start, min(streams, start + 50))))
                held += [writer for _, writer in batch]
            opened_in = time.monotonic() - began
            while await open_streams_count(http) < streams:
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # idle: a ping or none, nothing in flight
            after_rss, after_fds = rss_kib(server.pid), fds(server.pid)
    finally:
        for writer in held:
            writer.close()
        server.terminate()
        server.wait(15)
    return {
        "broker": broker_url.split(":", 1)[0], "streams": streams, "rooms": rooms, "opened_in_s": round(opened_in, 2),
        "rss_before_mib": round(before_rss / 1024, 1), "rss_after_mib": round(after_rss / 1024, 1),
        "kib_per_stream": round((after_rss - before_rss) / streams, 1),
        "fds_before": before_fds, "fds_after": after_fds,
        "fds_per_stream": round((after_fds - before_fds) / streams, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--broker-url", default="memory://")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.streams, args.rooms, args.broker_url)), indent=2))


if __name__ == "__main__":
    main()
