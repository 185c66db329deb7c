"""The service directory, token-signing keys, idempotency keys; organization lifecycle
columns; client authentication methods.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from icrs_shared.http import create_idempotency_table_v1

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("clients") as batch:
        batch.add_column(
            sa.Column("auth_method", sa.String(32), nullable=False, server_default="client_secret")
        )
        batch.add_column(sa.Column("jwks", sa.JSON(), nullable=True))
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("private_jwk_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "services",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "organization_id",
            sa.Uuid(),
            sa.ForeignKey("organizations.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("category", sa.String(32), nullable=False, index=True),
        sa.Column("status", sa.String(24), nullable=False, index=True),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("service_areas", sa.JSON(), nullable=False),
        sa.Column("eligibility", sa.JSON(), nullable=False),
        sa.Column("capacity_maximum", sa.Integer(), nullable=True),
        sa.Column("accepting", sa.Boolean(), nullable=False),
        sa.Column("accept_within_seconds", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(500), nullable=True),
        sa.Column("email", sa.String(200), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "service_areas",
        sa.Column(
            "service_id",
            sa.Uuid(),
            sa.ForeignKey("services.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("area_code", sa.String(16), primary_key=True, index=True),
    )
    op.create_table(
        "service_languages",
        sa.Column(
            "service_id",
            sa.Uuid(),
            sa.ForeignKey("services.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("language", sa.String(16), primary_key=True, index=True),
    )
    create_idempotency_table_v1(op)


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("service_languages")
    op.drop_table("service_areas")
    op.drop_table("services")
    op.drop_table("signing_keys")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("jwks")
        batch.drop_column("auth_method")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("suspended_at")
        batch.drop_column("verified_at")
        batch.drop_column("version")
