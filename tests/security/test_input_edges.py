"""Input edges from issue 11, each answered with the RFC error shape: URLs with a
space, CR/LF or NUL; contact ids over 255 characters in any JSON type (and never
logged whole); frame origins that are anything but scheme://host[:port], which would
otherwise reach the frame-ancestors directive verbatim."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import assert_error, deal, detail, ticket
from tests.support import WidgetLog, mint_token
from widget import companies
from widget.cli import main
from widget.companies import create_company
from widget.errors import Invalid
from widget.runtime import Runtime

BAD_URLS = ["http://exa mple.com/", "https://example.com/\r\nSet-Cookie: x=1", "https://example.com/a b",
            "https://example.com/\nx", "https://example.com/\x00", "https://example.com/\t"]


@pytest.mark.parametrize("body", [deal, ticket])
@pytest.mark.parametrize("url", BAD_URLS)
async def test_external_url_with_a_space_or_control_character_is_422(api: httpx.AsyncClient, body: Any,
                                                                      url: str) -> None:
    path = "/api/v1/deals" if body is deal else "/api/v1/tickets"
    assert_error(await api.post(path, json=body(external_url=url)), 422, "validation_failed", {"external_url"})


async def test_a_plain_external_url_is_still_taken(api: httpx.AsyncClient) -> None:
    url = "https://crm.example.com/deals/42?tab=notes#top"
    response = await api.post("/api/v1/deals", json=deal(external_url=url))
    assert response.status_code == 201 and response.json()["url"] == url


TOO_LONG = [int("9" * 300), int("1" + "0" * 255), -int("9" * 255), 1e300, "7" * 256]


@pytest.mark.parametrize("contact_id", TOO_LONG, ids=["int-300", "int-256", "negative-256", "float-1e300", "str-256"])
async def test_a_contact_id_over_255_characters_is_422_and_not_logged(
    api: httpx.AsyncClient, widget_log: WidgetLog, contact_id: object
) -> None:
    error = assert_error(await api.post("/api/v1/deals", json=deal(contact_id=contact_id)), 422,
                         "validation_failed", {"contact_id"})
    assert "255" in detail(error, "contact_id")
    shown = str(int(contact_id)) if isinstance(contact_id, float) else str(contact_id)
    assert not any(shown[:200] in record.getMessage() + json.dumps(getattr(record, "props", {}), default=str)
                   for record in widget_log.caplog.records)


@pytest.mark.parametrize("contact_id", [int("9" * 255), -int("9" * 254), "7" * 255], ids=["int", "negative", "str"])
async def test_a_contact_id_of_255_characters_is_taken(api: httpx.AsyncClient, contact_id: object) -> None:
    response = await api.post("/api/v1/deals", json=deal(contact_id=contact_id))
    assert response.status_code == 201, response.text  # unknown contact: created without one


BAD_ORIGINS = ["http://a.example;script-src *", "x *", "http://a.example *", "http://a.example 'unsafe-inline'",
               "https://a.example/\r\nX: y", "http://*.example", "http://a.example:99999", "http://[::1]",
               " http://a.example", "http://a.example/path"]


@pytest.mark.parametrize("origin", BAD_ORIGINS)
async def test_a_frame_origin_that_is_not_exactly_an_origin_is_refused(runtime: Runtime, origin: str) -> None:
    with pytest.raises(Invalid) as refused:
        await create_company(runtime, "evil", "Evil", ["https://ok.example", origin])
    assert "\n" not in refused.value.message and "http(s)://host[:port]" in refused.value.message
    assert await runtime.store.get_company("evil") is None


@pytest.mark.parametrize("origin", ["http://localhost:8001;script-src *", "http://localhost:8001 *"])
async def test_a_parent_origin_with_csp_syntax_is_422(api: httpx.AsyncClient, origin: str) -> None:
    response = await api.post("/api/v1/embed-tokens", json={"room_id": "r-1", "agent_id": "a", "parent_origin": origin})
    assert_error(response, 422, "validation_failed", {"parent_origin"})


@pytest.mark.parametrize("origin", ["http://a.example;script-src *", "x *"])
def test_the_cli_refuses_such_an_origin_in_one_line(widget_stack_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], origin: str) -> None:
    monkeypatch.setenv("WIDGET_SECRET_KEYS", "cli-test-key-0123456789")
    code = main(["company", "create", "evil", "--name", "Evil", "--frame-origin", origin])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("widget: error: an origin must be exactly http(s)://host[:port]") and repr(origin) in line


async def test_an_origin_stored_before_the_check_never_reaches_the_csp(
    runtime: Runtime, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A company row written by an earlier version, which took such origins as given."""
    with monkeypatch.context() as earlier_version:
        earlier_version.setattr(companies, "normalise_origin", lambda origin: origin)
        _, key = await create_company(runtime, "old", "Old", ["http://localhost:8001", "http://a.example;script-src *"])
    client.headers["Authorization"] = f"Bearer {key}"
    token = await mint_token(client)
    page = await client.get("/embed/rooms/room-1", params={"token": token})
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert csp.endswith("frame-ancestors http://localhost:8001") and "script-src *" not in csp
