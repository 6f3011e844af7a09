"""Static asset figures: the size of the browser code the service ships, all of
``static/*.js`` gzipped (issue 12: at most 8 KB together; ``tests/test_static_budget.py``
is the guard that fails a change going over).

The files are read from the checkout, not from the server: their size does not depend on
the stack, so ``server`` and ``quick`` are unused.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from bench.report import Figure
from bench.server import Server

STATIC = Path(__file__).resolve().parent.parent / "static"
BUDGET_BYTES = 8 * 1024

METHODS = """
**Static JS, all files, gzipped.** Every `static/*.js` compressed on its own (a browser
fetches each file apart) with gzip level 9, mtime 0, and the sizes added up; per file in
the note. The goal is the shared budget of issue 12 (component, room feed and worker, CRM
page, host loader together); `tests/test_static_budget.py` fails the suite above it.
"""


def gzipped_js_sizes() -> dict[str, int]:
    """Bytes of each ``static/*.js``, gzipped, by file name."""
    return {path.name: len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))
            for path in sorted(STATIC.glob("*.js"))}


def figures(server: Server, quick: bool) -> list[Figure]:
    sizes = gzipped_js_sizes()
    total = sum(sizes.values())
    note = ", ".join(f"{name} {size / 1024:.2f} KB" for name, size in sizes.items())
    return [Figure("static JS, all files, gzipped", "KB", total / 1024, None, "", f"≤ {BUDGET_BYTES // 1024} KB",
                   total <= BUDGET_BYTES, note)]
