"""Orders: what a buyer asked to pay for, snapshotted when the order is written, before Stripe is called.

`orders` holds the amounts (minor units of `currency`), the charge type and the connected account as
they were decided at checkout, so a retry of the Checkout Session sends exactly the same request, and a
later change of price, fee policy or seller profile never changes an order already made. Its status is
written only by `marketplace.orders.states` (the transition table). `order_lines` snapshots each line;
`order_access_tokens` holds, hashed, the tokens a guest gets to read their order.
"""

from __future__ import annotations

from piccolo.columns import UUID, BigInt, ForeignKey, Integer, OnDelete, Text, Timestamptz, Varchar
from piccolo.table import Table

from marketplace.auth.tables import Principal
from marketplace.lib.db import DB
from marketplace.sellers.tables import ConnectedAccount, Seller


class Order(Table, tablename="orders", db=DB):
    id = UUID(primary_key=True)
    buyer = ForeignKey(references=Principal, on_delete=OnDelete.set_null, null=True, index=True)
    email = Varchar(length=320)  # the buyer's or the guest's: Checkout's customer_email
    seller = ForeignKey(references=Seller, on_delete=OnDelete.restrict, index=True)
    account = ForeignKey(references=ConnectedAccount, on_delete=OnDelete.restrict)
    stripe_account_id = Varchar(length=255)  # the seller's connected account when the order was made
    charge_type = Varchar(length=16)  # destination | direct
    currency = Varchar(length=3)
    subtotal = BigInt()  # sum of unit_amount * quantity
    application_fee = BigInt()  # the platform's fee on the subtotal
    total = BigInt()  # what the buyer is asked to pay before any Stripe discount
    status = Varchar(length=16, default="pending", index=True)
    status_reason = Text(null=True, default=None)
    stripe_error_code = Varchar(length=64, null=True, default=None)
    cart_key = Varchar(length=64, index=True)  # see marketplace.orders.checkout.cart_key
    # The request's Idempotency-Key (SHA-256 with its caller's scope) and its body's fingerprint: the
    # same key with another body is refused (marketplace.orders.checkout.idempotency_key).
    idempotency_key = Varchar(length=64, null=True, default=None)
    request_fingerprint = Varchar(length=64, null=True, default=None)
    checkout_session_id = Varchar(length=255, null=True, default=None, unique=True)
    checkout_url = Text(null=True, default=None)
    checkout_expires_at = Timestamptz()  # sent as the session's expires_at (same on every retry)
    # Written once, by the confirmation (marketplace.orders.confirm), from the session Stripe holds:
    amount_discount = BigInt(null=True, default=None)  # the session's total_details.amount_discount
    amount_paid = BigInt(null=True, default=None)  # the session's amount_total (0 for a 100%-off order)
    payment_intent_id = Varchar(length=255, null=True, default=None)  # None when nothing was collected
    paid_at = Timestamptz(null=True, default=None)  # when the confirmation won (paid or oversold)
    confirmed_by = Varchar(length=300, null=True, default=None)  # the caller that won: webhook:evt_…, verify, …
    created_at = Timestamptz()
    updated_at = Timestamptz()


class OrderLine(Table, tablename="order_lines", db=DB):
    id = UUID(primary_key=True)
    order = ForeignKey(references=Order, on_delete=OnDelete.cascade, index=True)
    position = Integer()
    listing = UUID()  # the listing's id (no foreign key: the snapshot outlives a deleted listing)
    title = Varchar(length=200)
    unit_amount = BigInt()
    quantity = Integer()
    amount = BigInt()  # unit_amount * quantity


class OrderAccessToken(Table, tablename="order_access_tokens", db=DB):
    """A guest's credential for one order (SHA-256; the plaintext is shown once, in the checkout answer)."""

    id = UUID(primary_key=True)
    order = ForeignKey(references=Order, on_delete=OnDelete.cascade, index=True)
    token_hash = Varchar(length=64, unique=True)
    created_at = Timestamptz()
