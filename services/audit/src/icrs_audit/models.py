"""Tables of the audit service: its own SQLModel registry, so that no other service's
tables can clash with them in one process."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from icrs_shared.tables import messaging_tables


class Base(SQLModel, registry=registry()):
    pass


metadata = Base.metadata
outbox_table, inbox_table = messaging_tables(metadata)
