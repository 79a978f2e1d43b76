"""Refunds: a row per refund the platform decided to make, written before Stripe is asked.

The row is the intent of `connect.calls.post`: its id gives the idempotency key (`refund:{id}`), so the
call can be repeated after a crash, a timeout or a lost answer and Stripe makes one refund. It snapshots
where the money is (the PaymentIntent, the charge type and the connected account) so the call never
depends on anything that changes later. `status` is ours:

    requested ──Stripe made it──▶ created   (stripe_status mirrors Stripe's: pending, succeeded, failed…)
        └────Stripe refused it───▶ refused  (definitive: Stripe's code in failure_code; an operator acts)
"""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import UUID, BigInt, ForeignKey, OnDelete, Text, Timestamptz, Varchar
from piccolo.table import Table

from marketplace.lib.db import DB
from marketplace.orders.tables import Order


class RefundStatus(StrEnum):
    requested = "requested"  # written; Stripe not yet asked, or its answer not yet recorded
    created = "created"  # Stripe has the refund (its own status in stripe_status)
    refused = "refused"  # Stripe refused it definitively (failure_code)


class RefundReason(StrEnum):
    oversold = "oversold"  # paid, but the stock was gone when the payment was confirmed


class Refund(Table, tablename="refunds", db=DB):
    id = UUID(primary_key=True)
    order = ForeignKey(references=Order, on_delete=OnDelete.restrict, index=True)
    reason = Varchar(length=32)
    amount = BigInt()  # minor units of currency
    currency = Varchar(length=3)
    charge_type = Varchar(length=16)
    stripe_account_id = Varchar(length=255)  # the order's connected account (a direct charge lives on it)
    payment_intent_id = Varchar(length=255)
    status = Varchar(length=16, default=RefundStatus.requested.value)
    stripe_refund_id = Varchar(length=255, null=True, default=None, unique=True)
    stripe_status = Varchar(length=32, null=True, default=None)
    failure_code = Varchar(length=64, null=True, default=None)
    failure_message = Text(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()
