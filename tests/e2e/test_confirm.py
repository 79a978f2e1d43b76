"""One door to paid, over real HTTP: webhooks on both endpoints and the success page's verify confirm an
order exactly once, take its stock, announce it, and an oversell is refunded in full as its charge type
requires. Every scenario is driven on the sandbox as a buyer would (hosted form or control API)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from marketplace.lib.db import connection
from tests.conftest import free_port
from tests.e2e.conftest import Stack, process_env
from tests.e2e.test_checkout import active_seller, checkout, listing
from tests.support.api_process import api_process
from tests.support.metrics import metric_value

pytestmark = pytest.mark.integration

PROFILES = [("platform_managed", "destination"), ("seller_managed", "direct")]


async def order_row(order_id: str) -> dict[str, Any]:
    async with connection() as conn:
        row = await conn.fetchrow("SELECT * FROM orders WHERE id = $1", uuid.UUID(order_id))
    assert row is not None
    return dict(row)


async def stock_of(listing_id: str) -> int | None:
    async with connection() as conn:
        value: int | None = await conn.fetchval("SELECT stock FROM listings WHERE id = $1", uuid.UUID(listing_id))
    return value


async def side_effects(order_id: str) -> list[str]:
    """The outbox rows written for the order (kinds, sorted): one set per confirmation that won."""
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT kind FROM outbox_messages WHERE dedupe_key LIKE $1 OR payload->>'order_id' = $2"
            " OR payload->>'refund_id' IN (SELECT id::text FROM refunds WHERE \"order\" = $2::uuid) ORDER BY kind",
            f"order:{order_id}:%",
            order_id,
        )
    return [r["kind"] for r in rows]


async def refunds(order_id: str) -> list[dict[str, Any]]:
    async with connection() as conn:
        rows = await conn.fetch('SELECT * FROM refunds WHERE "order" = $1', uuid.UUID(order_id))
    return [dict(r) for r in rows]


async def guest_order(
    stack: Stack,
    item: dict[str, Any],
    quantity: int = 1,
    api: httpx.AsyncClient | None = None,
    email: str = "buyer@example.com",
) -> dict[str, Any]:
    response = await checkout(stack, [(item["id"], quantity)], api=api, email=email)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    row = await order_row(body["order"]["id"])
    body["session_id"] = row["checkout_session_id"]
    return body


async def verify(stack: Stack, body: dict[str, Any], session_id: str | None = None) -> httpx.Response:
    return await stack.api.post(
        f"/orders/{body['order']['id']}/verify",
        json={"session_id": session_id or body["session_id"]},
        headers={"X-Order-Token": body["access_token"]},
    )


async def status_of(stack: Stack, body: dict[str, Any]) -> str:
    response = await stack.api.get(f"/orders/{body['order']['id']}", headers={"X-Order-Token": body["access_token"]})
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


async def eventually_status(stack: Stack, body: dict[str, Any], wanted: str) -> None:
    await stack.eventually(lambda: status_of(stack, body), lambda s: s == wanted)


@pytest.mark.parametrize(("profile", "charge_type"), PROFILES)
async def test_the_webhook_confirms_a_paid_order_once_and_verify_then_finds_it_done(
    stack: Stack, profile: str, charge_type: str
) -> None:
    auth, _, account_id = await active_seller(stack, profile)
    item = await listing(stack, auth, stock=3)
    body = await guest_order(stack, item, 2)
    assert body["order"]["charge_type"] == charge_type
    on = account_id if charge_type == "direct" else None
    assert await stock_of(item["id"]) == 3  # checked at checkout, not taken
    outcome = await stack.control.complete_checkout(body["session_id"], stripe_account=on)
    assert outcome["outcome"] == "succeeded"
    await eventually_status(stack, body, "paid")
    row = await order_row(body["order"]["id"])
    assert row["confirmed_by"].startswith("webhook:evt_")
    assert (row["amount_paid"], row["amount_discount"]) == (5000, 0)
    assert row["payment_intent_id"].startswith("pi_")
    assert await stock_of(item["id"]) == 1
    assert await side_effects(body["order"]["id"]) == ["order.fulfil", "order.receipt", "order.sale"]
    # The success page arrives second: the same answer, nothing more done.
    answer = await verify(stack, body)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["amount_paid"]) == ("paid", 5000)
    assert (answer.json()["application_fee_charged"], answer.json()["seller_share"]) == (500, 4500)
    assert await stock_of(item["id"]) == 1
    assert await side_effects(body["order"]["id"]) == ["order.fulfil", "order.receipt", "order.sale"]
    # The events came on the endpoint where the session lives, and were processed (not parked).
    async with connection() as conn:
        events = await conn.fetch(
            "SELECT endpoint, status, account FROM stripe_events WHERE type = 'checkout.session.completed'"
            " AND payload->'data'->'object'->>'id' = $1",
            body["session_id"],
        )
    assert [(e["endpoint"], e["status"], e["account"]) for e in events] == [
        ("connect" if charge_type == "direct" else "platform", "processed", on)
    ]
    # The seller is told, and can list it.
    await stack.eventually(
        lambda: stack.api.get("/me/notifications", headers=auth),
        lambda r: any(n["kind"] == "order.sale" for n in r.json()["items"]),
    )


@pytest.mark.parametrize(("profile", "charge_type"), PROFILES)
async def test_the_success_page_before_the_webhook_confirms_and_the_late_webhook_changes_nothing(
    stack: Stack, profile: str, charge_type: str
) -> None:
    auth, _, account_id = await active_seller(stack, profile)
    item = await listing(stack, auth, stock=5)
    body = await guest_order(stack, item)
    on = account_id if charge_type == "direct" else None
    await stack.quiesce()
    await stack.control.set_delivery_faults(delay=2.0)
    try:
        await stack.control.complete_checkout(body["session_id"], stripe_account=on)
        answer = await verify(stack, body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "paid"
        assert (await order_row(body["order"]["id"]))["confirmed_by"] == "verify"
    finally:
        await stack.control.set_delivery_faults(delay=0.0)
    await stack.quiesce()
    async with connection() as conn:
        processed = await conn.fetchval(
            "SELECT count(*) FROM stripe_events WHERE type = 'checkout.session.completed' AND status = 'processed'"
            " AND payload->'data'->'object'->>'id' = $1",
            body["session_id"],
        )
    assert processed == 1  # the webhook came, was processed, and found the work done
    assert (await order_row(body["order"]["id"]))["confirmed_by"] == "verify"
    assert await stock_of(item["id"]) == 4
    assert await side_effects(body["order"]["id"]) == ["order.fulfil", "order.receipt", "order.sale"]


@pytest.mark.parametrize(("profile", "charge_type"), PROFILES)
async def test_an_oversold_order_is_refunded_in_full_as_its_charge_type_requires(
    stack: Stack, profile: str, charge_type: str
) -> None:
    auth, _, account_id = await active_seller(stack, profile)
    item = await listing(stack, auth, stock=1)
    first = await guest_order(stack, item)
    second = await checkout(stack, [(item["id"], 1)], email="late@example.com")
    assert second.status_code == 201, second.text
    late = second.json()
    late["session_id"] = (await order_row(late["order"]["id"]))["checkout_session_id"]
    on = account_id if charge_type == "direct" else None
    await stack.control.complete_checkout(first["session_id"], stripe_account=on)
    await eventually_status(stack, first, "paid")
    await stack.control.complete_checkout(late["session_id"], stripe_account=on)
    await eventually_status(stack, late, "oversold")
    assert await stock_of(item["id"]) == 0
    assert await side_effects(late["order"]["id"]) == ["order.oversold", "order.oversold_seller", "refund.create"]
    row = await order_row(late["order"]["id"])

    async def made() -> list[dict[str, Any]]:
        return await refunds(late["order"]["id"])

    [refund] = await stack.eventually(made, lambda rs: bool(rs) and rs[0]["status"] == "created")
    assert (refund["amount"], refund["reason"], refund["payment_intent_id"]) == (
        2500,
        "oversold",
        row["payment_intent_id"],
    )
    options: Any = {"stripe_account": on} if on else {}
    stripe_refund = (
        await stack.stripe.v1.refunds.retrieve_async(refund["stripe_refund_id"], options=options)
    ).to_dict()
    assert stripe_refund["amount"] == 2500
    assert stripe_refund["payment_intent"] == row["payment_intent_id"]
    assert stripe_refund["metadata"]["refund_id"] == str(refund["id"])
    if charge_type == "destination":
        assert stripe_refund.get("transfer_reversal")  # pulled back from the seller
    answer = (await verify(stack, late)).json()
    assert answer["status"] == "oversold"
    assert [(r["amount"], r["status"]) for r in answer["refunds"]] == [(2500, "created")]


async def test_a_bank_debit_is_processing_then_paid_and_a_failed_one_is_failed(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=5)
    settles, fails = await guest_order(stack, item), await guest_order(stack, item, 2)
    for body in (settles, fails):
        await stack.control.pay_with_bank_debit(body["session_id"])
        await eventually_status(stack, body, "processing")
    assert await stock_of(item["id"]) == 5  # nothing is taken while the money is not there
    assert (await verify(stack, settles)).json()["status"] == "processing"
    await stack.control.settle_bank_debit(settles["session_id"])
    await stack.control.fail_bank_debit(fails["session_id"])
    await eventually_status(stack, settles, "paid")
    await eventually_status(stack, fails, "failed")
    assert await stock_of(item["id"]) == 4
    assert await side_effects(fails["order"]["id"]) == []


async def test_an_expired_session_expires_the_order_and_takes_nothing(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=2)
    body = await guest_order(stack, item)
    await stack.control.expire_session(body["session_id"])
    await eventually_status(stack, body, "expired")
    assert await stock_of(item["id"]) == 2
    assert (await verify(stack, body)).json()["status"] == "expired"


async def test_a_declined_card_then_a_good_one_is_paid_once(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=2)
    body = await guest_order(stack, item)
    declined = await stack.control.complete_checkout(body["session_id"], card="4000000000000002")
    assert declined["outcome"] == "declined"
    assert (await verify(stack, body)).json()["status"] == "pending"
    await stack.control.complete_checkout(body["session_id"])
    await eventually_status(stack, body, "paid")
    assert await stock_of(item["id"]) == 1
    assert await side_effects(body["order"]["id"]) == ["order.fulfil", "order.receipt", "order.sale"]


@pytest.mark.parametrize(("profile", "charge_type"), PROFILES)
async def test_a_100_percent_off_order_is_paid_with_nothing_collected(
    stack: Stack, profile: str, charge_type: str
) -> None:
    auth, _, account_id = await active_seller(stack, profile)
    item = await listing(stack, auth, stock=2)
    on = account_id if charge_type == "direct" else None
    options: Any = {"stripe_account": on} if on else {}
    coupon = await stack.stripe.v1.coupons.create_async(params={"percent_off": 100.0}, options=options)
    code = f"FREE{uuid.uuid4().hex[:8].upper()}"
    await stack.stripe.v1.promotion_codes.create_async(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": code}, options=options
    )
    async with stack.api_with(checkout_allow_promotion_codes=True) as api:
        body = await guest_order(stack, item, api=api)
    async with httpx.AsyncClient(timeout=30) as browser:
        applied = await browser.post(f"{body['checkout_url']}/promo", data={"code": code})
        assert applied.status_code in (302, 303), applied.text
        free = await browser.post(f"{body['checkout_url']}/free", data={"email": "buyer@example.com"})
        assert free.status_code == 303, free.text
    answer = await verify(stack, body)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["amount_paid"], answer.json()["amount_discount"]) == (
        "paid",
        0,
        2500,
    )
    # Nothing charged, so no fee taken: the order keeps the fee as decided, and says what was taken.
    assert (answer.json()["application_fee"], answer.json()["application_fee_charged"]) == (250, 0)
    assert answer.json()["seller_share"] == 0
    row = await order_row(body["order"]["id"])
    assert row["payment_intent_id"] is None
    assert await stock_of(item["id"]) == 1
    await stack.quiesce()
    assert await side_effects(body["order"]["id"]) == ["order.fulfil", "order.receipt", "order.sale"]


async def test_a_session_of_another_order_is_refused_and_changes_nothing(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=5)
    mine, other = await guest_order(stack, item), await guest_order(stack, item, 2)
    await stack.control.complete_checkout(other["session_id"])
    answer = await verify(stack, mine, session_id=other["session_id"])
    assert answer.status_code == 409, answer.text
    assert answer.json()["type"].endswith("session-mismatch")
    assert await status_of(stack, mine) == "pending"
    bogus = await verify(stack, mine, session_id="cs_test_" + "x" * 24)
    assert bogus.status_code == 409
    # Someone else's order: 404 exactly like a missing one, with or without a token.
    stranger = await stack.api.post(f"/orders/{mine['order']['id']}/verify", json={})
    assert stranger.status_code == 404
    wrong_token = await stack.api.post(
        f"/orders/{mine['order']['id']}/verify", json={}, headers={"X-Order-Token": other["access_token"]}
    )
    assert wrong_token.status_code == 404


async def test_verify_past_its_limit_answers_429_with_retry_after(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=5)
    body = await guest_order(stack, item)
    answers = [await verify(stack, body) for _ in range(45)]
    codes = [a.status_code for a in answers]
    assert codes[0] == 200
    limited = [a for a in answers if a.status_code == 429]
    assert limited, codes
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].headers["content-type"].startswith("application/problem+json")


async def test_any_api_process_shows_what_every_process_confirmed_and_refunded(stack: Stack) -> None:
    """Confirmations and refunds happen in workers (webhooks, the outbox) and in API processes (verify);
    the counts are the deployment's, so a `marketplace serve` process that did none of it shows them all."""
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=1)
    first = await guest_order(stack, item)
    late = await guest_order(stack, item, email="late@example.com")
    series = {
        "webhook paid": 'order_confirmations_total{outcome="paid",source="webhook"}',
        "verify paid": 'order_confirmations_total{outcome="paid",source="verify"}',
        "webhook oversold": 'order_confirmations_total{outcome="oversold",source="webhook"}',
        "refund queued": 'refunds_total{outcome="queued",reason="oversold"}',
        "refund created": 'refunds_total{outcome="created",reason="oversold"}',
    }
    async with api_process(process_env(stack, "WARNING"), free_port()) as other:

        async def counts() -> dict[str, float]:
            text = (await other.http.get("/metrics")).text
            return {name: metric_value(text, s) or 0.0 for name, s in series.items()}

        before = await counts()
        await stack.quiesce()
        await stack.control.set_delivery_faults(delay=2.0)  # the success page confirms the first order
        try:
            await stack.control.complete_checkout(first["session_id"])
            assert (await verify(stack, first)).json()["status"] == "paid"
        finally:
            await stack.control.set_delivery_faults(delay=0.0)
        await stack.quiesce()
        await stack.control.complete_checkout(late["session_id"])  # the webhook finds it oversold
        await eventually_status(stack, late, "oversold")
        wanted = {"webhook paid": 0, "verify paid": 1, "webhook oversold": 1, "refund queued": 1, "refund created": 1}
        after = await stack.eventually(counts, lambda now: all(now[k] - before[k] == n for k, n in wanted.items()))
    assert {k: after[k] - before[k] for k in wanted} == wanted
