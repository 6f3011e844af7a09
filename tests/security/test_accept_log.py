"""accept() failures for lack of file descriptors: asyncio reports each one as a
multi-line error with its traceback (issue 11: 280 MB of log in 3 minutes); the
widget's logging turns them into one readable WARNING line per interval with a count
(``widget.logs.AcceptFailures``)."""

from __future__ import annotations

import errno
import logging
import subprocess
import sys

import pytest

from tests.support import CHECKOUT
from widget import logs
from widget.logs import AcceptFailures

pytestmark = pytest.mark.any_stack  # touches neither the store nor the broker: run on one stack


def test_a_process_out_of_descriptors_logs_one_line_for_its_failed_accepts() -> None:
    done = subprocess.run([sys.executable, "-m", "tests.security.accept_flood", "3.5"], cwd=CHECKOUT,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines  # asyncio retried several times a second meanwhile
    assert lines[0].startswith("warning asyncio: accept() failed: Too many open files; 1 failed accept(s)")


def _accept_failure() -> logging.LogRecord:
    exc = OSError(errno.EMFILE, "Too many open files")
    return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "socket.accept() out of system resource\n"
                             "socket: <asyncio.TransportSocket fd=6>", None, (OSError, exc, None))


class _Clock:
    """``widget.logs.time`` with a ``monotonic`` the test sets."""

    now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_one_line_per_interval_counts_the_failures_in_between(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(logs, "time", clock)
    failures = AcceptFailures(interval=10)
    passed = []
    for second in range(25):  # 4 failures a second for 25 s
        clock.now = float(second)
        passed += [record for record in (_accept_failure() for _ in range(4)) if failures.filter(record)]
    assert [record.getMessage().split(";")[1].split(" in ")[0].strip() for record in passed] == [
        "1 failed accept(s)", "40 failed accept(s)", "40 failed accept(s)"]  # at 0 s, 10 s, 20 s
    assert all(r.levelno == logging.WARNING and r.exc_info is None and "\n" not in r.getMessage() for r in passed)


def test_other_records_pass_untouched() -> None:
    failures = AcceptFailures()
    other = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Task exception was never retrieved",
                              None, (ValueError, ValueError("x"), None))
    refused = logging.LogRecord("widget", logging.ERROR, __file__, 1, "store", None,
                                (OSError, OSError(errno.EMFILE, "Too many open files"), None))
    read_failed = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Fatal read error on socket transport",
                                    None, (OSError, OSError(errno.ENOBUFS, "No buffer space available"), None))
    assert failures.filter(other) and other.levelno == logging.ERROR
    assert failures.filter(refused) and refused.exc_info is not None
    assert failures.filter(read_failed) and read_failed.getMessage() == "Fatal read error on socket transport"
