"""Refunds by charge type: the parameters, and the call that makes one under its row's key.

- **Destination charge**: the PaymentIntent lives on the platform; the refund is made there with
  `reverse_transfer=true` (the amount is pulled back from the seller's transfer) and
  `refund_application_fee=true` (the platform gives its fee back: the buyer gets everything back and
  the seller keeps nothing of a sale that never happened).
- **Direct charge**: the PaymentIntent lives on the connected account; the refund is made *as that
  account* (`stripe_account`), with `refund_application_fee=true` (Stripe does not return the platform's
  fee by itself on a direct charge).

Stripe's fee on the charge is not returned by Stripe on a refund, whoever made it (docs/charges.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import stripe
from stripe.params import RefundCreateParams

from connect.profiles import ChargeType


@dataclass(frozen=True, slots=True)
class RefundRequest:
    refund_id: str  # our row's id: the key is refund:{refund_id}, and it is in the metadata
    order_id: str
    charge_type: ChargeType
    connected_account: str
    payment_intent: str
    amount: int  # minor units; the full amount for an oversell
    reason: str  # ours (e.g. "oversold"), kept in metadata; Stripe's own `reason` is left unset


def refund_params(request: RefundRequest) -> tuple[RefundCreateParams, str | None]:
    """The `refunds.create` parameters, and the connected account to make the refund on (None: platform)."""
    params: RefundCreateParams = {
        "payment_intent": request.payment_intent,
        "amount": request.amount,
        "refund_application_fee": True,
        "metadata": {"order_id": request.order_id, "refund_id": request.refund_id, "reason": request.reason},
    }
    if request.charge_type == "destination":
        params["reverse_transfer"] = True
        return params, None
    return params, request.connected_account


@dataclass(frozen=True, slots=True)
class CreatedRefund:
    id: str
    status: str | None  # Stripe's: pending | requires_action | succeeded | failed | canceled


async def create_refund(
    client: stripe.StripeClient, params: RefundCreateParams, stripe_account: str | None, idempotency_key: str
) -> CreatedRefund:
    options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
    if stripe_account is not None:
        options["stripe_account"] = stripe_account
    refund = await client.v1.refunds.create_async(params=params, options=options)
    return CreatedRefund(id=refund.id, status=refund.status)
