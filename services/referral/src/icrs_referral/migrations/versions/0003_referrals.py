"""Referrals.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('referrals',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('need_id', sa.Uuid(), nullable=True),
    sa.Column('need_category', sa.String(length=32), nullable=False),
    sa.Column('requester_organization_id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('previous_referral_id', sa.Uuid(), nullable=True),
    sa.Column('routing', sa.JSON(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('outcome', sa.String(length=64), nullable=True),
    sa.Column('accept_by', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_referrals_accept_by'), 'referrals', ['accept_by'], unique=False)
    op.create_index(op.f('ix_referrals_case_id'), 'referrals', ['case_id'], unique=False)
    op.create_index(op.f('ix_referrals_need_id'), 'referrals', ['need_id'], unique=False)
    op.create_index(op.f('ix_referrals_organization_id'), 'referrals', ['organization_id'], unique=False)
    op.create_index(op.f('ix_referrals_requester_organization_id'), 'referrals', ['requester_organization_id'], unique=False)
    op.create_index(op.f('ix_referrals_service_id'), 'referrals', ['service_id'], unique=False)
    op.create_index(op.f('ix_referrals_status'), 'referrals', ['status'], unique=False)
    op.create_index(op.f('ix_referrals_updated_at'), 'referrals', ['updated_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_referrals_updated_at'), table_name='referrals')
    op.drop_index(op.f('ix_referrals_status'), table_name='referrals')
    op.drop_index(op.f('ix_referrals_service_id'), table_name='referrals')
    op.drop_index(op.f('ix_referrals_requester_organization_id'), table_name='referrals')
    op.drop_index(op.f('ix_referrals_organization_id'), table_name='referrals')
    op.drop_index(op.f('ix_referrals_need_id'), table_name='referrals')
    op.drop_index(op.f('ix_referrals_case_id'), table_name='referrals')
    op.drop_index(op.f('ix_referrals_accept_by'), table_name='referrals')
    op.drop_table('referrals')
