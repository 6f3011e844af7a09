"""A request answered before its body is read (401 from the headers, 413 from
Content-Length) closes its connection: the server does not read on through a 10 GB
body only to discard it (issue 11 measured 3.6 GB in 10 s), nor wait for it. The
receipt deadline (2 s) would close it too, later: "promptly" here is well within it."""

from __future__ import annotations

import pytest

from tests.security.live import (
    RECEIPT_DEADLINE,
    LimitedServer,
    raw_connection,
    read_response_head,
    seconds_until_closed,
)

TEN_GB = 10 * 1024**3


def _huge_post(server: LimitedServer, authorization: str) -> bytes:
    return (f"POST /api/v1/deals HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{authorization}"
            f"Content-Length: {TEN_GB}\r\n\r\n").encode() + b"{" + b" " * 65536


@pytest.mark.parametrize(("authorization", "status"), [("", 401), ("with key", 413)])
def test_a_rejected_huge_body_is_not_read_on(server: LimitedServer, authorization: str, status: int) -> None:
    header = f"Authorization: Bearer {server.api_key}\r\n" if authorization else ""
    with raw_connection(server) as sock:
        sock.sendall(_huge_post(server, header))
        answered, headers, _ = read_response_head(sock)
        assert answered == status
        assert headers.get("connection") == "close"
        # The body keeps coming, the server has stopped listening.
        assert seconds_until_closed(sock, RECEIPT_DEADLINE, trickle=b" " * 65536, every=0.1) < RECEIPT_DEADLINE / 2
