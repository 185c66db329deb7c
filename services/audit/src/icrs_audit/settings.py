from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr

from icrs_shared.settings import ServiceSettings, database_url_field


class AuditSettings(ServiceSettings):
    service: ClassVar[str] = "audit"

    database_url: str | None = database_url_field("audit")

    audit_signing_key: SecretStr | None = Field(
        default=None,
        description=(
            "Base64 of the 32-byte Ed25519 seed that signs the log's checkpoints. Unset: a "
            "key file <data dir>/audit-signing.key made on first start (every replica needs "
            "the same key)."
        ),
    )
    audit_origin: str | None = Field(
        default=None,
        pattern=r"^[^\s+]+$",
        description=(
            "The log's origin line in its checkpoints and its key's name (no spaces or '+'); "
            "default: <public URL's host>/audit."
        ),
    )
    audit_checkpoint_interval: float = Field(
        default=2.0, gt=0, le=300, description="Seconds between checkpoints while the log grows."
    )
    audit_batch_size: int = Field(
        default=500, ge=1, le=10000, description="Events appended to the log per transaction."
    )
    audit_batch_wait: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Seconds the first event of a batch waits for others to join it: "
        "longer, fewer and larger transactions under a steady flow of events, each event "
        "that much later in the log.",
    )

    @property
    def origin(self) -> str:
        return self.audit_origin or f"{urlsplit(self.public_url).netloc}/audit"
