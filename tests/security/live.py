"""A ``widget serve`` subprocess with settings and a file limit of the test's own, and
raw-socket helpers for requests no HTTP client would send. (A helper beside the tests:
``tests/support.py`` belongs to the whole suite.)"""

from __future__ import annotations

import json
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import CHECKOUT, WidgetServer, wait_ready

# The package's server (conftest.py): a short deadline keeps slow-client tests quick.
RECEIPT_DEADLINE = 2.0
FILE_LIMIT = (256, 1024)  # issue 11's probe met a 1,024 limit; serve raises the soft 256


class LimitedServer(WidgetServer):
    """``WidgetServer`` plus ``WIDGET_*`` settings and the RLIMIT_NOFILE (soft, hard) the
    process starts with; ``company()`` seeds a company, whose API key is ``api_key``."""

    def __init__(self, tmp_path: Path, nofile: tuple[int, int] | None = None, **settings: object) -> None:
        super().__init__(tmp_path)
        self.env |= {f"WIDGET_{name.upper()}": str(value) for name, value in settings.items()}
        self.nofile = nofile
        self.api_key = ""

    def company(self, company_id: str = "acme") -> None:
        out = self.cli("company", "create", company_id, "--name", "Acme",
                       "--frame-origin", "http://localhost:8001", "--json")
        self.api_key = json.loads(out)["api_key"]

    def run(self, command: str = "serve") -> subprocess.Popen[bytes]:
        """Start ``widget <command>``; for serve, return once it is ready."""
        self.starts += 1
        nofile = self.nofile

        def limit_files() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        args = ["serve", "--host", "127.0.0.1", "--port", str(self.port)] if command == "serve" else [command]
        with open(self.log(self.starts), "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "widget", *args], env=self.env, cwd=CHECKOUT,
                                            stdout=log, stderr=log, preexec_fn=limit_files)
        if command == "serve":
            wait_ready(self.url, self.process, self.log(self.starts))
        return self.process

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(8)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def log_text(self) -> str:
        return self.log(self.starts).read_text()


@contextmanager
def raw_connection(server: WidgetServer, timeout: float = 5.0) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    try:
        yield sock
    finally:
        sock.close()


def read_response_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and whatever body bytes came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, rest


def seconds_until_closed(sock: socket.socket, limit: float, *, trickle: bytes = b"", every: float = 0.5) -> float:
    """Seconds until the server closes ``sock`` (EOF or reset), sending ``trickle``
    every ``every`` s meanwhile and discarding what arrives; ``inf`` if it is still open
    after ``limit`` s."""
    started = time.monotonic()
    sock.settimeout(every)
    while (elapsed := time.monotonic() - started) < limit:
        try:
            if not sock.recv(65536):
                return elapsed
        except TimeoutError:
            if trickle:
                try:
                    sock.sendall(trickle)
                except OSError:
                    return time.monotonic() - started
        except OSError:  # reset
            return time.monotonic() - started
    return float("inf")


def healthz(server: WidgetServer) -> int:
    return httpx.get(f"{server.url}/healthz", timeout=2).status_code
