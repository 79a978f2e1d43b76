"""`register-webhooks` against the offline Stripe: idempotent re-runs, deleted and disabled endpoints,
registry changes, and a run that crashed after Stripe created the endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import stripe

from connect.client import build_stripe_client, close_stripe_client
from tests.conftest import TEST_STRIPE_KEY
from webhooks.registration import enabled_events, endpoint_url, ensure_endpoints
from webhooks.registry import event_types_for, handles, unregister
from webhooks.store import connection

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


class Recorded:
    """A Stripe client on the sandbox that notes every request it sends (method, path)."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client
        self.requests: list[tuple[str, str]] = []

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]


@pytest.fixture
async def recorded(sandbox: Any, wh_client: Any) -> AsyncIterator[Recorded]:
    client = build_stripe_client(TEST_STRIPE_KEY, api_base=sandbox.url, max_network_retries=0)
    rec = Recorded(client)

    async def note(request: httpx.Request) -> None:
        rec.requests.append((request.method, request.url.path))

    # Watch the traffic: the SDK's HTTPX client takes no hooks of its own, so hook its httpx client.
    http = client._requestor._client  # type: ignore[attr-defined]
    http._client_async.event_hooks = {"request": [note], "response": []}
    yield rec
    await close_stripe_client(client)


@pytest.fixture
async def base_url(recorded: Recorded) -> AsyncIterator[str]:
    """A base URL of this test's own (nothing listens there); its endpoints are deleted afterwards."""
    base = f"http://127.0.0.1:9/reg-{uuid.uuid4().hex[:10]}"
    yield base
    for endpoint in await ours(recorded.client, base):
        await recorded.client.v1.webhook_endpoints.delete_async(endpoint.id)


async def ours(client: stripe.StripeClient, base: str) -> list[stripe.WebhookEndpoint]:
    urls = {endpoint_url(base, "platform"), endpoint_url(base, "connect")}
    page = await client.v1.webhook_endpoints.list_async(params={"limit": 100})
    return [e async for e in page.auto_paging_iter() if e.url in urls]


async def registration_rows(base: str) -> int:
    async with connection() as conn:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM webhook_endpoint_registrations WHERE url LIKE $1", base + "/%"
        )
        return n


def state(endpoints: list[stripe.WebhookEndpoint]) -> dict[str, Any]:
    return {
        e.id: (e.url, e.application is not None, sorted(e.enabled_events), e.status, e.description) for e in endpoints
    }


async def test_rerun_with_nothing_changed_changes_nothing(recorded: Recorded, base_url: str) -> None:
    first = {r.endpoint: r for r in await ensure_endpoints(recorded.client, base_url)}
    assert {e: r.action for e, r in first.items()} == {"platform": "created", "connect": "created"}
    assert all((r.secret or "").startswith("whsec_") for r in first.values())
    before = state(await ours(recorded.client, base_url))
    assert len(before) == 2
    connect = before[first["connect"].endpoint_id]
    assert connect[1] is True  # created as a Connect endpoint
    assert connect[2] == event_types_for("connect")

    recorded.requests.clear()
    again = await ensure_endpoints(recorded.client, base_url)
    assert [(r.action, r.secret) for r in again] == [("unchanged", None), ("unchanged", None)]
    assert recorded.writes() == []  # not one POST or DELETE to Stripe
    assert state(await ours(recorded.client, base_url)) == before
    assert await registration_rows(base_url) == 2  # nor a row


async def test_rerun_after_both_endpoints_were_deleted_creates_new_ones_with_new_secrets(
    recorded: Recorded, base_url: str
) -> None:
    first = {r.endpoint: r for r in await ensure_endpoints(recorded.client, base_url)}
    for result in first.values():
        await recorded.client.v1.webhook_endpoints.delete_async(result.endpoint_id)

    second = {r.endpoint: r for r in await ensure_endpoints(recorded.client, base_url)}
    assert {e: r.action for e, r in second.items()} == {"platform": "created", "connect": "created"}
    for endpoint in ("platform", "connect"):
        assert second[endpoint].endpoint_id != first[endpoint].endpoint_id
        assert second[endpoint].secret != first[endpoint].secret
        assert (second[endpoint].secret or "").startswith("whsec_")
    now = state(await ours(recorded.client, base_url))
    assert set(now) == {r.endpoint_id for r in second.values()}  # they exist, and only they
    assert all(s[3] == "enabled" for s in now.values())
    third = await ensure_endpoints(recorded.client, base_url)
    assert [r.action for r in third] == ["unchanged", "unchanged"]


async def test_registry_change_updates_enabled_events(recorded: Recorded, base_url: str) -> None:
    first = {r.endpoint: r for r in await ensure_endpoints(recorded.client, base_url)}
    connect_id = first["connect"].endpoint_id

    async def connect_events() -> list[str]:
        endpoint = await recorded.client.v1.webhook_endpoints.retrieve_async(connect_id)
        return sorted(endpoint.enabled_events)

    @handles("test.registration_added", endpoints={"connect"})
    async def added(ctx: Any, event: Any) -> None:
        return None

    try:
        changed = {r.endpoint: r for r in await ensure_endpoints(recorded.client, base_url)}
        assert changed["connect"].action == "updated"
        assert changed["connect"].changes == ("enabled_events",)
        assert "test.registration_added" in await connect_events()
        for endpoint in await ours(recorded.client, base_url):  # each as the registry says now
            kind = "connect" if endpoint.application is not None else "platform"
            assert sorted(endpoint.enabled_events) == enabled_events(kind)
    finally:
        unregister("test.registration_added")
    # And back: the same parameters as the first run, a different change, so a new update key.
    back = {r.endpoint: r for r in await ensure_endpoints(recorded.client, base_url)}
    assert back["connect"].action == "updated"
    assert await connect_events() == event_types_for("connect")
    assert [r.action for r in await ensure_endpoints(recorded.client, base_url)] == ["unchanged", "unchanged"]
    assert await registration_rows(base_url) == 2  # updates need no new intent


async def test_endpoints_match_by_url_and_kind_and_a_disabled_one_is_re_enabled(
    recorded: Recorded, base_url: str
) -> None:
    # Someone registered the Connect URL as a platform (account) endpoint: not ours to adopt.
    wrong_kind = await recorded.client.v1.webhook_endpoints.create_async(
        params={"url": endpoint_url(base_url, "connect"), "enabled_events": ["account.updated"]}
    )
    results = {r.endpoint: r for r in await ensure_endpoints(recorded.client, base_url)}
    assert results["connect"].action == "created"
    assert results["connect"].endpoint_id != wrong_kind.id
    created = await recorded.client.v1.webhook_endpoints.retrieve_async(results["connect"].endpoint_id)
    assert created.application is not None

    platform_id = results["platform"].endpoint_id
    await recorded.client.v1.webhook_endpoints.update_async(platform_id, params={"disabled": True})
    again = {r.endpoint: r for r in await ensure_endpoints(recorded.client, base_url)}
    assert again["platform"].action == "updated"
    assert again["platform"].changes == ("re-enabled",)
    assert again["platform"].endpoint_id == platform_id
    assert (await recorded.client.v1.webhook_endpoints.retrieve_async(platform_id)).status == "enabled"


async def test_a_run_that_crashed_after_the_create_gets_the_same_endpoint_and_secret(
    recorded: Recorded, base_url: str
) -> None:
    first = {r.endpoint: r for r in await ensure_endpoints(recorded.client, base_url)}
    async with connection() as conn:  # the run died after Stripe answered, before it recorded the answer
        await conn.execute(
            "UPDATE webhook_endpoint_registrations SET endpoint_id = NULL, completed_at = NULL WHERE url LIKE $1",
            base_url + "/%",
        )
    again = {r.endpoint: r for r in await ensure_endpoints(recorded.client, base_url)}
    for endpoint in ("platform", "connect"):
        assert again[endpoint].action == "created"
        assert again[endpoint].endpoint_id == first[endpoint].endpoint_id
        assert again[endpoint].secret == first[endpoint].secret  # shown again: it was never printed
    assert len(await ours(recorded.client, base_url)) == 2  # and no second endpoint
    assert await registration_rows(base_url) == 2


async def test_register_webhooks_command(sandbox: Any, wh_settings: Any, base_url: str) -> None:
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": wh_settings.database_url.reveal(),
        "REDIS_URL": wh_settings.redis_url.reveal(),
        "STRIPE_SECRET_KEY": TEST_STRIPE_KEY,
        "STRIPE_API_BASE": sandbox.url,
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "marketplace.server.cli", "stripe", "register-webhooks", "--base-url", base_url]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "created; STRIPE_WEBHOOK_SECRET_PLATFORM=whsec_" in first.stdout
    assert "created; STRIPE_WEBHOOK_SECRET_CONNECT=whsec_" in first.stdout
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already registered, unchanged") == 2
    assert "whsec_" not in second.stdout


async def test_a_crashed_run_whose_endpoint_was_deleted_since_creates_a_new_one(
    recorded: Recorded, base_url: str
) -> None:
    first = {r.endpoint: r for r in await ensure_endpoints(recorded.client, base_url)}
    async with connection() as conn:  # the run died before recording Stripe's answer…
        await conn.execute(
            "UPDATE webhook_endpoint_registrations SET endpoint_id = NULL, completed_at = NULL WHERE url LIKE $1",
            base_url + "/%",
        )
    for result in first.values():  # …and the endpoints were deleted before the next run
        await recorded.client.v1.webhook_endpoints.delete_async(result.endpoint_id)
    again = {r.endpoint: r for r in await ensure_endpoints(recorded.client, base_url)}
    for endpoint in ("platform", "connect"):
        # Re-sending the old request would only replay the deleted endpoint: a new intent, a new one.
        assert again[endpoint].action == "created"
        assert again[endpoint].endpoint_id != first[endpoint].endpoint_id
        assert again[endpoint].secret != first[endpoint].secret
    assert set(state(await ours(recorded.client, base_url))) == {r.endpoint_id for r in again.values()}
