"""The demo account's conversation rooms (in memory, the same on every start).

Five rooms cover the cases QA needs: three live conversations on WhatsApp, Instagram
and Web chat, an empty room (0 messages) and a room the fake Chat Panel API refuses
(403, "restricted": it starts in the ``forbidden`` mode). Message times are relative to
the moment the host starts. Any room's Chat Panel mode can be changed at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

ROOM_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")  # same pattern as the widget (RFC section 5)

CHANNELS = {"whatsapp": "WhatsApp", "instagram": "Instagram", "web": "Web chat"}
SENDER_LABELS = {"customer": "Customer", "bot": "Bot", "agentic_ai": "AI", "agent": "Agent"}
DEAL_STAGES = ["New", "Qualified", "Proposal", "Negotiation", "Won"]
DEAL_PIPELINES = ["Sales", "Renewals", "Partnerships"]
TICKET_STATUSES = ["Open", "In progress", "Resolved", "Closed"]

# How the fake Chat Panel API answers for a room (``fakes`` plays them): mode -> (label,
# what it does), in the simulator's order. "{slow}" is the configured delay in seconds.
CHAT_PANEL_MODES = {
    "normal": ("Normal", "Answers as usual"),
    "down": ("Down", "Both endpoints answer 503 (the Chat Panel is down)"),
    "slow": ("Slow ({slow} s)", "Both endpoints answer after {slow} s, longer than the CRM's 2 s timeout"),
    "malformed": ("Malformed reply", "The messages endpoint answers 200 with a body that is not JSON"),
    "partial": ("Partial reply", "The messages endpoint answers 200 with JSON cut off in the middle"),
    "empty": ("No messages", "The room has 0 messages"),
    "deleted": ("Room deleted", "The room was hard-deleted: both endpoints answer 404"),
    "forbidden": ("No access", "The agent has no access to the room: both endpoints answer 403"),
    "archived": ("Archived", "The room answers status \"archived\"; its messages stay readable"),
}


@dataclass
class Message:
    sender_type: str  # customer | bot | agentic_ai | agent
    sender_name: str
    text: str
    sent_at: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "sender_type": self.sender_type,
            "sender_name": self.sender_name,
            "text": self.text,
            "sent_at": rfc3339(self.sent_at),
        }


@dataclass
class Room:
    id: str
    customer: str
    channel: str  # a key of CHANNELS
    handle: str  # phone number, Instagram handle or e-mail, as the channel knows the customer
    email: str | None
    deal_name: str  # the simulator's default names for this room
    ticket_name: str
    chat_panel_mode: str = "normal"  # a key of CHAT_PANEL_MODES
    adhoc: bool = False  # a QA room made on first view (?room=<any valid id>) or by setting its mode
    tags: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    opened_at: datetime | None = None

    @property
    def channel_label(self) -> str:
        return CHANNELS[self.channel]

    @property
    def initials(self) -> str:
        parts = [p for p in re.split(r"\s+", self.customer) if p and p[0].isalnum()]
        return "".join(p[0] for p in parts[:2]).upper() or "?"

    @property
    def last(self) -> Message | None:
        return self.messages[-1] if self.messages else None

    @property
    def last_at(self) -> datetime | None:
        return self.last.sent_at if self.last else self.opened_at


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# (sender_type, sender_name, text, minutes before start)
_SCRIPTS: dict[str, list[tuple[str, str, str, float]]] = {
    "room-budi": [
        ("customer", "Budi Santoso", "Hi, is the ThinkPad X1 Carbon still available?", 21),
        ("bot", "Qontak Bot", "Hi Budi! 👋 Yes, the ThinkPad X1 Carbon Gen 12 is in stock. Would you like a quote?", 20.8),
        ("customer", "Budi Santoso", "Yes please, 3 units for my office in Jakarta.", 18),
        ("bot", "Qontak Bot", "Great, I've noted 3 units. An agent will send you the quote shortly.", 17.9),
        ("agent", "Alya Putri", "Hi Budi, this is Alya. I'm preparing your quote now.", 6),
        ("customer", "Budi Santoso", "Thanks! Can you include three docking stations too?", 2),
    ],
    "room-sari": [
        ("customer", "Sari Wulandari", "Hello! Do you ship the Glow bundle to Surabaya?", 40),
        ("agentic_ai", "Aira (AI agent)", "Hi Sari! Yes, delivery to Surabaya takes 2–3 days. The Glow bundle is Rp 450.000.", 39.8),
        ("customer", "Sari Wulandari", "My last order arrived damaged though 😕", 31),
        ("agentic_ai", "Aira (AI agent)", "I'm sorry to hear that! I can open a ticket so our team replaces it. What is your order number?", 30.9),
        ("customer", "Sari Wulandari", "It's #INV-20931", 15),
        ("agentic_ai", "Aira (AI agent)", "Thank you. I've passed this to our support team, they'll follow up today.", 14),
    ],
    "room-andi": [
        ("customer", "Andi Pratama", "We'd like to upgrade our plan to 50 seats.", 95),
        ("bot", "Qontak Bot", "I can help with that! Which plan are you on today?", 94.9),
        ("customer", "Andi Pratama", "Business, 20 seats, annual billing.", 90),
        ("agent", "Alya Putri", "Hi Andi, I'll check the price for 50 seats on annual billing.", 70),
        ("customer", "Andi Pratama", "Budget is < Rp 50jt & it must include onboarding <before Friday>.", 62),
    ],
    "room-dewi": [],
    "room-rina": [
        ("customer", "Rina Kusuma", "Hi, I'd like to talk about the enterprise contract renewal.", 1500),
        ("agent", "Hendra (Key accounts)", "Hi Rina, I'm your account manager. Let's schedule a call.", 1480),
    ],
}


def demo_rooms(start: datetime) -> dict[str, Room]:
    """The demo account's rooms, in the order the inbox lists them."""
    rooms = [
        Room("room-budi", "Budi Santoso", "whatsapp", "+62 812-3456-7890", "budi.santoso@example.com",
             "ThinkPad X1 Carbon × 3", "Quote for docking stations", tags=["B2B", "Jakarta"]),
        Room("room-sari", "Sari Wulandari", "instagram", "@sari.wulan", None,
             "Glow bundle re-order", "Damaged order #INV-20931", tags=["Repeat buyer"]),
        Room("room-andi", "Andi Pratama", "web", "andi@pratama-logistik.co.id", "andi@pratama-logistik.co.id",
             "Upgrade to 50 seats", "Onboarding before Friday", tags=["SaaS", "Upsell"]),
        Room("room-dewi", "Dewi Lestari", "whatsapp", "+62 857-1111-2233", None,
             "New enquiry — Dewi", "First contact follow-up", tags=["New"]),
        Room("room-rina", "Rina Kusuma", "instagram", "@rinakusuma", "rina@kusuma-group.com",
             "Enterprise renewal 2027", "Contract question", chat_panel_mode="forbidden",
             tags=["VIP", "Key account"]),
    ]
    for room in rooms:
        _play(room, _SCRIPTS[room.id], start)
    return {room.id: room for room in rooms}


def adhoc_room(room_id: str, now: datetime) -> Room:
    """A room opened by id for QA (e.g. one fresh room per e2e test). Its last message
    names the room, so a chat history preview shows which room it was read from."""
    room = Room(room_id, f"QA visitor {room_id}"[:64], "web", "qa@example.com", "qa@example.com",
                f"QA deal {room_id}"[:200], f"QA ticket {room_id}"[:200], adhoc=True, tags=["QA"])
    _play(room, [
        ("customer", room.customer, "Hi, could I get a quote for 2 units, please?", 3),
        ("bot", "Qontak Bot", "Sure! I've noted 2 units. An agent will send you the quote shortly.", 2.9),
        ("customer", room.customer, f"Thanks! My reference is {room_id}.", 1),
    ], now)
    return room


def _play(room: Room, script: list[tuple[str, str, str, float]], start: datetime) -> None:
    room.messages = [
        Message(kind, name, text, start - timedelta(minutes=minutes)) for kind, name, text, minutes in script
    ]
    room.opened_at = room.messages[0].sent_at if room.messages else start - timedelta(hours=3)
