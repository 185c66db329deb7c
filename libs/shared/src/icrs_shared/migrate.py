"""Alembic, driven from code: each service keeps its migrations inside its package."""

from __future__ import annotations

import zlib
from importlib.resources import files
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, text

from .db import Database


def alembic_config(package: str) -> Config:
    """The Alembic config of a service package (`<package>/migrations`)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(files(package) / "migrations"))
    return cfg


async def upgrade(db: Database, package: str, revision: str = "head") -> None:
    """Bring the database to `revision`. Replicas starting together take turns."""
    cfg = alembic_config(package)
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            key = zlib.crc32(f"icrs-migrate:{package}".encode())
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        await conn.run_sync(_upgrade, cfg, revision)


def _upgrade(connection: Connection, cfg: Config, revision: str) -> None:
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def current_revision(db: Database) -> str | None:
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def head_revision(package: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(package)).get_current_head()


def run_env(context: Any, metadata: MetaData) -> None:
    """The body of every service's `migrations/env.py`."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        url = context.config.get_main_option("sqlalchemy.url")
        context.configure(
            url=url, target_metadata=metadata, literal_binds=True, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def create_messaging_tables_v1(op: Any) -> None:
    """The outbox and inbox as first shipped; called by each service's first migration.

    Spelled out here rather than taken from `tables.py`, so that a later change to the
    tables arrives as a migration of its own.
    """
    import sqlalchemy as sa

    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "outbox",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index(
        "ix_outbox_unsent",
        "outbox",
        ["id"],
        postgresql_where=sa.text("sent_at IS NULL"),
        sqlite_where=sa.text("sent_at IS NULL"),
    )
    op.create_index("ix_outbox_sent_at", "outbox", ["sent_at"])
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.Uuid(), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_inbox_processed_at", "inbox", ["processed_at"])


def drop_messaging_tables_v1(op: Any) -> None:
    op.drop_table("inbox")
    op.drop_table("outbox")
