"""The one Piccolo engine every table binds to, and its lifecycle.

Tables are declared with `db=DB` so importing them never depends on environment variables; the
engine learns its DSN from settings when the process starts (`configure_database`). `DB` is a module
global because Piccolo binds each table class to an engine object when the class is defined; the app
also injects this same engine by name (`db`, typed `marketplace.lib.deps.DatabaseDep`) so handlers that
open transactions or run raw queries take it as a dependency instead of importing it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from piccolo.engine.postgres import PostgresEngine

from connect.calls import forbid_inside

os.environ.setdefault("PICCOLO_CONF", "marketplace.lib.piccolo_conf")


class _Engine(PostgresEngine):
    """Piccolo's engine without its connection at construction (a version check and `CREATE EXTENSION`):
    importing a table module must not touch the network; our schema needs no extension."""

    async def check_version(self) -> None:
        return None


DB = _Engine(config={"dsn": os.environ.get("DATABASE_URL", "postgresql://localhost/marketplace")}, extensions=())
# No Stripe call may start inside one of this engine's transactions (connect.calls).
forbid_inside(DB.transaction_exists)


def configure_database(url: str) -> None:
    """Point the engine at `url`; call before the pool starts."""
    DB.config = {"dsn": url}


_users = 0


@asynccontextmanager
async def connection(pool: asyncpg.Pool | None = None) -> AsyncIterator[asyncpg.Connection]:
    """A raw asyncpg connection for hand-written SQL on hot paths: from `pool`, else from this process's
    pool, else a one-off one when no pool runs (CLI). Given back as soon as the block ends."""
    pool = pool or DB.pool
    if pool is not None:
        async with pool.acquire() as conn:
            yield conn
        return
    conn = await asyncpg.connect(DB.config["dsn"])
    try:
        yield conn
    finally:
        await conn.close()


async def keep_session(conn: asyncpg.Connection) -> None:
    """A pool's reset that undoes nothing: asyncpg's default runs `SELECT pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL` each time a connection goes back to its pool, a round trip per
    query. Nothing here keeps session state on a pooled connection (advisory locks are transaction-scoped,
    no `SET`, `LISTEN` or cursor outlives its transaction; the webhook registration's session lock has a
    connection of its own), and asyncpg still rolls back a transaction left open."""


async def start_database(url: str, max_size: int = 10) -> None:
    """Open the pool (lazily connecting, so the process starts while PostgreSQL is down).

    Reference-counted: an API and a worker sharing one process (tests, the dev runner) share one pool.
    """
    global _users
    _users += 1
    if DB.pool is not None:
        return
    configure_database(url)
    await DB.start_connection_pool(min_size=0, max_size=max_size, command_timeout=30, reset=keep_session)


async def stop_database() -> None:
    global _users
    _users = max(0, _users - 1)
    pool = DB.pool
    if _users == 0 and pool is not None:
        await close_pool(pool)
        DB.pool = None


async def close_pool(pool: asyncpg.Pool) -> None:
    """Close gracefully (waits for every borrowed connection), but a stuck borrower must not hang shutdown."""
    try:
        await asyncio.wait_for(pool.close(), timeout=10)
    except TimeoutError:
        pool.terminate()


async def ping_database(engine: PostgresEngine = DB, timeout: float = 2.0) -> None:
    """Raise if PostgreSQL does not answer a trivial query within `timeout` seconds."""
    pool = engine.pool
    if pool is None:
        await asyncio.wait_for(engine._run_in_new_connection("SELECT 1"), timeout)
    else:
        await asyncio.wait_for(pool.fetchval("SELECT 1"), timeout)
