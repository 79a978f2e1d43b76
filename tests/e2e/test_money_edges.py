"""Edges of the money path found in review: a refused re-send of a session request never fails an order
whose session is recorded, and a refund made on an attempt whose answer was lost (its key's 24 hours
gone) is found and recorded, not reported as owed."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import stripe

from connect.refunds import RefundRequest, refund_params
from marketplace.lib.db import connection
from marketplace.orders import states
from marketplace.orders.checkout import _refusal
from marketplace.orders.service import order_by_id
from marketplace.orders.states import OrderStatus
from marketplace.refunds.service import issue_refund
from tests.e2e.conftest import Stack
from tests.e2e.test_checkout import active_seller, listing
from tests.e2e.test_confirm import PROFILES, eventually_status, guest_order, order_row
from tests.support.metrics import metric_value

pytestmark = pytest.mark.integration


async def test_a_refused_resend_keeps_the_order_whose_session_is_recorded(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=None)
    body = await guest_order(stack, item)
    order = await order_by_id(uuid.UUID(body["order"]["id"]))
    assert order is not None
    assert order.checkout_session_id is not None
    # What a second, concurrent checkout of this order meets when its request differs from the first
    # (Stripe: "Keys for idempotent requests can only be used with the same parameters").
    refused = stripe.IdempotencyError("Keys for idempotent requests can only be used with the same parameters")
    outcome = await _refusal(order, refused)
    assert (getattr(outcome, "id", None), getattr(outcome, "url", None)) == (
        order.checkout_session_id,
        order.checkout_url,
    )
    row = await order_row(body["order"]["id"])
    assert (row["status"], row["stripe_error_code"]) == ("pending", None)


@pytest.mark.parametrize(("profile", "charge_type"), PROFILES)
async def test_a_refund_made_on_a_lost_attempt_is_found_not_reported_owed(
    stack: Stack, profile: str, charge_type: str
) -> None:
    auth, _, account_id = await active_seller(stack, profile)
    item = await listing(stack, auth, stock=None)
    body = await guest_order(stack, item)
    on = account_id if charge_type == "direct" else None
    await stack.control.complete_checkout(body["session_id"], stripe_account=on)
    await eventually_status(stack, body, "paid")
    order = await order_row(body["order"]["id"])
    refund_id = uuid.uuid4()
    # The row our code writes first (no outbox message here: this test makes the call itself)…
    async with connection() as conn:
        await conn.execute(
            """
            INSERT INTO refunds (id, "order", reason, amount, currency, charge_type, stripe_account_id,
                                 payment_intent_id, status, created_at, updated_at)
            VALUES ($1, $2, 'oversold', $3, $4, $5, $6, $7, 'requested', now(), now())
            """,
            refund_id,
            order["id"],
            order["amount_paid"],
            order["currency"],
            order["charge_type"],
            order["stripe_account_id"],
            order["payment_intent_id"],
        )
    # …and its first attempt, which reached Stripe; its answer was lost and its key has since expired
    # (a key Stripe no longer knows is any other key).
    params, stripe_account = refund_params(
        RefundRequest(
            refund_id=str(refund_id),
            order_id=str(order["id"]),
            charge_type=order["charge_type"],
            connected_account=order["stripe_account_id"],
            payment_intent=order["payment_intent_id"],
            amount=order["amount_paid"],
            reason="oversold",
        )
    )
    options: Any = {"idempotency_key": f"expired-{uuid.uuid4()}"}
    if stripe_account:
        options["stripe_account"] = stripe_account
    first = await stack.stripe.v1.refunds.create_async(params=params, options=options)
    recorded = await issue_refund(stack.stripe, refund_id)
    assert (recorded.status.value, recorded.stripe_refund_id, recorded.failure_code) == ("created", first.id, None)


async def test_a_paid_session_of_a_closed_order_is_reported_not_kept_silently(stack: Stack) -> None:
    """No guard should let money be taken for a failed order; if it ever happens, it is counted and
    logged as an error for a person to refund, and the order is not fulfilled."""
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=3)
    body = await guest_order(stack, item)
    series = 'order_confirmations_total{outcome="paid_but_closed",source="webhook"}'

    async def closed_count() -> float:
        return metric_value((await stack.api.get("/metrics")).text, series) or 0.0

    before = await closed_count()
    # As if a refusal had failed it before the fix (checkout.py `_refusal`): the session stays payable.
    assert await states.move(uuid.UUID(body["order"]["id"]), OrderStatus.failed, reason="test") is not None
    await stack.control.complete_checkout(body["session_id"])
    await stack.eventually(closed_count, lambda n: n == before + 1)
    row = await order_row(body["order"]["id"])
    assert (row["status"], row["amount_paid"]) == ("failed", None)
    async with connection() as conn:
        stock = await conn.fetchval("SELECT stock FROM listings WHERE id = $1", uuid.UUID(item["id"]))
    assert stock == 3


@pytest.mark.parametrize(("profile", "charge_type"), PROFILES)
async def test_a_refund_that_fails_after_stripe_took_it_is_followed_and_reported(
    stack: Stack, profile: str, charge_type: str
) -> None:
    """An oversold order's refund is made, then fails at Stripe (a closed card): the refund events, on the
    endpoint where it lives, are re-read and recorded, and the failure is counted for a person to act."""
    auth, _, account_id = await active_seller(stack, profile)
    item = await listing(stack, auth, stock=1)
    first = await guest_order(stack, item)
    late = await guest_order(stack, item, email="late-refund@example.com")
    on = account_id if charge_type == "direct" else None
    await stack.control.complete_checkout(first["session_id"], stripe_account=on)
    await eventually_status(stack, first, "paid")
    await stack.control.complete_checkout(late["session_id"], stripe_account=on)
    await eventually_status(stack, late, "oversold")

    async def refund_row() -> dict[str, Any] | None:
        async with connection() as conn:
            row = await conn.fetchrow('SELECT * FROM refunds WHERE "order" = $1', uuid.UUID(late["order"]["id"]))
        return dict(row) if row is not None else None

    made = await stack.eventually(refund_row, lambda r: r is not None and r["stripe_status"] == "succeeded")
    assert made is not None
    series = 'refunds_total{outcome="failed",reason="oversold"}'

    async def failed_count() -> float:
        return metric_value((await stack.api.get("/metrics")).text, series) or 0.0

    before = await failed_count()
    await stack.control.fail_refund(made["stripe_refund_id"])
    failed = await stack.eventually(refund_row, lambda r: r is not None and r["stripe_status"] == "failed")
    assert failed is not None
    assert (failed["status"], failed["failure_code"]) == ("created", "expired_or_canceled_card")
    await stack.eventually(failed_count, lambda n: n >= before + 1)
    await stack.quiesce()
    assert await failed_count() == before + 1  # four events for the one change: counted once
    async with connection() as conn:
        events = await conn.fetch(
            "SELECT type, endpoint, status FROM stripe_events WHERE payload->'data'->'object'->>'id' = $1",
            made["stripe_refund_id"],
        )
    endpoint = "connect" if charge_type == "direct" else "platform"
    assert {(e["type"], e["endpoint"], e["status"]) for e in events} == {
        (t, endpoint, "processed")
        for t in ("refund.created", "refund.updated", "charge.refund.updated", "refund.failed")
    }
    answer = await stack.api.get(f"/orders/{late['order']['id']}", headers={"X-Order-Token": late["access_token"]})
    assert [(r["status"], r["stripe_status"]) for r in answer.json()["refunds"]] == [("created", "failed")]


async def test_a_refund_this_platform_did_not_make_is_not_ours(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=None)
    body = await guest_order(stack, item)
    await stack.control.complete_checkout(body["session_id"])
    await eventually_status(stack, body, "paid")
    order = await order_row(body["order"]["id"])
    # A refund made in the Dashboard, say: no refund_id of ours in its metadata.
    theirs = await stack.stripe.v1.refunds.create_async(params={"payment_intent": order["payment_intent_id"]})
    await stack.quiesce()
    async with connection() as conn:
        events = await conn.fetch(
            "SELECT status, last_error FROM stripe_events WHERE payload->'data'->'object'->>'id' = $1", theirs.id
        )
        ours = await conn.fetchval('SELECT count(*) FROM refunds WHERE "order" = $1', order["id"])
    assert events
    assert {e["status"] for e in events} == {"not_ours"}
    assert ours == 0
