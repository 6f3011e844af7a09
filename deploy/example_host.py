"""The example host (examples/host_page, playing Omnichannel) in deploy/compose.yaml.

`make run` starts a widget server and the host together; in compose the widget runs
behind nginx, so this only serves the host:

1. creates the company ``demo`` once (``widget company create … --json`` against the
   stack's database, with the environment's WIDGET_* settings), framed by
   ``HOST_PUBLIC_URL`` and notifying ``HOST_INTERNAL_URL/omnichannel``, and keeps the API
   key (shown only then) in ``HOST_STATE_DIR/demo-company.json`` (mode 0600);
2. serves the host with uvicorn on ``0.0.0.0:HOST_PORT``; its backend calls the record
   API at ``HOST_WIDGET_API_URL`` (through nginx) and its pages frame
   ``HOST_WIDGET_PUBLIC_URL``.

For demos and QA only, never in production.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

COMPANY_ID = "demo"


def setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if not value:
        sys.exit(f"example-host: error: set {name}")
    return value


def ensure_company(state_dir: Path, public_url: str, internal_url: str, secret: str) -> dict[str, Any]:
    saved = state_dir / "demo-company.json"
    done = subprocess.run(
        [sys.executable, "-m", "widget", "company", "create", COMPANY_ID, "--name", "Demo Store",
         "--frame-origin", public_url, "--omnichannel-url", f"{internal_url}/omnichannel",
         "--omnichannel-secret", secret, "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if done.returncode == 0:
        company = json.loads(done.stdout.strip().splitlines()[-1])
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(company, handle)
        return company
    if "already exists" in done.stderr + done.stdout and saved.exists():
        return json.loads(saved.read_text())
    problem = (done.stderr or done.stdout).strip().splitlines()
    sys.exit(f"example-host: error: cannot create the demo company: {problem[-1] if problem else done.returncode}"
             + ("" if saved.exists() else f" (and {saved} is missing: recreate the volumes)"))


def main() -> None:
    import uvicorn

    from examples.host_page.app import create_host_app

    port = int(setting("HOST_PORT", "8001"))
    public_url = setting("HOST_PUBLIC_URL").rstrip("/")
    internal_url = setting("HOST_INTERNAL_URL").rstrip("/")
    secret = setting("HOST_OMNICHANNEL_SECRET")
    company = ensure_company(Path(setting("HOST_STATE_DIR", "/var/lib/widget")), public_url, internal_url, secret)
    app = create_host_app(
        setting("HOST_WIDGET_PUBLIC_URL"), company["api_key"], company["id"],
        widget_api_url=setting("HOST_WIDGET_API_URL"), omnichannel_secret=secret,
    )
    print(f"example host: open {public_url}/inbox", flush=True)
    uvicorn.run(app, host="0.0.0.0", port=port, access_log=False, timeout_graceful_shutdown=3)  # noqa: S104


if __name__ == "__main__":
    main()
