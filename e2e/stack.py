"""The two servers an e2e scenario needs, as in production on two sites: the widget
runtime on 127.0.0.1 and the example host (playing Omnichannel) on localhost."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from examples.host_page.app import create_host_app
from tests.support import LiveServer, Tenant, free_port, make_settings, running_app, seed_company
from widget import companies
from widget.app import create_app
from widget.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@dataclass
class Stack:
    widget: LiveServer
    host: LiveServer
    tenant: Tenant
    omnichannel_secret: str | None = None  # set when the company notifies the host (RFC section 9)
    api: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.api = httpx.Client(base_url=self.widget.url + "/api/v1", headers=self.tenant.headers, timeout=10)

    @property
    def host_url(self) -> str:
        return f"http://localhost:{self.host.port}"

    def inbox(self, room_id: str, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in {"room": room_id, **query}.items())
        return f"{self.host_url}/inbox?{params}"

    def create(self, kind: str, room_id: str | None, creator_flag: str | None = "bot", **fields: Any) -> dict:
        body: dict[str, Any] = (
            {"name": "Laptop order", "stage": "New", "pipeline": "Sales"} if kind == "deal"
            else {"name": "Refund request", "status": "Open"}
        )
        body.update(fields)
        if room_id is not None:
            body["room_id"] = room_id
        if creator_flag is not None:
            body["creator_flag"] = creator_flag
        headers = {"X-Test-Clock": body.pop("test_clock")} if "test_clock" in body else {}
        response = self.api.post(f"/{kind}s", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()

    def stop_widget(self) -> None:
        """The CRM goes away (ERR-2): stop the widget server, keep its database."""
        self.widget.__exit__()

    def restart_widget(self) -> None:
        """The CRM comes back: a new app on the same settings, database and port."""
        settings = self.widget.app.state.runtime.settings
        self.widget = LiveServer(create_app(settings), port=self.widget.port).__enter__()

    def close(self) -> None:
        self.api.close()
        self.host.__exit__()
        self.widget.__exit__()


def start_stack(tmp: Path, *, omnichannel_secret: str | None = None, **settings: Any) -> Stack:
    """Start both servers on free ports; the demo company may be framed by the host,
    and the widget's worker fetches chat history from the host's fake Chat Panel, with
    the host's inbox as the chat-room deeplink, as `make run` does. With
    ``omnichannel_secret`` the company also sends its Omnichannel notifications to the
    host's receivers (``{host}/omnichannel``, signed with that secret, as `make run`
    seeds it); without, it sends none (the session stack: nothing refreshes its
    components behind the other scenarios' backs)."""
    widget_port, host_port = free_port(), free_port()
    host_url = f"http://localhost:{host_port}"
    widget_settings = make_settings(tmp, **{
        "test_clock": True, "public_url": f"http://127.0.0.1:{widget_port}", "embedded_worker": True,
        "chat_panel_url": f"{host_url}/chat-panel", "omnichannel_room_url": f"{host_url}/inbox?room={{room_id}}",
        **settings,
    })
    if omnichannel_secret:
        tenant = seed_notified_company(widget_settings, host_url, omnichannel_secret)
    else:
        tenant = seed_company(widget_settings, frame_origins=[host_url])
    widget = LiveServer(create_app(widget_settings), port=widget_port).__enter__()
    host_app = create_host_app(widget.url, tenant.api_key, tenant.id, omnichannel_secret=omnichannel_secret)
    host = LiveServer(host_app, port=host_port).__enter__()
    return Stack(widget, host, tenant, omnichannel_secret)


def seed_notified_company(settings: Settings, host_url: str, secret: str, company_id: str = "acme") -> Tenant:
    """``seed_company`` for a company whose notifications go to the host's receivers."""

    async def work() -> Tenant:
        async with running_app(settings) as application:
            row, key = await companies.create_company(
                application.state.runtime, company_id, company_id.title(), [host_url],
                omnichannel_url=f"{host_url}/omnichannel", omnichannel_secret=secret,
            )
            return Tenant(row["id"], key)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work()).result()
