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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import stripe
from stripe.params.checkout import (
    SessionCreateParams,
    SessionCreateParamsLineItem,
    SessionCreateParamsPaymentIntentData,
    SessionRetrieveParams,
)

from connect.profiles import ChargeType, account_of

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
    if request.charge_type == "destination":
        payment_intent_data["transfer_data"] = {"destination": request.connected_account}
        if request.on_behalf_of:
            payment_intent_data["on_behalf_of"] = request.connected_account
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
    return params, account_of(request.charge_type, request.connected_account)


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


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What a Checkout Session says about its payment, as read from Stripe (never from an event's snapshot).

    `read_as` is the connected account the session was read as (`Stripe-Account`), None when read on the
    platform: a direct charge's session exists only on its connected account, so reading it there *is*
    the proof that it belongs to that account.
    """

    id: str
    read_as: str | None
    status: str | None  # open | complete | expired
    payment_status: str | None  # paid | unpaid | no_payment_required
    currency: str | None
    amount_subtotal: int | None
    amount_total: int | None
    amount_discount: int  # total_details.amount_discount (0 when absent)
    amount_tax: int
    amount_shipping: int
    metadata_order_id: str | None
    client_reference_id: str | None
    payment_intent_id: str | None
    payment_intent_status: str | None  # when the session was read with the PaymentIntent expanded
    payment_error_code: str | None  # the PaymentIntent's last_payment_error.code, if any

    @classmethod
    def from_stripe(cls, session: Mapping[str, Any], read_as: str | None) -> SessionFacts:
        details: Mapping[str, Any] = session.get("total_details") or {}
        metadata: Mapping[str, Any] = session.get("metadata") or {}
        intent = session.get("payment_intent")
        intent_id: str | None
        intent_status: str | None = None
        error_code: str | None = None
        if isinstance(intent, Mapping):
            intent_id = _str(intent.get("id"))
            intent_status = _str(intent.get("status"))
            error: Mapping[str, Any] = intent.get("last_payment_error") or {}
            error_code = _str(error.get("decline_code") or error.get("code"))
        else:
            intent_id = _str(intent)
        return cls(
            id=str(session.get("id") or ""),
            read_as=read_as,
            status=_str(session.get("status")),
            payment_status=_str(session.get("payment_status")),
            currency=_str(session.get("currency")),
            amount_subtotal=_int(session.get("amount_subtotal")),
            amount_total=_int(session.get("amount_total")),
            amount_discount=_int(details.get("amount_discount")) or 0,
            amount_tax=_int(details.get("amount_tax")) or 0,
            amount_shipping=_int(details.get("amount_shipping")) or 0,
            metadata_order_id=_str(metadata.get("order_id")),
            client_reference_id=_str(session.get("client_reference_id")),
            payment_intent_id=intent_id,
            payment_intent_status=intent_status,
            payment_error_code=error_code,
        )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def retrieve_session(client: stripe.StripeClient, session_id: str, stripe_account: str | None) -> SessionFacts:
    """The session as Stripe has it now (as the connected account for a direct charge), its PaymentIntent
    expanded (a delayed payment's outcome is the PaymentIntent's status; the session stays `unpaid`)."""
    options: stripe.RequestOptions = {"stripe_account": stripe_account} if stripe_account else {}
    params: SessionRetrieveParams = {"expand": ["payment_intent"]}
    session = await client.v1.checkout.sessions.retrieve_async(session_id, params=params, options=options)
    return SessionFacts.from_stripe(session.to_dict(), stripe_account)
