"""The confirmation's checks, as pure functions: what makes a session this order's, what counts as paid,
and the refund each charge type needs. (The database side is proven in tests/e2e/test_confirm*.py.)"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from connect.checkout import SessionFacts
from connect.refunds import RefundRequest, refund_params
from marketplace.orders.confirm import amount_mismatches, is_paid, ownership_mismatches
from marketplace.orders.service import OrderRow
from marketplace.orders.states import OrderStatus

ORDER_ID = uuid.uuid4()
NOW = datetime(2026, 12, 2, tzinfo=UTC)


def order(**changes: Any) -> OrderRow:
    base = OrderRow(
        id=ORDER_ID,
        buyer=None,
        email="b@example.com",
        seller=uuid.uuid4(),
        account=uuid.uuid4(),
        stripe_account_id="acct_seller",
        charge_type="destination",
        currency="usd",
        subtotal=5000,
        application_fee=500,
        total=5000,
        status=OrderStatus.pending,
        status_reason=None,
        stripe_error_code=None,
        cart_key="k",
        checkout_session_id="cs_test_1",
        checkout_url="https://checkout.example/cs_test_1",
        checkout_expires_at=NOW,
        created_at=NOW,
        updated_at=NOW,
    )
    return replace(base, **changes)


def stripe_session(**changes: Any) -> dict[str, Any]:
    """A paid session as Stripe returns it (retrieved with expand[]=payment_intent)."""
    session: dict[str, Any] = {
        "id": "cs_test_1",
        "object": "checkout.session",
        "status": "complete",
        "payment_status": "paid",
        "currency": "usd",
        "amount_subtotal": 5000,
        "amount_total": 5000,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "metadata": {"order_id": str(ORDER_ID)},
        "client_reference_id": str(ORDER_ID),
        "payment_intent": {"id": "pi_1", "object": "payment_intent", "status": "succeeded", "last_payment_error": None},
    }
    session.update(changes)
    return session


def facts(read_as: str | None = None, **changes: Any) -> SessionFacts:
    return SessionFacts.from_stripe(stripe_session(**changes), read_as)


def test_a_paid_session_of_the_order_matches_and_is_paid() -> None:
    assert ownership_mismatches(order(), facts()) == []
    assert amount_mismatches(order(), facts()) == []
    assert is_paid(facts())


def test_every_ownership_field_is_checked_and_named() -> None:
    cases = {
        "session id": facts(id="cs_test_other"),
        "metadata.order_id": facts(metadata={"order_id": str(uuid.uuid4())}),
        "client_reference_id": facts(client_reference_id=None),
        "currency": facts(currency="eur"),
        "read as account": facts(read_as="acct_someone"),
    }
    for what, session in cases.items():
        assert [m[0] for m in ownership_mismatches(order(), session)] == [what], what


def test_a_direct_charge_session_must_have_been_read_as_the_orders_account() -> None:
    direct = order(charge_type="direct")
    assert ownership_mismatches(direct, facts(read_as="acct_seller")) == []
    assert [m[0] for m in ownership_mismatches(direct, facts(read_as=None))] == ["read as account"]
    assert [m[0] for m in ownership_mismatches(direct, facts(read_as="acct_other"))] == ["read as account"]


def test_a_mismatch_names_both_sides_values() -> None:
    [(what, ours, theirs)] = amount_mismatches(order(), facts(amount_subtotal=5000, amount_total=4000))
    assert (what, ours, theirs) == ("amount_total", 5000, 4000)


@given(discount=st.integers(0, 5000))
def test_the_total_must_be_the_orders_less_the_discount_stripe_recorded(discount: int) -> None:
    details = {"amount_discount": discount, "amount_shipping": 0, "amount_tax": 0}
    good = facts(amount_total=5000 - discount, total_details=details)
    assert amount_mismatches(order(), good) == []
    assert amount_mismatches(order(), facts(amount_total=5000 - discount + 1, total_details=details))
    assert amount_mismatches(order(), facts(amount_subtotal=4999, amount_total=4999 - discount, total_details=details))


def test_tax_shipping_or_a_discount_above_the_total_do_not_match() -> None:
    taxed = facts(amount_total=5100, total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 100})
    assert "tax and shipping" in [m[0] for m in amount_mismatches(order(), taxed)]
    over = facts(amount_total=0, total_details={"amount_discount": 6000})
    assert "amount_discount" in [m[0] for m in amount_mismatches(order(), over)]


def test_paid_means_paid_with_a_payment_intent_or_a_zero_total() -> None:
    assert not is_paid(facts(payment_status="unpaid"))
    assert not is_paid(facts(payment_intent=None))  # "paid" without a PaymentIntent on a positive total
    assert not is_paid(facts(status="open"))
    assert not is_paid(facts(status="expired", payment_status="unpaid"))
    free = {"amount_total": 0, "total_details": {"amount_discount": 5000}}
    assert is_paid(facts(payment_status="no_payment_required", payment_intent=None, **free))
    assert is_paid(facts(payment_status="paid", payment_intent=None, **free))  # older API versions
    # A canceled PaymentIntent from an earlier attempt: paid all the same, never dereferenced.
    canceled = {"id": "pi_old", "object": "payment_intent", "status": "canceled"}
    assert is_paid(facts(payment_status="no_payment_required", payment_intent=canceled, **free))


def test_session_facts_read_an_unexpanded_payment_intent_and_missing_details() -> None:
    bare = SessionFacts.from_stripe(
        {"id": "cs_1", "status": "open", "payment_intent": "pi_9", "amount_total": 10, "metadata": None}, None
    )
    assert (bare.payment_intent_id, bare.payment_intent_status, bare.amount_discount) == ("pi_9", None, 0)
    assert bare.metadata_order_id is None
    declined = facts(
        payment_status="unpaid",
        payment_intent={
            "id": "pi_1",
            "status": "requires_payment_method",
            "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds"},
        },
    )
    assert (declined.payment_intent_status, declined.payment_error_code) == (
        "requires_payment_method",
        "insufficient_funds",
    )


def test_the_refund_of_each_charge_type() -> None:
    common = {
        "refund_id": "r1",
        "order_id": "o1",
        "connected_account": "acct_s",
        "payment_intent": "pi_1",
        "amount": 2500,
        "reason": "oversold",
    }
    destination, on = refund_params(RefundRequest(charge_type="destination", **common))  # type: ignore[arg-type]
    assert on is None  # on the platform, where the PaymentIntent lives
    assert destination["reverse_transfer"] is True
    assert destination["refund_application_fee"] is True
    assert (destination["payment_intent"], destination["amount"]) == ("pi_1", 2500)
    direct, on = refund_params(RefundRequest(charge_type="direct", **common))  # type: ignore[arg-type]
    assert on == "acct_s"  # as the connected account
    assert "reverse_transfer" not in direct
    assert direct["refund_application_fee"] is True
    assert direct["metadata"] == {"order_id": "o1", "refund_id": "r1", "reason": "oversold"}


def test_the_fee_taken_and_the_sellers_share_follow_what_stripe_charged() -> None:
    assert (order().fee_charged, order().seller_share) == (None, None)  # not paid yet
    assert (order(amount_paid=5000).fee_charged, order(amount_paid=5000).seller_share) == (500, 4500)
    discounted = order(amount_paid=3000, amount_discount=2000)  # the fee was fixed in the session
    assert (discounted.fee_charged, discounted.seller_share) == (500, 2500)
    free = order(amount_paid=0, amount_discount=5000)  # no PaymentIntent, so no fee
    assert (free.fee_charged, free.seller_share) == (0, 0)


def test_a_session_for_an_order_with_none_recorded_is_not_its_own() -> None:
    """A direct charge's seller could make a session with the order's metadata on their own account."""
    facts = SessionFacts.from_stripe(stripe_session(), None)
    assert ownership_mismatches(order(), facts) == []
    assert ownership_mismatches(order(checkout_session_id=None), facts) == [("session id", None, "cs_test_1")]
