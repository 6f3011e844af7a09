"""Apps run inside the bench process (the SQL counting, the example host) log to the
stderr they find when they start (``widget.logs.configure``): a file, not the terminal
where the tables are printed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path


@contextmanager
def logs_to(path: Path) -> Iterator[None]:
    with open(path, "a") as log, redirect_stderr(log):
        try:
            yield
        finally:
            # Handlers left on that file would write to it once closed.
            for logger in (logging.getLogger(name) for name in logging.root.manager.loggerDict):
                logger.handlers = [h for h in logger.handlers if getattr(h, "stream", None) is not log]
