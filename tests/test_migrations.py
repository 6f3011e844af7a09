"""Schema migrations on data written by an older revision (both backends)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from sqlalchemy import Connection, text

from tests.support import make_settings
from widget.store.engine import alembic_config, open_database


def _to(revision: str) -> Callable[[Connection], None]:
    """A write that upgrades the schema to ``revision``."""
    def upgrade(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return upgrade


async def test_deals_written_before_numbers_get_numbers_in_creation_order_per_company(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, migrate_on_start=False)
    db = open_database(settings.db_url)
    try:
        await db.write(_to("0003"))

        def seed(conn: Connection) -> None:
            for company in ("acme", "globex"):
                conn.execute(text(
                    "INSERT INTO companies (id, name, api_key_hash, frame_origins, last_created_at, ticket_seq,"
                    " created_at) VALUES (:id, :id, :hash, '[]', 0, 0, 0)"), {"id": company, "hash": company * 4})
            # Inserted out of creation order: numbers follow created_at, not insertion.
            for deal_id, company, created_at in [("d-late", "acme", 30), ("d-first", "acme", 10),
                                                 ("d-mid", "acme", 20), ("g-1", "globex", 5)]:
                conn.execute(text(
                    "INSERT INTO deals (id, company_id, name, stage, pipeline, created_at, updated_at)"
                    " VALUES (:id, :company, 'n', 's', 'p', :at, :at)"), {"id": deal_id, "company": company, "at": created_at})

        await db.write(seed)
        await db.write(_to("head"))

        def numbers(conn: Connection) -> tuple[dict[str, str], dict[str, int]]:
            deals = dict(conn.execute(text("SELECT id, number FROM deals")).all())
            seqs = dict(conn.execute(text("SELECT id, deal_seq FROM companies")).all())
            return deals, seqs

        deals, seqs = await db.read(numbers)
        assert deals == {"d-first": "DEAL-000001", "d-mid": "DEAL-000002", "d-late": "DEAL-000003",
                         "g-1": "DEAL-000001"}
        assert seqs == {"acme": 3, "globex": 1}  # the next deal of acme is DEAL-000004
    finally:
        await db.close()
