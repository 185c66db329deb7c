"""Tables of the audit service: its own SQLModel registry, so that no other service's
tables can clash with them in one process.

The log is append-only: entries, tree nodes and checkpoints are only ever inserted (on
PostgreSQL and SQLite a trigger refuses UPDATE and DELETE). `log_head` is the one row
that changes: the log's size, locked by whoever appends.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Integer, LargeBinary, SmallInteger, Text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from icrs_shared.tables import messaging_tables

_BIG = BigInteger().with_variant(Integer(), "sqlite")


class Base(SQLModel, registry=registry()):
    pass


class LogEntry(Base, table=True):
    """One event in the log. `leaf` is the RFC 8785 canonical JSON of its envelope."""

    __tablename__ = "log_entries"

    idx: int = Field(sa_column=Column(_BIG, primary_key=True, autoincrement=False))
    event_id: uuid.UUID = Field(unique=True, index=True)
    leaf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    type: str = Field(max_length=100, index=True)
    subject: str | None = Field(default=None, max_length=200, index=True)
    actor: str | None = Field(default=None, max_length=200, index=True)
    time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    appended_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class LogNode(Base, table=True):
    """The hash of a perfect subtree: leaves [idx * 2**level, (idx + 1) * 2**level)."""

    __tablename__ = "log_nodes"

    level: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(_BIG, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class LogHead(Base, table=True):
    __tablename__ = "log_head"

    id: int = Field(default=1, primary_key=True)
    size: int = Field(sa_column=Column(_BIG, nullable=False))


class Checkpoint(Base, table=True):
    """A signed checkpoint (C2SP signed note) of the log at `size`."""

    __tablename__ = "checkpoints"

    size: int = Field(sa_column=Column(_BIG, primary_key=True, autoincrement=False))
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    signed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


metadata = Base.metadata
outbox_table, inbox_table = messaging_tables(metadata)

#: Tables nobody may update or delete from (the service's own role included).
APPEND_ONLY = ("log_entries", "log_nodes", "checkpoints")
