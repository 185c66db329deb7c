"""Async database access: one engine per service, a session per request or per message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy import exc as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

#: SQLSTATEs of a database that is away, full or busy, not of a bad message: connection
#: exceptions (08), insufficient resources (53: too many connections, out of memory, disk
#: full), shutting down or starting up (57P01-57P03), and a transaction that lost a race
#: and only needs running again (40001 serialization failure, 40P01 deadlock).
_TRANSIENT_CLASSES = ("08", "53")
_TRANSIENT_STATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01"})


def is_transient(exc: BaseException) -> bool:
    """True for an outage of what a handler or a request depends on (the database away,
    full or busy), false for a fault of the message or the request."""
    if isinstance(exc, sa.DBAPIError):
        if exc.connection_invalidated:
            return True
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if isinstance(state, str) and (
            state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
        ):
            return True
    return isinstance(
        exc,
        sa.OperationalError | sa.InterfaceError | sa.TimeoutError | OSError | TimeoutError,
    )


class Database:
    """An engine and its session factory. Made in a lifespan, closed with `dispose()`."""

    def __init__(
        self, url: str, *, echo: bool = False, pool_size: int = 10, max_overflow: int = 10
    ) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            _ensure_parent_dir(self.url.database)
            kwargs["connect_args"] = {"timeout": 30}
            if not self.url.database or self.url.database == ":memory:":
                kwargs["poolclass"] = NullPool
        else:
            # No ping before each use (a round trip per transaction): a connection found
            # dead fails its statement, which invalidates the pool (every older connection
            # is replaced); handlers retry it (`bus.patience`), requests get a 503.
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        # A Session class of this database's own, so that listeners (the outbox relay's
        # after-commit wake-up) hear this database's commits only.
        self.session_class: type[Session] = type("DatabaseSession", (Session,), {})
        self.sessions = async_sessionmaker(
            self.engine,
            expire_on_commit=False,
            sync_session_class=self.session_class,
            info={_DATABASE: self},
        )
        # Sessions whose statements each commit on their own (see `at_once`); they share
        # the pool, a connection's isolation level being reset when it returns.
        self._autocommit = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"),
            expire_on_commit=False,
            sync_session_class=self.session_class,
            info={_DATABASE: self},
        )
        self._apart: AsyncEngine | None = None

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on exit, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def at_once(self) -> AsyncIterator[AsyncSession]:
        """A session whose every statement commits on its own: on PostgreSQL, autocommit,
        with no BEGIN, COMMIT or ROLLBACK round trips. For a read of one statement, or a
        write that is one statement: two statements share no snapshot and are not atomic
        together. On SQLite (one process), one transaction committed on exit."""
        if self.is_sqlite:
            async with self.transaction() as session:
                yield session
            return
        async with self._autocommit() as session:
            yield session

    @asynccontextmanager
    async def apart(self) -> AsyncIterator[AsyncSession]:
        """A session outside the caller's transaction whose every statement commits at once
        (autocommit: no BEGIN and COMMIT round trips), for what must not wait for the
        caller's commit (a counter whose row lock must not be held until then). Each
        statement is its own transaction: put what must be atomic in one statement. Its
        connections come from a small pool of their own: callers holding every connection
        of the main pool cannot leave it waiting for one."""
        if self._apart is None:
            self._apart = create_async_engine(
                self.url, pool_size=2, max_overflow=0, isolation_level="AUTOCOMMIT"
            )
        async with AsyncSession(self._apart, expire_on_commit=False) as session:
            yield session

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def forget_deleted(self) -> None:
        """On SQLite, fold the write-ahead log into the database file and empty it, so that
        what was just deleted (overwritten in the file by `secure_delete`) is gone from the
        log too. Waits a little for readers; PostgreSQL has nothing to do here."""
        if not self.is_sqlite:
            return
        for _ in range(100):
            async with self.engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                cursor = await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                busy = (await cursor.fetchone())[0]
                await cursor.close()
            if not busy:
                return
            await asyncio.sleep(0.05)
        log.warning("the write-ahead log could not be emptied: readers kept it busy")

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._apart is not None:
            await self._apart.dispose()


_DATABASE = "icrs.database"


def database_of(session: AsyncSession) -> Database | None:
    """The `Database` whose `sessions()` made `session`, if one did."""
    found = session.info.get(_DATABASE)
    return found if isinstance(found, Database) else None


def _ensure_parent_dir(database: str | None) -> None:
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    # pysqlite's own transaction handling defers BEGIN; take it over so that
    # SQLAlchemy's "begin" event can issue BEGIN IMMEDIATE (no lock upgrades, no
    # "database is locked" surprises between two writers in one process).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # Deleted content is overwritten, so that erased data does not linger in free pages.
    cur.execute("PRAGMA secure_delete=ON")
    # The write-ahead log is cut back to nothing whenever a checkpoint empties it.
    cur.execute("PRAGMA journal_size_limit=0")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
