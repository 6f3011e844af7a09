"""Opaque ids, unique across the system: a short prefix saying what it is, then 96
random bits."""

from __future__ import annotations

import secrets

PREFIX = {"deal": "de", "ticket": "tk", "contact": "ct", "timeline": "tl"}


def new_id(what: str) -> str:
    return f"{PREFIX[what]}_{secrets.token_hex(12)}"
