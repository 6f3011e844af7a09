"""The languages of the component and the CRM pages: Babel message catalogues
(``widget/locales/<lang>/LC_MESSAGES/messages.po``), read once at start-up, and the
choice of language for a request.

A msgid is the name templates and scripts use (``empty_title``); its msgstr is the
text in that language. The server renders with these tables and the component's
script receives the same table as a JSON data block, so each text lives in one place
per language. No compile step: the ``.po`` files are read as they are.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.pofile import read_po

LANGUAGES = ("en", "id")  # English first: the fallback
LOCALES_DIR = Path(__file__).resolve().parent / "locales"


def read_catalogue(lang: str) -> dict[str, str]:
    """``{msgid: msgstr}`` of a language's catalogue (the header entry left out)."""
    with (LOCALES_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalogue = read_po(po, locale=lang)
    return {str(message.id): str(message.string) for message in catalogue if message.id}


CATALOGUES: dict[str, dict[str, str]] = {lang: read_catalogue(lang) for lang in LANGUAGES}


def strings_for(lang: str | None) -> dict[str, str]:
    """Every text in ``lang`` (English for anything else)."""
    return CATALOGUES[lang if lang in CATALOGUES else "en"]


def preferred_language(accept_language: str | None) -> str | None:
    """The first of our languages in an ``Accept-Language`` header (by q, then order)."""
    ranked = []
    for position, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else None


def choose_language(*candidates: object, accept_language: str | None) -> str:
    """The first candidate that is one of our languages, else the browser's
    ``Accept-Language``, else English. The caller gives its order: the component takes
    the token's ``locale`` claim (the host knows its agent), then its ``lang`` query."""
    for candidate in candidates:
        if candidate in LANGUAGES:
            return str(candidate)
    return preferred_language(accept_language) or "en"
