"""Which failures are a dependency outage (503 `unavailable`) and which are not, on real services."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import redis.exceptions

from marketplace.lib.problem_handlers import dependency_outage
from marketplace.lib.queue import arq_pool
from tests.conftest import free_port


async def test_postgresql_refusing_or_dropping_connections_is_an_outage(database: str) -> None:
    with pytest.raises(ConnectionRefusedError) as refused:
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/gone", timeout=5)
    assert dependency_outage(refused.value) == "PostgreSQL"

    # The backend is terminated during a query, as in a restart or a failover.
    victim = await asyncpg.connect(database)
    admin = await asyncpg.connect(database)
    try:
        query = asyncio.create_task(victim.fetchval("SELECT pg_sleep(10)"))
        while not await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", victim.get_server_pid()
        ):
            await asyncio.sleep(0.01)
        await admin.execute("SELECT pg_terminate_backend($1)", victim.get_server_pid())
        with pytest.raises((asyncpg.exceptions.AdminShutdownError, asyncpg.ConnectionDoesNotExistError)) as terminated:
            await query
        assert dependency_outage(terminated.value) == "PostgreSQL", repr(terminated.value)

        with pytest.raises(asyncpg.PostgresError) as bad_query:
            await admin.fetchval("SELECT no_such_column FROM pg_class")
        assert dependency_outage(bad_query.value) is None  # a query error is a bug, not an outage
    finally:
        await admin.close()
        victim.terminate()


async def test_redis_not_answering_is_an_outage_and_a_bug_is_not() -> None:
    pool = arq_pool(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(redis.exceptions.ConnectionError) as down:
            await pool.ping()
    finally:
        await pool.aclose()
    assert dependency_outage(down.value) == "Redis"
    assert dependency_outage(KeyError("missing")) is None
