"""Refunds with reversals and fee refunds, transfers, application fees, disputes, payouts, balance."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from sandbox.control import SandboxControl

from .helpers import destination_session, direct_session, onboarded_account


async def _paid_destination(
    client: stripe.StripeClient, control: SandboxControl, amount: int = 2000, fee: int = 200
) -> tuple[str, Any]:
    acct = await onboarded_account(client, control)
    session = await destination_session(client, acct, amount=amount, fee=fee)
    await control.complete_checkout(session.id)
    s = await client.v1.checkout.sessions.retrieve_async(
        session.id, params={"expand": ["payment_intent.latest_charge"]}
    )
    return acct, s.payment_intent.latest_charge  # type: ignore[union-attr]


async def test_partial_refund_reverses_transfer_and_fee_proportionally(
    client: stripe.StripeClient, control: SandboxControl
) -> None:
    acct, ch = await _paid_destination(client, control)
    refund = await client.v1.refunds.create_async(
        params={
            "charge": ch.id,
            "amount": 500,
            "reverse_transfer": True,
            "refund_application_fee": True,
            "metadata": {"r": "1"},
        },
        options={"idempotency_key": "refund:1"},
    )
    assert (refund.amount, refund.status, refund.charge) == (500, "succeeded", ch.id)
    assert refund.transfer_reversal is not None
    reversal = await client.v1.transfers.reversals.retrieve_async(ch.transfer, str(refund.transfer_reversal))
    assert (reversal.amount, reversal.source_refund) == (500, refund.id)
    tr = await client.v1.transfers.retrieve_async(ch.transfer)
    assert (tr.amount_reversed, tr.reversed) == (500, False)
    fee = await client.v1.application_fees.retrieve_async(ch.application_fee)
    assert (fee.amount_refunded, fee.refunded) == (50, False)
    fee_refunds = await client.v1.application_fees.refunds.list_async(fee.id)
    assert [r.amount for r in fee_refunds.data] == [50]
    charge = await client.v1.charges.retrieve_async(ch.id)
    assert (charge.amount_refunded, charge.refunded) == (500, False)
    # platform: +200 fee, -500 refund, +500 reversal, -50 fee refund
    assert (await client.v1.balance.retrieve_async()).available[0].amount == 150
    assert (await client.v1.balance.retrieve_async(options={"stripe_account": acct})).available[
        0
    ].amount == 1800 - 500 + 50
    types = [e.type for e in (await client.v1.events.list_async(params={"limit": 100})).data]
    for t in ("refund.created", "charge.refunded", "transfer.reversed", "application_fee.refunded"):
        assert t in types


async def test_full_refund_then_over_refund_errors(client: stripe.StripeClient, control: SandboxControl) -> None:
    _acct, ch = await _paid_destination(client, control)
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.refunds.create_async(params={"charge": ch.id, "amount": 5000})
    assert (info.value.code, info.value.param) == ("amount_too_large", "amount")
    refund = await client.v1.refunds.create_async(
        params={"payment_intent": ch.payment_intent, "reverse_transfer": True, "refund_application_fee": True}
    )
    assert refund.amount == 2000
    assert (await client.v1.charges.retrieve_async(ch.id)).refunded is True
    assert (await client.v1.transfers.retrieve_async(ch.transfer)).reversed is True
    assert (await client.v1.application_fees.retrieve_async(ch.application_fee)).refunded is True
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.refunds.create_async(params={"charge": ch.id})
    assert info.value.code == "charge_already_refunded"
    listed = await client.v1.refunds.list_async(params={"charge": ch.id})
    assert [r.id for r in listed.data] == [refund.id]


async def test_direct_charge_refund_on_connected_account(client: stripe.StripeClient, control: SandboxControl) -> None:
    acct = await onboarded_account(client, control, dashboard="full")
    session = await direct_session(client, acct, amount=3000, fee=300)
    await control.complete_checkout(session.id, stripe_account=acct)
    s = await client.v1.checkout.sessions.retrieve_async(session.id, options={"stripe_account": acct})
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.refunds.create_async(params={"payment_intent": str(s.payment_intent)})
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.refunds.create_async(
            params={"payment_intent": str(s.payment_intent), "reverse_transfer": True}, options={"stripe_account": acct}
        )
    assert info.value.param == "reverse_transfer"
    refund = await client.v1.refunds.create_async(
        params={"payment_intent": str(s.payment_intent), "refund_application_fee": True},
        options={"stripe_account": acct},
    )
    assert refund.amount == 3000
    fee = (await client.v1.application_fees.list_async()).data[0]
    assert fee.amount_refunded == 300
    assert (await client.v1.refunds.retrieve_async(refund.id, options={"stripe_account": acct})).id == refund.id
    events = await client.v1.events.list_async(params={"type": "charge.refunded"}, options={"stripe_account": acct})
    assert events.data[0].data.object["amount_refunded"] == 3000


async def test_transfers_and_reversals_api(client: stripe.StripeClient, control: SandboxControl) -> None:
    acct, ch = await _paid_destination(client, control, amount=5000, fee=1000)
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.transfers.create_async(params={"amount": 999999, "currency": "usd", "destination": acct})
    assert info.value.code == "balance_insufficient"
    tr = await client.v1.transfers.create_async(
        params={
            "amount": 700,
            "currency": "usd",
            "destination": acct,
            "transfer_group": "order_9",
            "metadata": {"a": "b"},
        }
    )
    assert (tr.amount, tr.destination, tr.transfer_group) == (700, acct, "order_9")
    listed = await client.v1.transfers.list_async(params={"transfer_group": "order_9"})
    assert [t.id for t in listed.data] == [tr.id]
    rev = await client.v1.transfers.reversals.create_async(tr.id, params={"amount": 200})
    assert rev.amount == 200
    rev2 = await client.v1.transfers.reversals.create_async(tr.id)
    assert rev2.amount == 500
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.transfers.reversals.create_async(tr.id, params={"amount": 1})
    revs = await client.v1.transfers.reversals.list_async(tr.id)
    assert [r.id for r in revs.data] == [rev2.id, rev.id]
    updated = await client.v1.transfers.update_async(tr.id, params={"metadata": {"a": "c"}})
    assert updated.metadata is not None
    assert updated.metadata.to_dict() == {"a": "c"}
    sourced = await client.v1.transfers.create_async(
        params={"amount": 100, "currency": "usd", "destination": acct, "source_transaction": ch.id}
    )
    assert sourced.source_transaction == ch.id


async def test_application_fee_refund_api(client: stripe.StripeClient, control: SandboxControl) -> None:
    _acct, ch = await _paid_destination(client, control)
    fee = await client.v1.application_fees.retrieve_async(ch.application_fee)
    fr = await client.v1.application_fees.refunds.create_async(fee.id, params={"amount": 120})
    assert (fr.amount, fr.fee) == (120, fee.id)
    again = await client.v1.application_fees.refunds.retrieve_async(fee.id, fr.id)
    assert again.id == fr.id
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.application_fees.refunds.create_async(fee.id, params={"amount": 100})
    fees = await client.v1.application_fees.list_async(params={"charge": ch.id})
    assert [f.amount_refunded for f in fees.data] == [120]


async def test_dispute_lifecycle(client: stripe.StripeClient, control: SandboxControl) -> None:
    _acct, ch = await _paid_destination(client, control)

    async def platform_available() -> int:
        return int((await client.v1.balance.retrieve_async()).available[0].amount)

    assert await platform_available() == 200
    dp = await control.open_dispute(ch.id, reason="product_not_received")
    assert (dp["status"], dp["amount"], dp["reason"]) == ("needs_response", 2000, "product_not_received")
    assert await platform_available() == 200 - 2000  # the platform bears a destination charge's dispute
    assert (await client.v1.charges.retrieve_async(ch.id)).disputed is True
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.refunds.create_async(params={"charge": ch.id})
    assert info.value.code == "charge_disputed"
    updated = await client.v1.disputes.update_async(
        dp["id"], params={"evidence": {"customer_name": "Ann"}, "submit": False}
    )
    assert updated.evidence.customer_name == "Ann"
    assert updated.status == "needs_response"
    await control.update_dispute(dp["id"], status="under_review")
    won = await control.close_dispute(dp["id"], status="won")
    assert won["status"] == "won"
    assert await platform_available() == 200  # a won dispute reinstates the funds
    assert [t["amount"] for t in won["balance_transactions"]] == [-2000, 2000]
    listed = await client.v1.disputes.list_async(params={"charge": ch.id})
    assert listed.data[0].status == "won"
    types = [e.type for e in (await client.v1.events.list_async(params={"type": "charge.dispute.*"})).data]
    assert types[0] == "charge.dispute.closed"
    assert {
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.updated",
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
    } <= set(types)


async def test_dispute_close_via_api_loses(client: stripe.StripeClient, control: SandboxControl) -> None:
    _acct, ch = await _paid_destination(client, control)
    dp = await control.open_dispute(ch.id)
    lost = await client.v1.disputes.close_async(dp["id"])
    assert lost.status == "lost"
    assert (await client.v1.balance.retrieve_async()).available[0].amount == 200 - 2000


async def test_payouts(client: stripe.StripeClient, control: SandboxControl) -> None:
    acct, _ch = await _paid_destination(client, control)
    po = await control.create_payout(acct, 1000)
    assert po["status"] == "pending"
    paid = await control.pay_payout(po["id"])
    assert paid["status"] == "paid"
    po2 = await client.v1.payouts.create_async(
        params={"amount": 300, "currency": "usd"}, options={"stripe_account": acct}
    )
    failed = await control.fail_payout(po2.id)
    assert (failed["status"], failed["failure_code"]) == ("failed", "account_closed")
    listed = await client.v1.payouts.list_async(options={"stripe_account": acct})
    assert [p.status for p in listed.data] == ["failed", "paid"]
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.payouts.create_async(
            params={"amount": 10**7, "currency": "usd"}, options={"stripe_account": acct}
        )
    assert info.value.code == "balance_insufficient"
    types = [
        e.type
        for e in (
            await client.v1.events.list_async(
                params={"type": "payout.*", "limit": 20}, options={"stripe_account": acct}
            )
        ).data
    ]
    assert sorted(set(types)) == ["payout.created", "payout.failed", "payout.paid", "payout.updated"]
    assert (await client.v1.balance.retrieve_async(options={"stripe_account": acct})).available[0].amount == 1800 - 1000


async def test_refund_failure_control(client: stripe.StripeClient, control: SandboxControl) -> None:
    _acct, ch = await _paid_destination(client, control)
    refund = await client.v1.refunds.create_async(params={"charge": ch.id, "amount": 100})
    failed = await control.fail_refund(refund.id)
    assert failed["status"] == "failed"
    assert (await client.v1.charges.retrieve_async(ch.id)).amount_refunded == 0
    types = {e.type for e in (await client.v1.events.list_async(params={"limit": 50})).data}
    assert {"refund.updated", "charge.refund.updated", "refund.failed"} <= types
