"""The record API driven over real HTTP against uvicorn in a thread."""

import httpx

from tests.support import LiveServer, Tenant


def test_happy_path_over_real_http(live: tuple[LiveServer, Tenant]) -> None:
    server, tenant = live
    with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=10) as http:
        contact = http.post("/api/v1/contacts", json={"name": "Budi"})
        assert contact.status_code == 201, contact.text
        deal = http.post("/api/v1/deals", json={
            "name": "Laptop order", "stage": "New", "pipeline": "Sales", "room_id": "room-1",
            "contact_id": contact.json()["id"], "creator_flag": "bot", "source": "whatsapp",
        })
        assert deal.status_code == 201, deal.text
        body = deal.json()
        assert body["creator"] == "Bot" and body["contact_id"] == contact.json()["id"]
        assert body["url"] == f"http://127.0.0.1:8000/crm/deals/{body['id']}"

        room = http.get("/api/v1/rooms/room-1").json()
        assert room["version"] == 1
        assert room["deal"]["id"] == body["id"] and room["ticket"] is None

        assert http.get(f"/api/v1/deals/{body['id']}").json() == body
        timeline = http.get(f"/api/v1/deals/{body['id']}/timeline").json()["entries"]
        assert [e["creator"] for e in timeline] == ["Bot"]
        assert http.delete(f"/api/v1/deals/{body['id']}").status_code == 204
        assert http.get("/api/v1/rooms/room-1").json() == {
            "room_id": "room-1", "version": 2, "deal": None, "ticket": None}
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").status_code == 200
