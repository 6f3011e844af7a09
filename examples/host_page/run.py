"""``make run``: the widget server and the example host on two origins, with a demo company.

    .venv/bin/python -m examples.host_page.run

1. sets the widget's settings for the demo (``WIDGET_*``, see below; values already in
   the environment win);
2. ``widget migrate``;
3. creates the company ``demo`` once (``widget company create demo … --json``) and keeps
   its API key in ``data/demo-company.json`` (mode 0600), reused on later runs;
4. starts ``widget serve --host 127.0.0.1 --port $WIDGET_PORT`` as a child process and
   the host (uvicorn, in this process) on ``localhost:$HOST_PORT``;
5. waits until both answer, prints the URL to open, and stops both on Ctrl-C / SIGTERM.

Environment: ``HOST_PORT`` (8001), ``WIDGET_PORT`` (8000), ``HOST_OMNICHANNEL_SECRET``
(``demo-omnichannel-secret``) and the widget's own ``WIDGET_*`` settings.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

CHECKOUT = Path(__file__).resolve().parents[2]
COMPANY_ID = "demo"
COMPANY_NAME = "Demo Store"
DEFAULT_SECRET = "demo-omnichannel-secret"
START_TIMEOUT = 30.0


class LaunchError(Exception):
    """Stops the launcher with one line on stderr."""


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise LaunchError(f"{name} must be a port number, not {raw!r}") from None
    if not 0 < port < 65536:
        raise LaunchError(f"{name} must be between 1 and 65535")
    return port


def widget_env(host_port: int, widget_port: int, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    host = f"http://localhost:{host_port}"
    defaults = {
        "WIDGET_DATA_DIR": str(data_dir),
        "WIDGET_PUBLIC_URL": f"http://127.0.0.1:{widget_port}",
        "WIDGET_CHAT_PANEL_URL": f"{host}/chat-panel",
        "WIDGET_OMNICHANNEL_ROOM_URL": f"{host}/inbox?room={{room_id}}",
        "WIDGET_TEST_CLOCK": "true",
        "WIDGET_LOG_FORMAT": "text",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def widget_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "widget", *args], env=env, cwd=CHECKOUT,
        capture_output=True, text=True, timeout=120,
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def migrate(env: dict[str, str]) -> None:
    done = widget_cli(env, "migrate")
    if done.returncode != 0:
        raise LaunchError(f"widget migrate failed: {_last_line(done.stderr or done.stdout)}")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def ensure_company(env: dict[str, str], data_dir: Path, host_port: int, secret: str) -> dict[str, Any]:
    """The demo company's ``{"id", "name", "api_key", "frame_origins"}``, created once."""
    saved = data_dir / "demo-company.json"
    where = _shown(data_dir)
    host = f"http://localhost:{host_port}"
    done = widget_cli(
        env, "company", "create", COMPANY_ID, "--name", COMPANY_NAME, "--frame-origin", host,
        "--omnichannel-url", f"{host}/omnichannel", "--omnichannel-secret", secret, "--json",
    )
    if done.returncode == 0:  # a fresh database: keep the key that is shown only now
        company = json.loads(done.stdout.strip().splitlines()[-1])
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = saved.with_suffix(".json.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(company, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, saved)
        return company
    if "already exists" not in (done.stderr + done.stdout):
        raise LaunchError(f"could not create the demo company: {_last_line(done.stderr or done.stdout)}")
    if not saved.exists():
        raise LaunchError(
            f"the demo company exists in {where}/ but {where}/{saved.name} (its API key) is missing: "
            f"delete {where}/ and run again"
        )
    try:
        company = json.loads(saved.read_text())
        if not isinstance(company.get("api_key"), str):
            raise ValueError("no api_key")
    except (OSError, ValueError, AttributeError) as exc:
        raise LaunchError(f"{where}/{saved.name} is unreadable ({exc}): delete {where}/ and run again") from None
    if host not in company.get("frame_origins", []):
        raise LaunchError(
            f"the demo company was created for other frame origins {company.get('frame_origins')} "
            f"(HOST_PORT changed?): delete {where}/ and run again"
        )
    return company


def check_port_free(host: str, port: int, name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise LaunchError(f"port {port} ({name}) is already in use: is another `make run` running? "
                              f"Set {name} to use another port") from None


def wait_for_widget(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                raise LaunchError(f"the widget server exited during start-up (exit code {code}); see its output above")
            try:
                if client.get(f"{url}/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise LaunchError(f"the widget server did not answer {url}/healthz within {START_TIMEOUT:.0f} s")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


async def serve_host(app: Any, port: int, widget: subprocess.Popen[bytes], widget_url: str) -> int:
    import uvicorn

    config = uvicorn.Config(
        app, host="localhost", port=port, access_log=False, log_level="warning",
        lifespan="on", timeout_graceful_shutdown=3,
    )
    global serving
    server = uvicorn.Server(config)
    serving = True
    task = asyncio.create_task(server.serve())
    exit_code = 0
    announced = False
    async with httpx.AsyncClient(timeout=2.0) as client:
        while not task.done():
            if widget.poll() is not None and not server.should_exit:
                print(f"run: the widget server stopped (exit code {widget.returncode}); stopping the host",
                      file=sys.stderr)
                exit_code = 1
                server.should_exit = True
            if not announced and server.started:
                try:
                    await client.get(f"http://localhost:{port}/healthz")
                    print(f"Open http://localhost:{port}/inbox  (widget server: {widget_url})", flush=True)
                    announced = True
                except httpx.HTTPError:
                    pass
            await asyncio.sleep(0.2)
    await task
    if not announced and exit_code == 0 and not stop_requested:
        raise LaunchError(f"the host did not start on localhost:{port}")
    return exit_code


stop_requested = False
serving = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGINT / SIGTERM outside uvicorn's own handlers: during start-up it interrupts the
    launcher; after uvicorn has shut down (it re-raises the signal it caught) it only
    records that a stop was asked for."""
    global stop_requested
    already = stop_requested
    stop_requested = True
    if not serving and not already:
        raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    widget: subprocess.Popen[bytes] | None = None
    try:
        host_port = _port("HOST_PORT", 8001)
        widget_port = _port("WIDGET_PORT", 8000)
        data_dir = Path(os.environ.get("WIDGET_DATA_DIR", CHECKOUT / "data")).resolve()
        secret = os.environ.get("HOST_OMNICHANNEL_SECRET") or DEFAULT_SECRET
        env = widget_env(host_port, widget_port, data_dir)
        widget_url = f"http://127.0.0.1:{widget_port}"
        check_port_free("127.0.0.1", widget_port, "WIDGET_PORT")
        check_port_free("127.0.0.1", host_port, "HOST_PORT")

        migrate(env)
        company = ensure_company(env, data_dir, host_port, secret)

        widget = subprocess.Popen(
            [sys.executable, "-m", "widget", "serve", "--host", "127.0.0.1", "--port", str(widget_port)],
            env=env, cwd=CHECKOUT, start_new_session=True,  # our signals are ours: we stop it ourselves
        )
        wait_for_widget(widget, widget_url)

        from examples.host_page.app import create_host_app

        app = create_host_app(
            env.get("WIDGET_PUBLIC_URL", widget_url), company["api_key"], company["id"],
            widget_api_url=widget_url, omnichannel_secret=secret,
        )
        code = asyncio.run(serve_host(app, host_port, widget, widget_url))
        return code
    except KeyboardInterrupt:
        return 0
    except LaunchError as exc:
        print(f"run: error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_process(widget)
        if stop_requested:
            print("run: stopped", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
