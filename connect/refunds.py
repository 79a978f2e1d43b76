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
from stripe.params import RefundCreateParams, RefundListParams

from connect.profiles import ChargeType, account_of


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
    return params, account_of(request.charge_type, request.connected_account)


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


async def find_refund(
    client: stripe.StripeClient, payment_intent: str, stripe_account: str | None, refund_id: str
) -> CreatedRefund | None:
    """The refund our row `refund_id` made on `payment_intent`, found by its metadata, or None.

    For a create that Stripe refuses as `charge_already_refunded`: the first attempt reached Stripe but
    its answer was never recorded, and the retry came after Stripe's 24-hour idempotency window (a dead
    message replayed a day later), so the key no longer finds it. Read where the refund lives (the
    connected account for a direct charge)."""
    params: RefundListParams = {"payment_intent": payment_intent, "limit": 100}
    options: stripe.RequestOptions = {} if stripe_account is None else {"stripe_account": stripe_account}
    page = await client.v1.refunds.list_async(params=params, options=options)
    async for refund in page.auto_paging_iter():
        metadata = refund.to_dict().get("metadata") or {}
        if metadata.get("refund_id") == refund_id:
            return CreatedRefund(id=refund.id, status=refund.status)
    return None


@dataclass(frozen=True, slots=True)
class RefundState:
    """A refund as Stripe shows it now: what a refund event's handler applies (never the snapshot)."""

    id: str
    status: str | None  # pending, requires_action, succeeded, failed, canceled
    failure_reason: str | None
    metadata_refund_id: str | None  # our row's id, when we made it


async def retrieve_refund(client: stripe.StripeClient, refund_id: str, stripe_account: str | None) -> RefundState:
    """Re-read a refund where it lives (the connected account for a direct charge)."""
    options: stripe.RequestOptions = {} if stripe_account is None else {"stripe_account": stripe_account}
    refund = (await client.v1.refunds.retrieve_async(refund_id, options=options)).to_dict()
    metadata = refund.get("metadata") or {}
    return RefundState(
        id=str(refund["id"]),
        status=refund.get("status"),
        failure_reason=refund.get("failure_reason"),
        metadata_refund_id=metadata.get("refund_id"),
    )
