"""Master key rotation: re-wrap every case's data key under the newest master key.

The data keys themselves do not change, so no ciphertext is touched. Procedure: add the
new version to every replica's keys (ICRS_INTAKE_MASTER_KEYS, or `icrs intake
add-master-key` for the key file) and restart them; run `icrs intake rewrap-keys`; then
the old version can be removed.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from icrs_shared.db import Database

from .crypto import Keyring
from .models import CaseKey


async def rewrap(db: Database, keyring: Keyring, *, batch: int = 500) -> int:
    """Re-wrap the data keys not under the newest master key; returns how many."""
    newest = keyring.current_version
    done = 0
    while True:
        async with db.transaction() as session:
            query = (
                select(CaseKey)
                .where(col(CaseKey.key_version) != newest)
                .order_by(col(CaseKey.case_id))
                .limit(batch)
            )
            if db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = (await session.execute(query)).scalars().all()
            for row in rows:
                data_key = keyring.unwrap(row.case_id, row.key_version, row.wrapped)
                row.wrapped = keyring.wrap(row.case_id, newest, data_key)
                row.key_version = newest
                session.add(row)
        done += len(rows)
        if len(rows) < batch:
            return done
