"""Structured logs: one line per product event (PRD section 11) and per error.

Secrets never reach a log line: uvicorn's access log (which prints query strings,
hence ``?token=``) is replaced by our own request line without the query, and every
line passes through a filter that masks anything shaped like a token or API key.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

log = logging.getLogger("widget")
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
            "logger": record.name,
        }
        event = getattr(record, "event", None)
        if event:
            line["event"] = event
            line.update(getattr(record, "props", {}))
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["error"] = repr(record.exc_info[1])
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
        return redact(f"{record.levelname.lower():7} {record.name}: {body}")


def configure(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    for name in ("widget", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True


def event(name: str, level: int = logging.INFO, **props: Any) -> None:
    """Log a product or error event as one structured line."""
    log.log(level, name, extra={"event": name, "props": props})
