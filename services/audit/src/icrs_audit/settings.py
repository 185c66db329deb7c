from typing import ClassVar

from icrs_shared.settings import ServiceSettings, database_url_field


class AuditSettings(ServiceSettings):
    service: ClassVar[str] = "audit"

    database_url: str | None = database_url_field("audit")
