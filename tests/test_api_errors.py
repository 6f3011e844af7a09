"""RFC section 5 error contract: the error shape for every status, the body limits,
strict JSON, field validation, and the precedence 405 > 401 > 413 > 415 > 400 > 422 >
404 > 409. Nothing ever answers 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.support import LiveServer, Tenant, new_tenant
from tests.helpers import assert_error, deal, detail, ticket
from widget.runtime import Runtime

JSON = {"Content-Type": "application/json"}
BIG = 64 * 1024


def raw(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


async def chunks(total: int, chunk: int = 8192) -> AsyncIterator[bytes]:
    """A body streamed without Content-Length (chunked), ``total`` bytes of JSON-ish."""
    yield b'{"name": "'
    sent = 10
    while sent < total:
        part = min(chunk, total - sent)
        yield b"x" * part
        sent += part


# -- 400 malformed_json ----------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b'{"name": "a", ',  # truncated
        b"",  # empty
        b"not json",
        b'{"name": NaN, "stage": "s", "pipeline": "p"}',
        b'{"name": "n", "stage": "s", "pipeline": "p", "x": Infinity}',
        b'{"name": "n", "stage": "s", "pipeline": "p", "x": -Infinity}',
        b'{"name": "a", "name": "b", "stage": "s", "pipeline": "p"}',  # duplicate key
        b'{"name": "n", "stage": "s", "pipeline": "p", "n": {"k": 1, "k": 2}}',  # nested dup
        b'[{"name": "n", "stage": "s", "pipeline": "p"}]',  # top-level array
        b'"a string"',
        b"42",
        b"null",
        b'{"name": "\xff\xfe", "stage": "s", "pipeline": "p"}',  # invalid UTF-8
    ],
    ids=["truncated", "empty", "garbage", "nan", "infinity", "neg-infinity", "duplicate-key",
         "nested-duplicate", "array", "string", "number", "null", "invalid-utf8"],
)
async def test_malformed_json_is_400(api: httpx.AsyncClient, payload: bytes) -> None:
    response = await api.post("/api/v1/deals", content=payload, headers=JSON)
    error = assert_error(response, 400, "malformed_json")
    assert error["details"] is None
    if b"\xff" in payload:
        assert "UTF-8" in error["message"]


async def test_malformed_json_on_every_json_route(api: httpx.AsyncClient) -> None:
    created = await api.post("/api/v1/deals", json=deal())
    deal_id = created.json()["id"]
    for method, path in [
        ("POST", "/api/v1/contacts"),
        ("POST", "/api/v1/tickets"),
        ("POST", "/api/v1/embed-tokens"),
        ("PATCH", f"/api/v1/deals/{deal_id}"),
    ]:
        response = await api.request(method, path, content=b"{oops", headers=JSON)
        assert_error(response, 400, "malformed_json")


async def test_deeply_nested_json_is_400_not_500(api: httpx.AsyncClient) -> None:
    depth = 30_000  # 60 KB: under the size limit, deeper than Python's recursion limit
    payload = b'{"name": ' + b"[" * depth + b"]" * depth + b"}"
    assert len(payload) < BIG
    response = await api.post("/api/v1/deals", content=payload, headers=JSON)
    assert_error(response, 400, "malformed_json")


async def test_lone_surrogate_never_500(api: httpx.AsyncClient) -> None:
    # Valid JSON syntax but not a valid Unicode string: refused, never a 500.
    payload = b'{"name": "\\ud800", "stage": "s", "pipeline": "p"}'
    response = await api.post("/api/v1/deals", content=payload, headers=JSON)
    assert response.status_code in (400, 422), response.text
    assert_error(response, response.status_code,
                 "malformed_json" if response.status_code == 400 else "validation_failed")


# -- 401 unauthorized ---------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer wk_garbage"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "garbage"},
    ],
    ids=["missing", "bearer-empty", "bearer-blank", "unknown-key", "basic", "garbage"],
)
async def test_missing_or_bad_key_is_401(client: httpx.AsyncClient, tenant: Tenant,
                                         headers: dict[str, str]) -> None:
    for method, path in [
        ("POST", "/api/v1/deals"),
        ("GET", "/api/v1/deals/whatever"),
        ("GET", "/api/v1/rooms/r-1"),
        ("POST", "/api/v1/embed-tokens"),
        ("GET", "/api/v1/stats"),
        ("GET", "/api/v1/contacts/x"),
    ]:
        response = await client.request(method, path, headers=headers,
                                        json=deal() if method == "POST" else None)
        assert_error(response, 401, "unauthorized")


async def test_unknown_api_path_without_auth_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/no-such-thing"), 401, "unauthorized")
    assert_error(await client.post("/api/v1/deals/x/y/z"), 401, "unauthorized")


async def test_key_of_one_company_is_not_valid_with_another_prefix(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.get("/api/v1/rooms/r-1", headers={"Authorization": f"Bearer {tenant.api_key}x"})
    assert_error(response, 401, "unauthorized")
    # The scheme is case-insensitive.
    ok = await client.get("/api/v1/rooms/r-1", headers={"Authorization": f"bearer {tenant.api_key}"})
    assert ok.status_code == 200


# -- 404 not_found ------------------------------------------------------------------


async def test_routing_404_has_the_rfc_shape(client: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    assert_error(await client.get("/no-such-page"), 404, "not_found")
    assert_error(await api.get("/api/v1/no-such-thing"), 404, "not_found")
    assert_error(await api.get("/api/v1/deals/a/b/c"), 404, "not_found")


@pytest.mark.parametrize("kind", ["deal", "ticket"])
async def test_unknown_record_id_is_404(api: httpx.AsyncClient, kind: str) -> None:
    base = f"/api/v1/{kind}s/does-not-exist"
    assert_error(await api.get(base), 404, "not_found")
    assert_error(await api.delete(base), 404, "not_found")
    assert_error(await api.patch(base, json={"name": "x"}), 404, "not_found")
    assert_error(await api.get(base + "/timeline"), 404, "not_found")


async def test_unknown_contact_is_404(api: httpx.AsyncClient) -> None:
    assert_error(await api.get("/api/v1/contacts/nope"), 404, "not_found")
    assert_error(await api.delete("/api/v1/contacts/nope"), 404, "not_found")


async def test_other_companys_objects_answer_404_not_403(
    api: httpx.AsyncClient, runtime: Runtime, client: httpx.AsyncClient
) -> None:
    other = await new_tenant(runtime, "globex")
    contact = (await api.post("/api/v1/contacts", json={"name": "Budi"})).json()
    d = (await api.post("/api/v1/deals", json=deal(room_id="r-1", creator_flag="bot"))).json()
    t = (await api.post("/api/v1/tickets", json=ticket(room_id="r-1", creator_flag="bot"))).json()
    h = other.headers
    for path in (f"/api/v1/deals/{d['id']}", f"/api/v1/tickets/{t['id']}",
                 f"/api/v1/contacts/{contact['id']}"):
        assert_error(await client.get(path, headers=h), 404, "not_found")
        assert_error(await client.delete(path, headers=h), 404, "not_found")
    for path in (f"/api/v1/deals/{d['id']}", f"/api/v1/tickets/{t['id']}"):
        assert_error(await client.patch(path, headers=h, json={"name": "stolen"}), 404, "not_found")
        assert_error(await client.get(path + "/timeline", headers=h), 404, "not_found")
    # The other company sees an empty room with the same room_id.
    room = (await client.get("/api/v1/rooms/r-1", headers=h)).json()
    assert room == {"room_id": "r-1", "version": 0, "deal": None, "ticket": None}
    # And nothing was changed by its attempts.
    assert (await api.get(f"/api/v1/deals/{d['id']}")).json() == d
    assert (await api.get("/api/v1/rooms/r-1")).json()["version"] == 2


@pytest.mark.parametrize("room_path", ["a%20b", "a%2Cb", "x" * 129, "%C3%A9t%C3%A9", "a%3Cb%3E"])
async def test_room_id_outside_the_pattern_in_the_path_is_404(api: httpx.AsyncClient,
                                                              room_path: str) -> None:
    assert_error(await api.get(f"/api/v1/rooms/{room_path}"), 404, "not_found")


async def test_room_id_at_the_pattern_limits_is_200(api: httpx.AsyncClient) -> None:
    for room_id in ("x" * 128, "A-z_0.9:@x", "r"):
        response = await api.get(f"/api/v1/rooms/{room_id}")
        assert response.status_code == 200, response.text
        assert response.json() == {"room_id": room_id, "version": 0, "deal": None, "ticket": None}


# -- 405 method_not_allowed ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/deals"),
        ("GET", "/api/v1/deals"),
        ("DELETE", "/api/v1/tickets"),
        ("PUT", "/api/v1/deals/some-id"),
        ("POST", "/api/v1/deals/some-id"),
        ("PATCH", "/api/v1/contacts/some-id"),
        ("POST", "/api/v1/rooms/r-1"),
        ("GET", "/api/v1/embed-tokens"),
        ("POST", "/api/v1/stats"),
    ],
)
async def test_wrong_method_is_405(api: httpx.AsyncClient, method: str, path: str) -> None:
    assert_error(await api.request(method, path), 405, "method_not_allowed")


async def test_405_wins_over_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.put("/api/v1/deals", content=b"x" * (BIG + 1)), 405, "method_not_allowed")


# -- 413 payload_too_large --------------------------------------------------------------


async def test_declared_content_length_over_64k_is_413(api: httpx.AsyncClient) -> None:
    payload = json.dumps(deal(source="x" * BIG)).encode()
    assert len(payload) > BIG
    response = await api.post("/api/v1/deals", content=payload, headers=JSON)
    assert_error(response, 413, "payload_too_large")


async def test_streamed_body_over_64k_without_content_length_is_413(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/deals", content=chunks(BIG + 1), headers=JSON)
    assert "content-length" not in response.request.headers
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_error(response, 413, "payload_too_large")


async def test_streamed_huge_body_is_refused_before_it_is_read_whole(api: httpx.AsyncClient) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 64 * BIG:  # 4 MiB offered
            sent += 8192
            yield b" " * 8192

    response = await api.post("/api/v1/deals", content=endless(), headers=JSON)
    assert_error(response, 413, "payload_too_large")
    assert sent < 4 * BIG, sent


async def test_body_of_exactly_64k_is_accepted(api: httpx.AsyncClient) -> None:
    payload = json.dumps(deal()).encode()
    payload += b" " * (BIG - len(payload))
    assert len(payload) == BIG
    response = await api.post("/api/v1/deals", content=payload, headers=JSON)
    assert response.status_code == 201, response.text
    streamed = await api.post("/api/v1/deals", content=chunks_of(payload), headers=JSON)
    assert streamed.status_code == 201, streamed.text


async def chunks_of(payload: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(payload), 5000):
        yield payload[i:i + 5000]


# -- 415 unsupported_media_type ---------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data", "application/jsonx"])
async def test_not_json_is_415(api: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await api.post("/api/v1/deals", content=json.dumps(deal()).encode(), headers=headers)
    assert_error(response, 415, "unsupported_media_type")


async def test_json_with_charset_parameter_is_accepted(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/deals", content=json.dumps(deal()).encode(),
                              headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert response.status_code == 201, response.text


async def test_415_on_patch_contacts_and_tokens(api: httpx.AsyncClient) -> None:
    d = (await api.post("/api/v1/deals", json=deal())).json()
    for method, path in [("PATCH", f"/api/v1/deals/{d['id']}"), ("POST", "/api/v1/contacts"),
                         ("POST", "/api/v1/embed-tokens"), ("POST", "/api/v1/tickets")]:
        response = await api.request(method, path, content=b'{"name": "x"}',
                                     headers={"Content-Type": "text/plain"})
        assert_error(response, 415, "unsupported_media_type")


# -- 422 validation_failed -------------------------------------------------------------


async def test_missing_fields_are_all_listed(api: httpx.AsyncClient) -> None:
    error = assert_error(await api.post("/api/v1/deals", json={}), 422, "validation_failed",
                         {"name", "stage", "pipeline"})
    assert detail(error, "name") == "is required"
    assert_error(await api.post("/api/v1/tickets", json={}), 422, "validation_failed", {"name", "status"})
    assert_error(await api.post("/api/v1/contacts", json={}), 422, "validation_failed", {"name"})


async def test_every_bad_field_is_listed(api: httpx.AsyncClient) -> None:
    body = {
        "name": 1,
        "stage": ["s"],
        "pipeline": "x" * 256,
        "room_id": "a b",
        "contact_id": {"id": 1},
        "creator_flag": "f" * 65,
        "source": True,
        "external_url": "javascript:alert(1)",
        "color": "red",
    }
    error = assert_error(await api.post("/api/v1/deals", json=body), 422, "validation_failed",
                         set(body))
    assert detail(error, "color") == "unknown field"
    assert "255" in detail(error, "pipeline")
    assert "64" in detail(error, "creator_flag")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", 12),
        ("name", None),
        ("name", True),
        ("name", "x" * 256),
        ("stage", "x" * 256),
        ("pipeline", 1.5),
        ("room_id", "a b"),
        ("room_id", ""),
        ("room_id", "x" * 129),
        ("room_id", "room/1"),
        ("room_id", 7),
        ("creator_flag", "x" * 65),
        ("creator_flag", 1),
        ("source", "x" * 256),
        ("source", 3),
        ("contact_id", 1.5),
        ("contact_id", True),
        ("contact_id", ["c"]),
        ("contact_id", "c" * 256),
        ("external_url", "javascript:alert(1)"),
        ("external_url", "/crm/deals/1"),
        ("external_url", "deals/1"),
        ("external_url", "ftp://example.com/x"),
        ("external_url", "http://"),
        ("external_url", "https://example.com/" + "x" * 2030),
        ("external_url", 5),
        ("unknown", "x"),
    ],
)
async def test_bad_deal_field_is_422(api: httpx.AsyncClient, field: str, value: object) -> None:
    response = await api.post("/api/v1/deals", json={**deal(), field: value})
    assert_error(response, 422, "validation_failed", {field})


async def test_limits_that_are_still_valid(api: httpx.AsyncClient) -> None:
    url = "https://example.com/" + "x" * (2048 - len("https://example.com/"))
    assert len(url) == 2048
    body = deal(name="n" * 255, stage="s" * 255, pipeline="p" * 255, room_id="r" * 128,
                creator_flag="f" * 64, source="s" * 255, external_url=url)
    response = await api.post("/api/v1/deals", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["url"] == url


async def test_bad_ticket_and_contact_fields_are_422(api: httpx.AsyncClient) -> None:
    assert_error(await api.post("/api/v1/tickets", json=ticket(status=None, stage="s")), 422,
                 "validation_failed", {"status", "stage"})
    assert_error(await api.post("/api/v1/contacts", json={"name": "a", "phone": 62812, "age": 3}), 422,
                 "validation_failed", {"phone", "age"})
    assert_error(await api.post("/api/v1/contacts", json={"name": "a", "email": "e" * 256}), 422,
                 "validation_failed", {"email"})


@pytest.mark.parametrize("kind", ["deal", "ticket"])
@pytest.mark.parametrize("field", ["creator_flag", "room_id", "source", "contact_id", "external_url",
                                   "id", "created_at", "unique_id", "url"])
async def test_patch_of_an_immutable_field_is_422_cannot_be_changed(
    api: httpx.AsyncClient, kind: str, field: str
) -> None:
    body = deal(room_id="r-1", creator_flag="bot") if kind == "deal" else ticket(room_id="r-1", creator_flag="bot")
    created = (await api.post(f"/api/v1/{kind}s", json=body)).json()
    response = await api.patch(f"/api/v1/{kind}s/{created['id']}", json={"name": "ok", field: "x"})
    error = assert_error(response, 422, "validation_failed", {field})
    assert detail(error, field) == "cannot be changed"
    assert (await api.get(f"/api/v1/{kind}s/{created['id']}")).json() == created


async def test_patch_empty_null_unknown_and_wrong_kind_fields(api: httpx.AsyncClient) -> None:
    d = (await api.post("/api/v1/deals", json=deal())).json()
    t = (await api.post("/api/v1/tickets", json=ticket())).json()
    dp, tp = f"/api/v1/deals/{d['id']}", f"/api/v1/tickets/{t['id']}"
    assert_error(await api.patch(dp, json={}), 422, "validation_failed")
    assert_error(await api.patch(tp, json={}), 422, "validation_failed")
    error = assert_error(await api.patch(dp, json={"name": None, "stage": None}), 422, "validation_failed",
                         {"name", "stage"})
    assert detail(error, "name") == "must not be null"
    assert_error(await api.patch(dp, json={"status": "Open"}), 422, "validation_failed", {"status"})
    assert_error(await api.patch(tp, json={"stage": "Won"}), 422, "validation_failed", {"stage"})
    error = assert_error(await api.patch(dp, json={"colour": "red"}), 422, "validation_failed", {"colour"})
    assert detail(error, "colour") == "unknown field"
    assert_error(await api.patch(dp, json={"name": "x" * 256}), 422, "validation_failed", {"name"})
    assert_error(await api.patch(dp, json={"pipeline": 3}), 422, "validation_failed", {"pipeline"})
    assert (await api.get(dp)).json() == d


@pytest.mark.parametrize(
    "key",
    [b"", b" ", b"x" * 256, "clé".encode(), b"a\tb", b"a\x7fb", "\u00e9".encode("latin-1")],
    ids=["empty", "blank", "256-chars", "utf8", "tab", "del", "latin1"],
)
async def test_bad_idempotency_key_is_422(api: httpx.AsyncClient, key: bytes) -> None:
    for path, body in [("/api/v1/deals", deal()), ("/api/v1/tickets", ticket()),
                       ("/api/v1/contacts", {"name": "c"}),
                       ("/api/v1/embed-tokens", {"room_id": "r-1", "agent_id": "a"})]:
        response = await api.post(path, json=body, headers={"Idempotency-Key": key})
        assert_error(response, 422, "validation_failed", {"Idempotency-Key"})


async def test_idempotency_key_at_the_limits_is_accepted(api: httpx.AsyncClient) -> None:
    # Printable ASCII is 0x20-0x7E: an inner space is fine (HTTP strips the outer ones).
    for key in ("k", "K" * 255, "chat 42 deal", "!~" + "".join(chr(c) for c in range(32, 127))[:200]):
        response = await api.post("/api/v1/deals", json=deal(), headers={"Idempotency-Key": key})
        assert response.status_code == 201, (key, response.text)


# -- precedence: 405 > 401 > 413 > 415 > 400 > 422 > 404 > 409 ----------------------------


async def test_401_wins_over_413_415_400_422_404(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert_error(await client.post("/api/v1/deals", content=b"x" * (BIG + 1), headers=JSON), 401, "unauthorized")
    assert_error(await client.post("/api/v1/deals", content=chunks(BIG * 2)), 401, "unauthorized")
    assert_error(await client.post("/api/v1/deals", content=b"{", headers={"Content-Type": "text/plain"}),
                 401, "unauthorized")
    assert_error(await client.post("/api/v1/deals", content=b"{", headers=JSON), 401, "unauthorized")
    assert_error(await client.post("/api/v1/deals", json={}), 401, "unauthorized")
    assert_error(await client.patch("/api/v1/deals/nope", json={}), 401, "unauthorized")
    assert_error(await client.get("/api/v1/rooms/a%20b"), 401, "unauthorized")


async def test_413_wins_over_415(api: httpx.AsyncClient) -> None:
    big = b"x" * (BIG + 1)
    assert_error(await api.post("/api/v1/deals", content=big, headers={"Content-Type": "text/plain"}),
                 413, "payload_too_large")
    assert_error(await api.post("/api/v1/deals", content=chunks(BIG + 100)), 413, "payload_too_large")


async def test_415_wins_over_400(api: httpx.AsyncClient) -> None:
    assert_error(await api.post("/api/v1/deals", content=b"{oops", headers={"Content-Type": "text/plain"}),
                 415, "unsupported_media_type")
    assert_error(await api.post("/api/v1/deals", content=b"{oops"), 415, "unsupported_media_type")


async def test_400_wins_over_422(api: httpx.AsyncClient) -> None:
    # Bad Idempotency-Key (422) and malformed body (400): 400.
    response = await api.post("/api/v1/deals", content=b"[1, 2", headers={**JSON, "Idempotency-Key": ""})
    assert_error(response, 400, "malformed_json")
    # Duplicate keys and unknown fields: 400.
    assert_error(await api.post("/api/v1/deals", content=b'{"zz": 1, "zz": 2}', headers=JSON),
                 400, "malformed_json")


async def test_422_wins_over_404(api: httpx.AsyncClient) -> None:
    assert_error(await api.patch("/api/v1/deals/nope", json={}), 422, "validation_failed")
    assert_error(await api.patch("/api/v1/deals/nope", json={"room_id": "r"}), 422, "validation_failed",
                 {"room_id"})
    assert_error(await api.patch("/api/v1/tickets/nope", json={"name": None}), 422, "validation_failed")


async def test_400_and_415_win_over_404_on_patch(api: httpx.AsyncClient) -> None:
    assert_error(await api.patch("/api/v1/deals/nope", content=b"{", headers=JSON), 400, "malformed_json")
    assert_error(await api.patch("/api/v1/deals/nope", content=b"{}", headers={"Content-Type": "text/plain"}),
                 415, "unsupported_media_type")
    assert_error(await api.patch("/api/v1/deals/nope", content=b"x" * (BIG + 1), headers=JSON),
                 413, "payload_too_large")


async def test_422_wins_over_409(api: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "k-1"}
    assert (await api.post("/api/v1/deals", json=deal(), headers=headers)).status_code == 201
    # Same key, other body, but the body is invalid: 422, not 409.
    assert_error(await api.post("/api/v1/deals", json={"name": 1}, headers=headers), 422, "validation_failed")
    # Same key, other valid body: 409.
    assert_error(await api.post("/api/v1/deals", json=deal(name="other"), headers=headers),
                 409, "idempotency_conflict")


# -- never a 500 --------------------------------------------------------------------------


async def test_hostile_inputs_never_answer_500(api: httpx.AsyncClient) -> None:
    hostile = [
        ("POST", "/api/v1/deals", {**deal(), "contact_id": 10**200}),
        ("POST", "/api/v1/deals", {**deal(), "contact_id": -1}),
        ("POST", "/api/v1/deals", {**deal(), "name": "\u0000"}),
        ("POST", "/api/v1/deals", {**deal(), "room_id": "\u0000"}),
        ("POST", "/api/v1/deals", {"name": {"a": [1, {"b": None}]}, "stage": [], "pipeline": {}}),
        ("POST", "/api/v1/tickets", {**ticket(), "external_url": "http://[::1"}),
        ("POST", "/api/v1/tickets", {**ticket(), "external_url": "http://exa mple.com"}),
        ("POST", "/api/v1/embed-tokens", {"room_id": "r", "agent_id": "a", "ttl_seconds": 10**30}),
        ("POST", "/api/v1/embed-tokens", {"room_id": "r", "agent_id": "a", "parent_origin": "::::"}),
        ("POST", "/api/v1/embed-tokens", {"room_id": "r", "agent_id": "a", "permissions": "deal:view"}),
        ("GET", "/api/v1/deals/" + "x" * 5000, None),
        ("GET", "/api/v1/deals/%00", None),
        ("GET", "/api/v1/stats?since=yesterday", None),
        ("GET", "/api/v1/stats?since=2026-01-01T00:00:00", None),
        ("GET", "/api/v1/stats?since=2027-01-01T00:00:00Z&until=2026-01-01T00:00:00Z", None),
    ]
    for method, path, body in hostile:
        response = await api.request(method, path, json=body)
        assert response.status_code < 500, (path, body, response.status_code, response.text)
        if response.status_code >= 400:
            assert_error(response, response.status_code, response.json()["error"]["code"])
    inf = b'{"room_id": "r", "agent_id": "a", "ttl_seconds": 1e400}'
    response = await api.post("/api/v1/embed-tokens", content=inf, headers=JSON)
    assert_error(response, 422, "validation_failed", {"ttl_seconds"})
    big_int = b'{"name": "n", "stage": "s", "pipeline": "p", "contact_id": ' + b"9" * 5000 + b"}"
    response = await api.post("/api/v1/deals", content=big_int, headers=JSON)
    assert response.status_code < 500, response.text


# -- the same over real HTTP (uvicorn) -------------------------------------------------


def test_limits_and_routing_errors_over_real_http(live: tuple[LiveServer, Tenant]) -> None:
    server, tenant = live

    def streamed() -> Iterator[bytes]:
        for _ in range(200):  # 1.6 MB offered, without Content-Length
            yield b" " * 8192

    with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=10) as http:
        for _ in range(3):
            assert_error(http.post("/api/v1/deals", content=streamed(), headers=JSON), 413, "payload_too_large")
            assert_error(http.post("/api/v1/deals", content=b" " * (BIG + 1), headers=JSON),
                         413, "payload_too_large")
        assert_error(http.put("/api/v1/deals", json=deal()), 405, "method_not_allowed")
        assert_error(http.get("/api/v1/rooms/a%20b"), 404, "not_found")
        assert_error(http.get("/nowhere"), 404, "not_found")
        assert_error(http.post("/api/v1/deals", content=b"{", headers=JSON), 400, "malformed_json")
        assert_error(http.get("/api/v1/rooms/r-1", headers={"Authorization": "Bearer nope"}), 401, "unauthorized")
        # The connection is still usable after the refusals.
        assert http.post("/api/v1/deals", json=deal()).status_code == 201


async def test_trailing_slash_is_not_redirected(client: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/deals/", json=deal())
    assert_error(response, 404, "not_found")
    api.headers.pop("Authorization")
    assert_error(await api.post("/api/v1/deals/", json=deal()), 401, "unauthorized")
