"""Referrals' history: each move, when and by whom.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('referral_transitions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('referral_id', sa.Uuid(), nullable=False),
    sa.Column('from_status', sa.String(length=24), nullable=True),
    sa.Column('to_status', sa.String(length=24), nullable=False),
    sa.Column('actor', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.String(length=64), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_referral_transitions_referral_id'), 'referral_transitions', ['referral_id'], unique=False)
    op.create_index(op.f('ix_referral_transitions_to_status'), 'referral_transitions', ['to_status'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_referral_transitions_to_status'), table_name='referral_transitions')
    op.drop_index(op.f('ix_referral_transitions_referral_id'), table_name='referral_transitions')
    op.drop_table('referral_transitions')
