"""Checkout Sessions: destination and direct charges, every hosted-page path, coupons, zero-total, expiry."""

from __future__ import annotations

import time

import httpx
import pytest
import stripe

from sandbox.control import SandboxControl, SandboxControlError

from .helpers import destination_session, direct_session, onboarded_account, session_params


async def _pay(http: httpx.AsyncClient, session_id: str, card: str) -> httpx.Response:
    return await http.post(f"/c/pay/{session_id}/card", data={"card": card, "email": "buyer@example.com"})


async def test_destination_charge_moves_money_like_stripe(
    client: stripe.StripeClient, control: SandboxControl, http: httpx.AsyncClient
) -> None:
    acct = await onboarded_account(client, control)
    session = await destination_session(client, acct, amount=2500, fee=300)
    assert session.payment_intent is None
    assert session.url is not None
    page = await http.get(session.url)
    assert page.status_code == 200
    assert "Poster" in page.text
    assert "25.00 USD" in page.text
    resp = await _pay(http, session.id, "4242 4242 4242 4242")
    assert resp.status_code == 303
    assert resp.headers["location"] == f"https://shop.example/ok?session_id={session.id}"

    s = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert (s.status, s.payment_status) == ("complete", "paid")
    assert s.url is None  # only present while the session is open
    assert s.customer_details is not None
    assert s.customer_details.email == "buyer@example.com"
    pi = await client.v1.payment_intents.retrieve_async(str(s.payment_intent))
    assert pi.status == "succeeded"
    assert pi.amount_received == 2500
    assert pi.application_fee_amount == 300
    assert pi.transfer_data is not None
    assert pi.transfer_data.destination == acct
    assert pi.metadata.to_dict() == {"order_id": "ord_1"}
    assert pi.transfer_group == f"group_{pi.id}"
    ch = await client.v1.charges.retrieve_async(str(pi.latest_charge))
    assert (ch.paid, ch.captured, ch.status) == (True, True, "succeeded")
    tr = await client.v1.transfers.retrieve_async(str(ch.transfer))
    assert (tr.amount, tr.destination, tr.source_transaction) == (2500, acct, ch.id)
    fee = await client.v1.application_fees.retrieve_async(str(ch.application_fee))
    assert (fee.amount, fee.account, fee.originating_transaction) == (300, acct, ch.id)
    # The destination payment (py_) lives on the connected account.
    py = await client.v1.charges.retrieve_async(str(tr.destination_payment), options={"stripe_account": acct})
    assert py.source_transfer == tr.id
    assert py.amount == 2500
    # Nothing of the charge exists on the connected account except the destination payment.
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.payment_intents.retrieve_async(pi.id, options={"stripe_account": acct})
    platform_balance = await client.v1.balance.retrieve_async()
    seller_balance = await client.v1.balance.retrieve_async(options={"stripe_account": acct})
    assert platform_balance.available[0].amount == 300
    assert seller_balance.available[0].amount == 2200


async def test_direct_charge_lives_on_the_connected_account(
    client: stripe.StripeClient, control: SandboxControl, http: httpx.AsyncClient
) -> None:
    acct = await onboarded_account(client, control, dashboard="full")
    session = await direct_session(client, acct, amount=4000, fee=400)
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.retrieve_async(session.id)
    assert info.value.http_status == 404
    assert info.value.code == "resource_missing"
    assert str(info.value.user_message) == f"No such checkout.session: '{session.id}'"
    assert (await _pay(http, session.id, "4242424242424242")).status_code == 303
    s = await client.v1.checkout.sessions.retrieve_async(session.id, options={"stripe_account": acct})
    pi = await client.v1.payment_intents.retrieve_async(str(s.payment_intent), options={"stripe_account": acct})
    ch = await client.v1.charges.retrieve_async(str(pi.latest_charge), options={"stripe_account": acct})
    assert ch.transfer is None
    fees = await client.v1.application_fees.list_async()
    assert [(f.amount, f.account, f.charge, f.originating_transaction) for f in fees.data] == [(400, acct, ch.id, None)]
    assert ch.application_fee == fees.data[0].id
    assert (await client.v1.transfers.list_async()).data == []
    seller = await client.v1.balance.retrieve_async(options={"stripe_account": acct})
    assert seller.available[0].amount == 3600
    assert (await client.v1.balance.retrieve_async()).available[0].amount == 400


async def test_declined_card_keeps_session_open_and_retry_succeeds(
    client: stripe.StripeClient, control: SandboxControl, http: httpx.AsyncClient
) -> None:
    acct = await onboarded_account(client, control)
    session = await destination_session(client, acct)
    resp = await _pay(http, session.id, "4000 0000 0000 0002")
    assert resp.status_code == 402
    assert "Your card was declined." in resp.text
    s = await client.v1.checkout.sessions.retrieve_async(session.id, params={"expand": ["payment_intent"]})
    assert s.status == "open"
    pi = s.payment_intent
    assert isinstance(pi, stripe.PaymentIntent)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error is not None
    assert (pi.last_payment_error.code, pi.last_payment_error.decline_code) == ("card_declined", "generic_decline")
    failed = await client.v1.charges.retrieve_async(str(pi.latest_charge))
    assert failed.status == "failed"
    assert (failed.failure_code, failed.outcome.reason if failed.outcome else None) == (
        "card_declined",
        "generic_decline",
    )
    resp = await _pay(http, session.id, "4000000000009995")
    assert "insufficient funds" in resp.text
    pi2 = await client.v1.payment_intents.retrieve_async(pi.id)
    assert pi2.last_payment_error is not None
    assert (pi2.last_payment_error.code, pi2.last_payment_error.decline_code) == ("card_declined", "insufficient_funds")
    # The Charge agrees with the error: `failure_code` is the error code, the decline code is `outcome.reason`.
    poor = await client.v1.charges.retrieve_async(str(pi2.latest_charge))
    assert poor.outcome is not None
    assert (poor.failure_code, poor.outcome.reason) == ("card_declined", "insufficient_funds")
    assert (await _pay(http, session.id, "4242424242424242")).status_code == 303
    pi3 = await client.v1.payment_intents.retrieve_async(pi.id)
    assert pi3.status == "succeeded"
    assert len((await client.v1.charges.list_async(params={"payment_intent": pi.id})).data) == 3


async def test_three_d_secure_approve_and_fail(
    client: stripe.StripeClient, control: SandboxControl, http: httpx.AsyncClient
) -> None:
    acct = await onboarded_account(client, control)
    session = await destination_session(client, acct)
    resp = await _pay(http, session.id, "4000 0025 0000 3155")
    assert resp.status_code == 303
    assert resp.headers["location"] == f"/c/pay/{session.id}/3ds"
    page = await http.get(resp.headers["location"])
    assert "3-D Secure" in page.text
    s = await client.v1.checkout.sessions.retrieve_async(session.id, params={"expand": ["payment_intent"]})
    assert s.payment_intent.status == "requires_action"  # type: ignore[union-attr]
    failed = await http.post(f"/c/pay/{session.id}/3ds", data={"action": "fail"})
    assert failed.status_code == 402
    s = await client.v1.checkout.sessions.retrieve_async(session.id, params={"expand": ["payment_intent"]})
    assert s.status == "open"
    assert s.payment_intent.last_payment_error.code == "payment_intent_authentication_failure"  # type: ignore[union-attr]
    await _pay(http, session.id, "4000002500003155")
    ok = await http.post(f"/c/pay/{session.id}/3ds", data={"action": "approve"})
    assert ok.status_code == 303
    assert ok.headers["location"].endswith(session.id)
    s = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert s.payment_status == "paid"


async def test_bank_debit_completes_unpaid_then_settles(
    client: stripe.StripeClient, control: SandboxControl, http: httpx.AsyncClient
) -> None:
    acct = await onboarded_account(client, control)
    session = await destination_session(client, acct)
    resp = await http.post(f"/c/pay/{session.id}/bank", data={"email": "b@example.com"})
    assert resp.status_code == 303
    s = await client.v1.checkout.sessions.retrieve_async(session.id, params={"expand": ["payment_intent"]})
    assert (s.status, s.payment_status) == ("complete", "unpaid")
    assert s.payment_intent.status == "processing"  # type: ignore[union-attr]
    assert (await client.v1.transfers.list_async()).data == []
    await control.settle_bank_debit(session.id)
    s = await client.v1.checkout.sessions.retrieve_async(session.id, params={"expand": ["payment_intent"]})
    assert s.payment_status == "paid"
    assert s.payment_intent.status == "succeeded"  # type: ignore[union-attr]
    assert len((await client.v1.transfers.list_async()).data) == 1
    types = [e.type for e in (await client.v1.events.list_async(params={"limit": 100})).data]
    assert "checkout.session.async_payment_succeeded" in types
    assert types.index("checkout.session.async_payment_succeeded") < types.index("checkout.session.completed")


async def test_bank_debit_failure(client: stripe.StripeClient, control: SandboxControl) -> None:
    acct = await onboarded_account(client, control)
    session = await destination_session(client, acct)
    await control.pay_with_bank_debit(session.id)
    await control.fail_bank_debit(session.id)
    s = await client.v1.checkout.sessions.retrieve_async(
        session.id, params={"expand": ["payment_intent.latest_charge"]}
    )
    assert (s.status, s.payment_status) == ("complete", "unpaid")
    assert s.payment_intent.status == "requires_payment_method"  # type: ignore[union-attr]
    assert s.payment_intent.latest_charge.status == "failed"  # type: ignore[union-attr]
    types = {e.type for e in (await client.v1.events.list_async(params={"limit": 100})).data}
    assert {"checkout.session.async_payment_failed", "charge.failed", "payment_intent.payment_failed"} <= types


async def test_cancel_goes_to_cancel_url(client: stripe.StripeClient, http: httpx.AsyncClient) -> None:
    session = await client.v1.checkout.sessions.create_async(params=session_params())
    resp = await http.post(f"/c/pay/{session.id}/cancel")
    assert resp.status_code == 303
    assert resp.headers["location"] == "https://shop.example/cancel"
    s = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert s.status == "open"


async def test_zero_total_session_has_no_payment_intent(client: stripe.StripeClient, http: httpx.AsyncClient) -> None:
    coupon = await client.v1.coupons.create_async(params={"percent_off": 100, "duration": "once"})
    session = await client.v1.checkout.sessions.create_async(params=session_params(discounts=[{"coupon": coupon.id}]))
    assert (session.amount_subtotal, session.amount_total) == (2000, 0)
    assert session.total_details is not None
    assert session.total_details.amount_discount == 2000
    assert session.discounts is not None
    assert session.discounts[0].coupon == coupon.id
    page = await http.get(f"/c/pay/{session.id}")
    assert "No payment is required" in page.text
    resp = await http.post(f"/c/pay/{session.id}/free", data={"email": "free@example.com"})
    assert resp.status_code == 303
    s = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert (s.status, s.payment_status, s.payment_intent) == ("complete", "no_payment_required", None)
    assert (await client.v1.payment_intents.list_async()).data == []
    assert (await client.v1.coupons.retrieve_async(coupon.id)).times_redeemed == 1


async def test_promotion_code_on_the_hosted_page(client: stripe.StripeClient, http: httpx.AsyncClient) -> None:
    coupon = await client.v1.coupons.create_async(params={"amount_off": 500, "currency": "usd"})
    promo = await client.v1.promotion_codes.create_async(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "SAVE5"}
    )
    session = await client.v1.checkout.sessions.create_async(params=session_params(allow_promotion_codes=True))
    bad = await http.post(f"/c/pay/{session.id}/promo", data={"code": "NOPE"})
    assert bad.status_code == 400
    ok = await http.post(f"/c/pay/{session.id}/promo", data={"code": "save5"})
    assert ok.status_code == 303
    s = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert s.amount_total == 1500
    assert s.discounts is not None
    assert s.discounts[0].promotion_code == promo.id
    items = await client.v1.checkout.sessions.line_items.list_async(session.id)
    assert items.data[0].amount_discount == 500
    await http.post(f"/c/pay/{session.id}/card", data={"card": "4242424242424242"})
    assert (await client.v1.promotion_codes.retrieve_async(promo.id)).times_redeemed == 1


async def test_discount_rules(client: stripe.StripeClient) -> None:
    coupon = await client.v1.coupons.create_async(params={"percent_off": 25})
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.create_async(
            params=session_params(allow_promotion_codes=True, discounts=[{"coupon": coupon.id}])
        )
    assert "allow_promotion_codes, discounts" in str(info.value.user_message)
    s = await client.v1.checkout.sessions.create_async(
        params=session_params(amount=999, quantity=3, discounts=[{"coupon": coupon.id}])
    )
    assert (s.amount_subtotal, s.amount_total) == (2997, 2248)
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.coupons.create_async(params={"amount_off": 100})
    assert info.value.param == "currency"


async def test_session_validation(client: stripe.StripeClient, control: SandboxControl) -> None:
    now = int(time.time())
    for expires_at, fragment in ((now + 600, "at least 30 minutes"), (now + 90000, "less than 24 hours")):
        with pytest.raises(stripe.InvalidRequestError) as info:
            await client.v1.checkout.sessions.create_async(params=session_params(expires_at=expires_at))
        assert fragment in str(info.value.user_message)
        assert info.value.param == "expires_at"
    ok = await client.v1.checkout.sessions.create_async(params=session_params(expires_at=now + 3600))
    assert ok.expires_at == now + 3600
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.create_async(
            params=session_params(payment_intent_data={"application_fee_amount": 10})
        )
    assert info.value.param == "payment_intent_data[application_fee_amount]"
    pending = await client.v1.accounts.create_async(
        params={"type": "express", "capabilities": {"transfers": {"requested": True}}}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        await destination_session(client, pending.id)
    assert info.value.code == "insufficient_capabilities_for_transfer"
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.create_async(params=session_params(amount=20))
    assert "at least $0.50" in str(info.value.user_message)


async def test_price_line_items_and_line_item_listing(client: stripe.StripeClient) -> None:
    price = await client.v1.prices.create_async(
        params={"currency": "usd", "unit_amount": 1500, "product_data": {"name": "Print"}}
    )
    session = await client.v1.checkout.sessions.create_async(
        params={"mode": "payment", "line_items": [{"price": price.id, "quantity": 2}], "success_url": "https://x/s"}
    )
    assert session.amount_total == 3000
    items = await client.v1.checkout.sessions.line_items.list_async(session.id)
    assert items.data[0].price is not None
    assert items.data[0].price.id == price.id
    assert items.data[0].description == "Print"


async def test_expire_session_api_and_closed_page(client: stripe.StripeClient, http: httpx.AsyncClient) -> None:
    session = await client.v1.checkout.sessions.create_async(params=session_params())
    expired = await client.v1.checkout.sessions.expire_async(session.id)
    assert expired.status == "expired"
    page = await http.get(f"/c/pay/{session.id}")
    assert page.status_code == 410
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.expire_async(session.id)
    assert str(info.value.user_message) == (
        'Only Checkout Sessions with a status in ["open"] can be expired. '
        "This Checkout Session has a status of `expired`."
    )
    listed = await client.v1.checkout.sessions.list_async(params={"status": "expired"})
    assert [s.id for s in listed.data] == [session.id]
    types = [e.type for e in (await client.v1.events.list_async()).data]
    assert types == ["checkout.session.expired"]


async def test_control_expire_and_direct_completion(client: stripe.StripeClient, control: SandboxControl) -> None:
    acct = await onboarded_account(client, control)
    session = await direct_session(client, acct)
    result = await control.complete_checkout(session.id, card="4000000000000002", stripe_account=acct)
    assert result["outcome"] == "declined"
    result = await control.complete_checkout(session.id, stripe_account=acct)
    assert result["session"]["payment_status"] == "paid"
    other = await direct_session(client, acct)
    assert (await control.expire_session(other.id))["session"]["status"] == "expired"


async def test_hosted_page_escapes_and_respects_allowed_payment_method_types(
    client: stripe.StripeClient, control: SandboxControl, http: httpx.AsyncClient
) -> None:
    default = await client.v1.checkout.sessions.create_async(params=session_params())
    assert (default.allowed_payment_method_types, default.payment_method_types) == (None, ["card", "us_bank_account"])
    # The pinned version replaced `payment_method_types` with `allowed_payment_method_types`.
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.create_async(params=session_params(payment_method_types=["card"]))
    assert (info.value.param, info.value.user_message) == (
        "payment_method_types",
        "Received unknown parameter: payment_method_types",
    )
    # Stripe filters the allowed list to what can be offered; the sandbox's page takes cards and bank debits.
    params = session_params(allowed_payment_method_types=["card", "klarna"])
    params["line_items"][0]["price_data"]["product_data"]["name"] = "<script>alert(1)</script>"
    session = await client.v1.checkout.sessions.create_async(params=params)
    assert (session.allowed_payment_method_types, session.payment_method_types) == (["card", "klarna"], ["card"])
    page = await http.get(f"/c/pay/{session.id}")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;" in page.text
    assert "bank debit" not in page.text.lower()
    with pytest.raises(Exception, match="us_bank_account"):
        await control.pay_with_bank_debit(session.id)
    assert (await http.get("/c/pay/cs_test_unknown")).status_code == 404


async def test_abandoning_three_d_secure_for_another_card(client: stripe.StripeClient, http: httpx.AsyncClient) -> None:
    session = await client.v1.checkout.sessions.create_async(params=session_params())
    await _pay(http, session.id, "4000002500003155")
    resp = await _pay(http, session.id, "4242424242424242")
    assert resp.status_code == 303
    s = await client.v1.checkout.sessions.retrieve_async(session.id, params={"expand": ["payment_intent"]})
    assert s.payment_status == "paid"
    assert s.payment_intent.next_action is None  # type: ignore[union-attr]
    stale = await http.post(f"/c/pay/{session.id}/3ds", data={"action": "approve"})
    assert stale.status_code == 200
    assert "already complete" in stale.text


async def test_ui_mode_values_of_the_pinned_version(client: stripe.StripeClient) -> None:
    session = await client.v1.checkout.sessions.create_async(params=session_params(ui_mode="hosted_page"))
    assert session.ui_mode == "hosted_page"
    assert (await client.v1.checkout.sessions.create_async(params=session_params())).ui_mode == "hosted_page"
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.create_async(params=session_params(ui_mode="embedded_page"))
    assert info.value.param == "ui_mode"
    assert "does not emulate `ui_mode=embedded_page`" in str(info.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.create_async(params=session_params(ui_mode="hosted"))
    assert info.value.param == "ui_mode"
    assert "must be one of elements, embedded_page, form, hosted_page" in str(info.value.user_message)


async def test_an_invalid_card_number_creates_nothing(client: stripe.StripeClient, http: httpx.AsyncClient) -> None:
    session = await client.v1.checkout.sessions.create_async(params=session_params())
    resp = await _pay(http, session.id, "4242 abcd")
    assert resp.status_code == 400
    assert "Your card number is incorrect." in resp.text
    assert (await client.v1.checkout.sessions.retrieve_async(session.id)).payment_intent is None
    assert (await client.v1.payment_intents.list_async()).data == []
    assert (await client.v1.events.list_async()).data == []


async def test_line_item_needs_price_or_price_data(client: stripe.StripeClient) -> None:
    params = session_params()
    params["line_items"][0]["price"] = "price_whatever"
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.create_async(params=params)
    assert str(info.value.user_message) == "You must specify either `price` or `price_data` in line_items[0]."


async def test_destination_session_parameters_reach_the_payment(
    client: stripe.StripeClient, control: SandboxControl
) -> None:
    acct = await onboarded_account(client, control)
    session = await client.v1.checkout.sessions.create_async(
        params=session_params(
            customer_email="buyer@example.com",
            payment_intent_data={
                "on_behalf_of": acct,
                "transfer_group": "order_9",
                "transfer_data": {"destination": acct, "amount": 1500},
            },
        )
    )
    assert session.customer_email == "buyer@example.com"
    await control.complete_checkout(session.id)
    s = await client.v1.checkout.sessions.retrieve_async(session.id, params={"expand": ["payment_intent"]})
    assert s.customer_details is not None
    assert s.customer_details.email == "buyer@example.com"
    pi = s.payment_intent
    assert isinstance(pi, stripe.PaymentIntent)
    assert (pi.on_behalf_of, pi.transfer_group, pi.application_fee_amount) == (acct, "order_9", None)
    assert pi.transfer_data is not None
    assert (pi.transfer_data.destination, pi.transfer_data.amount) == (acct, 1500)
    ch = await client.v1.charges.retrieve_async(str(pi.latest_charge))
    assert (ch.on_behalf_of, ch.transfer_group, ch.billing_details.email) == (acct, "order_9", "buyer@example.com")
    tr = await client.v1.transfers.retrieve_async(str(ch.transfer))
    assert (tr.amount, tr.destination, tr.transfer_group) == (1500, acct, "order_9")
    assert (await client.v1.balance.retrieve_async()).available[0].amount == 500
    seller = await client.v1.balance.retrieve_async(options={"stripe_account": acct})
    assert seller.available[0].amount == 1500


async def test_three_d_secure_through_the_control_api(client: stripe.StripeClient, control: SandboxControl) -> None:
    session = await client.v1.checkout.sessions.create_async(params=session_params())
    assert (await control.complete_checkout(session.id, card="4000002500003155"))["outcome"] == "requires_action"
    failed = await control.three_d_secure(session.id, approve=False)
    assert (failed["outcome"], failed["session"]["status"]) == ("failed", "open")
    await control.complete_checkout(session.id, card="4000002500003155")
    done = await control.three_d_secure(session.id)
    assert (done["outcome"], done["session"]["payment_status"]) == ("succeeded", "paid")
    pi = await client.v1.payment_intents.retrieve_async(str(done["session"]["payment_intent"]))
    ch = await client.v1.charges.retrieve_async(str(pi.latest_charge))
    assert ch.payment_method_details is not None
    assert ch.payment_method_details.card is not None
    assert ch.payment_method_details.card.three_d_secure is not None
    with pytest.raises(SandboxControlError) as info:
        await control.three_d_secure(session.id)
    assert info.value.status == 400
