from typing import ClassVar

from icrs_shared.settings import ServiceSettings, database_url_field


class IntakeSettings(ServiceSettings):
    service: ClassVar[str] = "intake"

    database_url: str | None = database_url_field("intake")
