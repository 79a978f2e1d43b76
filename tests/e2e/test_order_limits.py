"""Who may verify an order, and the per-caller limits of the routes anyone can call: checkout writes an
order and a Stripe Checkout Session, verify reads Stripe. Each limit is per buyer or, for a guest, per
client address (every request here comes from 127.0.0.1), and a refused request writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis.asyncio

from marketplace.auth.service import create_principal
from marketplace.auth.tables import Role
from marketplace.orders.tables import Order, OrderAccessToken
from tests.e2e.conftest import Stack
from tests.e2e.test_checkout import active_seller, bearer, checkout, listing
from tests.e2e.test_confirm import guest_order, verify

pytestmark = pytest.mark.integration


async def forget_limits(stack: Stack) -> None:
    """Earlier tests counted against the same address within this minute."""
    async with redis.asyncio.Redis.from_url(stack.settings.redis_url.reveal()) as client:
        keys = [key async for key in client.scan_iter(match="ratelimit:*")]
        if keys:
            await client.delete(*keys)


async def test_checkouts_past_the_per_address_limit_answer_429_and_write_nothing(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=None)
    await forget_limits(stack)
    async with stack.api_with(checkout_limit_per_minute=3) as api:
        made = [await checkout(stack, [(item["id"], 1)], api=api, email=f"g{n}@example.com") for n in range(3)]
        assert [r.status_code for r in made] == [201, 201, 201]
        before = (await Order.count(), await OrderAccessToken.count())
        refused = await checkout(stack, [(item["id"], 1)], api=api, email="g4@example.com")
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["type"] == "urn:marketplace:problem:too-many-requests"
        assert (await Order.count(), await OrderAccessToken.count()) == before
        # A signed-in buyer counts on their own token, not on the address the guests used up.
        _, buyer_token = await create_principal(Role.buyer, "limited buyer", "limited@example.com")
        mine = await checkout(stack, [(item["id"], 1)], api=api, headers=bearer(buyer_token))
        assert mine.status_code == 201, mine.text
    await forget_limits(stack)


async def test_a_guest_verifying_many_orders_is_limited_by_address_not_by_order(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=None)
    orders = [await guest_order(stack, item, email=f"v{n}@example.com") for n in range(2)]
    await forget_limits(stack)
    async with stack.api_with(verify_limit_per_minute=3) as api:

        async def verify_on(body: dict[str, Any]) -> int:
            answer = await api.post(
                f"/orders/{body['order']['id']}/verify",
                json={"session_id": body["session_id"]},
                headers={"X-Order-Token": body["access_token"]},
            )
            return answer.status_code

        codes = [await verify_on(orders[n % 2]) for n in range(4)]
    assert codes == [200, 200, 200, 429]  # a token per order does not buy a limit per order
    await forget_limits(stack)


async def test_only_the_one_who_pays_verifies_the_seller_and_admins_read_it(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=None)
    body = await guest_order(stack, item)
    _, admin_token = await create_principal(Role.admin, "verify admin")
    order_id = body["order"]["id"]
    for headers in (auth, bearer(admin_token), {}):
        answer = await stack.api.post(
            f"/orders/{order_id}/verify", json={"session_id": body["session_id"]}, headers=headers
        )
        assert answer.status_code == 404, answer.text
        if headers:
            assert (await stack.api.get(f"/orders/{order_id}", headers=headers)).status_code == 200
    assert (await verify(stack, body)).status_code == 200
    # The guest's token proves the payer whatever bearer token comes with it.
    url = f"/orders/{order_id}/verify"
    both = {**auth, "X-Order-Token": body["access_token"]}
    assert (await stack.api.post(url, json={"session_id": body["session_id"]}, headers=both)).status_code == 200


async def test_a_signed_in_buyers_order_is_verified_by_that_buyer_only(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=None)
    _, buyer_token = await create_principal(Role.buyer, "paying buyer", "payer@example.com")
    _, other_token = await create_principal(Role.buyer, "other buyer", "other@example.com")
    made = await checkout(stack, [(item["id"], 1)], headers=bearer(buyer_token))
    assert made.status_code == 201, made.text
    url = f"/orders/{made.json()['order']['id']}/verify"
    missing = f"/orders/{uuid.uuid4()}/verify"
    theirs = await stack.api.post(url, json={}, headers=bearer(other_token))
    nothing = await stack.api.post(missing, json={}, headers=bearer(other_token))
    assert theirs.status_code == nothing.status_code == 404, theirs.text
    assert theirs.json()["type"] == nothing.json()["type"] == "urn:marketplace:problem:not-found"
    assert (await stack.api.post(url, json={}, headers=bearer(buyer_token))).status_code == 200
