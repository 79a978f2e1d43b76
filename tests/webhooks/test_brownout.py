"""A Stripe brownout (every call slow, then every call failing) for the length of a lease leaves no event
dead that succeeds afterwards, and nothing of the database is held while Stripe is slow."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from marketplace.lib.queue import arq_pool
from marketplace.lib.settings import Settings, budget_problems
from marketplace.server.worker import build_worker
from sandbox.control import SandboxControl
from tests.conftest import with_settings
from tests.support.factories import SellerSignupFactory, payload
from tests.webhooks.conftest import PrivateRedis, make_event, post_event, stored
from webhooks.queueing import enqueuer_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_events")]

LEASE = 10


async def _connected_account(wh_client: Any) -> str:
    signup = await wh_client.post("/sellers", json=payload(SellerSignupFactory))
    assert signup.status_code == 201, signup.text
    auth = {"Authorization": f"Bearer {signup.json()['token']}"}
    account = await wh_client.post("/sellers/me/stripe-account", headers=auth)
    assert account.status_code == 201, account.text
    return str(account.json()["account_id"])


async def _idle_in_transaction(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%' AND state_change < now() - interval '300 milliseconds'"
            " AND pid <> pg_backend_pid()"
        )
        return n
    finally:
        await conn.close()


async def test_a_brownout_for_the_length_of_a_lease_kills_no_event(
    wh_client: Any, wh_app: Any, redis_pool: Any, private_redis: PrivateRedis, wh_settings: Settings, sandbox: Any
) -> None:
    # Budgets that keep their order: one call (2 attempts x 1 s + the SDK's sleep) < handler 8 s < lease 10 s.
    settings = with_settings(
        wh_settings,
        event_lease_seconds=LEASE,
        stripe_timeout_seconds=1.0,
        stripe_max_network_retries=1,
        event_max_attempts=6,
    )
    assert budget_problems(settings) == []
    accounts = [await _connected_account(wh_client) for _ in range(6)]
    events = [make_event("account.updated", account=a, obj={"id": a, "object": "account"}) for a in accounts]
    control = SandboxControl(sandbox.url)

    await control.set_latency(3000)  # every call slower than the client's timeout
    idle: list[int] = []
    try:  # the sandbox is the session's: its faults are cleared whatever happens here
        started = time.monotonic()
        for event in events:
            assert (await post_event(wh_client, event, endpoint="connect")).status_code == 200
        await enqueuer_for(wh_app.state.arq).flush()
        worker = build_worker(
            settings,
            redis_pool=arq_pool(private_redis.url),
            burst=True,
            poll_delay=0.02,
            ctx={"webhook_backoff_base": 1.0},
        )
        run = asyncio.create_task(worker.main())
        while time.monotonic() - started < LEASE / 2:
            idle.append(await _idle_in_transaction(settings.database_url.reveal()))
            await asyncio.sleep(0.1)
        await control.set_latency(0)
        await control.fail_next(10_000, status=500)  # then every call failing
        while time.monotonic() - started < LEASE:
            idle.append(await _idle_in_transaction(settings.database_url.reveal()))
            await asyncio.sleep(0.1)
    finally:
        await control.clear_faults()
    during = {event["id"]: (await stored(event["id"]) or {}) for event in events}
    assert all(row["status"] in ("failed", "processing", "pending") for row in during.values()), during
    assert any(row["attempts"] >= 1 for row in during.values())
    try:
        await asyncio.wait_for(run, 90)
    finally:
        await worker.close()
    rows = [await stored(event["id"]) or {} for event in events]
    assert [row["status"] for row in rows] == ["processed"] * len(events), [
        (r["status"], r["last_error"]) for r in rows
    ]
    assert all(row["attempts"] >= 2 for row in rows)  # each was tried during the brownout, and failed
    assert len(idle) > 20  # sampled throughout the brownout
    assert max(idle) == 0  # no transaction left open while Stripe was slow
