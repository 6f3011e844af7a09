"""The ``widget`` command line (RFC section 11), run in-process, plus one real
``python -m widget`` subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support import T0, FakeClock, head_revision, new_tenant, running_app, schema_revision, stack_env
from widget import records
from widget.cli import main
from widget.models import DealIn
from widget.settings import load_settings
from widget.tokens import EMBED, Signer
from widget.runtime import system_clock

CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def cli_env(widget_stack_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("WIDGET_SECRET_KEYS", "cli-test-key-0123456789")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("widget: error: "), err
    return lines[0]


def create_acme(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code, out, err = run(capsys, "company", "create", "acme", "--name", "Acme",
                         "--frame-origin", "http://localhost:8001/", "--json")
    assert code == 0, err
    return json.loads(out)


def test_migrate(capsys: pytest.CaptureFixture[str], cli_env: Path) -> None:
    code, out, err = run(capsys, "migrate")
    assert code == 0, err
    assert out.strip()
    assert schema_revision(cli_env / "data") == head_revision()
    assert run(capsys, "migrate")[0] == 0  # idempotent


def test_company_create_json(capsys: pytest.CaptureFixture[str]) -> None:
    company = create_acme(capsys)
    assert set(company) == {"id", "name", "api_key", "frame_origins"}
    assert company["id"] == "acme" and company["name"] == "Acme"
    assert company["frame_origins"] == ["http://localhost:8001"]
    assert isinstance(company["api_key"], str) and len(company["api_key"]) >= 32


def test_company_create_with_several_origins_and_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "company", "create", "globex", "--name", "Globex Corp",
                         "--frame-origin", "https://Inbox.Example.com:443/",
                         "--frame-origin", "http://127.0.0.1:9000",
                         "--frame-origin", "https://inbox.example.com",
                         "--omnichannel-url", "http://localhost:8001/omni", "--omnichannel-secret", "s3cret")
    assert code == 0, err
    assert "globex" in out and "https://inbox.example.com, http://127.0.0.1:9000" in out
    key_lines = [line for line in out.splitlines() if "wk_" in line]
    assert len(key_lines) == 1  # the key is printed once


def test_api_key_works_against_the_api(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import asyncio

    import httpx

    from widget.app import create_app

    company = create_acme(capsys)

    async def call() -> int:
        application = create_app(load_settings())
        async with application.router.lifespan_context(application):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application),
                                         base_url="http://x") as http:
                response = await http.get("/api/v1/rooms/r-1",
                                          headers={"Authorization": f"Bearer {company['api_key']}"})
                return response.status_code

    assert asyncio.run(call()) == 200


def test_duplicate_company_is_exit_2_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    create_acme(capsys)
    code, out, err = run(capsys, "company", "create", "acme", "--name", "Again",
                         "--frame-origin", "http://localhost:8001")
    assert code == 2 and out == ""
    assert "acme" in one_error_line(err) and "exists" in err


@pytest.mark.parametrize("company_id", ["A!", "a", "Acme", "acme_corp", "x" * 65, "acme corp"])
def test_bad_company_id_is_exit_2(capsys: pytest.CaptureFixture[str], company_id: str) -> None:
    code, out, err = run(capsys, "company", "create", company_id, "--name", "N",
                         "--frame-origin", "http://localhost:8001")
    assert code == 2 and out == ""
    one_error_line(err)


@pytest.mark.parametrize("origin", ["ftp://x", "http://localhost:8001/inbox", "localhost:8001",
                                    "http://localhost:8001/?q=1"])
def test_bad_frame_origin_is_exit_2(capsys: pytest.CaptureFixture[str], origin: str) -> None:
    code, out, err = run(capsys, "company", "create", "acme", "--name", "N", "--frame-origin", origin)
    assert code == 2 and out == ""
    one_error_line(err)


def test_token(capsys: pytest.CaptureFixture[str]) -> None:
    create_acme(capsys)
    before = datetime.now(UTC)
    code, out, err = run(capsys, "token", "--company", "acme", "--room", "r-1")
    assert code == 0, err
    body = json.loads(out)
    assert set(body) == {"token", "embed_url", "expires_at"}
    expires = datetime.fromisoformat(body["expires_at"])
    assert before + timedelta(seconds=890) < expires < datetime.now(UTC) + timedelta(seconds=901)
    url = urlsplit(body["embed_url"])
    assert url.path == "/embed/rooms/r-1" and parse_qs(url.query) == {"token": [body["token"]]}
    claims = Signer(load_settings().signing_keys(), system_clock).verify(EMBED, body["token"])
    assert claims["company"] == "acme" and claims["room_id"] == "r-1"
    assert claims["parent_origin"] == "http://localhost:8001"
    assert claims["permissions"] == ["deal:view", "ticket:view"]


def test_token_with_agent_and_ttl(capsys: pytest.CaptureFixture[str]) -> None:
    create_acme(capsys)
    code, out, err = run(capsys, "token", "--company", "acme", "--room", "r-2", "--agent", "agent-9",
                         "--ttl", "60")
    assert code == 0, err
    body = json.loads(out)
    claims = Signer(load_settings().signing_keys(), system_clock).verify(EMBED, body["token"])
    assert claims["agent_id"] == "agent-9"
    assert datetime.fromisoformat(body["expires_at"]) < datetime.now(UTC) + timedelta(seconds=61)


@pytest.mark.parametrize("args", [["--company", "nobody", "--room", "r-1"],
                                  ["--company", "acme", "--room", "a b"],
                                  ["--company", "acme", "--room", "r-1", "--ttl", "0"],
                                  ["--company", "acme", "--room", "r-1", "--ttl", "100000"]])
def test_token_errors_are_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    create_acme(capsys)
    code, out, err = run(capsys, "token", *args)
    assert code == 2 and out == ""
    one_error_line(err)


def test_unknown_company_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "migrate")
    code, _, err = run(capsys, "token", "--company", "nobody", "--room", "r-1")
    assert code == 2 and "nobody" in one_error_line(err)


def test_serve_with_several_workers_on_memory_broker_is_refused(capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIDGET_BROKER_URL", "memory://")  # the scale stack's run sets redis://
    code, out, err = run(capsys, "serve", "--workers", "2")
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "memory://" in line and "WIDGET_BROKER_URL" in line


def test_bad_setting_is_exit_2_naming_it(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIDGET_TOKEN_MAX_AGE", "abc")
    code, out, err = run(capsys, "migrate")
    assert code == 2 and out == ""
    assert "WIDGET_TOKEN_MAX_AGE" in one_error_line(err)


def test_secrets_are_not_printed_on_errors(capsys: pytest.CaptureFixture[str]) -> None:
    company = create_acme(capsys)
    code, out, err = run(capsys, "company", "create", "acme", "--name", "x", "--frame-origin", "http://a.b")
    assert code == 2
    assert str(company["api_key"]) not in out + err


def test_python_dash_m_widget_migrate(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIDGET_")}
    env.update(WIDGET_DATA_DIR=str(tmp_path / "sub"), PYTHONPATH=str(CHECKOUT),
               **stack_env(tmp_path / "sub", migrated=False))
    result = subprocess.run([sys.executable, "-m", "widget", "migrate"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert schema_revision(tmp_path / "sub") == head_revision()
    # Without WIDGET_SECRET_KEYS a key was generated and persisted in the data dir.
    assert (tmp_path / "sub" / "secret_key").exists()
    bad = subprocess.run([sys.executable, "-m", "widget", "migrate"], cwd=tmp_path,
                         env={**env, "WIDGET_BROKER_URL": "ftp://x"}, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "WIDGET_BROKER_URL" in bad.stderr


def test_purge_dry_run_then_purge(capsys: pytest.CaptureFixture[str], cli_env: Path) -> None:
    """A timeline entry 400 days old: the dry run names it and keeps it, the purge
    deletes it, and a second dry run finds nothing."""
    async def old_bot_deal() -> None:
        async with running_app(load_settings(), FakeClock(T0 - 400 * 86_400_000_000)) as app:
            runtime = app.state.runtime
            await new_tenant(runtime)
            company = await runtime.store.get_company("acme")
            await records.create(runtime, "deal", company, DealIn(
                name="Old", stage="New", pipeline="Sales", room_id="r-1", creator_flag="bot"))

    asyncio.run(old_bot_deal())
    code, out, err = run(capsys, "purge", "--dry-run")
    assert code == 0, err
    assert out.startswith("would delete: 1 timeline entries"), out
    code, out, err = run(capsys, "purge")
    assert code == 0 and out.startswith("deleted: 1 timeline entries"), (out, err)
    code, out, err = run(capsys, "purge", "--dry-run")
    assert out.startswith("would delete: 0 timeline entries"), out


def test_worker_command_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """Also serves its own /metrics when asked to (it has no HTTP server otherwise)."""
    from tests.support import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIDGET_")}
    env.update(WIDGET_DATA_DIR=str(tmp_path / "data"), WIDGET_SECRET_KEYS="cli-test-key-0123456789",
               PYTHONPATH=str(CHECKOUT), WIDGET_WORKER_METRICS_PORT=str(port), **stack_env(tmp_path / "data"))
    log = tmp_path / "worker.log"
    with open(log, "w") as stderr:
        worker = subprocess.Popen([sys.executable, "-m", "widget", "worker"], cwd=tmp_path, env=env,
                                  stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    try:
        deadline = time.monotonic() + 30
        while "retention_purge" not in log.read_text():  # the loop's first round: it is running
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        import httpx

        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'widget_outbox_gave_up_total{topic="notify.created"} 0.0' in scrape
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    finally:
        worker.kill()
    err = log.read_text()
    assert worker.returncode == 0, err  # handled: not killed by the signal (-15)
    assert "Traceback" not in err


def test_several_workers_share_one_fresh_metrics_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from widget import metrics

    monkeypatch.setenv(metrics.MULTIPROC_DIR, "")  # unset, and restored after the test
    metrics.share_between_processes()
    shared = Path(os.environ[metrics.MULTIPROC_DIR])
    assert shared.is_dir() and not any(shared.iterdir())
    shared.rmdir()
    monkeypatch.setenv(metrics.MULTIPROC_DIR, str(tmp_path))  # the operator's choice stays
    metrics.share_between_processes()
    assert os.environ[metrics.MULTIPROC_DIR] == str(tmp_path)


async def test_a_process_told_not_to_migrate_leaves_the_schema_alone(tmp_path: Path) -> None:
    from sqlalchemy import inspect

    from tests.support import make_settings

    settings = make_settings(tmp_path, migrate_on_start=False)
    async with running_app(settings) as application:
        db = application.state.runtime.store.db
        assert await db.read(lambda conn: inspect(conn).get_table_names()) == []
    async with running_app(make_settings(tmp_path)) as application:  # control: the default migrates
        db = application.state.runtime.store.db
        assert "deals" in await db.read(lambda conn: inspect(conn).get_table_names())


@pytest.mark.parametrize("url, reason", [
    ("postgresql+asyncpg://widget:hunter2@127.0.0.1:1/widget", "cannot connect"),
    ("postgresql+asyncpg://widget:hunter2@[::1/widget", "invalid database URL"),
])
def test_serve_with_an_unusable_database_says_so_in_one_line(
    capsys: pytest.CaptureFixture[str], cli_env: Path, monkeypatch: pytest.MonkeyPatch, url: str, reason: str
) -> None:
    monkeypatch.setenv("WIDGET_DATABASE_URL", url)
    code, out, err = run(capsys, "serve", "--port", "1")
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert reason in line and "hunter2" not in line and "Traceback" not in err
