"""The onboarding calls against real Stripe test mode; skipped unless STRIPE_TEST_SECRET_KEY is set.

These hold our requests to Stripe itself rather than to the sandbox: the account parameters for both
profiles, account links, and reading the account back into a snapshot.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import stripe

from connect import accounts
from connect.client import build_stripe_client, close_stripe_client
from connect.idempotency import account_key, account_link_key

KEY = os.environ.get("STRIPE_TEST_SECRET_KEY", "")
pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not KEY, reason="STRIPE_TEST_SECRET_KEY is not set (real Stripe test mode)"),
]


@pytest.fixture
async def live_client() -> AsyncIterator[stripe.StripeClient]:
    assert KEY.startswith(("sk_test_", "rk_test_")), "live tests only ever use a test-mode key"
    client = build_stripe_client(KEY, max_network_retries=2)
    yield client
    await close_stripe_client(client)


@pytest.mark.parametrize("profile", ["platform_managed", "seller_managed"])
async def test_create_account_link_and_read_back(live_client: stripe.StripeClient, profile: str) -> None:
    seller_id = uuid.uuid4()
    params = accounts.account_create_params(
        seller_id=str(seller_id),
        email=f"live-{seller_id.hex[:8]}@example.com",
        country="US",
        business_type="individual",
        profile=profile,  # type: ignore[arg-type]
    )
    started = int(time.time()) - 300
    created = await accounts.create_account(live_client, params, account_key(seller_id))
    again = await accounts.create_account(live_client, params, account_key(seller_id))
    assert again["id"] == created["id"]  # the same key returns the same account
    try:
        # What a creation retried after the key's lifetime relies on: the account is found by its seller.
        found = await accounts.find_account_for_seller(
            live_client, seller_id=str(seller_id), created_from=started, exclude=set()
        )
        assert found is not None
        assert found["id"] == created["id"]
        assert (
            await accounts.find_account_for_seller(
                live_client, seller_id=str(seller_id), created_from=started, exclude={created["id"]}
            )
            is None
        )
        snapshot = accounts.snapshot_from_account(await accounts.retrieve_account(live_client, created["id"]))
        assert snapshot.status() == "onboarding"
        assert snapshot.dashboard == ("express" if profile == "platform_managed" else "full")
        url, expires_at = await accounts.create_account_link(
            live_client,
            account_id=created["id"],
            refresh_url="https://example.com/refresh",
            return_url="https://example.com/return",
            link_type="account_onboarding",
            idempotency_key=account_link_key(uuid.uuid4()),
        )
        assert url.startswith("https://connect.stripe.com/")
        assert expires_at > 0
    finally:
        await live_client.v1.accounts.delete_async(created["id"])
