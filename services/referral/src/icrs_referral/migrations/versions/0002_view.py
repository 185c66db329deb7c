"""The referral service's view of the others: organizations, services, cases, consents
and needs, from their events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('known_cases',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('is_minor', sa.Boolean(), nullable=False),
    sa.Column('sex', sa.String(length=16), nullable=False),
    sa.Column('age_band', sa.String(length=8), nullable=False),
    sa.Column('area', sa.String(length=16), nullable=True),
    sa.Column('languages', sa.JSON(), nullable=False),
    sa.Column('beneficiary_category', sa.String(length=32), nullable=True),
    sa.Column('programme_track', sa.String(length=16), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('event_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_known_cases_organization_id'), 'known_cases', ['organization_id'], unique=False)
    op.create_table('known_consents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('purposes', sa.JSON(), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('organizations', sa.JSON(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('withdrawn', sa.Boolean(), nullable=False),
    sa.Column('event_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_known_consents_case_id'), 'known_consents', ['case_id'], unique=False)
    op.create_table('known_needs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('assessment_id', sa.Uuid(), nullable=False),
    sa.Column('requester_organization_id', sa.Uuid(), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_known_needs_case_id'), 'known_needs', ['case_id'], unique=False)
    op.create_index(op.f('ix_known_needs_category'), 'known_needs', ['category'], unique=False)
    op.create_index(op.f('ix_known_needs_status'), 'known_needs', ['status'], unique=False)
    op.create_table('known_organizations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('child_safeguarding', sa.Boolean(), nullable=False),
    sa.Column('event_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('known_services',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('areas', sa.JSON(), nullable=False),
    sa.Column('languages', sa.JSON(), nullable=False),
    sa.Column('eligibility', sa.JSON(), nullable=False),
    sa.Column('maximum', sa.Integer(), nullable=True),
    sa.Column('accepting', sa.Boolean(), nullable=False),
    sa.Column('accept_within_seconds', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('event_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_known_services_category'), 'known_services', ['category'], unique=False)
    op.create_index(op.f('ix_known_services_organization_id'), 'known_services', ['organization_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_known_services_organization_id'), table_name='known_services')
    op.drop_index(op.f('ix_known_services_category'), table_name='known_services')
    op.drop_table('known_services')
    op.drop_table('known_organizations')
    op.drop_index(op.f('ix_known_needs_status'), table_name='known_needs')
    op.drop_index(op.f('ix_known_needs_category'), table_name='known_needs')
    op.drop_index(op.f('ix_known_needs_case_id'), table_name='known_needs')
    op.drop_table('known_needs')
    op.drop_index(op.f('ix_known_consents_case_id'), table_name='known_consents')
    op.drop_table('known_consents')
    op.drop_index(op.f('ix_known_cases_organization_id'), table_name='known_cases')
    op.drop_table('known_cases')
