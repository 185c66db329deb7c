from typing import ClassVar

from icrs_shared.settings import ServiceSettings


class PartnersSettings(ServiceSettings):
    service: ClassVar[str] = "partners"
