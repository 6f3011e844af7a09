"""Container health checks for the widget image (``python:slim`` has no curl).

    widget-healthcheck http://127.0.0.1:8000/healthz   # 0 when the URL answers 2xx in 3 s
    widget-healthcheck --worker                        # 0 when the worker's database answers

``widget worker`` serves no HTTP: its check is that the store it works from answers
(the container stops by itself if the worker process ends). Exit 1 with one line
otherwise, which ``docker inspect`` shows.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.error
import urllib.request

TIMEOUT = 3.0


def check_url(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - our own URL
            return None if 200 <= response.status < 300 else f"{url} answered {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"


async def _ping_store() -> None:
    from widget.settings import load_settings
    from widget.store import Store

    store = Store(load_settings().db_url)
    try:
        await store.ping()
    finally:
        await store.close()


def check_worker() -> str | None:
    try:
        asyncio.run(asyncio.wait_for(_ping_store(), TIMEOUT))
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", named
        return f"database unreachable: {type(exc).__name__}: {exc}"
    return None


def main(argv: list[str]) -> int:
    if argv == ["--worker"]:
        problem = check_worker()
    elif len(argv) == 1 and argv[0].startswith(("http://", "https://")):
        problem = check_url(argv[0])
    else:
        print("usage: widget-healthcheck URL | --worker", file=sys.stderr)
        return 2
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
