"""Settings shared by every service, read from `ICRS_*` environment variables.

Nothing is read at import time: call `Settings()` (or a service's subclass) where the
process starts and pass the object down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ICRS_", extra="ignore", env_file=None)

    data_dir: Path = Field(
        default=Path("var"),
        description="Where the embedded default keeps its SQLite files and keys.",
    )
    amqp_url: str | None = Field(
        default=None,
        description="RabbitMQ URL; unset means the in-process bus (one-process default only).",
    )
    amqp_exchange: str = Field(default="icrs.events", description="The topic exchange of events.")
    amqp_namespace: str = Field(
        default="",
        description="Prefix for every exchange and queue name (tests use it to isolate runs).",
    )
    bus_prefetch: int = Field(default=200, ge=1, le=5000, description="Per-consumer prefetch.")
    bus_delivery_limit: int = Field(
        default=5,
        ge=1,
        le=100,
        description=(
            "Failed deliveries a message may have before it is parked (and each queue's "
            "x-delivery-limit, when first declared)."
        ),
    )
    outbox_batch_size: int = Field(
        default=200, ge=1, le=10000, description="Events the relay publishes per batch."
    )
    outbox_poll_interval: float = Field(
        default=0.5, gt=0, description="Seconds between outbox polls when nothing wakes it."
    )
    outbox_sweep_after: float = Field(
        default=2.0,
        ge=0,
        description="Seconds after which an outbox row still unsent makes the relay catch "
        "up from the table, in the order written (a commit hands its events to the relay "
        "at once).",
    )
    outbox_retention_hours: float = Field(
        default=168, gt=0, description="How long sent outbox rows are kept before deletion."
    )
    inbox_retention_hours: float = Field(
        default=720, gt=0, description="How long processed event ids are remembered."
    )
    migrate_on_start: bool = Field(
        default=True, description="Run the service's migrations when it starts."
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Base URL clients use to reach the platform (the gateway, or `icrs up`).",
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description=(
            "Addresses and networks (comma-separated) of the proxies whose X-Forwarded-For "
            "and X-Forwarded-Proto the server believes: the gateway. A request from one of "
            "them counts as coming from the address it forwarded for (per-address limits)."
        ),
    )
    head_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description=(
            "Seconds a connection has to send a whole request line and headers, from its "
            "opening or the end of its previous response; a slower one gets 408 and is "
            "closed."
        ),
    )
    auth_issuer: str | None = Field(
        default=None,
        description="Token issuer (`iss`); defaults to the public URL (the built-in server).",
    )
    auth_audience: str = Field(default="icrs", description="Audience (`aud`) tokens must name.")
    auth_jwks_url: str | None = Field(
        default=None,
        description="Where the issuer's keys are; defaults to <issuer>/.well-known/jwks.json.",
    )
    auth_algorithms: list[str] = Field(
        default=["RS256", "PS256", "ES256", "EdDSA"],
        description="Accepted signing algorithms (never `none` or HMAC).",
    )
    auth_org_claim: str = Field(
        default="org", description="The claim that carries the organization id."
    )
    auth_leeway: int = Field(default=30, ge=0, le=300, description="Clock skew allowed, seconds.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: str = Field(default="json", description="`json` or `text`.")

    @property
    def issuer(self) -> str:
        return (self.auth_issuer or self.public_url).rstrip("/")

    @property
    def jwks_url(self) -> str:
        return self.auth_jwks_url or f"{self.issuer}/.well-known/jwks.json"


def database_url_field(service: str) -> Any:
    """The `database_url` field of a service's settings: `ICRS_<SERVICE>_DATABASE_URL`,
    or `ICRS_DATABASE_URL` for a process that runs one service."""
    return Field(
        default=None,
        validation_alias=AliasChoices(
            f"ICRS_{service.upper()}_DATABASE_URL", "ICRS_DATABASE_URL", "database_url"
        ),
        description=(
            f"The {service} service's database (SQLAlchemy async URL, e.g. "
            f"postgresql+asyncpg://...); default: SQLite at <data dir>/{service}.db."
        ),
    )


class ServiceSettings(Settings):
    """A service's settings: the shared ones plus its own database URL.

    Subclasses set `service` and declare `database_url = database_url_field(service)`;
    without a URL the service uses a SQLite file under the data dir.
    """

    service: ClassVar[str] = "service"

    database_url: str | None = Field(default=None)
    db_pool_size: int = Field(
        default=10,
        ge=1,
        le=200,
        description="Database connections a service process keeps open (PostgreSQL).",
    )
    db_max_overflow: int = Field(
        default=10,
        ge=0,
        le=200,
        description=(
            "Connections opened beyond the pool when it is all in use, closed again after "
            "use (PostgreSQL); a request waits for one when these are taken too."
        ),
    )

    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description=(
            "Largest request body accepted, in bytes (file imports have their own limit); "
            "a larger one is refused with 413 without being read."
        ),
    )
    max_import_bytes: int = Field(
        default=200 * 1024 * 1024,
        ge=1024,
        description="Largest file a bulk import (POST /v1/imports) accepts, in bytes.",
    )
    max_json_depth: int = Field(
        default=32,
        ge=2,
        le=1000,
        description=(
            "How deeply the arrays and objects of a JSON body may nest; a deeper body is "
            "refused with 422 before it is parsed."
        ),
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds a client has to send a whole request body, from the end of its "
            "headers; a slower one gets 408 and its connection is closed."
        ),
    )
    import_body_timeout: float = Field(
        default=600.0,
        gt=0,
        description="Seconds a client has to send a whole bulk import file.",
    )

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / (self.service + '.db')}"


def settings_table(*classes: type[BaseSettings]) -> list[tuple[str, str, str]]:
    """(variable, default, description) rows for the README and `icrs settings`."""
    rows: dict[str, tuple[str, str, str]] = {}
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, f in cls.model_fields.items():
            alias = f.validation_alias
            if isinstance(alias, AliasChoices):
                var = str(alias.choices[0])
            else:
                var = (prefix + name).upper()
            default = "" if f.default is None else str(f.default)
            rows[var] = (var, default, f.description or "")
    return sorted(rows.values())
