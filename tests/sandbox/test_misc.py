"""Smaller endpoints: updates that emit events, catalog CRUD, capability listing, not-emulated parameters."""

from __future__ import annotations

import pytest
import stripe

from sandbox.control import SandboxControl

from .helpers import destination_session, onboarded_account, session_params


async def test_updates_emit_events_with_previous_attributes(
    client: stripe.StripeClient, control: SandboxControl
) -> None:
    acct = await onboarded_account(client, control)
    session = await destination_session(client, acct)
    await control.complete_checkout(session.id)
    s = await client.v1.checkout.sessions.retrieve_async(session.id, params={"expand": ["payment_intent"]})
    pi = s.payment_intent
    assert isinstance(pi, stripe.PaymentIntent)
    charge_id = str(pi.latest_charge)
    await client.v1.charges.update_async(charge_id, params={"metadata": {"note": "x"}})
    refund = await client.v1.refunds.create_async(params={"charge": charge_id, "amount": 100})
    await client.v1.refunds.update_async(refund.id, params={"metadata": {"why": "late"}})
    updated_pi = await client.v1.payment_intents.update_async(pi.id, params={"description": "order 1"})
    assert updated_pi.description == "order 1"
    charge_updated = (await client.v1.events.list_async(params={"type": "charge.updated"})).data[0]
    assert charge_updated.data.object["metadata"].to_dict() == {"order_id": "ord_1", "note": "x"}  # copied from the PI
    assert charge_updated.data.previous_attributes is not None
    assert charge_updated.data.previous_attributes.to_dict() == {"metadata": {"note": None}}
    refund_updated = (await client.v1.events.list_async(params={"type": "refund.updated"})).data[0]
    assert refund_updated.data.object["metadata"].to_dict() == {"why": "late"}
    assert [p.id for p in (await client.v1.payment_intents.list_async()).data] == [pi.id]


async def test_catalog_crud(client: stripe.StripeClient) -> None:
    product = await client.v1.products.create_async(params={"name": "Mug"})
    price = await client.v1.prices.create_async(params={"currency": "eur", "unit_amount": 700, "product": product.id})
    assert (await client.v1.prices.retrieve_async(price.id)).product == product.id
    assert [p.id for p in (await client.v1.prices.list_async()).data] == [price.id]
    coupon = await client.v1.coupons.create_async(params={"id": "WELCOME", "percent_off": 12.5, "name": "Welcome"})
    assert coupon.id == "WELCOME"
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.coupons.create_async(params={"id": "WELCOME", "percent_off": 5})
    assert info.value.code == "resource_already_exists"
    promo = await client.v1.promotion_codes.create_async(
        params={"promotion": {"type": "coupon", "coupon": "WELCOME"}, "code": "HELLO"}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.promotion_codes.create_async(
            params={"promotion": {"type": "coupon", "coupon": "WELCOME"}, "code": "hello"}
        )
    assert info.value.param == "code"
    found = await client.v1.promotion_codes.list_async(params={"code": "HELLO"})
    assert [p.id for p in found.data] == [promo.id]
    inactive = await client.v1.promotion_codes.update_async(promo.id, params={"active": False})
    assert inactive.active is False
    session = await client.v1.checkout.sessions.create_async(params=session_params(allow_promotion_codes=True))
    assert session.allow_promotion_codes is True
    deleted = await client.v1.coupons.delete_async("WELCOME")
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.coupons.retrieve_async("WELCOME")
    assert info.value.http_status == 404


async def test_capabilities_list_and_not_emulated_params(client: stripe.StripeClient, control: SandboxControl) -> None:
    acct = await onboarded_account(client, control)
    caps = await client.v1.accounts.capabilities.list_async(acct)
    assert {(c.id, c.status) for c in caps.data} == {("card_payments", "active"), ("transfers", "active")}
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.create_async(params=session_params(automatic_tax={"enabled": True}))
    assert info.value.param == "automatic_tax"
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.create_async(params=session_params(mode="subscription"))
    assert info.value.param == "mode"
