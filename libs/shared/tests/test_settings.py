from typing import ClassVar

import pytest

from icrs_shared.settings import ServiceSettings, Settings, database_url_field, settings_table


class AlphaSettings(ServiceSettings):
    service: ClassVar[str] = "alpha"
    database_url: str | None = database_url_field("alpha")


class BetaSettings(ServiceSettings):
    service: ClassVar[str] = "beta"
    database_url: str | None = database_url_field("beta")


def test_settings_are_read_when_made_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICRS_AMQP_URL", "amqp://guest:guest@example:5672/")
    monkeypatch.setenv("ICRS_BUS_PREFETCH", "150")
    settings = Settings()
    assert settings.amqp_url == "amqp://guest:guest@example:5672/"
    assert settings.bus_prefetch == 150
    monkeypatch.delenv("ICRS_AMQP_URL")
    assert Settings().amqp_url is None


def test_each_service_reads_its_own_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICRS_ALPHA_DATABASE_URL", "postgresql+asyncpg://db/alpha")
    assert AlphaSettings().db_url == "postgresql+asyncpg://db/alpha"
    assert BetaSettings(data_dir="/srv/icrs").db_url == "sqlite+aiosqlite:////srv/icrs/beta.db"
    monkeypatch.setenv("ICRS_DATABASE_URL", "postgresql+asyncpg://db/one")
    assert BetaSettings().db_url == "postgresql+asyncpg://db/one"
    assert AlphaSettings().db_url == "postgresql+asyncpg://db/alpha"


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICRS_BUS_PREFETCH", "0")
    with pytest.raises(ValueError, match="bus_prefetch"):
        Settings()


def test_issuer_and_jwks_default_to_the_public_url() -> None:
    s = Settings(public_url="https://icrs.example.org/")
    assert s.issuer == "https://icrs.example.org"
    assert s.jwks_url == "https://icrs.example.org/.well-known/jwks.json"
    external = Settings(auth_issuer="https://idp.example.org/realms/ddr")
    assert external.jwks_url == "https://idp.example.org/realms/ddr/.well-known/jwks.json"


def test_settings_table_lists_every_variable_with_a_description() -> None:
    rows = {var: desc for var, _, desc in settings_table(AlphaSettings, BetaSettings)}
    assert "ICRS_ALPHA_DATABASE_URL" in rows
    assert "ICRS_BETA_DATABASE_URL" in rows
    assert "ICRS_AMQP_URL" in rows
    assert all(rows.values()), [v for v, d in rows.items() if not d]
