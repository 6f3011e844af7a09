"""``widget`` command line (RFC section 11). Errors are one line and a non-zero exit."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from widget import companies, embed_tokens, logs, metrics, server, worker
from widget.errors import DomainError, Invalid
from widget.models import EmbedTokenIn, parse
from widget.runtime import Runtime, open_runtime
from widget.settings import Settings, SettingsError, load_settings
from widget.store.engine import StoreUnavailable, describe, write_failure


class CliError(Exception):
    pass


async def _with_runtime(settings: Settings, work: Callable[[Runtime], Awaitable[Any]]) -> Any:
    async with open_runtime(settings) as runtime:
        try:
            return await work(runtime)
        except Invalid as exc:
            problems = "; ".join(f"{d['field']} {d['message']}" for d in exc.details)
            raise CliError(problems or exc.message) from None
        except DomainError as exc:
            raise CliError(exc.message) from None


async def check_writable(runtime: Runtime) -> None:
    """Refuse to start on a store that cannot write (a read-only file or database, a
    full disk, a missing privilege): one line naming the database and what helps, not
    a process that starts and then fails every write."""
    try:
        await runtime.store.check_write()
    except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
        raise StoreUnavailable(f"database {describe(runtime.store.db)}: cannot write: {write_failure(exc)}") from None


def raise_file_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: the default soft 1,024 is a few hundred
    streams, while the hard limit is usually far higher. Children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        logs.log.info("open file limit (RLIMIT_NOFILE) is %s, already the hard limit", soft)
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit above the kernel's nr_open
        logs.log.warning("open file limit (RLIMIT_NOFILE) stays %s: cannot raise it to %s (%s)",
                         soft, hard, exc)
        return
    logs.log.info("open file limit (RLIMIT_NOFILE) raised: %s -> %s", soft, hard)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    if args.workers > 1 and settings.broker_url.startswith("memory://"):
        raise CliError("--workers > 1 needs a shared broker: set WIDGET_BROKER_URL=redis://… (memory:// is per process)")
    if args.workers > 1:
        metrics.share_between_processes()  # before the workers import prometheus_client
    # Migrate once here, not in each of the processes uvicorn starts (they read the
    # environment): they would race on the schema.
    asyncio.run(_with_runtime(settings, check_writable))
    os.environ["WIDGET_MIGRATE_ON_START"] = "false"
    # Once the settings and the database proved usable (an error there stays one line),
    # before uvicorn starts the processes that inherit the limit.
    logs.configure(settings.log_format)
    raise_file_limit()
    uvicorn.run(
        "widget.asgi:app", host=args.host, port=args.port, workers=args.workers,
        access_log=False, log_config=None, timeout_graceful_shutdown=5, proxy_headers=False,
        http=server.http_protocol(settings.request_receipt_timeout),
    )


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> None:
    asyncio.run(_with_runtime(settings, check_writable))
    print("database is at the newest schema revision")


def cmd_worker(settings: Settings, args: argparse.Namespace) -> None:
    async def work() -> None:
        logs.configure(settings.log_format)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)  # hand back unfinished rows, then exit
        async with open_runtime(settings, migrate=settings.migrate_on_start) as runtime:
            await check_writable(runtime)
            raise_file_limit()  # once the store opened: an error there stays one line
            if settings.worker_metrics_port:
                metrics.serve_alone(settings.worker_metrics_port)
            await worker.run_worker(runtime, stop)

    asyncio.run(work())


def cmd_purge(settings: Settings, args: argparse.Namespace) -> None:
    counts = asyncio.run(_with_runtime(settings, lambda runtime: worker.purge(runtime, dry_run=args.dry_run)))
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb}: " + ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in counts.items()))


def cmd_company_create(settings: Settings, args: argparse.Namespace) -> None:
    async def work(runtime: Runtime) -> tuple[dict[str, Any], str]:
        return await companies.create_company(
            runtime, args.id, args.name, args.frame_origin, args.omnichannel_url, args.omnichannel_secret
        )

    row, key = asyncio.run(_with_runtime(settings, work))
    origins = json.loads(row["frame_origins"])
    if args.json:
        print(json.dumps({"id": row["id"], "name": row["name"], "api_key": key, "frame_origins": origins}))
    else:
        print(f"company {row['id']} created; frame origins: {', '.join(origins)}")
        print(f"API key (shown once, keep it safe): {key}")


def cmd_token(settings: Settings, args: argparse.Namespace) -> None:
    async def work(runtime: Runtime) -> dict[str, Any]:
        company = await runtime.store.get_company(args.company)
        if company is None:
            raise CliError(f"no company {args.company!r}")
        body: dict[str, Any] = {"room_id": args.room, "agent_id": args.agent}
        if args.ttl is not None:
            body["ttl_seconds"] = args.ttl
        return await embed_tokens.mint(runtime, company, parse(EmbedTokenIn, body))

    print(json.dumps(asyncio.run(_with_runtime(settings, work))))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="widget", description="CRM Deal & Ticket component server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(run=cmd_serve)

    sub.add_parser("migrate", help="upgrade the database schema").set_defaults(run=cmd_migrate)
    sub.add_parser(
        "worker", help="run the outbox worker alone (set WIDGET_EMBEDDED_WORKER=false for serve)"
    ).set_defaults(run=cmd_worker)
    purge = sub.add_parser("purge", help="delete timeline entries and keys past their retention")
    purge.add_argument("--dry-run", action="store_true", help="print what would go, delete nothing")
    purge.set_defaults(run=cmd_purge)

    company = sub.add_parser("company", help="manage companies").add_subparsers(dest="action", required=True)
    create = company.add_parser("create", help="create a company and print its API key once")
    create.add_argument("id")
    create.add_argument("--name", required=True)
    create.add_argument("--frame-origin", action="append", required=True, metavar="URL")
    create.add_argument("--omnichannel-url")
    create.add_argument("--omnichannel-secret")
    create.add_argument("--json", action="store_true")
    create.set_defaults(run=cmd_company_create)

    token = sub.add_parser("token", help="mint an embed token")
    token.add_argument("--company", required=True)
    token.add_argument("--room", required=True)
    token.add_argument("--agent", default="cli")
    token.add_argument("--ttl", type=int)
    token.set_defaults(run=cmd_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        args.run(settings, args)
    except (SettingsError, CliError, StoreUnavailable) as exc:
        print(f"widget: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the data dir's secret_key cannot be written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"widget: error: {where}{exc.strerror or exc}: check that the path (WIDGET_DATA_DIR) "
              "exists and this user can write it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
