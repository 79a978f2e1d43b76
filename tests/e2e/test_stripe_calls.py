"""The one Stripe-call shape, held to its promises over the real stack: nothing of the database is held
while Stripe is slow, an older read never overwrites a newer one, and events about accounts that are not
ours end as such instead of dying after every retry."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
import pytest

from connect.calls import HeldAcrossStripeCall
from marketplace.lib.db import DB
from marketplace.sellers.sync import sync_connected_account
from tests.e2e.conftest import Stack
from tests.e2e.test_onboarding import create_account, me, sign_up
from tests.webhooks.conftest import sign
from webhooks.tables import StripeEvent
from webhooks.worker import process_event

pytestmark = pytest.mark.integration


async def _database_activity(stack: Stack) -> tuple[int, int]:
    """(connections idle inside a transaction for over 300 ms, client transactions that have spanned
    over 300 ms between their start and their current statement).

    A transaction held across a Stripe call shows as both: its connection waits, idle, for the client
    that waits for Stripe (half a second at least, here). The short transactions of the API and the worker (a few
    statements, milliseconds) show as neither; nor does one slow statement of a background job (a sweep
    on a full table under load), which is one statement, not a transaction held across a call.
    """
    conn = await asyncpg.connect(stack.settings.database_url.reveal())
    try:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE state LIKE 'idle in transaction%'"
            "                          AND state_change < now() - interval '300 milliseconds') AS idle,"
            "       count(*) FILTER (WHERE xact_start < now() - interval '300 milliseconds'"
            "                          AND query_start - xact_start > interval '300 milliseconds') AS long"
            "  FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            "   AND backend_type = 'client backend'"
        )
        assert row is not None
        return int(row["idle"]), int(row["long"])
    finally:
        await conn.close()


async def _sample_while(stack: Stack, task: asyncio.Task[Any]) -> list[tuple[int, int]]:
    """Until `task` is done: each time Stripe has answered a call and holds the answer back (the
    sandbox's response latency), sample the database once the answer has been held longer than the
    300 ms a transaction held across the call needs to show, then let the answer go. One sample per
    Stripe call, taken while the call is surely in flight, however slowly the machine runs."""
    samples = []
    while not task.done():
        if (await stack.control.faults())["answers_held"]:
            await asyncio.sleep(0.5)
            samples.append(await _database_activity(stack))
            await stack.control.release_answers()
        else:
            await asyncio.sleep(0.02)
    return samples


async def test_nothing_is_held_in_the_database_while_stripe_is_slow(stack: Stack) -> None:
    """Creating an account and re-reading it (admin sync) while every Stripe answer is held back: no
    transaction stays open across the call (so no row lock either), while the answer is on its way."""
    auth, seller = await sign_up(stack)
    await stack.quiesce()
    await stack.control.set_latency(0, response_ms=60_000)  # each answer held until the sampler lets it go
    try:
        creating = asyncio.create_task(stack.api.post("/sellers/me/stripe-account", headers=auth))
        during_create = await _sample_while(stack, creating)
        assert (await creating).status_code == 201
        admin = await _admin(stack)
        syncing = asyncio.create_task(stack.api.post(f"/admin/sellers/{seller['id']}/sync", headers=admin))
        during_sync = await _sample_while(stack, syncing)
        assert (await syncing).status_code == 200
    finally:
        await stack.control.set_latency(0)
        await stack.control.release_answers()
    assert during_create  # sampled during each slow call
    assert during_sync
    held = [sample for sample in during_create + during_sync if sample != (0, 0)]
    assert not held, held


async def test_a_stripe_call_refuses_to_start_inside_a_transaction(stack: Stack) -> None:
    auth, _ = await sign_up(stack)
    account_id = (await create_account(stack, auth))["account_id"]
    with pytest.raises(HeldAcrossStripeCall):
        async with DB.transaction():
            await sync_connected_account(stack.stripe, account_id, source="test")


async def test_an_older_slower_read_never_overwrites_a_newer_one(stack: Stack) -> None:
    """Read A starts first and its answer (the account still onboarding) arrives late; meanwhile the
    seller finishes onboarding and read B stores "active". A arrives last and must be dropped."""
    auth, _ = await sign_up(stack)
    account_id = (await create_account(stack, auth))["account_id"]
    await stack.quiesce()
    await stack.control.set_latency(0, response_ms=60_000)  # A's answer arrives when the test lets it go
    try:
        older = asyncio.create_task(sync_connected_account(stack.stripe, account_id, source="older-read"))
        read = f"GET /v1/accounts/{account_id}"
        # A's request has been answered by Stripe; its answer is on the way.
        await stack.eventually(stack.control.faults, lambda faults: read in faults["answers_held"])
        await stack.control.set_latency(0)
        await stack.control.complete_onboarding(account_id)
        newer = await sync_connected_account(stack.stripe, account_id, source="newer-read")
        assert (newer.status, newer.applied) == ("active", True)
        assert not older.done(), "the older read must still be in flight when the newer one is stored"
    finally:
        await stack.control.set_latency(0)
        await stack.control.release_answers()
    late = await older
    assert late.applied is False
    state = (await me(stack, auth))["connected_account"]
    assert state["status"] == "active"
    assert state["synced_from"] != "older-read"


async def _admin(stack: Stack) -> dict[str, str]:
    from marketplace.auth.service import create_principal
    from marketplace.auth.tables import Role

    _, token = await create_principal(Role.admin, "stripe-calls admin")
    return {"Authorization": f"Bearer {token}"}


async def _deliver_connect_event(stack: Stack, event_type: str, account: str) -> str:
    event = {
        "id": f"evt_test_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "data": {"object": {"id": account, "object": "account"}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "account": account,
    }
    body = json.dumps(event)
    secret = stack.settings.webhook_secrets_connect[0].reveal()
    response = await stack.api.post(
        "/webhooks/stripe/connect",
        content=body,
        headers={"Stripe-Signature": sign(body, secret), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return str(event["id"])


async def _event(event_id: str) -> dict[str, Any]:
    row = await StripeEvent.select().where(StripeEvent.id == event_id).first()
    assert row is not None
    return dict(row)


async def test_an_event_about_an_account_stripe_will_not_show_us_ends_as_not_ours(stack: Stack) -> None:
    event_id = await _deliver_connect_event(stack, "account.updated", f"acct_notours{uuid.uuid4().hex[:10]}")
    row = await stack.eventually(lambda: _event(event_id), lambda r: r["status"] == "not_ours")
    assert row["attempts"] == 1  # one read, not eight retries into dead
    assert "Stripe does not show it to this platform (404 resource_missing)" in row["last_error"]


async def test_a_transient_failure_on_that_read_still_retries(stack: Stack) -> None:
    await stack.quiesce()
    # Every attempt of the SDK (1 + 2 retries) answered 500: the event's first attempt fails.
    await stack.control.fail_next(3, status=500)
    event_id = await _deliver_connect_event(stack, "account.updated", f"acct_notours{uuid.uuid4().hex[:10]}")
    failed = await stack.eventually(lambda: _event(event_id), lambda r: r["status"] in ("failed", "not_ours"))
    assert failed["status"] == "failed"
    assert "APIError" in failed["last_error"]
    # The retry (its backoff made to pass now) reads again and finds the account is not ours.
    await StripeEvent.update({StripeEvent.next_attempt_at: StripeEvent.received_at}).where(StripeEvent.id == event_id)
    ctx = {"settings": stack.settings, "stripe": stack.stripe, "redis": None}
    assert await process_event(ctx, event_id) == "not_ours"
    row = await _event(event_id)
    assert (row["status"], row["attempts"]) == ("not_ours", 2)
