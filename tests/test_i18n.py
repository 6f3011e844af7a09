"""The message catalogues (widget/locales) and the choice of language (issue 12 section 4)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.support import mint_token
from widget.i18n import CATALOGUES, LANGUAGES, choose_language, read_catalogue

pytestmark = pytest.mark.any_stack  # touches neither the store nor the broker: run on one stack

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def test_catalogues_are_read_with_babel_and_hold_the_same_msgids() -> None:
    assert LANGUAGES == ("en", "id")
    english, indonesian = read_catalogue("en"), read_catalogue("id")
    assert english == CATALOGUES["en"] and indonesian == CATALOGUES["id"]
    assert len(english) > 80  # the component's and the CRM pages' strings
    assert set(english) == set(indonesian)


@pytest.mark.parametrize("msgid", sorted(CATALOGUES["en"]))
def test_every_msgid_has_a_translation_with_the_same_placeholders(msgid: str) -> None:
    english, indonesian = CATALOGUES["en"][msgid], CATALOGUES["id"][msgid]
    assert english.strip() and indonesian.strip(), msgid
    assert sorted(PLACEHOLDER.findall(english)) == sorted(PLACEHOLDER.findall(indonesian)), msgid


@pytest.mark.parametrize(("locale", "query", "accept", "expected"), [
    ("id", "en", "en", "id"),  # the token first
    ("en", "id", "id", "en"),
    (None, "id", "en", "id"),  # no locale claim: the query
    (None, "fr", "id-ID,id;q=0.9,en;q=0.5", "id"),  # then Accept-Language
    (None, None, "fr, en;q=0.5, id;q=0.8", "id"),  # by q
    (None, None, "id;q=0, en", "en"),
    ("fr", "de", "fr-FR, de", "en"),  # unknown everywhere: English
    (None, None, None, "en"),
])
def test_the_component_order_token_then_query_then_accept_language(
    locale: str | None, query: str | None, accept: str | None, expected: str
) -> None:
    assert choose_language(locale, query, accept_language=accept) == expected


async def test_component_page_language_in_that_order(api: httpx.AsyncClient) -> None:
    english_token = await mint_token(api)  # the token's locale defaults to en
    indonesian_token = await mint_token(api, locale="id")
    cases = [
        (f"token={indonesian_token}&lang=en", {"Accept-Language": "en"}, "id"),
        (f"token={english_token}&lang=id", {"Accept-Language": "id"}, "en"),
        # No valid token (no claims): the query, then the browser's language.
        ("token=garbage&lang=id", {"Accept-Language": "en"}, "id"),
        ("token=garbage", {"Accept-Language": "id-ID,id;q=0.9"}, "id"),
        ("token=garbage&lang=xx", {"Accept-Language": "de"}, "en"),
    ]
    for query, headers, lang in cases:
        html = (await api.get(f"/embed/rooms/room-1?{query}", headers=headers)).text
        assert f'<html lang="{lang}"' in html, query
        title = CATALOGUES[lang]["error_invalid_title" if "garbage" in query else "empty_title"]
        assert title.replace("'", "&#39;") in html, query


async def test_the_script_reads_the_same_strings(api: httpx.AsyncClient) -> None:
    html = (await api.get(f"/embed/rooms/room-1?token={await mint_token(api, locale='id')}")).text
    block = re.search(r'id="widget-strings">(.*?)</script>', html)
    assert block is not None
    assert json.loads(block.group(1)) == CATALOGUES["id"]
