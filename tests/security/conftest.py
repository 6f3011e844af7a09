"""One ``widget serve`` for the package's attacks on the server: a 2 s receipt deadline
(so slow-client tests are quick), keep-alive pings every 0.5 s, and the file limit of
issue 11's probe (hard 1,024; it starts with a soft 256 that ``widget serve`` raises)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.live import FILE_LIMIT, RECEIPT_DEADLINE, LimitedServer


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedServer]:
    server = LimitedServer(tmp_path_factory.mktemp("attacked"), nofile=FILE_LIMIT,
                           request_receipt_timeout=RECEIPT_DEADLINE, sse_ping=0.5)
    # SQLite and the memory broker on either stack: the attacks are on the HTTP server,
    # and the scale stack's databases go back to its pool after each test, while this
    # server lives through the package.
    for name in ("WIDGET_DATABASE_URL", "WIDGET_BROKER_URL"):
        server.env.pop(name, None)
    server.company()
    server.run()
    try:
        yield server
    finally:
        server.stop()
