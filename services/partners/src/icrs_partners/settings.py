from typing import ClassVar

from pydantic import Field

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
