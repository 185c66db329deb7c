from typing import ClassVar

from icrs_shared.settings import ServiceSettings, database_url_field


class ReferralSettings(ServiceSettings):
    service: ClassVar[str] = "referral"

    database_url: str | None = database_url_field("referral")
