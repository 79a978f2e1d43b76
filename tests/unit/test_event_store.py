"""Which insert failures the group commit retries row by row (one row's fault) and which fail the batch."""

from __future__ import annotations

import asyncpg
import pytest

from webhooks.store import _row_specific


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UntranslatableCharacterError,  # 22P05: jsonb refusing a NUL escape
        asyncpg.exceptions.StringDataRightTruncationError,  # 22001: a value too long for its column
        asyncpg.exceptions.UniqueViolationError,  # 23505
    ],
)
def test_a_value_or_constraint_error_may_be_one_rows_fault(error: type[asyncpg.PostgresError]) -> None:
    assert _row_specific(error("refused"))


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.ReadOnlySQLTransactionError,  # 25006: a standby after a failover
        asyncpg.exceptions.UndefinedColumnError,  # 42703: code deployed before its migration
        asyncpg.exceptions.SerializationError,  # 40001
        asyncpg.exceptions.AdminShutdownError,  # 57P01
        asyncpg.exceptions.TooManyConnectionsError,  # 53300
    ],
)
def test_a_server_wide_error_fails_the_batch_without_a_row_by_row_retry(error: type[asyncpg.PostgresError]) -> None:
    assert not _row_specific(error("refused"))


def test_a_lost_connection_is_not_a_row_fault() -> None:
    assert not _row_specific(ConnectionResetError())
