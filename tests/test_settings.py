"""Settings from the environment (RFC section 3): defaults, and bad values failing with
one readable line naming the setting."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from widget.settings import Settings, SettingsError, load_settings


pytestmark = [pytest.mark.usefixtures("widget_env"), pytest.mark.any_stack]


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.broker_url == "memory://"
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.token_max_age == 900
    assert settings.timeline_retention_days == 365
    assert settings.sse_ping == 15
    assert settings.request_receipt_timeout == 10
    assert settings.log_format == "json"
    assert settings.data_dir == tmp_path / "data"
    assert settings.db_url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'widget.db'}"
    assert "{room_id}" in settings.omnichannel_room_url


def test_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIDGET_DATABASE_URL", "postgresql+asyncpg://u:p@db/widget")
    monkeypatch.setenv("WIDGET_BROKER_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("WIDGET_SECRET_KEYS", "first-key-0123456789, second-key-0123456789")
    monkeypatch.setenv("WIDGET_PUBLIC_URL", "https://crm.example.com/")
    monkeypatch.setenv("WIDGET_CHAT_PANEL_URL", "http://chat.example.com/api/")
    monkeypatch.setenv("WIDGET_OMNICHANNEL_ROOM_URL", "https://inbox.example.com/rooms/{room_id}")
    monkeypatch.setenv("WIDGET_TOKEN_MAX_AGE", "300")
    monkeypatch.setenv("WIDGET_TIMELINE_RETENTION_DAYS", "30")
    monkeypatch.setenv("WIDGET_SSE_PING", "2.5")
    monkeypatch.setenv("WIDGET_LOG_FORMAT", "text")
    settings = load_settings()
    assert settings.db_url == "postgresql+asyncpg://u:p@db/widget"
    assert settings.broker_url == "redis://localhost:6379/0"
    # Newest last: signs with the last, verifies with all.
    assert settings.signing_keys() == ["first-key-0123456789", "second-key-0123456789"]
    assert settings.public_url == "https://crm.example.com"
    assert settings.chat_panel_url == "http://chat.example.com/api"
    assert settings.omnichannel_room_url == "https://inbox.example.com/rooms/{room_id}"
    assert (settings.token_max_age, settings.timeline_retention_days, settings.sse_ping) == (300, 30, 2.5)
    assert settings.log_format == "text"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WIDGET_TOKEN_MAX_AGE", "abc"),
        ("WIDGET_TOKEN_MAX_AGE", "0"),
        ("WIDGET_TOKEN_MAX_AGE", "-1"),
        ("WIDGET_TIMELINE_RETENTION_DAYS", "1.5"),
        ("WIDGET_SSE_PING", "0"),
        ("WIDGET_SSE_PING", "soon"),
        ("WIDGET_REQUEST_RECEIPT_TIMEOUT", "0"),
        ("WIDGET_REQUEST_RECEIPT_TIMEOUT", "-3"),
        ("WIDGET_REQUEST_RECEIPT_TIMEOUT", "nan"),
        ("WIDGET_REQUEST_RECEIPT_TIMEOUT", "inf"),
        ("WIDGET_REQUEST_RECEIPT_TIMEOUT", "soon"),
        ("WIDGET_BROKER_URL", "ftp://x"),
        ("WIDGET_BROKER_URL", "kafka://broker:9092"),
        ("WIDGET_DATABASE_URL", "mysql://"),
        ("WIDGET_DATABASE_URL", "sqlite:///plain-sync.db"),
        ("WIDGET_OMNICHANNEL_ROOM_URL", "http://localhost:8001/inbox"),
        ("WIDGET_OMNICHANNEL_ROOM_URL", "javascript:{room_id}"),
        ("WIDGET_SECRET_KEYS", "short"),
        ("WIDGET_SECRET_KEYS", "long-enough-key-0123456789,tiny"),
        ("WIDGET_PUBLIC_URL", "not a url"),
        ("WIDGET_PUBLIC_URL", "ftp://example.com"),
        ("WIDGET_CHAT_PANEL_URL", "chat.example.com"),
        ("WIDGET_LOG_FORMAT", "xml"),
    ],
)
def test_bad_setting_fails_with_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, name: str,
                                                   value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message
    assert name in message, message
    assert len(message) < 300
    assert excinfo.value.__cause__ is None or excinfo.value.__suppress_context__


def test_key_file_is_generated_once_and_reused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings()
    assert settings.secret_keys == []
    key_file = tmp_path / "data" / "secret_key"
    assert not key_file.exists()
    logger = logging.getLogger("widget")
    logger.propagate = True  # restored after the test (conftest)
    with caplog.at_level(logging.WARNING, logger="widget"):
        keys = settings.signing_keys()
        again = load_settings().signing_keys()
    assert key_file.exists()
    assert len(keys) == 1 and len(keys[0]) >= 32
    assert again == keys == [key_file.read_text().strip()]
    assert key_file.stat().st_mode & 0o077 == 0  # owner only
    warnings = [r for r in caplog.records if "WIDGET_SECRET_KEYS" in r.getMessage()]
    assert len(warnings) == 1, "warned once, when the key was generated"
    assert keys[0] not in caplog.text


def test_configured_keys_do_not_write_a_key_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WIDGET_SECRET_KEYS", "configured-key-0123456789")
    assert load_settings().signing_keys() == ["configured-key-0123456789"]
    assert not (tmp_path / "data" / "secret_key").exists()


def test_overrides_are_validated_too() -> None:
    with pytest.raises(SettingsError, match="WIDGET_BROKER_URL"):
        load_settings(broker_url="nats://x")
    assert isinstance(load_settings(token_max_age=60), Settings)
