"""From the Chat Panel's answer to the stored chat preview (RFC section 8): the last
five messages, oldest first, each text cut to 160 characters.

A message we cannot show (not an object, unknown ``sender_type``, ``text`` or
``sent_at`` not a string) is skipped rather than failing the preview: one odd
message, such as a new kind of system message, should not cost the agent the rest.
An answer with messages of which none can be shown is malformed.
"""

from __future__ import annotations

import unicodedata
from typing import Any, get_args

from widget.models import ChatMessage
from widget.worker.jobs import Fail

SENDER_TYPES = frozenset(get_args(ChatMessage.model_fields["sender_type"].annotation))
PREVIEW_SIZE = 5
TEXT_LIMIT = 160  # characters (code points), the ellipsis included
SENT_AT_LIMIT = 64
ELLIPSIS = "…"
ZWJ = "\u200d"


def parse_preview(body: Any) -> tuple[list[dict[str, str]], int]:
    """(preview items, number of messages skipped); ``Fail("malformed_response")``
    when the answer is not ``{"messages": [...]}`` or nothing in it can be shown."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        raise Fail("malformed_response")
    items = [item for item in map(_preview_item, messages) if item is not None]
    if messages and not items:
        raise Fail("malformed_response")
    return items[-PREVIEW_SIZE:], len(messages) - len(items)


def _preview_item(message: Any) -> dict[str, str] | None:
    if not isinstance(message, dict):
        return None
    sender_type, text, sent_at = message.get("sender_type"), message.get("text"), message.get("sent_at")
    if not (isinstance(sender_type, str) and sender_type in SENDER_TYPES):
        return None
    if not isinstance(text, str) or not isinstance(sent_at, str) or len(sent_at) > SENT_AT_LIMIT:
        return None
    item = {"sender_type": sender_type}
    name = message.get("sender_name")
    if isinstance(name, str) and name:
        item["sender_name"] = cut_text(name)
    item["text"] = cut_text(text)
    item["sent_at"] = _valid_unicode(sent_at)
    return item


def cut_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """At most ``limit`` characters; a longer text keeps ``limit - 1`` and gets "…".
    The cut moves left until it falls between two user-perceived characters, so an
    emoji sequence, a flag or an accented letter is never split."""
    text = _valid_unicode(text)
    if len(text) <= limit:
        return text
    end = limit - len(ELLIPSIS)
    while end > 0 and _inside_cluster(text, end):
        end -= 1
    return text[:end] + ELLIPSIS


def _valid_unicode(text: str) -> str:
    # JSON may carry lone surrogates ("\ud83d"); they cannot be encoded as UTF-8 and
    # would break the page that renders them.
    return text.encode("utf-8", "replace").decode("utf-8")


def _inside_cluster(text: str, end: int) -> bool:
    """Would cutting before ``text[end]`` split a grapheme cluster? The common cases:
    combining marks, variation selectors, skin tones, emoji tags, ZWJ sequences and
    regional-indicator pairs (flags)."""
    before, after = text[end - 1], text[end]
    if before == ZWJ or after == ZWJ or unicodedata.category(after) in ("Mn", "Mc", "Me"):
        return True
    code = ord(after)
    if 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:
        return True
    if _regional(after) and _regional(before):
        run = 0  # regional indicators pair up from the start of their run
        while end - run - 1 >= 0 and _regional(text[end - run - 1]):
            run += 1
        return run % 2 == 1
    return False


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF
