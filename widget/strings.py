"""Every user-visible string of the component and the CRM pages, per language.

The server renders with them, and the component's script receives the same table
(as a JSON data block), so a string lives in exactly one place.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_datetime, format_time, get_datetime_format

LANGUAGES = ("en", "id")

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Deal & Ticket",
        "deal": "Deal",
        "ticket": "Ticket",
        "id": "ID",
        "stage": "Stage",
        "pipeline": "Pipeline",
        "status": "Status",
        "creator": "Creator",
        "empty_title": "No deal or ticket yet",
        "empty_body": "When the chatbot or AI agent creates a deal or ticket in this chat, it appears here.",
        "error_title": "Can't load Deal & Ticket",
        "error_body": "The CRM is not reachable right now. Your chat is not affected.",
        "retry": "Try again",
        "loading": "Loading…",
        "reconnecting": "Reconnecting… showing the last known data",
        "forbidden_title": "Not available for this room",
        "forbidden_body": "This view was opened with access to another room.",
        "expired_title": "Session expired",
        "expired_body": "Refreshing your access…",
        "deal_deleted": "This deal was deleted",
        "ticket_deleted": "This ticket was deleted",
        "deal_forbidden": "You don't have access to this deal",
        "ticket_forbidden": "You don't have access to this ticket",
        "open_failed": "Couldn't open the record. Please try again.",
        "opens_new_tab": "opens in a new tab",
        "dismiss": "Dismiss",
        # CRM pages ({record} is the kind's noun: deal / ticket)
        "deal_noun": "deal",
        "ticket_noun": "ticket",
        "deals": "Deals",
        "tickets": "Tickets",
        "crm": "CRM",
        "details": "Details",
        "source": "Source",
        "not_set": "Not set",
        "contact": "Contact",
        "no_contact": "No contact",
        "no_contact_body": "No contact was linked when this {record} was created.",
        "phone": "Phone",
        "email": "Email",
        "created": "Created",
        "timeline": "Timeline",
        "timeline_empty": "No timeline entries.",
        "bot_creation": "Created by {creator} in a chat",
        "chat_room": "Chat room",
        "open_chat": "Open chat room",
        "chat_history": "Chat history",
        "chat_pending": "Fetching chat history…",
        "chat_empty": "No messages yet",
        "sender_customer": "Customer",
        "sender_bot": "Bot",
        "sender_agentic_ai": "AI",
        "sender_agent": "Agent",
        "creator_Bot": "Bot",
        "creator_AI": "AI",
        "creator_API": "API",
        "room_checking": "Checking the chat room…",
        "room_unavailable": "This chat room is no longer available.",
        "room_forbidden": "You don't have access to this chat room.",
        "room_check_failed": "Couldn't check the chat room right now.",
        "room_session_ended": "Your session on this page has ended. Open the {record} again from the chat room.",
        "open_anyway": "Open anyway",
        "record_deleted_title": "This record was deleted",
        "record_deleted_body": "It no longer exists in the CRM.",
        "no_link_title": "Open this {record} from the chat room",
        "no_link_body": "Record pages open from the chat room, so that only agents of that conversation can see them.",
        "link_invalid_title": "This link is not valid",
        "link_invalid_body": "It may have been changed or cut off. Open the {record} again from the chat room.",
        "link_expired_title": "This link has expired",
        "link_expired_body": "Links from the chat room work for a few minutes. Open the {record} again to get a new one.",
        "link_used_title": "This link was already used",
        "link_used_body": "For your security, each link opens its record once. Open the {record} again to get a new link.",
        "session_expired_title": "Your session has ended",
        "session_expired_body": "Pages opened from the chat room stay open for a working day. Open the {record} again to continue.",
        "no_access_title": "You don't have access to this {record}",
        "no_access_body": "Ask your admin for access, then open it again from the chat room.",
        "how_to_open": "How to open it",
        "how_step_room": "Open the chat room in Omnichannel.",
        "how_step_tab": "Select the Deal & Ticket tab.",
        "how_step_click": "Click the {record}'s name: it opens here in a new tab.",
        "skip_to_content": "Skip to content",
        "breadcrumb": "Breadcrumb",
    },
    "id": {
        "title": "Deal & Tiket",
        "deal": "Deal",
        "ticket": "Tiket",
        "id": "ID",
        "stage": "Tahap",
        "pipeline": "Pipeline",
        "status": "Status",
        "creator": "Pembuat",
        "empty_title": "Belum ada deal atau tiket",
        "empty_body": "Saat chatbot atau agen AI membuat deal atau tiket di chat ini, datanya muncul di sini.",
        "error_title": "Deal & Tiket tidak dapat dimuat",
        "error_body": "CRM sedang tidak dapat dijangkau. Chat Anda tidak terpengaruh.",
        "retry": "Coba lagi",
        "loading": "Memuat…",
        "reconnecting": "Menyambung ulang… menampilkan data terakhir",
        "forbidden_title": "Tidak tersedia untuk room ini",
        "forbidden_body": "Tampilan ini dibuka dengan akses untuk room lain.",
        "expired_title": "Sesi berakhir",
        "expired_body": "Memperbarui akses Anda…",
        "deal_deleted": "Deal ini sudah dihapus",
        "ticket_deleted": "Tiket ini sudah dihapus",
        "deal_forbidden": "Anda tidak punya akses ke deal ini",
        "ticket_forbidden": "Anda tidak punya akses ke tiket ini",
        "open_failed": "Data tidak dapat dibuka. Silakan coba lagi.",
        "opens_new_tab": "terbuka di tab baru",
        "dismiss": "Tutup",
        "deal_noun": "deal",
        "ticket_noun": "tiket",
        "deals": "Deal",
        "tickets": "Tiket",
        "crm": "CRM",
        "details": "Detail",
        "source": "Sumber",
        "not_set": "Tidak diisi",
        "contact": "Kontak",
        "no_contact": "Tanpa kontak",
        "no_contact_body": "Tidak ada kontak yang ditautkan saat {record} ini dibuat.",
        "phone": "Telepon",
        "email": "Email",
        "created": "Dibuat",
        "timeline": "Linimasa",
        "timeline_empty": "Belum ada entri linimasa.",
        "bot_creation": "Dibuat oleh {creator} di chat",
        "chat_room": "Room chat",
        "open_chat": "Buka room chat",
        "chat_history": "Riwayat chat",
        "chat_pending": "Mengambil riwayat chat…",
        "chat_empty": "Belum ada pesan",
        "sender_customer": "Pelanggan",
        "sender_bot": "Bot",
        "sender_agentic_ai": "AI",
        "sender_agent": "Agen",
        "creator_Bot": "Bot",
        "creator_AI": "AI",
        "creator_API": "API",
        "room_checking": "Memeriksa room chat…",
        "room_unavailable": "Room chat ini sudah tidak tersedia.",
        "room_forbidden": "Anda tidak punya akses ke room chat ini.",
        "room_check_failed": "Room chat tidak dapat diperiksa saat ini.",
        "room_session_ended": "Sesi Anda di halaman ini telah berakhir. Buka kembali {record} dari room chat.",
        "open_anyway": "Tetap buka",
        "record_deleted_title": "Data ini sudah dihapus",
        "record_deleted_body": "Data ini tidak ada lagi di CRM.",
        "no_link_title": "Buka {record} ini dari room chat",
        "no_link_body": "Halaman data dibuka dari room chat, agar hanya agen percakapan tersebut yang dapat melihatnya.",
        "link_invalid_title": "Tautan ini tidak valid",
        "link_invalid_body": "Tautan mungkin berubah atau terpotong. Buka kembali {record} dari room chat.",
        "link_expired_title": "Tautan ini sudah kedaluwarsa",
        "link_expired_body": "Tautan dari room chat hanya berlaku beberapa menit. Buka kembali {record} untuk mendapatkan tautan baru.",
        "link_used_title": "Tautan ini sudah digunakan",
        "link_used_body": "Demi keamanan, setiap tautan hanya membuka datanya satu kali. Buka kembali {record} untuk mendapatkan tautan baru.",
        "session_expired_title": "Sesi Anda telah berakhir",
        "session_expired_body": "Halaman yang dibuka dari room chat tetap terbuka selama satu hari kerja. Buka kembali {record} untuk melanjutkan.",
        "no_access_title": "Anda tidak punya akses ke {record} ini",
        "no_access_body": "Minta akses kepada admin Anda, lalu buka kembali dari room chat.",
        "how_to_open": "Cara membukanya",
        "how_step_room": "Buka room chat di Omnichannel.",
        "how_step_tab": "Pilih tab Deal & Tiket.",
        "how_step_click": "Klik nama {record}: halamannya terbuka di sini, di tab baru.",
        "skip_to_content": "Lewati ke konten",
        "breadcrumb": "Navigasi",
    },
}


def strings_for(lang: str | None) -> dict[str, str]:
    return STRINGS[lang if lang in STRINGS else "en"]


def fill(text: str, **values: str) -> str:
    """``{name}`` placeholders of a string filled in (plain text: the page escapes it)."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


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
