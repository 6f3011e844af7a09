"""Random JSON bodies against every JSON route: the API answers 2xx or an RFC error,
never a 500 (RFC section 5)."""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import assert_error

FIELDS = ["name", "stage", "pipeline", "status", "room_id", "contact_id", "creator_flag", "source",
          "external_url", "phone", "email", "agent_id", "permissions", "parent_origin", "locale",
          "ttl_seconds", "id", "unique_id"]
leaf = (st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30)
        | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=300)
        | st.sampled_from(["bot", "agentic_ai", "r-1", "0", "null", "", "http://localhost:8001",
                           "https://e.com/x", "deal:view", "id"]))
values = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=5)
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), values, max_size=8)
ROUTES = ["/api/v1/deals", "/api/v1/tickets", "/api/v1/contacts", "/api/v1/embed-tokens",
          "PATCH deal", "PATCH ticket"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, route=st.sampled_from(ROUTES),
       key=st.none() | st.text(alphabet=st.characters(max_codepoint=127), max_size=4))
async def test_random_bodies_never_answer_500(api: httpx.AsyncClient, body: dict[str, Any], route: str,
                                              key: str | None) -> None:
    headers = {"Idempotency-Key": key} if key is not None else {}
    if route.startswith("PATCH"):
        kind = route.split()[1]
        seed = {"name": "n", "room_id": "r-1", "creator_flag": "bot"}
        seed.update({"stage": "s", "pipeline": "p"} if kind == "deal" else {"status": "Open"})
        record = (await api.post(f"/api/v1/{kind}s", json=seed)).json()
        response = await api.patch(f"/api/v1/{kind}s/{record['id']}", json=body)
    else:
        response = await api.post(route, json=body, headers=headers)
    assert response.status_code < 500, (route, body, response.text)
    if response.status_code >= 400:
        assert_error(response, response.status_code, response.json()["error"]["code"])
