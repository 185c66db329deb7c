"""Needs follow their referrals: when their status last changed, and why one is unmatched.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('needs') as batch:
        batch.add_column(sa.Column('status_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column('unmatched_reasons', sa.JSON(), nullable=False, server_default='[]')
        )


def downgrade() -> None:
    with op.batch_alter_table('needs') as batch:
        batch.drop_column('unmatched_reasons')
        batch.drop_column('status_at')
