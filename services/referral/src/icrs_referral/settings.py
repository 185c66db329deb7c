from typing import ClassVar

from icrs_shared.settings import ServiceSettings


class ReferralSettings(ServiceSettings):
    service: ClassVar[str] = "referral"
