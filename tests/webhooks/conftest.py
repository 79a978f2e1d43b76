"""Fixtures for the webhook pipeline: a private Redis we may stop, an app using it, signing, a worker.

The pipeline's tests flush and stop Redis, so they never use a shared one: `private_redis` is a
redis-server of our own on a free port (no persistence, so a restart also loses its data, like a
crashed Redis). The app and worker here use the session database of `tests/conftest.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import stripe
from arq.connections import ArqRedis
from arq.worker import Worker
from litestar import Litestar

from marketplace.lib.queue import arq_pool
from marketplace.lib.settings import Settings
from marketplace.server.app import create_app
from marketplace.server.worker import build_worker
from tests.conftest import CONNECT_SECRET, PLATFORM_SECRET, free_port, make_settings, serve
from webhooks.registry import HandlerContext, StoredEvent, handles, unregister

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def sign(body: str | bytes, secret: str, timestamp: int | None = None, extra_secrets: tuple[str, ...] = ()) -> str:
    """A `Stripe-Signature` header exactly as Stripe computes it (one v1 per secret)."""
    text = body.decode() if isinstance(body, bytes) else body
    t = int(time.time()) if timestamp is None else timestamp
    sigs = [hmac.new(s.encode(), f"{t}.{text}".encode(), hashlib.sha256).hexdigest() for s in (secret, *extra_secrets)]
    return f"t={t}," + ",".join(f"v1={sig}" for sig in sigs)


def make_event(
    event_type: str = "test.recorded",
    *,
    account: str | None = None,
    livemode: bool = False,
    obj: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": event_id or f"evt_test_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "api_version": stripe.api_version,
        "created": int(time.time()),
        "data": {"object": obj or {"id": f"obj_{uuid.uuid4().hex[:12]}", "object": "test_object"}},
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    if account is not None:
        event["account"] = account
    return event


class PrivateRedis:
    """A redis-server process we own; `stop()` and `start()` simulate an outage on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="wh-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import socket

        deadline = time.monotonic() + 60  # ends only a wait for a server that never comes up
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="session")
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def wh_settings(database: str, private_redis: PrivateRedis) -> Settings:
    return make_settings(
        database,
        private_redis.url,
        STRIPE_WEBHOOK_SECRET_PLATFORM=f"{PLATFORM_SECRET},whsec_test_platform_2",
        STRIPE_WEBHOOK_SECRET_CONNECT=CONNECT_SECRET,
        EVENT_MAX_ATTEMPTS="3",
    )


@pytest.fixture(scope="session")
def wh_app(wh_settings: Settings) -> Litestar:
    """The real app (lifespan, DI, errors, middleware, every route) with the pipeline's test settings."""
    return create_app(wh_settings)


@pytest.fixture(scope="session")
async def wh_client(wh_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The app served by uvicorn in the test loop, and an HTTP client for it.

    Not Litestar's AsyncTestClient: that runs the lifespan (and so the asyncpg pool) in a portal
    thread with its own event loop, and the tests here use the same pool directly.
    """
    port = free_port()
    server, task = await serve(wh_app, port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        yield http
    server.should_exit = True
    await task


@pytest.fixture
async def redis_pool(private_redis: PrivateRedis, wh_app: Litestar, wh_client: Any) -> AsyncIterator[ArqRedis]:
    """A fresh arq pool on the private Redis, emptied before the test (and the app's enqueuer reset)."""
    if private_redis.proc is None:
        private_redis.start()
    from webhooks.queueing import enqueuer_for

    enqueuer = enqueuer_for(wh_app.state.arq)
    await enqueuer.flush()  # the previous test's late enqueues land before the flush, not in this test
    enqueuer.down_until = 0.0
    pool = arq_pool(private_redis.url)
    await pool.flushdb()
    yield pool
    await pool.aclose()


@pytest.fixture
async def clean_events(wh_client: Any) -> None:
    """An empty event store (the pipeline's tests count rows)."""
    from webhooks.store import connection

    async with connection() as conn:
        await conn.execute("DELETE FROM stripe_events")


class Recorder:
    """Test handlers: record every (event id, object id) they process; fail on demand."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.objects: Counter[str] = Counter()
        self.started = asyncio.Event()
        self.block: asyncio.Event | None = None


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()

    @handles("test.recorded", endpoints={"platform", "connect"})
    async def recorded(ctx: HandlerContext, event: StoredEvent) -> None:
        rec.calls[event.id] += 1
        rec.objects[event.data_object["id"]] += 1

    @handles("test.connect_only", endpoints={"connect"})
    async def connect_only(ctx: HandlerContext, event: StoredEvent) -> None:
        rec.calls[event.id] += 1

    @handles("test.always_fails", endpoints={"platform", "connect"})
    async def always_fails(ctx: HandlerContext, event: StoredEvent) -> None:
        rec.calls[event.id] += 1
        if not getattr(rec, "heal", False):
            raise RuntimeError("boom: the handler failed")

    @handles("test.slow", endpoints={"platform"})
    async def slow(ctx: HandlerContext, event: StoredEvent) -> None:
        rec.calls[event.id] += 1
        rec.started.set()
        if rec.block is not None:
            await rec.block.wait()

    yield rec
    unregister("test.recorded", "test.connect_only", "test.always_fails", "test.slow")


@pytest.fixture
def worker_ctx(wh_settings: Settings, stripe_client: stripe.StripeClient) -> dict[str, Any]:
    return {"settings": wh_settings, "stripe": stripe_client, "webhook_backoff_base": 0.05}


@pytest.fixture
def run_worker(private_redis: PrivateRedis, wh_settings: Settings, wh_app: Litestar) -> Any:
    """`await run_worker()`: the production worker (`build_worker`: every job and cron, its startup and
    timeouts) in burst mode, draining the queue (retries included) and then stopping. Only the
    backoff base (50 ms) and the poll delay differ, so retries are fast."""
    from webhooks.queueing import enqueuer_for

    async def run(timeout: float = 60.0) -> Worker:
        await enqueuer_for(wh_app.state.arq).flush()  # the API queues in the background, ~10 ms later
        worker = build_worker(
            wh_settings,
            redis_pool=arq_pool(private_redis.url),
            burst=True,
            poll_delay=0.01,
            ctx={"webhook_backoff_base": 0.05},
        )
        try:
            await asyncio.wait_for(worker.main(), timeout)
        finally:
            await worker.close()
        return worker

    return run


async def post_event(
    client: httpx.AsyncClient,
    event: dict[str, Any],
    *,
    endpoint: str = "platform",
    secret: str | None = None,
    timestamp: int | None = None,
) -> Any:
    body = json.dumps(event)
    path = "/webhooks/stripe" if endpoint == "platform" else "/webhooks/stripe/connect"
    secret = secret or (PLATFORM_SECRET if endpoint == "platform" else CONNECT_SECRET)
    return await client.post(
        path,
        content=body,
        headers={"Stripe-Signature": sign(body, secret, timestamp), "Content-Type": "application/json"},
    )


async def stored(event_id: str) -> dict[str, Any] | None:
    from webhooks.store import get_event

    return await get_event(event_id)


async def count_events() -> int:
    from webhooks.store import connection

    async with connection() as conn:
        n: int = await conn.fetchval("SELECT count(*) FROM stripe_events")
        return n


@pytest.fixture(scope="session")
async def admin_headers(wh_client: Any) -> dict[str, str]:
    from marketplace.auth.service import create_principal
    from marketplace.auth.tables import Role

    _, token = await create_principal(Role.admin, "webhook test admin")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
async def seller_headers(wh_client: Any) -> dict[str, str]:
    from marketplace.auth.service import create_principal
    from marketplace.auth.tables import Role

    _, token = await create_principal(Role.seller, "webhook test seller")
    return {"Authorization": f"Bearer {token}"}


class WorkerProcesses:
    """Real worker processes (`tests/webhooks/worker_process.py`) started by a test; stopped after it."""

    def __init__(self, settings: Settings, log_dir: str) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        import os

        settings = self.settings
        env = {
            **os.environ,
            "APP_ENV": "test",
            "DATABASE_URL": settings.database_url.reveal(),
            "REDIS_URL": settings.redis_url.reveal(),
            "STRIPE_SECRET_KEY": settings.stripe_secret_key.reveal(),
            "STRIPE_API_BASE": settings.stripe_api_base or "",
            "EVENT_MAX_ATTEMPTS": str(settings.event_max_attempts),
            "LOG_LEVEL": "WARNING",
        }
        env.update(extra)
        return env

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        import sys

        log = open(f"{self.log_dir}/worker-{len(self.procs)}.log", "wb")  # noqa: SIM115  # closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.webhooks.worker_process", *args],
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        import pathlib

        return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(pathlib.Path(self.log_dir).iterdir()))

    def stop_all(self) -> None:
        import signal

        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # arq stops gracefully on SIGTERM
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def worker_processes(wh_settings: Settings, wh_client: Any) -> Iterator[WorkerProcesses]:
    log_dir = tempfile.mkdtemp(prefix="wh-workers-")
    processes = WorkerProcesses(wh_settings, log_dir)
    yield processes
    processes.stop_all()
    shutil.rmtree(log_dir, ignore_errors=True)
