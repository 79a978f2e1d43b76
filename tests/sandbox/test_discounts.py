"""Discounts that change a session's total: the PaymentIntent follows, redemptions count, Stripe's minimum holds."""

from __future__ import annotations

import httpx
import pytest
import stripe

from sandbox.control import SandboxControl

from .helpers import onboarded_account, session_params


async def _promo(client: stripe.StripeClient, code: str, max_redemptions: int | None = None, **coupon: object) -> str:
    c = await client.v1.coupons.create_async(params=coupon)  # type: ignore[arg-type]
    params: dict[str, object] = {"promotion": {"type": "coupon", "coupon": c.id}, "code": code}
    if max_redemptions is not None:
        params["max_redemptions"] = max_redemptions
    return (await client.v1.promotion_codes.create_async(params=params)).id  # type: ignore[arg-type]


async def _decline(http: httpx.AsyncClient, session_id: str) -> None:
    resp = await http.post(f"/c/pay/{session_id}/card", data={"card": "4000000000000002"})
    assert resp.status_code == 402


async def test_a_code_applied_after_a_decline_changes_what_is_charged(
    client: stripe.StripeClient, control: SandboxControl, http: httpx.AsyncClient
) -> None:
    acct = await onboarded_account(client, control)
    await _promo(client, "HALF", percent_off=50)
    session = await client.v1.checkout.sessions.create_async(
        params=session_params(
            allow_promotion_codes=True,
            payment_intent_data={"application_fee_amount": 200, "transfer_data": {"destination": acct}},
        )
    )
    await _decline(http, session.id)
    assert (await http.post(f"/c/pay/{session.id}/promo", data={"code": "HALF"})).status_code == 303
    s = await client.v1.checkout.sessions.retrieve_async(session.id, params={"expand": ["payment_intent"]})
    assert s.amount_total == 1000
    assert s.payment_intent.amount == 1000  # type: ignore[union-attr]
    assert (await http.post(f"/c/pay/{session.id}/card", data={"card": "4242424242424242"})).status_code == 303
    pi = await client.v1.payment_intents.retrieve_async(s.payment_intent.id)  # type: ignore[union-attr]
    ch = await client.v1.charges.retrieve_async(str(pi.latest_charge))
    tr = await client.v1.transfers.retrieve_async(str(ch.transfer))
    assert (pi.amount, pi.amount_received, ch.amount, tr.amount) == (1000, 1000, 1000, 1000)
    assert (await client.v1.balance.retrieve_async()).available[0].amount == 200
    seller = await client.v1.balance.retrieve_async(options={"stripe_account": acct})
    assert seller.available[0].amount == 800


async def test_a_full_discount_after_a_decline_cancels_the_payment_intent(
    client: stripe.StripeClient, http: httpx.AsyncClient
) -> None:
    promo = await _promo(client, "FREE", percent_off=100)
    session = await client.v1.checkout.sessions.create_async(params=session_params(allow_promotion_codes=True))
    await _decline(http, session.id)
    pi_id = str((await client.v1.checkout.sessions.retrieve_async(session.id)).payment_intent)
    assert (await http.post(f"/c/pay/{session.id}/promo", data={"code": "FREE"})).status_code == 303
    pi = await client.v1.payment_intents.retrieve_async(pi_id)
    assert (pi.status, pi.cancellation_reason) == ("canceled", "automatic")
    assert "No payment is required" in (await http.get(f"/c/pay/{session.id}")).text
    assert (await http.post(f"/c/pay/{session.id}/free", data={"email": "f@example.com"})).status_code == 303
    s = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert (s.status, s.payment_status, s.amount_total, s.payment_intent) == (
        "complete",
        "no_payment_required",
        0,
        pi_id,
    )
    assert [c.status for c in (await client.v1.charges.list_async()).data] == ["failed"]
    assert all(b.amount == 0 for b in (await client.v1.balance.retrieve_async()).available)
    types = [e.type for e in (await client.v1.events.list_async(params={"limit": 100})).data]
    assert types.index("checkout.session.completed") < types.index("payment_intent.canceled")
    assert (await client.v1.promotion_codes.retrieve_async(promo)).times_redeemed == 1


async def test_a_code_replacing_a_full_discount_is_paid_through_a_new_payment_intent(
    client: stripe.StripeClient, http: httpx.AsyncClient
) -> None:
    """Decline (PaymentIntent for 2000), FREE (it is canceled), then 10 % off: the buyer pays 1800
    through a new PaymentIntent; the canceled one is never revived nor charged its old amount."""
    await _promo(client, "FREE2", percent_off=100)
    await _promo(client, "TENOFF", percent_off=10)
    session = await client.v1.checkout.sessions.create_async(params=session_params(allow_promotion_codes=True))
    await _decline(http, session.id)
    first = str((await client.v1.checkout.sessions.retrieve_async(session.id)).payment_intent)
    assert (await http.post(f"/c/pay/{session.id}/promo", data={"code": "FREE2"})).status_code == 303
    assert (await http.post(f"/c/pay/{session.id}/promo", data={"code": "TENOFF"})).status_code == 303
    assert (await http.post(f"/c/pay/{session.id}/card", data={"card": "4242424242424242"})).status_code == 303
    s = await client.v1.checkout.sessions.retrieve_async(session.id, params={"expand": ["payment_intent"]})
    assert (s.status, s.payment_status, s.amount_total) == ("complete", "paid", 1800)
    pi = s.payment_intent
    assert pi is not None
    assert not isinstance(pi, str)
    assert pi.id != first
    ch = await client.v1.charges.retrieve_async(str(pi.latest_charge))
    assert (pi.status, pi.amount, pi.amount_received, ch.amount) == ("succeeded", 1800, 1800, 1800)
    assert (await client.v1.payment_intents.retrieve_async(first)).status == "canceled"


async def test_a_code_cannot_bring_the_total_below_the_minimum_charge(
    client: stripe.StripeClient, http: httpx.AsyncClient
) -> None:
    await _promo(client, "ALMOST", amount_off=1960, currency="usd")
    session = await client.v1.checkout.sessions.create_async(params=session_params(allow_promotion_codes=True))
    resp = await http.post(f"/c/pay/{session.id}/promo", data={"code": "ALMOST"})
    assert resp.status_code == 400
    assert "at least $0.50" in resp.text
    s = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert (s.amount_total, s.discounts) == (2000, [])


async def test_a_minimum_order_counts_only_in_its_own_currency(
    client: stripe.StripeClient, http: httpx.AsyncClient
) -> None:
    coupon = await client.v1.coupons.create_async(params={"percent_off": 10})
    restrictions = {"minimum_amount": 1500, "minimum_amount_currency": "usd"}
    await client.v1.promotion_codes.create_async(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "MIN15", "restrictions": restrictions}
    )
    usd = await client.v1.checkout.sessions.create_async(params=session_params(allow_promotion_codes=True))
    assert (await http.post(f"/c/pay/{usd.id}/promo", data={"code": "MIN15"})).status_code == 303
    assert (await client.v1.checkout.sessions.retrieve_async(usd.id)).amount_total == 1800
    eur_params = session_params(allow_promotion_codes=True)
    eur_params["line_items"][0]["price_data"]["currency"] = "eur"
    eur = await client.v1.checkout.sessions.create_async(params=eur_params)
    refused = await http.post(f"/c/pay/{eur.id}/promo", data={"code": "MIN15"})
    assert refused.status_code == 400  # 2000 cents of euros are not 15 dollars
    assert (await client.v1.checkout.sessions.retrieve_async(eur.id)).amount_total == 2000
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await client.v1.promotion_codes.create_async(
            params={"promotion": {"type": "coupon", "coupon": coupon.id}, "restrictions": {"minimum_amount": 1}}
        )
    assert missing.value.param == "restrictions[minimum_amount_currency]"
    with pytest.raises(stripe.InvalidRequestError) as unemulated:
        await client.v1.promotion_codes.create_async(
            params={
                "promotion": {"type": "coupon", "coupon": coupon.id},
                "restrictions": {"first_time_transaction": True},
            }
        )
    assert unemulated.value.param == "restrictions[first_time_transaction]"


async def test_bank_debits_redeem_codes(
    client: stripe.StripeClient, control: SandboxControl, http: httpx.AsyncClient
) -> None:
    promo = await _promo(client, "ONCE", max_redemptions=1, percent_off=10)
    session = await client.v1.checkout.sessions.create_async(
        params=session_params(discounts=[{"promotion_code": promo}])
    )
    assert (await http.post(f"/c/pay/{session.id}/bank", data={"email": "b@example.com"})).status_code == 303
    assert (await client.v1.promotion_codes.retrieve_async(promo)).times_redeemed == 1
    await control.settle_bank_debit(session.id)
    assert (await client.v1.promotion_codes.retrieve_async(promo)).times_redeemed == 1
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.create_async(params=session_params(discounts=[{"promotion_code": promo}]))
    assert info.value.param == "discounts[0][promotion_code]"
