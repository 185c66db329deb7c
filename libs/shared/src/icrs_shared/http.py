"""HTTP conventions every service shares: ETag/If-Match for updates, and
Idempotency-Key for requests that create something (contract §5)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import Conflict, FieldError, Invalid, PreconditionFailed, PreconditionRequired

IDEMPOTENCY_HEADER = "Idempotency-Key"


# ETags ----------------------------------------------------------------------


def etag(entity_id: object, version: int) -> str:
    return f'"{entity_id}.{version}"'


def require_if_match(request: Request, current: str) -> None:
    """Refuse an update that does not name the version it was based on (428) or names
    another one (412): two people answering at once cannot both win."""
    given = request.headers.get("if-match")
    if given is None:
        raise PreconditionRequired("send If-Match with the ETag of the version you changed")
    tags = {t.strip() for t in given.split(",")}
    if "*" not in tags and current not in tags and f"W/{current}" not in tags:
        raise PreconditionFailed(
            "the resource has changed since you read it", extra={"etag": current}
        )


def set_etag(response: Response, value: str) -> None:
    response.headers["ETag"] = value


# Idempotency keys -------------------------------------------------------------


def idempotency_table(metadata: MetaData) -> Table:
    if "idempotency_keys" in metadata.tables:
        return metadata.tables["idempotency_keys"]
    return Table(
        "idempotency_keys",
        metadata,
        Column("client_id", String(64), primary_key=True),
        Column("key", String(255), primary_key=True),
        Column("fingerprint", String(64), nullable=False),
        Column("status", Integer, nullable=False),
        Column("body", JSON, nullable=False),
        Column("headers", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    )


def create_idempotency_table_v1(op: Any) -> None:
    import sqlalchemy as sa

    op.create_table(
        "idempotency_keys",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )


@dataclass
class Idempotency:
    """One create request's idempotency state.

    ```
    idem = await Idempotency.begin(session, table, request, caller.client_id)
    if idem.replay is not None:
        return idem.replay
    ...create, then:
    await idem.save(session, 201, body, headers={"Location": ...})
    await session.commit()
    ```
    The stored answer is written in the same transaction as the creation, so a retry
    after a lost response gets the same answer, and a retry racing the first request
    waits for it (primary key) instead of creating twice.
    """

    table: Table
    client_id: str
    key: str | None
    fingerprint: str
    replay: Response | None = None

    @classmethod
    async def begin(
        cls, session: AsyncSession, table: Table, request: Request, client_id: str
    ) -> Idempotency:
        key = request.headers.get(IDEMPOTENCY_HEADER.lower())
        body = await request.body()
        digest = hashlib.sha256()
        digest.update(request.method.encode() + b" " + request.url.path.encode() + b"\n")
        digest.update(body)
        idem = cls(table, client_id, key, digest.hexdigest())
        if key is None:
            return idem
        if not 1 <= len(key) <= 255:
            raise Invalid(
                "Idempotency-Key must have 1 to 255 characters",
                errors=[
                    FieldError(
                        field="header.Idempotency-Key", message="1 to 255 characters", code="length"
                    )
                ],
            )
        row = (
            await session.execute(
                select(table).where(table.c.client_id == client_id, table.c.key == key)
            )
        ).first()
        if row is not None:
            if row.fingerprint != idem.fingerprint:
                raise Conflict("this Idempotency-Key was used for another request")
            idem.replay = JSONResponse(
                row.body,
                status_code=row.status,
                headers={**row.headers, "Idempotent-Replayed": "true"},
            )
        return idem

    async def save(
        self,
        session: AsyncSession,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        if self.key is None:
            return
        try:
            await session.execute(
                self.table.insert().values(
                    client_id=self.client_id,
                    key=self.key,
                    fingerprint=self.fingerprint,
                    status=status,
                    body=json.loads(json.dumps(jsonable_encoder(body))),
                    headers=headers or {},
                    created_at=datetime.now(UTC),
                )
            )
        except IntegrityError:
            # A request with the same key was at work at the same time and committed
            # first (its key made this insert wait, then refused it): this one is undone,
            # and its client, sending it again, gets that request's answer.
            await session.rollback()
            raise Conflict(
                "a request with this Idempotency-Key was handled at the same time; "
                "send it again to get its answer",
                code="idempotency-key-in-use",
                headers={"Retry-After": "1"},
            ) from None

    async def commit(self, session: AsyncSession, request: Request) -> Response | None:
        """Commit what was saved with the creation. When a concurrent request with the same
        key committed first (the key's primary key refused this one), undo this one and
        return that request's answer to give instead."""
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            if self.key is None:
                raise
            first = await Idempotency.begin(session, self.table, request, self.client_id)
            if first.replay is None:
                raise
            return first.replay
        return None
