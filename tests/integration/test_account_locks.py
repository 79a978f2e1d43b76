"""A writer of an account row locks it (briefly); that must not hold up a link for the account."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx

from marketplace.lib.db import DB
from marketplace.sellers.sync import _lock_account
from marketplace.sellers.tables import AccountLinkRequest, ConnectedAccount
from tests.support.factories import SellerSignupFactory, payload


async def test_a_link_row_is_written_while_a_sync_holds_the_account(client: httpx.AsyncClient) -> None:
    seller = (await client.post("/sellers", json=payload(SellerSignupFactory))).json()["seller"]
    account_id, stripe_id = uuid.uuid4(), f"acct_lock{uuid.uuid4().hex[:12]}"
    await ConnectedAccount.insert(
        ConnectedAccount(
            id=account_id,
            seller=seller["id"],
            stripe_account_id=stripe_id,
            profile="platform_managed",
            created_at=datetime.now(UTC),
        )
    )
    locked, release = asyncio.Event(), asyncio.Event()

    async def sync_waiting_on_stripe() -> None:
        async with DB.transaction():
            assert await _lock_account(stripe_id) is not None
            locked.set()
            await release.wait()  # as if Stripe were slow to answer

    sync = asyncio.create_task(sync_waiting_on_stripe())
    try:
        await asyncio.wait_for(locked.wait(), 60)
        link = AccountLinkRequest(
            id=uuid.uuid4(),
            seller=seller["id"],
            account=account_id,
            kind="account_onboarding",
            created_at=datetime.now(UTC),
        )
        # The insert checks its foreign key with a KEY SHARE lock: it must not wait for the sync (which
        # holds its lock until released below: an insert waiting for it would wait out the deadline).
        await asyncio.wait_for(AccountLinkRequest.insert(link), 60)
    finally:
        release.set()
        await sync
    assert await AccountLinkRequest.exists().where(AccountLinkRequest.account == account_id)
