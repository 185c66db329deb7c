from typing import ClassVar

from pydantic import Field, SecretStr

from icrs_shared.settings import ServiceSettings, database_url_field


class PartnersSettings(ServiceSettings):
    service: ClassVar[str] = "partners"

    database_url: str | None = database_url_field("partners")

    bootstrap_admin: bool = Field(
        default=True,
        description=(
            "Create the platform administrator's client on first start and write its "
            "credentials to <data dir>/admin-client.json."
        ),
    )

    token_lifetime: int = Field(
        default=600,
        ge=60,
        le=900,
        description="Lifetime of the access tokens the built-in server issues, seconds.",
    )
    token_rate_per_minute: float = Field(
        default=60,
        gt=0,
        description="Token requests a client may make per minute (per process), after its burst.",
    )
    token_burst: int = Field(
        default=20, ge=1, description="Token requests a client may make at once."
    )
    token_failure_rate_per_minute: float = Field(
        default=30,
        gt=0,
        description=(
            "Failed token requests a remote address may make per minute (per process), "
            "after its burst."
        ),
    )
    token_failure_burst: int = Field(
        default=30, ge=1, description="Failed token requests a remote address may make at once."
    )
    signing_key_encryption_key: SecretStr | None = Field(
        default=None,
        description=(
            "Base64 of 32 random bytes: the key that encrypts token-signing keys at rest "
            "(AES-256-GCM). Unset: a key file <data dir>/partners-signing.kek made on first "
            "start; every replica of the partners service needs the same key."
        ),
    )
    signing_key_rotation_days: float = Field(
        default=30,
        gt=0,
        description="Age at which the token-signing key is replaced by a new one, days.",
    )
