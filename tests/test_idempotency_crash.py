"""The bar of issue 10: ``kill -9`` of ``widget serve`` in the middle of a burst of
keyed creates. A key is taken in the transaction that creates its record, so after a
restart every key retried gets the response of the record it created (the one it
answered before the kill, if it did), never a second record: each bot deal's room
shows it at version 1 (a second bot record would have taken the slot)."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.support import WidgetServer

KEYS = 120
AT_ONCE = 8
KILL_AFTER = 40  # answers before the kill; the rest are in flight or not sent yet


def body(n: int) -> dict[str, str]:
    return {"name": f"Order {n}", "stage": "New", "pipeline": "Sales", "room_id": f"crash-{n}", "creator_flag": "bot"}


async def test_keyed_creates_cut_by_kill_9_are_each_created_once_and_replayed_after_a_restart(
    widget_server: WidgetServer,
) -> None:
    created = json.loads(widget_server.cli(
        "company", "create", "acme", "--name", "Acme", "--frame-origin", "http://localhost:9", "--json"))
    headers = {"Authorization": f"Bearer {created['api_key']}"}
    await widget_server.start()
    answered: dict[int, dict] = {}
    killed = asyncio.Event()

    async with httpx.AsyncClient(base_url=f"{widget_server.url}/api/v1", headers=headers, timeout=5) as api:
        async def post(n: int) -> None:
            try:
                response = await api.post("/deals", json=body(n), headers={"Idempotency-Key": f"key-{n}"})
            except httpx.TransportError:
                return  # cut by the kill
            assert response.status_code == 201, response.text
            answered[n] = response.json()
            if len(answered) == KILL_AFTER and not killed.is_set():
                killed.set()
                widget_server.kill()

        pending = iter(range(KEYS))
        async def sender() -> None:
            for n in pending:
                if killed.is_set():
                    return
                await post(n)

        await asyncio.gather(*(sender() for _ in range(AT_ONCE)))
    assert killed.is_set() and len(answered) >= KILL_AFTER

    await widget_server.start()
    async with httpx.AsyncClient(base_url=f"{widget_server.url}/api/v1", headers=headers, timeout=5) as api:
        for n in range(KEYS):
            retried = await api.post("/deals", json=body(n), headers={"Idempotency-Key": f"key-{n}"})
            assert retried.status_code == 201, (n, retried.text)
            if n in answered:
                assert retried.json() == answered[n] and retried.headers["idempotent-replayed"] == "true"
            room = (await api.get(f"/rooms/crash-{n}")).json()
            assert room["version"] == 1 and room["deal"]["id"] == retried.json()["id"], (n, room)
    replayed_unanswered = KEYS - len(answered)
    assert replayed_unanswered > 0  # some keys really were cut or never sent before the kill
