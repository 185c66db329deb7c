from typing import ClassVar

from pydantic import Field, SecretStr

from icrs_shared.settings import ServiceSettings, database_url_field


class IntakeSettings(ServiceSettings):
    service: ClassVar[str] = "intake"

    database_url: str | None = database_url_field("intake")

    intake_master_keys: SecretStr | None = Field(
        default=None,
        description=(
            'The master keys that wrap each case\'s data key, as JSON {"<version>": '
            '"<base64 of 32 bytes>"}; the highest version wraps new keys, the others still '
            "unwrap (rotation). Unset: the key file <data dir>/intake-keys.json, made on "
            "first start."
        ),
    )
    intake_index_key: SecretStr | None = Field(
        default=None,
        description=(
            "Base64 of 32 bytes: the key of the keyed hashes by which document numbers and "
            "names are matched. Unset: from the key file <data dir>/intake-keys.json."
        ),
    )
    intake_case_number_prefix: str = Field(
        default="ICRS",
        pattern=r"^[A-Z][A-Z0-9]{0,9}$",
        description="Prefix of human case numbers (<prefix>-<year>-<number>).",
    )
    intake_duplicate_name_score: float = Field(
        default=88.0,
        ge=50,
        le=100,
        description="How alike two names must be (0-100) to make a probable duplicate.",
    )
    intake_duplicate_birth_years: int = Field(
        default=1,
        ge=0,
        le=10,
        description="How many years apart two birth dates may be in a probable duplicate.",
    )
