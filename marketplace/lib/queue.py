"""Redis for arq: parsing the configured URL and checking that Redis answers."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, unquote, urlsplit

from arq.connections import ArqRedis, RedisSettings, create_pool


def redis_settings_from_url(url: str) -> RedisSettings:
    """arq settings for redis://, rediss:// or unix:///path/to.sock?db=N URLs."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = parse_qs(parts.query)
        return RedisSettings(
            unix_socket_path=unquote(parts.path),
            database=int(query.get("db", ["0"])[0]),
            conn_timeout=2,
            conn_retries=2,
            conn_retry_delay=1,
        )
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 2
    settings.conn_retries = 2
    settings.conn_retry_delay = 1
    return settings


def arq_pool(url: str) -> ArqRedis:
    """A lazily connecting arq pool: the API must start, and keep storing events, while Redis is down."""
    rs = redis_settings_from_url(url)
    return ArqRedis(
        host=rs.host if isinstance(rs.host, str) else "localhost",
        port=rs.port,
        unix_socket_path=rs.unix_socket_path,
        db=rs.database,
        username=rs.username,
        password=rs.password,
        ssl=rs.ssl,
        socket_connect_timeout=2,
        socket_timeout=2,
        encoding="utf8",
    )


async def create_arq_pool(url: str) -> ArqRedis:
    """An arq pool that has answered PING (retried briefly); for workers and CLI commands."""
    pool: ArqRedis = await create_pool(redis_settings_from_url(url))
    return pool


async def ping_redis(pool: ArqRedis, timeout: float = 2.0) -> None:
    """Raise if Redis does not answer PING within `timeout` seconds."""
    await asyncio.wait_for(pool.ping(), timeout)
