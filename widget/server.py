"""uvicorn's HTTP protocol (httptools) with a request-receipt deadline.

uvicorn has no deadline for receiving a request (its issue #157): its keep-alive timeout
only runs between requests and any byte cancels it, so a client that sends a header
line every few seconds holds its socket, and a file descriptor, forever. A thousand of
them exhaust the process' file limit and nothing else gets in.

Here a connection gets an absolute deadline whenever it is waiting for a request (when
it is made, after a response on a kept-alive connection, when a pipelined request
begins); the deadline is disarmed once the request is in whole (headers and body). A
stalled body is therefore covered too, while a long response (a stream) is not: by the
time it runs, its request is complete. Past the deadline the connection is closed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("widget.server")


class ReceiptDeadlineProtocol(HttpToolsProtocol):
    # In slots, not the instance dict: three more keys there would end CPython's
    # key-sharing for it and cost every connection (an idle stream too) ~1.3 KB.
    __slots__ = ("receipt_timeout", "_receipt_deadline", "_request_begun")

    def __init__(self, *args: Any, receipt_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receipt_timeout = receipt_timeout
        self._receipt_deadline: asyncio.TimerHandle | None = None
        self._request_begun = False

    # Armed while the connection waits for a request; never re-armed while armed, so a
    # client cannot push it back by trickling bytes.
    def _arm_receipt_deadline(self) -> None:
        if self._receipt_deadline is None:
            self._receipt_deadline = self.loop.call_later(self.receipt_timeout, self._receipt_deadline_passed)

    def _disarm_receipt_deadline(self) -> None:
        if self._receipt_deadline is not None:
            self._receipt_deadline.cancel()
            self._receipt_deadline = None

    def _receipt_deadline_passed(self) -> None:
        self._receipt_deadline = None
        if self.transport.is_closing():
            return
        if self._request_begun:  # an idle connection (a browser's preconnect) closes quietly
            log.warning("closed a connection whose request was not received whole within %s s",
                        self.receipt_timeout)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_receipt_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_begun = True
        self._arm_receipt_deadline()

    def on_message_complete(self) -> None:
        self._disarm_receipt_deadline()
        self._request_begun = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Kept alive and idle (uvicorn armed its keep-alive timer): the next request is
        # due within the deadline too; bytes that are no request (bare CRLFs) cancel
        # the keep-alive timer but not this.
        if self.timeout_keep_alive_task is not None:
            self._arm_receipt_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_receipt_deadline()
        super().connection_lost(exc)


def http_protocol(receipt_timeout: float) -> Any:
    """What ``uvicorn.run(http=...)`` takes: the protocol bound to its deadline (a partial
    pickles, so it also reaches the processes ``--workers`` starts)."""
    return functools.partial(ReceiptDeadlineProtocol, receipt_timeout=receipt_timeout)
