"""Configuration from the environment (prefix ``WIDGET_``), RFC section 3.

Bad values fail at start with one readable line naming the setting.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent


def _assets(name: str) -> Path:
    """``templates`` / ``static``: inside the package when installed from a wheel,
    else at the top of the checkout."""
    shipped = PACKAGE / name
    return shipped if shipped.is_dir() else CHECKOUT / name
log = logging.getLogger("widget")


class SettingsError(Exception):
    """A setting is missing or malformed; the message is one line."""


def _http_url(value: str, name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{name} must be an absolute http(s) URL")
    return value.rstrip("/")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WIDGET_", extra="ignore")

    database_url: str = ""  # empty: SQLite file in data_dir
    broker_url: str = "memory://"
    secret_keys: Annotated[list[str], NoDecode] = []
    public_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path("./data")
    chat_panel_url: str | None = None
    omnichannel_room_url: str = "http://localhost:8001/inbox?room={room_id}"
    token_max_age: int = 900
    timeline_retention_days: int = 365
    sse_ping: float = 15.0
    # Addition: seconds between a process's re-checks of its open streams' rooms (one
    # read of their versions), so a change whose message a redis:// broker lost (a
    # failed publish) reaches the streams within that time anyway; 0 = off. memory://
    # delivers in-process and never loses one, so it never re-checks.
    stream_recheck: float = 5.0
    # Additions: concurrent streams a process serves per embed token, per room and per
    # company (over a cap: 429 with Retry-After); 0 = no cap. And the seconds a stream
    # lives at most (minus up to 10%, so streams opened together do not end together)
    # before it ends cleanly and the browser resumes it; 0 = no limit.
    streams_per_token: int = 8
    streams_per_room: int = 100
    streams_per_company: int = 5000
    stream_max_age: float = 3600.0
    log_format: Literal["json", "text"] = "json"
    # Addition: record-API requests per second per company (burst twice that); 0 = off.
    rate_limit: float = 50.0
    # Additions (documented in README): where templates/static live, and the
    # test-only clock header used to simulate records that arrive late (E1).
    templates_dir: Path = _assets("templates")
    static_dir: Path = _assets("static")
    test_clock: bool = False
    # Addition: run the outbox worker inside `widget serve` (the embedded default);
    # false when it runs apart as `widget worker`.
    embedded_worker: bool = True
    # Addition: migrate the schema when a process starts (the embedded default).
    # `widget serve` migrates once, then turns it off for the processes it starts.
    migrate_on_start: bool = True
    # Addition: `widget worker` serves its own /metrics on this port (all interfaces),
    # since it has no HTTP server otherwise; 0 = off.
    worker_metrics_port: int = 0
    # Addition: seconds a client has to send a whole request (headers and body) from the
    # moment the connection can take one; past it the connection is closed. uvicorn has
    # no such deadline (its issue #157): without it, slow-header clients hold sockets forever.
    request_receipt_timeout: float = 10.0
    # Additions: failed API-key authentications per second per source address, after a
    # burst (past it every API request from that address is 429 with Retry-After, its
    # key not checked); /open and /telemetry calls per second per embed token (burst ten
    # times that, at least 10); 0 = off. And the proxies whose X-Forwarded-For names
    # the source address (addresses or CIDR blocks, comma list); none by default.
    auth_failure_rate: float = 0.2
    auth_failure_burst: int = 10
    open_rate: float = 1.0
    telemetry_rate: float = 2.0
    trusted_proxies: Annotated[list[str], NoDecode] = []
    # Addition: seconds a write waits for a lock another process holds (SQLite's write
    # lock, a PostgreSQL row lock) before it fails whole: 503 with Retry-After.
    lock_timeout: float = 5.0

    @field_validator("secret_keys", "trusted_proxies", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("secret_keys")
    @classmethod
    def _strong_keys(cls, value: list[str]) -> list[str]:
        if any(len(k) < 16 for k in value):
            raise ValueError("every key must be at least 16 characters")
        return value

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must start with memory://, redis:// or rediss://")
        if value.startswith("memory://"):
            return value
        # redis://[[user]:password@]host[:port][/db][?option=value]; the message never
        # repeats the URL (it may carry a password).
        parts = urlsplit(value)
        try:
            parts.port
        except ValueError:
            raise ValueError("has an invalid port (redis://host:port/db)") from None
        if not parts.hostname:
            raise ValueError("must name a host (redis://host:port/db)")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ValueError("must end with a database number, if any (redis://host:port/db)")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return _http_url(value, "public_url")

    @field_validator("chat_panel_url")
    @classmethod
    def _chat_panel_url(cls, value: str | None) -> str | None:
        return _http_url(value, "chat_panel_url") if value else None

    @field_validator("omnichannel_room_url")
    @classmethod
    def _room_url(cls, value: str) -> str:
        if "{room_id}" not in value:
            raise ValueError("must contain {room_id}")
        _http_url(value.replace("{room_id}", "x"), "omnichannel_room_url")
        return value

    @field_validator("token_max_age", "timeline_retention_days")
    @classmethod
    def _positive_int(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be a positive integer")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR block") from None
        return value

    @field_validator("auth_failure_burst")
    @classmethod
    def _burst(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be a positive number of attempts")
        return value

    @field_validator("rate_limit", "auth_failure_rate", "open_rate", "telemetry_rate")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if not 0 <= value < float("inf"):  # NaN too
            raise ValueError("must be 0 (off) or a positive number")
        return value

    @field_validator("streams_per_token", "streams_per_room", "streams_per_company")
    @classmethod
    def _cap(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 (no cap) or a positive number of streams")
        return value

    @field_validator("stream_recheck", "stream_max_age")
    @classmethod
    def _recheck(cls, value: float) -> float:
        if not value >= 0:  # NaN too
            raise ValueError("must be 0 (off) or a positive number of seconds")
        return value

    @field_validator("sse_ping")
    @classmethod
    def _positive_float(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be a positive number of seconds")
        return value

    @field_validator("request_receipt_timeout", "lock_timeout")
    @classmethod
    def _receipt_timeout(cls, value: float) -> float:
        if not 0 < value < float("inf"):  # NaN too
            raise ValueError("must be a positive number of seconds")
        return value

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'widget.db'}"

    def signing_keys(self) -> list[str]:
        """Keys oldest first; without any configured, one persisted in data_dir."""
        if self.secret_keys:
            return self.secret_keys
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
            log.warning("WIDGET_SECRET_KEYS is not set: generated a key in %s", path)
        return [path.read_text().strip()]


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning a validation error into one readable line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "WIDGET_" + str(err["loc"][0]).upper() if err["loc"] else "WIDGET_*"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"invalid setting {name}: {message}") from None
