"""Checkout Sessions for an order, by charge type: the parameters, and the calls that create and read them.

Pure where possible: `session_params` turns an order's snapshot into exactly the request Stripe gets,
so every retry of one order sends identical parameters under its key (`checkout:{order_id}`).

- **Destination charge** (platform-managed seller): the session, PaymentIntent and Charge live on the
  platform; `payment_intent_data.transfer_data.destination` moves the funds to the seller and
  `application_fee_amount` keeps the platform's fee (`on_behalf_of` makes the seller the merchant of
  record when the platform chooses so).
- **Direct charge** (seller-managed seller): the session is created *on the connected account*
  (`stripe_account`); the PaymentIntent and Charge live there; `application_fee_amount` is transferred
  to the platform.

Both carry the order id in `metadata` (of the session and of `payment_intent_data`) and in
`client_reference_id`. docs/charges.md compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import stripe
from stripe.params.checkout import (
    SessionCreateParams,
    SessionCreateParamsLineItem,
    SessionCreateParamsPaymentIntentData,
)

from connect.profiles import ChargeType

CHECKOUT_SESSION_ID = "{CHECKOUT_SESSION_ID}"  # Stripe replaces it in success_url with the session's id


@dataclass(frozen=True, slots=True)
class SessionLine:
    name: str
    unit_amount: int
    quantity: int
    listing_id: str


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """Everything a Checkout Session for one order is made of (the order's snapshot)."""

    order_id: str
    charge_type: ChargeType
    connected_account: str
    currency: str
    lines: Sequence[SessionLine]
    application_fee: int
    expires_at: int  # unix seconds, 30 min to 24 h after creation (Stripe's bounds)
    success_url: str  # carries CHECKOUT_SESSION_ID
    cancel_url: str
    customer_email: str | None
    allow_promotion_codes: bool
    on_behalf_of: bool  # destination charges only: the seller is the merchant of record


def session_params(request: SessionRequest) -> tuple[SessionCreateParams, str | None]:
    """The `checkout.sessions.create` parameters, and the connected account to create them on (None:
    on the platform)."""
    metadata = {"order_id": request.order_id}
    line_items: list[SessionCreateParamsLineItem] = [
        {
            "quantity": line.quantity,
            "price_data": {
                "currency": request.currency,
                "unit_amount": line.unit_amount,
                "product_data": {"name": line.name, "metadata": {"listing_id": line.listing_id}},
            },
        }
        for line in request.lines
    ]
    payment_intent_data: SessionCreateParamsPaymentIntentData = {"metadata": metadata}
    if request.application_fee > 0:
        payment_intent_data["application_fee_amount"] = request.application_fee
    stripe_account: str | None = None
    if request.charge_type == "destination":
        payment_intent_data["transfer_data"] = {"destination": request.connected_account}
        if request.on_behalf_of:
            payment_intent_data["on_behalf_of"] = request.connected_account
    else:
        stripe_account = request.connected_account
    params: SessionCreateParams = {
        "mode": "payment",
        "line_items": line_items,
        "payment_intent_data": payment_intent_data,
        "metadata": metadata,
        "client_reference_id": request.order_id,
        "expires_at": request.expires_at,
        "success_url": request.success_url,
        "cancel_url": request.cancel_url,
    }
    if request.customer_email:
        params["customer_email"] = request.customer_email
    if request.allow_promotion_codes:
        params["allow_promotion_codes"] = True
    return params, stripe_account


@dataclass(frozen=True, slots=True)
class CreatedSession:
    id: str
    url: str


async def create_session(
    client: stripe.StripeClient, params: SessionCreateParams, stripe_account: str | None, idempotency_key: str
) -> CreatedSession:
    """Create the session (as `stripe_account` for a direct charge) under the order's key; its id and URL
    (what the order records: the rest is read again from Stripe when it matters)."""
    options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
    if stripe_account is not None:
        options["stripe_account"] = stripe_account
    session = await client.v1.checkout.sessions.create_async(params=params, options=options)
    return CreatedSession(id=session.id, url=str(session.url))


async def retrieve_session(client: stripe.StripeClient, session_id: str, stripe_account: str | None) -> dict[str, Any]:
    """The session as Stripe has it now (as the connected account for a direct charge)."""
    options: stripe.RequestOptions = {"stripe_account": stripe_account} if stripe_account else {}
    session = await client.v1.checkout.sessions.retrieve_async(session_id, options=options)
    return session.to_dict()
