"""Structured logs: one line per product event (PRD section 11) and per error.

Secrets never reach a log line: uvicorn's access log (which prints query strings,
hence ``?token=``) is replaced by our own request line without the query, and every
line passes through a filter that masks anything shaped like a token or API key.

A burst of identical warnings or errors is thinned by ``_Bursts``; product events never
are. asyncio's report of a failed ``accept()`` (out of file descriptors: a multi-line
error with a traceback, once per retry, hundreds of MB in minutes) becomes one readable
warning per interval with a count (``AcceptFailures``).
"""

from __future__ import annotations

import errno
import json
import logging
import re
import sys
import threading
import time
from typing import Any

from widget.events import EVENTS

log = logging.getLogger("widget")
# uvicorn logs its server's life (start, stop, errors) as "uvicorn.error".
_LOGGER_NAMES = {"uvicorn.error": "uvicorn.server"}
# API keys (wk_…), bearer values and query tokens; itsdangerous tokens have two dots.
_SECRET = re.compile(
    r"(wk_[A-Za-z0-9_-]{8,})|(token=[^&\s\"]+)|(Bearer\s+\S+)|"
    r"([A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,})"
)


def redact(text: str) -> str:
    return _SECRET.sub("[redacted]", text)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": _LOGGER_NAMES.get(record.name, record.name),
        }
        event = getattr(record, "event", None)
        if event:
            line["event"] = event
            line.update(getattr(record, "props", {}))
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["error"] = repr(record.exc_info[1])
        if getattr(record, "suppressed", 0):
            line["similar_lines_suppressed"] = record.suppressed
        return redact(json.dumps(line, default=str))


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        body = (
            f"{event} " + " ".join(f"{k}={v}" for k, v in getattr(record, "props", {}).items())
            if event
            else record.getMessage()
        )
        if record.exc_info:
            body += f" error={record.exc_info[1]!r}"
        if getattr(record, "suppressed", 0):
            body += f" (similar_lines_suppressed={record.suppressed})"
        return redact(f"{record.levelname.lower():7} {_LOGGER_NAMES.get(record.name, record.name)}: {body}")


class _Bursts(logging.Filter):
    """At most ``limit`` identical warnings/errors (same logger, level and message
    template or event) per ``window`` seconds; the first one after a thinned window
    carries how many were dropped. Product events are facts, never dropped."""

    def __init__(self, limit: int = 10, window: float = 60.0) -> None:
        super().__init__()
        self.limit, self.window = limit, window
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key: [start, count, dropped]
        self._lock = threading.Lock()  # uvicorn and the store's threads log too

    def filter(self, record: logging.LogRecord) -> bool:
        event = getattr(record, "event", None)
        if record.levelno < logging.WARNING or event in EVENTS:
            return True
        key = (record.name, record.levelno, event or str(record.msg))
        now = time.monotonic()
        with self._lock:
            state = self._seen.get(key)
            if state is None or now - state[0] >= self.window:
                if len(self._seen) > 1000:  # many distinct messages: not a burst
                    self._seen.clear()
                self._seen[key] = [now, 1, 0]
                if state is not None and state[2]:
                    record.suppressed = int(state[2])
                return True
            state[1] += 1
            if state[1] <= self.limit:
                return True
            state[2] += 1
            return False


class AcceptFailures(logging.Filter):
    """asyncio's "socket.accept() out of system resource" errors, one WARNING line per
    ``interval`` seconds saying how many accepts failed since the last line."""

    ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self.interval = interval
        self._last_line: float | None = None
        self._failures = 0  # since the last line, that one included
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if (record.name != "asyncio" or not isinstance(exc, OSError) or exc.errno not in self.ERRNOS
                or "accept" not in str(record.msg)):
            return True
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            if self._last_line is not None and now - self._last_line < self.interval:
                return False
            failures, self._failures, self._last_line = self._failures, 0, now
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = ("accept() failed: %s; %d failed accept(s) in the last %.0f s (new connections "
                      "wait or are refused until file descriptors free up)")
        record.args = (exc.strerror or exc, failures, self.interval)
        record.exc_info, record.exc_text = None, None
        return True


def configure(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    handler.addFilter(AcceptFailures())  # before _Bursts: it sees the one line, not each failure
    handler.addFilter(_Bursts())
    # asyncio: e.g. "socket.accept() out of system resource" under fd exhaustion
    # (uvloop does not report it: libuv accepts and closes the excess connections).
    for name, level in (("widget", logging.INFO), ("uvicorn", logging.INFO),
                        ("uvicorn.error", logging.INFO), ("asyncio", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True


def event(name: str, level: int = logging.INFO, **props: Any) -> None:
    """Log a product or error event as one structured line."""
    log.log(level, name, extra={"event": name, "props": props})
