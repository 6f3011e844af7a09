"""Text helpers of the pages: placeholders filled in, and times in the agent's
language and time zone (Babel). The texts themselves are in the message catalogues
(``widget.i18n``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_datetime, format_time, get_datetime_format

from widget.i18n import LANGUAGES


def fill(text: str, **values: str) -> str:
    """``{name}`` placeholders of a string filled in (plain text: the page escapes it)."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


# -- times in the agent's language and time zone -----------------------------------

_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}")
_NOT_ZONES = {"localtime", "posixrules", "Factory"}  # files in the tz database, not zones


def zone_or_utc(name: object) -> str:
    """``name`` if it is a real IANA time zone (as a browser reports it), else "UTC"."""
    if not isinstance(name, str) or len(name) > 64 or name in _NOT_ZONES or not _ZONE_NAME.fullmatch(name):
        return "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return "UTC"
    return name


def _local(micros: int, zone: str) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC).astimezone(ZoneInfo(zone_or_utc(zone)))


def format_moment(micros: int, lang: str, zone: str) -> str:
    """Date and short time, e.g. "Nov 25, 2026, 4:00 PM" (en) / "25 Nov 2026 16.00" (id)."""
    local, locale = _local(micros, zone), lang if lang in LANGUAGES else "en"
    return fill(get_datetime_format("medium", locale=locale),
                **{"1": format_date(local, "medium", locale=locale), "0": format_time(local, "short", locale=locale)})


def format_clock(micros: int, lang: str, zone: str) -> str:
    """The short time of day, e.g. "4:00 PM" (en) / "16.00" (id)."""
    return format_time(_local(micros, zone), "short", locale=lang if lang in LANGUAGES else "en")


def zone_label(micros: int, lang: str, zone: str) -> str:
    """The zone's name at that moment, for a tooltip: "Western Indonesia Time (Asia/Jakarta)"."""
    name = zone_or_utc(zone)
    long = format_datetime(_local(micros, name), "zzzz", locale=lang if lang in LANGUAGES else "en")
    return f"{long} ({name})" if name != "UTC" else long
