"""Operations endpoints (RFC section 10) and the OpenAPI description of section 5."""

from __future__ import annotations

import httpx

from tests.support import Tenant
from tests.helpers import assert_error

RFC_PATHS = {
    "/api/v1/contacts": {"post"},
    "/api/v1/contacts/{id}": {"get", "delete"},
    "/api/v1/deals": {"post"},
    "/api/v1/deals/{id}": {"get", "patch", "delete"},
    "/api/v1/deals/{id}/timeline": {"get"},
    "/api/v1/tickets": {"post"},
    "/api/v1/tickets/{id}": {"get", "patch", "delete"},
    "/api/v1/tickets/{id}/timeline": {"get"},
    "/api/v1/rooms/{room_id}": {"get"},
    "/api/v1/embed-tokens": {"post"},
    "/api/v1/stats": {"get"},
}
METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


async def test_openapi_lists_every_path_of_the_rfc(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path, methods in RFC_PATHS.items():
        assert path in paths, path
        assert methods <= set(paths[path]) & METHODS, (path, set(paths[path]))
    # Every POST documents the Idempotency-Key header, every operation the error shape.
    for path, methods in RFC_PATHS.items():
        for method in methods:
            operation = paths[path][method]
            assert "default" in operation["responses"] or any(c.startswith(("4", "5")) for c in operation["responses"])
            if method == "post":
                assert any(p["name"] == "Idempotency-Key" and p["in"] == "header"
                           for p in operation.get("parameters", []))
    schemas = document["components"]["schemas"]
    error = schemas[schemas["Error"]["properties"]["error"]["$ref"].rsplit("/", 1)[-1]]
    assert set(error["required"]) == {"code", "message", "details"}
    deal_in = schemas["DealIn"]
    assert {"name", "stage", "pipeline"} <= set(deal_in["required"])
    assert {"room_id", "contact_id", "creator_flag", "source", "external_url"} <= set(deal_in["properties"])


async def test_documented_paths_are_routed(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    for path, item in document["paths"].items():
        concrete = path.replace("{id}", "nope").replace("{room_id}", "r-1")
        for method in set(item) & METHODS:
            response = await api.request(method.upper(), concrete, json={} if method in ("post", "patch") else None)
            assert response.status_code not in (405, 500), (method, path, response.text)


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"store": "ok", "broker": "ok"}}


async def test_health_needs_no_key_but_the_api_does(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200
    assert_error(await client.get("/api/v1/stats"), 401, "unauthorized")


async def test_api_responses_carry_safety_headers(api: httpx.AsyncClient) -> None:
    for response in (await api.get("/api/v1/rooms/r-1"), await api.get("/api/v1/deals/nope"),
                     await api.post("/api/v1/deals", json={})):
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
