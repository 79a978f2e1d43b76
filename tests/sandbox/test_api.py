"""Front door: auth, error envelope, form encoding, unknown params/URLs, object shapes, expand."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from sandbox.control import SandboxControl
from sandbox.schema import literals

from .conftest import API_KEY
from .helpers import destination_session, direct_session, error_of, onboarded_account, session_params

AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def test_missing_key_is_401_with_stripe_envelope(http: httpx.AsyncClient) -> None:
    resp = await http.get("/v1/balance")
    assert resp.status_code == 401
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert "You did not provide an API key" in err["message"]


async def test_wrong_key_is_rejected_by_the_sdk(running: Any) -> None:
    bad = stripe.StripeClient(
        "sk_live_nope1234567890", http_client=stripe.HTTPXClient(), base_addresses={"api": running.url}
    )
    with pytest.raises(stripe.AuthenticationError) as info:
        await bad.v1.balance.retrieve_async()
    assert info.value.http_status == 401
    assert "Invalid API Key provided" in str(info.value.user_message)


async def test_basic_auth_and_restricted_keys_are_accepted(http: httpx.AsyncClient) -> None:
    resp = await http.get("/v1/account", auth=("rk_test_restricted123", ""))
    assert resp.status_code == 200
    assert resp.json()["object"] == "account"
    assert resp.headers["request-id"].startswith("req_")


async def test_platform_account_is_stable(client: stripe.StripeClient, control: SandboxControl) -> None:
    first = await client.v1.accounts.retrieve_current_async()
    await control.reset()
    second = await client.v1.accounts.retrieve_current_async()
    assert first.id == second.id
    assert first.charges_enabled is True


async def test_unknown_url_and_unknown_param(http: httpx.AsyncClient, client: stripe.StripeClient) -> None:
    resp = await http.get("/v1/nothing_here", headers=AUTH)
    assert resp.status_code == 404
    assert resp.json()["error"]["message"].startswith("Unrecognized request URL (GET: /v1/nothing_here)")
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.coupons.create_async(params={"percent_off": 10, "bogus": "x"})  # type: ignore[arg-type]
    assert info.value.param == "bogus"
    assert "Received unknown parameter: bogus" in str(info.value.user_message)


async def test_missing_required_param(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.create_async(
            params={
                "line_items": [
                    {
                        "price_data": {"currency": "usd", "unit_amount": 500, "product_data": {"name": "x"}},
                        "quantity": 1,
                    }
                ]
            }
        )
    assert info.value.param == "mode"
    assert info.value.http_status == 400
    err = error_of(info.value)
    assert err["message"] == "Missing required param: mode."
    assert err["request_log_url"].startswith("https://dashboard.stripe.com/test/logs/req_")


async def test_raw_form_encoding_nested_arrays(
    http: httpx.AsyncClient, client: stripe.StripeClient, control: SandboxControl
) -> None:
    acct = await onboarded_account(client, control)
    body = (
        "mode=payment&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=1200"
        "&line_items[0][price_data][product_data][name]=Mug&line_items[0][quantity]=2"
        "&line_items[1][price_data][currency]=usd&line_items[1][price_data][unit_amount]=300"
        "&line_items[1][price_data][product_data][name]=Card&line_items[1][quantity]=1"
        f"&payment_intent_data[transfer_data][destination]={acct}&payment_intent_data[application_fee_amount]=100"
        "&metadata[order]=42&expand[]=line_items"
    )
    resp = await http.post(
        "/v1/checkout/sessions", content=body, headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["amount_subtotal"] == 2700
    assert data["metadata"] == {"order": "42"}
    assert [i["quantity"] for i in data["line_items"]["data"]] == [2, 1]


def _fields(cls: Any) -> set[str]:
    return {k for k in cls.__annotations__ if k[0].islower()}


SHAPE_EXCEPTIONS: dict[str, set[str]] = {
    # Only present on deleted objects, on custom accounts, when included via expand, or for some card networks.
    "account": {"deleted", "individual", "company"},
    "checkout.session": {"line_items"},
    "charge": {"authorization_code", "level3", "refunds"},
    "event": {"account", "context"},
    "webhook_endpoint": {"deleted", "secret"},
    "coupon": {"deleted"},
}


async def test_object_shapes_match_the_pinned_sdk(
    client: stripe.StripeClient, control: SandboxControl, http: httpx.AsyncClient
) -> None:
    """Every field the SDK's resource classes declare is present (null when unset), minus documented exceptions."""
    acct_id = await onboarded_account(client, control)
    session = await destination_session(client, acct_id)
    await control.complete_checkout(session.id)
    s = await client.v1.checkout.sessions.retrieve_async(session.id)
    pi = await client.v1.payment_intents.retrieve_async(s.payment_intent)  # type: ignore[arg-type]
    ch = await client.v1.charges.retrieve_async(pi.latest_charge)  # type: ignore[arg-type]
    refund = await client.v1.refunds.create_async(
        params={"charge": ch.id, "amount": 500, "reverse_transfer": True, "refund_application_fee": True}
    )
    tr = await client.v1.transfers.retrieve_async(ch.transfer)  # type: ignore[arg-type]
    fee = await client.v1.application_fees.retrieve_async(ch.application_fee)  # type: ignore[arg-type]
    fee_refund = fee.refunds.data[0]
    reversal = tr.reversals.data[0]
    dispute_obj = await control.open_dispute(ch.id)
    dispute = await client.v1.disputes.retrieve_async(dispute_obj["id"])
    po = await control.create_payout(acct_id, 100)
    payout = await client.v1.payouts.retrieve_async(po["id"], options={"stripe_account": acct_id})
    coupon = await client.v1.coupons.create_async(params={"percent_off": 10})
    promo = await client.v1.promotion_codes.create_async(params={"promotion": {"type": "coupon", "coupon": coupon.id}})
    ep = await client.v1.webhook_endpoints.create_async(
        params={"url": "https://example.com/h", "enabled_events": ["*"]}
    )
    events = await client.v1.events.list_async()
    link = await client.v1.account_links.create_async(
        params={
            "account": acct_id,
            "type": "account_onboarding",
            "refresh_url": "https://x/r",
            "return_url": "https://x/ret",
        }
    )
    login = await client.v1.accounts.login_links.create_async(acct_id)
    acct = await client.v1.accounts.retrieve_async(acct_id)
    items = await client.v1.checkout.sessions.line_items.list_async(session.id)
    balance = await client.v1.balance.retrieve_async()
    cap = await client.v1.accounts.capabilities.retrieve_async(acct_id, "transfers")
    pairs: list[tuple[Any, Any]] = [
        (acct, stripe.Account),
        (s, stripe.checkout.Session),
        (pi, stripe.PaymentIntent),
        (ch, stripe.Charge),
        (refund, stripe.Refund),
        (tr, stripe.Transfer),
        (reversal, stripe.TransferReversal),
        (fee, stripe.ApplicationFee),
        (fee_refund, stripe.ApplicationFeeRefund),
        (dispute, stripe.Dispute),
        (payout, stripe.Payout),
        (balance, stripe.Balance),
        (coupon, stripe.Coupon),
        (promo, stripe.PromotionCode),
        (events.data[0], stripe.Event),
        (ep, stripe.WebhookEndpoint),
        (link, stripe.AccountLink),
        (login, stripe.LoginLink),
        (items.data[0], stripe.LineItem),
        (cap, stripe.Capability),
    ]
    lacking: dict[str, list[str]] = {}
    off_enum: dict[str, str] = {}
    for obj, cls in pairs:
        data = obj.to_dict()
        assert data["object"] == cls.OBJECT_NAME
        missing = _fields(cls) - set(data) - SHAPE_EXCEPTIONS.get(cls.OBJECT_NAME, set())
        if missing:
            lacking[cls.OBJECT_NAME] = sorted(missing)
        for name, value in data.items():  # enum fields hold one of the pinned version's values
            choices = literals(cls.__annotations__.get(name))
            if choices and isinstance(value, str) and value not in choices:
                off_enum[f"{cls.OBJECT_NAME}.{name}"] = value
    assert lacking == {}
    assert off_enum == {}
    assert (s.ui_mode, s.mode, s.status, s.payment_status) == ("hosted_page", "payment", "complete", "paid")
    assert "secret" in ep.to_dict()
    assert "secret" not in (await client.v1.webhook_endpoints.retrieve_async(ep.id)).to_dict()


async def test_expand_nested_and_invalid(client: stripe.StripeClient, control: SandboxControl) -> None:
    acct = await onboarded_account(client, control)
    session = await direct_session(client, acct)
    await control.complete_checkout(session.id, stripe_account=acct)
    s = await client.v1.checkout.sessions.retrieve_async(
        session.id, params={"expand": ["payment_intent.latest_charge", "line_items"]}, options={"stripe_account": acct}
    )
    assert s.payment_intent.latest_charge.object == "charge"  # type: ignore[union-attr]
    assert s.line_items is not None
    assert s.line_items.data[0].description == "Poster"
    listed = await client.v1.checkout.sessions.list_async(
        params={"expand": ["data.payment_intent"]}, options={"stripe_account": acct}
    )
    assert listed.data[0].payment_intent.object == "payment_intent"  # type: ignore[union-attr]
    latest = s.payment_intent.latest_charge  # type: ignore[union-attr]
    assert isinstance(latest, stripe.Charge)
    ch = await client.v1.charges.retrieve_async(
        latest.id, params={"expand": ["refunds"]}, options={"stripe_account": acct}
    )
    assert ch.refunds is not None
    assert ch.refunds.data == []
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.retrieve_async(
            session.id, params={"expand": ["nope"]}, options={"stripe_account": acct}
        )
    assert "cannot be expanded" in str(info.value.user_message)


async def test_expand_sees_only_what_the_requester_can_retrieve(
    client: stripe.StripeClient, control: SandboxControl
) -> None:
    acct = await onboarded_account(client, control, dashboard="full")
    session = await direct_session(client, acct)
    await control.complete_checkout(session.id, stripe_account=acct)
    s = await client.v1.checkout.sessions.retrieve_async(
        session.id,
        params={"expand": ["payment_intent.latest_charge.application_fee"]},
        options={"stripe_account": acct},
    )
    charge = s.payment_intent.latest_charge  # type: ignore[union-attr]
    assert isinstance(charge, stripe.Charge)
    # The fee is the platform's: the connected account gets its id, not the object.
    assert isinstance(charge.application_fee, str)
    assert charge.application_fee.startswith("fee_")
    fee = await client.v1.application_fees.retrieve_async(charge.application_fee, params={"expand": ["charge"]})
    assert fee.charge == charge.id  # and the platform cannot see the connected account's charge either


async def test_unknown_and_unemulated_parameters(client: stripe.StripeClient) -> None:
    """Names the pinned SDK does not declare are unknown to Stripe; names it declares that the sandbox does not
    emulate get the sandbox's own error. Both are 400s with `param`."""
    cases: list[tuple[Any, str, str]] = [
        (session_params(bogus=1), "bogus", "Received unknown parameter: bogus"),
        (session_params(payment_intent_data={"bogus": 1}), "payment_intent_data[bogus]", "unknown"),
        (session_params(payment_method_data={"allow_redisplay": "always"}), "payment_method_data", "does not emulate"),
        (session_params(integration_identifier="x"), "integration_identifier", "does not emulate"),
        (session_params(customer_account="acct_x"), "customer_account", "does not emulate"),
        (session_params(customer="cus_x"), "customer", "does not emulate"),
        (
            session_params(payment_intent_data={"shipping": {"name": "A", "address": {"line1": "x"}}}),
            "payment_intent_data[shipping]",
            "does not emulate",
        ),
    ]
    items = session_params()["line_items"]
    items[0]["price_data"]["recurring"] = {"interval": "month"}
    cases.append((session_params(line_items=items), "line_items[0][price_data][recurring]", "does not emulate"))
    for params, param, message in cases:
        with pytest.raises(stripe.InvalidRequestError) as info:
            await client.v1.checkout.sessions.create_async(params=params)
        assert info.value.param == param
        assert message in str(info.value.user_message)
    for refund_params, param in (
        ({"charge": "ch_x", "currency": "usd"}, "currency"),
        ({"customer": "cus_x"}, "customer"),
    ):
        with pytest.raises(stripe.InvalidRequestError) as info:
            await client.v1.refunds.create_async(params=refund_params)  # type: ignore[arg-type]
        assert info.value.param == param
        assert f"does not emulate the parameter `{param}`" in str(info.value.user_message)
