from typing import ClassVar

from icrs_shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    service: ClassVar[str] = "intake"
