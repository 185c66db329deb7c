"""Which handler failures are the database's outage (retried in place, the delivery count
unchanged) and which are the message's fault (returned, towards parking)."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa

from icrs_shared.db import is_transient


class DriverError(Exception):
    """What the asyncpg adapter raises: the server's SQLSTATE with it."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("driver error")
        self.sqlstate = sqlstate


def wrapped(sqlstate: str | None) -> sa.DBAPIError:
    return sa.DBAPIError("SELECT 1", {}, DriverError(sqlstate))


@pytest.mark.parametrize(
    "sqlstate",
    [
        "53300",  # too many connections
        "08006",  # connection failure
        "57P01",  # terminating connection due to administrator command
        "57P03",  # the database system is starting up
        "40P01",  # deadlock detected
        "40001",  # serialization failure
    ],
)
def test_an_unavailable_or_busy_database_is_transient(sqlstate: str) -> None:
    assert is_transient(wrapped(sqlstate))


@pytest.mark.parametrize("sqlstate", ["23505", "22P02", "42P01", None])
def test_a_fault_of_the_data_or_the_code_is_not(sqlstate: str | None) -> None:
    assert not is_transient(wrapped(sqlstate))


def test_connection_errors_are_transient() -> None:
    assert is_transient(ConnectionRefusedError())
    assert is_transient(sa.OperationalError("SELECT 1", {}, Exception("gone")))
    assert is_transient(sa.DBAPIError("SELECT 1", {}, Exception(), connection_invalidated=True))
    assert not is_transient(ValueError("bad data"))
