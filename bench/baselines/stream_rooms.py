"""What the two stream baselines share: the room snapshot they send and how uvicorn
runs them.

The snapshot has the shape and size of ours (RFC section 6: a bot deal shown, no
ticket; about 270 bytes of JSON), so the bytes per event match and only the work
around them differs. A room starts at version 1, as one of ours does once its deal
was created; ``POST /publish/{room}`` is the baseline's change (ours: a PATCH of the
deal's name), and bumps it by one.
"""

from __future__ import annotations

import argparse
import json
import zlib

from starlette.types import ASGIApp


def snapshot_json(room_id: str, version: int) -> str:
    deal_id = f"de_{zlib.crc32(room_id.encode()):024x}"
    return json.dumps({
        "room_id": room_id, "version": version,
        "deal": {"id": deal_id, "name": f"Deal {room_id} v{version}", "stage": "New", "pipeline": "Sales",
                 "url": f"http://127.0.0.1:8000/crm/deals/{deal_id}", "creator": "Bot",
                 "created_at": "2026-01-01T00:00:00.000000Z"},
        "ticket": None,
    }, ensure_ascii=False, separators=(",", ":"))


def serve(app: ASGIApp) -> None:
    """``python -m bench.baselines.<module> --port P``: uvicorn as widget/cli.py's
    ``serve`` runs it (loop and http "auto", i.e. uvloop and httptools; no access log)."""
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_config=None,
                timeout_graceful_shutdown=5, proxy_headers=False)
