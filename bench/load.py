"""An HTTP/1.1 load client that stays out of the way: keep-alive connections on raw
asyncio streams under uvloop, every request's bytes built before the clock starts,
and only the status line and Content-Length of a response parsed.

``run`` drives a server from a child process of its own (``python -m bench.load``,
so none of the bench process's threads or imports share its core time); ``Connection`` is the
same client for code that needs a request's exact moment in its own process (the
create → event figures).
"""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.report import median, percentile


def request_bytes(method: str, url: str, path: str, headers: dict[str, str], body: bytes | None = None) -> bytes:
    host = urlsplit(url).netloc
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class Connection:
    """One keep-alive connection; ``request`` sends prebuilt bytes and returns the
    status and body of the response (it must carry a Content-Length)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        marker = head.lower().find(b"\r\ncontent-length:")
        if marker < 0:
            raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
        end = head.index(b"\r\n", marker + 2)
        length = int(head[marker + 17:end])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


@dataclass
class LoadResult:
    latencies_ms: list[float]
    elapsed_s: float
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s

    @property
    def p50(self) -> float:
        return median(self.latencies_ms)

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def check(self, expected: int) -> LoadResult:
        if set(self.statuses) != {expected}:
            raise RuntimeError(f"expected every response {expected}, got {self.statuses}")
        return self


async def _phase(requests: list[bytes], connections: list[Connection], seconds: float,
                 rate: float | None = None) -> LoadResult:
    """Closed loop (``rate`` None): each connection sends its next request as soon as
    the last one answered. Open loop: request i is due at i / ``rate`` s, sent by the
    next free connection, and its latency counts from when it was due (a late send is
    the server's queue, not a pause of the client's)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    pending = enumerate(requests)
    began = time.perf_counter()
    deadline = began + seconds

    async def drive(conn: Connection) -> None:
        for i, data in pending:  # shared: each connection takes the next request
            started = time.perf_counter()
            if rate is not None:
                due = began + i / rate
                if due > started:
                    await asyncio.sleep(due - started)
                started = due
            if time.perf_counter() > deadline:
                return
            status, _ = await conn.request(data)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(drive(c) for c in connections))
    return LoadResult(latencies, time.perf_counter() - began, statuses)


async def _drive(url: str, warmup: list[bytes], measured: list[bytes], concurrency: int,
                 seconds: float, rate: float | None) -> LoadResult:
    connections = [await Connection.open(url) for _ in range(concurrency)]
    try:
        await _phase(warmup, connections, seconds, rate)
        return await _phase(measured, connections, seconds, rate)
    finally:
        for conn in connections:
            conn.close()


def _child() -> None:
    """``python -m bench.load``: the job pickled on stdin, the result on stdout."""
    import uvloop

    result = uvloop.run(_drive(*pickle.load(sys.stdin.buffer)))
    # Plain values: this module is __main__ here, so its classes would not unpickle.
    pickle.dump((result.latencies_ms, result.elapsed_s, result.statuses), sys.stdout.buffer)


def run(
    url: str, method: str, path: str, headers: dict[str, str], *, body: bytes | None = None,
    concurrency: int = 1, requests: int, warmup: int = 0, seconds: float = 60.0, rate: float | None = None,
) -> LoadResult:
    """``warmup`` then ``requests`` requests over ``concurrency`` keep-alive connections,
    from a child process; each phase stops sending after ``seconds`` (a slow server
    gets fewer samples, the run stays bounded); with ``rate``, open loop at that many
    requests/s (see ``_phase``). In ``body``, ``{n}`` becomes the
    request's number (unique values per request, e.g. a room id)."""
    built = [
        request_bytes(method, url, path, headers, body.replace(b"{n}", str(n).encode()) if body is not None else None)
        for n in range(warmup + requests)
    ]
    job = pickle.dumps((url, built[:warmup], built[warmup:], concurrency, seconds, rate))
    done = subprocess.run([sys.executable, "-m", "bench.load"], input=job, capture_output=True, timeout=300,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load client failed: {done.stderr.decode()[-2000:]}")
    return LoadResult(*pickle.loads(done.stdout))


if __name__ == "__main__":
    _child()
