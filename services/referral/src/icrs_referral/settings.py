from typing import ClassVar

from pydantic import Field

from icrs_shared.settings import ServiceSettings, database_url_field


class ReferralSettings(ServiceSettings):
    service: ClassVar[str] = "referral"

    database_url: str | None = database_url_field("referral")

    referral_max_attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Services a need is referred to, one after another, before it is unmatched.",
    )
    referral_expiry_interval: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds between sweeps for referrals not accepted in time.",
    )
