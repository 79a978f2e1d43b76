"""Against the offline Stripe: registering both endpoints, and real signed deliveries reaching the store.

Kept last and few: they need the sandbox (session fixture from tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
import stripe

from marketplace.lib.settings import Secret
from sandbox.control import SandboxControl
from tests.webhooks.conftest import stored
from webhooks.registration import endpoint_url, register_webhooks
from webhooks.registry import event_types_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
async def registered(
    sandbox: Any, stripe_client: stripe.StripeClient, wh_client: Any
) -> AsyncIterator[dict[str, str | None]]:
    base = str(wh_client.base_url).rstrip("/")
    yield await register_webhooks(stripe_client, base)
    # The sandbox outlives this module: other suites count deliveries, so leave no endpoint of ours behind.
    endpoints = await stripe_client.v1.webhook_endpoints.list_async(params={"limit": 100})
    for endpoint in endpoints.data:
        if endpoint.url.startswith(base + "/"):
            await stripe_client.v1.webhook_endpoints.delete_async(endpoint.id)


@pytest.fixture
async def control(sandbox: Any) -> AsyncIterator[SandboxControl]:
    async with SandboxControl(sandbox.url) as ctl:
        yield ctl


@pytest.fixture
def app_uses_registered_secrets(wh_app: Any, wh_settings: Any, registered: dict[str, str | None]) -> Iterator[None]:
    """Point the running app at the secrets the sandbox issued (the routes read settings per request)."""
    assert registered["platform"]
    assert registered["connect"]
    wh_app.state.settings = replace(
        wh_settings,
        webhook_secrets_platform=(Secret(registered["platform"]),),
        webhook_secrets_connect=(Secret(registered["connect"]),),
    )
    yield
    wh_app.state.settings = wh_settings


async def test_register_webhooks_creates_both_endpoints_once(
    registered: dict[str, str | None], stripe_client: stripe.StripeClient, wh_client: Any
) -> None:
    base = str(wh_client.base_url)
    assert (registered["platform"] or "").startswith("whsec_")
    assert (registered["connect"] or "").startswith("whsec_")
    assert registered["platform"] != registered["connect"]

    def ours(endpoints: Any) -> dict[str, Any]:
        urls = {endpoint_url(base, "platform"), endpoint_url(base, "connect")}
        return {e.url: e for e in endpoints.data if e.url in urls}

    before = ours(await stripe_client.v1.webhook_endpoints.list_async(params={"limit": 100}))
    assert len(before) == 2
    connect = before[endpoint_url(base, "connect")]
    assert sorted(connect.enabled_events) == event_types_for("connect")
    assert connect.api_version == stripe.api_version

    again = await register_webhooks(stripe_client, base)
    assert again == {"platform": None, "connect": None}
    after = ours(await stripe_client.v1.webhook_endpoints.list_async(params={"limit": 100}))
    assert {u: (e.id, e.enabled_events) for u, e in after.items()} == {
        u: (e.id, e.enabled_events) for u, e in before.items()
    }


@pytest.mark.usefixtures("app_uses_registered_secrets", "redis_pool")
async def test_sandbox_delivery_of_a_connect_event_is_verified_and_stored(
    stripe_client: stripe.StripeClient, control: SandboxControl
) -> None:
    account = await stripe_client.v1.accounts.create_async(
        params={"country": "US", "email": "webhooks-e2e@example.com", "type": "express"}
    )
    await control.complete_onboarding(account.id)
    deliveries = await control.wait_for_deliveries(type="account.updated", account=account.id)
    ours = [d for d in deliveries if d["url"].endswith("/webhooks/stripe/connect") and "127.0.0.1" in d["url"]]
    assert ours, deliveries
    assert all(d["status"] == "succeeded" for d in ours), ours
    row = await stored(ours[-1]["event"])
    assert row is not None
    assert row["endpoint"] == "connect"
    assert row["account"] == account.id
    assert row["misrouted"] is False
    assert row["type"] == "account.updated"
