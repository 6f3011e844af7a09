"""Benchmarks (``make bench``): the figures the RFC and issue 10 ask for, each beside a
bare baseline measured in the same run, on this machine, over loopback.

    python -m bench [--stack sqlite|scale|both] [--only api streams browser] [--quick]

For each stack, ``widget serve`` runs as a subprocess (``bench/server.py``; ``scale`` is
a private PostgreSQL 15 + Redis) and each figures module measures it:

- ``bench/api.py``: bot deal creates (sequential, 32 clients), SQL per create with and
  without an ``Idempotency-Key``, create → SSE event;
- ``bench/streams.py``: the stream figures (when the module is there);
- ``bench/browser.py``: create → painted and page figures in Chromium (SQLite only).

Prints one markdown table per stack on stdout (progress and load averages on stderr;
servers log to files in their temp dirs) and writes ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

from bench.report import DOC, Figure, load_average, print_table, write_document
from bench.server import STACKS, raise_fd_limit, start_widget

MODULES = ("api", "streams", "browser", "assets")
BROWSER_STACKS = ("sqlite",)  # the browser figures measure the page, not the store
SETTINGS = {
    "server": "`widget serve` (uvicorn 1 process, uvloop + httptools, no access log), "
              "SQLite file + memory:// broker (stack sqlite) or PostgreSQL 15 (fsync off) + Redis (stack scale)",
    "WIDGET_RATE_LIMIT": "0 (the per-company limit would refuse the load figures' bursts)",
    "WIDGET_STREAMS_PER_TOKEN / _PER_ROOM / _PER_COMPANY": "0 (the stream figures hold 1,000 streams on one token)",
    "WIDGET_EMBEDDED_WORKER": "true (default: the outbox worker runs in the server, as deployed)",
    "WIDGET_CHAT_PANEL_URL": "unset for the api and stream figures (the worker gives each bot record's "
                             "chat-history job up at once); the example host's fake Chat Panel for the browser figures",
    "WIDGET_LOG_FORMAT": "json, to a file (one line per request and per product event, as deployed)",
    "baselines": "`bench/baselines/` under the same uvicorn settings, on the same stack's database",
    "clients": "`bench/load.py` (raw asyncio + uvloop, own process) and raw-socket SSE readers",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def available(names: list[str]) -> list[ModuleType]:
    """The figures modules asked for; one not written yet is skipped with a note."""
    modules = []
    for name in names:
        if importlib.util.find_spec(f"bench.{name}") is None:
            log(f"bench.{name} is not there yet: skipped")
            continue
        modules.append(importlib.import_module(f"bench.{name}"))
    return modules


def run_stack(stack: str, modules: list[ModuleType], quick: bool, failures: list[str]) -> list[Figure]:
    """Every module's figures on one server of ``stack``; a module that fails is
    named in ``failures`` (traceback on stderr) and the others still run."""
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix=f"bench-{stack}-") as tmp, start_widget(stack, Path(tmp)) as server:
        for module in modules:
            name = module.__name__.removeprefix("bench.")
            if name == "browser" and stack not in BROWSER_STACKS:
                continue
            began = time.monotonic()
            log(f"[{stack}] {name} … (load average {load_average()})")
            try:
                figures += module.figures(server, quick)
            except Exception as exc:  # noqa: BLE001 - reported, and the run exits non-zero
                traceback.print_exc()
                failures.append(f"{stack}: bench.{name} failed: {exc!r}")
                continue
            log(f"[{stack}] {name} done in {time.monotonic() - began:.0f} s")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=[*STACKS, "both"], default="both")
    parser.add_argument("--only", nargs="+", choices=MODULES, default=list(MODULES), metavar="NAME",
                        help=f"figures modules to run, of {', '.join(MODULES)}")
    parser.add_argument("--quick", action="store_true", help="fewer samples (under 2 minutes for both stacks)")
    args = parser.parse_args(argv)
    raise_fd_limit()
    stacks = list(STACKS) if args.stack == "both" else [args.stack]
    modules = available(args.only)
    load = {"at the start": load_average()}
    began = time.monotonic()
    failures: list[str] = []
    tables = {stack: run_stack(stack, modules, args.quick, failures) for stack in stacks}
    load["at the end"] = load_average()
    for stack, figures in tables.items():
        print_table(stack, figures)
    print(f"\nload average (1/5/15 min): {load['at the start']} at the start, {load['at the end']} at the end; "
          f"{time.monotonic() - began:.0f} s")
    for failure in failures:
        print(f"FAILED {failure}")
    settings = {**SETTINGS, "samples": "quick (--quick)" if args.quick else "full",
                **({"failed": "; ".join(failures)} if failures else {})}
    write_document(tables, settings, [getattr(m, "METHODS", "") for m in modules], load)
    log(f"wrote {DOC}")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
