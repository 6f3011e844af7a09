"""Tables (SQLAlchemy Core). Times are integer microseconds since the epoch, UTC:
SQLite drops time zones, and integers order exactly on every backend."""

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

companies = Table(
    "companies",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("api_key_hash", String(64), nullable=False, unique=True),
    Column("frame_origins", Text, nullable=False),  # JSON list
    Column("omnichannel_url", String(2048)),
    Column("omnichannel_secret", String(255)),
    # Write serialisation point and creation clock: the last created_at handed out
    # and the last deal and ticket numbers, all per company.
    Column("last_created_at", BigInteger, nullable=False, default=0),
    Column("ticket_seq", Integer, nullable=False, default=0),
    Column("deal_seq", Integer, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("company_id", String(64), ForeignKey("companies.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("phone", String(255)),
    Column("email", String(255)),
    Column("created_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger),
)


def _record_table(name: str, *kind_columns: Column) -> Table:
    return Table(
        name,
        metadata,
        Column("id", String(40), primary_key=True),
        Column("company_id", String(64), ForeignKey("companies.id"), nullable=False),
        Column("name", String(255), nullable=False),
        *kind_columns,
        Column("room_id", String(128)),
        Column("contact_id", String(40), ForeignKey("contacts.id")),
        Column("creator_flag", String(64)),
        Column("source", String(255)),
        Column("external_url", String(2048)),
        Column("created_at", BigInteger, nullable=False),
        Column("updated_at", BigInteger, nullable=False),
        Column("deleted_at", BigInteger),
        Index(f"ix_{name}_company_room", "company_id", "room_id"),
    )


deals = _record_table(
    "deals",
    # A number an agent can read aloud and compare (DEAL-000042); the id stays the key.
    Column("number", String(32), nullable=False),
    Column("stage", String(255), nullable=False),
    Column("pipeline", String(255), nullable=False),
    UniqueConstraint("company_id", "number", name="uq_deals_company_number"),
)
tickets = _record_table(
    "tickets",
    Column("unique_id", String(32), nullable=False),
    Column("status", String(255), nullable=False),
    UniqueConstraint("company_id", "unique_id", name="uq_tickets_company_unique_id"),
)

# One row per (company, room): the shown deal/ticket, the high-water marks that only
# move forward (created_at, id), and the snapshot version.
rooms = Table(
    "rooms",
    metadata,
    Column("company_id", String(64), ForeignKey("companies.id"), nullable=False),
    Column("room_id", String(128), nullable=False),
    Column("version", Integer, nullable=False, default=0),
    Column("deal_id", String(40)),
    Column("deal_mark_at", BigInteger),
    Column("deal_mark_id", String(40)),
    Column("ticket_id", String(40)),
    Column("ticket_mark_at", BigInteger),
    Column("ticket_mark_id", String(40)),
    PrimaryKeyConstraint("company_id", "room_id"),
)

timeline_entries = Table(
    "timeline_entries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("company_id", String(64), ForeignKey("companies.id"), nullable=False),
    Column("record_kind", String(8), nullable=False),  # deal | ticket
    Column("record_id", String(40), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("creator", String(16), nullable=False),
    Column("room_id", String(128), nullable=False),
    Column("chat_preview", Text),  # JSON list or NULL
    Column("chat_preview_status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_timeline_record", "record_kind", "record_id"),
    Index("ix_timeline_created", "created_at"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("company_id", String(64), nullable=False),
    Column("route", String(64), nullable=False),
    Column("key", String(255), nullable=False),
    Column("body_hash", String(64), nullable=False),
    Column("status", Integer),  # NULL while the first request is running
    Column("response", Text),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("company_id", "route", "key"),
)

# Work for the worker, written in the record's transaction: Omnichannel
# notifications and chat-history fetches.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("company_id", String(64), nullable=False),
    Column("topic", String(32), nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_error", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("done_at", BigInteger),
    Index("ix_outbox_due", "done_at", "next_attempt_at"),
)

# Product analytics (PRD section 11) that /stats reads; `dedupe` makes
# "displayed once per record per agent" a unique constraint.
analytics_events = Table(
    "analytics_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("company_id", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("dedupe", String(255)),
    Column("record_id", String(40)),  # the deal or ticket it is about, if any
    Column("props", Text, nullable=False),  # JSON
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("company_id", "dedupe", name="uq_analytics_dedupe"),
    Index("ix_analytics_company_time", "company_id", "created_at"),
    Index("ix_analytics_record", "company_id", "record_id", "name"),
)

# CRM record links already used (RFC section 8): a signed link opens its page once.
# A row is kept until the link expires (its signature check refuses it after that),
# then the retention purge forgets it (``Store.forget_used_links``).
used_crm_links = Table(
    "used_crm_links",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("company_id", String(64), nullable=False),
    Column("used_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_used_crm_links_expires", "expires_at"),
)
