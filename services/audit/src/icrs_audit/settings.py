from typing import ClassVar

from icrs_shared.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    service: ClassVar[str] = "audit"
