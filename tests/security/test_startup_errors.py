"""Start-up problems are one line (issue 11): ``widget serve``, ``worker`` and
``migrate`` on a store that cannot write (a read-only database: an SQLite file opened
read-only, a PostgreSQL database in read-only mode), or with a data dir that cannot be
made (its parent is a regular file: that fails for root too), exit non-zero with one
readable line on stderr naming the path and what helps, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import CHECKOUT, SCALE, WidgetServer, schema_revision

COMMANDS = [["migrate"], ["worker"], ["serve", "--host", "127.0.0.1", "--port", "0"]]


def _run(env: dict[str, str], args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "widget", *args], env=env, cwd=CHECKOUT,
                          capture_output=True, text=True, timeout=60)


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("widget: error: "), done.stderr
    assert "Traceback" not in done.stderr and "Error(" not in done.stderr and "Exception" not in done.stderr
    return lines[0]


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    """The environment of a migrated store that is then read-only, and how stderr names it.
    (Per test: on the scale stack a test's databases go back to the pool after it.)"""
    server = WidgetServer(tmp_path)
    server.cli("migrate")
    assert schema_revision(server.tmp_path / "data") is not None
    if SCALE:
        from tests import postgres_support

        url = server.env["WIDGET_DATABASE_URL"]
        base, _, name = url.rpartition("/")
        name = name.split("?")[0]
        postgres_support.fetch(f"{base}/postgres", f"ALTER DATABASE {name} SET default_transaction_read_only = on")
        try:
            yield server.env, name
        finally:
            postgres_support.fetch(f"{base}/postgres", f"ALTER DATABASE {name} RESET default_transaction_read_only")
        return
    path = server.tmp_path / "data" / "widget.db"
    yield server.env | {"WIDGET_DATABASE_URL": f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"}, str(path)


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: args[0])
def test_a_read_only_database_is_one_line_at_start(read_only: tuple[dict[str, str], str], args: list[str]) -> None:
    env, named = read_only
    line = _one_line(_run(env, args))
    assert named in line and "cannot write: the database is read-only: make " in line, line


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: args[0])
def test_a_data_dir_that_cannot_be_made_is_one_line_at_start(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    data_dir = tmp_path / "a-file" / "data"
    env = WidgetServer(tmp_path).env | {"WIDGET_DATA_DIR": str(data_dir)}
    env.pop("WIDGET_SECRET_KEYS")  # so the data dir is needed on either stack (its secret_key)
    line = _one_line(_run(env, args))
    assert str(data_dir) in line and "Not a directory" in line and "WIDGET_DATA_DIR" in line, line
