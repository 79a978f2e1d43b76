"""The whole stack over real HTTP: the API on its own port, one arq worker, and the sandbox.

The sandbox holds webhook endpoints (platform and Connect) registered by `register_webhooks`
exactly as `make run` does, pointing at this API; the API verifies deliveries with the secrets the
sandbox returned; the worker processes the stored events.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
import stripe

from connect.client import build_stripe_client, close_stripe_client
from marketplace.lib.queue import arq_pool
from marketplace.lib.settings import Secret, Settings
from marketplace.server.app import create_app
from marketplace.server.worker import build_worker
from tests.conftest import cancel_and_wait, free_port, serve, with_settings
from webhooks.registration import register_webhooks

T = TypeVar("T")


@dataclass
class Stack:
    api: httpx.AsyncClient
    api_url: str
    sandbox_url: str
    control: Any
    stripe: stripe.StripeClient
    settings: Settings

    async def quiesce(self, timeout: float = 60.0) -> None:
        """Wait until no delivery is in flight and the worker has nothing to do within the next seconds,
        so that a fault injected next (`control.fail_next`) hits only the request the test makes."""
        from webhooks.store import connection

        deadline = time.monotonic() + timeout
        while True:
            in_flight = await self.control.deliveries(status="pending")
            async with connection() as conn:
                busy = await conn.fetchval(
                    "SELECT count(*) FROM stripe_events WHERE status IN ('pending', 'processing')"
                    " OR (status = 'failed' AND next_attempt_at < now() + interval '5 seconds')"
                )
            if not in_flight and not busy:
                return
            assert time.monotonic() < deadline, await self.diagnose()
            await asyncio.sleep(0.05)

    async def diagnose(self) -> str:
        """What the pipeline holds, for a failing wait: recent stored events and sandbox deliveries."""
        from webhooks.tables import StripeEvent

        events = (
            await StripeEvent.select(
                StripeEvent.id, StripeEvent.type, StripeEvent.account, StripeEvent.status, StripeEvent.last_error
            )
            .order_by(StripeEvent.received_at, ascending=False)
            .limit(10)
        )
        deliveries = await self.control.deliveries()
        recent = [
            {k: d[k] for k in ("event", "type", "account", "status", "fault")}
            | {"attempts": [(a.get("status_code"), a.get("error")) for a in d.get("attempts", [])]}
            for d in deliveries[-10:]
        ]
        return f"stored events (newest first): {events}\nsandbox deliveries (latest): {recent}"

    @asynccontextmanager
    async def api_with(self, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
        """Another API process of the same platform, configured with `changes` (e.g. a changed profile
        setting), on its own port over real HTTP; the worker and the sandbox stay shared."""
        port = free_port()
        server, task = await serve(create_app(with_settings(self.settings, **changes)), port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
                yield api
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, timeout=15)

    async def eventually(
        self, probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], timeout: float = 60.0
    ) -> T:
        """Poll `probe` until `accept` holds (webhook delivery and processing are asynchronous)."""
        deadline = time.monotonic() + timeout
        while True:
            value = await probe()
            if accept(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not met within {timeout} s; last value: {value!r}\n{await self.diagnose()}"
                )
            await asyncio.sleep(0.05)


def process_env(stack: Stack, log_level: str) -> dict[str, str]:
    """The environment for a `marketplace serve` or `worker` process of the stack's deployment."""
    s = stack.settings
    return {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": s.database_url.reveal(),
        "REDIS_URL": s.redis_url.reveal(),
        "STRIPE_SECRET_KEY": s.stripe_secret_key.reveal(),
        "STRIPE_API_BASE": s.stripe_api_base or "",
        "STRIPE_WEBHOOK_SECRET_PLATFORM": ",".join(x.reveal() for x in s.webhook_secrets_platform),
        "STRIPE_WEBHOOK_SECRET_CONNECT": ",".join(x.reveal() for x in s.webhook_secrets_connect),
        "PUBLIC_BASE_URL": s.public_base_url,
        "SELLER_RETURN_URL": s.seller_return_url,
        "STRIPE_MAX_NETWORK_RETRIES": str(s.stripe_max_network_retries),
        "LOG_LEVEL": log_level,
        "CHECKOUT_LIMIT_PER_MINUTE": str(s.checkout_limit_per_minute),
        "VERIFY_LIMIT_PER_MINUTE": str(s.verify_limit_per_minute),
    }


# Package scope: the stack's worker sweeps the shared test database, so it must be gone before other
# suites (tests/webhooks) run workers of their own against that database.
@pytest.fixture(scope="package")
async def stack(settings: Settings, sandbox: Any, redis_url: str) -> AsyncIterator[Stack]:
    from sandbox.control import SandboxControl

    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    client = build_stripe_client(settings.stripe_secret_key.reveal(), api_base=sandbox.url, max_network_retries=2)
    secrets = await register_webhooks(client, api_url)
    platform_secret, connect_secret = secrets["platform"], secrets["connect"]
    assert platform_secret, "a fresh sandbox must hand out the platform endpoint's secret"
    assert connect_secret, "a fresh sandbox must hand out the Connect endpoint's secret"
    e2e_settings = with_settings(
        settings,
        webhook_secrets_platform=(Secret(platform_secret),),
        webhook_secrets_connect=(Secret(connect_secret),),
        public_base_url=api_url,
    )
    server, server_task = await serve(create_app(e2e_settings), port)
    pool = arq_pool(redis_url)
    worker = build_worker(e2e_settings, redis_pool=pool, poll_delay=0.05, handle_signals=False)
    worker_task = asyncio.create_task(worker.async_run())
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as api:
        yield Stack(
            api=api,
            api_url=api_url,
            sandbox_url=sandbox.url,
            control=SandboxControl(sandbox.url),
            stripe=client,
            settings=e2e_settings,
        )
    await cancel_and_wait(worker_task)
    await asyncio.wait_for(worker.close(), timeout=10)
    server.should_exit = True
    await asyncio.wait_for(server_task, timeout=15)
    # The sandbox outlives this package: endpoints left pointing at the stopped API would collect failures.
    endpoints = await client.v1.webhook_endpoints.list_async(params={"limit": 100})
    for endpoint in endpoints.data:
        if endpoint.url.startswith(api_url + "/"):
            await client.v1.webhook_endpoints.delete_async(endpoint.id)
    await close_stripe_client(client)
