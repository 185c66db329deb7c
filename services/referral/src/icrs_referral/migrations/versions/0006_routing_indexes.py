"""What routing reads of a service, bounded however many referrals it has had: its live
referrals, and its latest answered ones.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = "status IN ('accepted', 'in-progress', 'on-hold', 'received', 'requested')"
_ANSWERED = (
    "status IN ('accepted', 'completed', 'expired', 'failed', 'in-progress', 'on-hold', "
    "'rejected')"
)


def upgrade() -> None:
    op.create_index(
        'ix_referrals_live_service',
        'referrals',
        ['service_id'],
        postgresql_where=sa.text(_LIVE),
        sqlite_where=sa.text(_LIVE),
    )
    op.create_index(
        'ix_referrals_answered_service',
        'referrals',
        ['service_id', 'created_at'],
        postgresql_where=sa.text(_ANSWERED),
        sqlite_where=sa.text(_ANSWERED),
    )


def downgrade() -> None:
    op.drop_index('ix_referrals_answered_service', table_name='referrals')
    op.drop_index('ix_referrals_live_service', table_name='referrals')
