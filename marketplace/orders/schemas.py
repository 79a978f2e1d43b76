"""Request and response bodies for checkout and order routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from marketplace.schemas import Email

MAX_LINES = 50
MAX_QUANTITY = 10_000


class CheckoutLineIn(msgspec.Struct, forbid_unknown_fields=True):
    listing_id: uuid.UUID
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)]


class CheckoutIn(msgspec.Struct, forbid_unknown_fields=True):
    """A cart: lines of (listing, quantity) from one seller. Prices are looked up, never sent.

    A guest (no bearer token) gives `email`; a signed-in buyer's email is their profile's.
    """

    lines: Annotated[list[CheckoutLineIn], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    email: Email | None = None


class OrderLineOut(msgspec.Struct):
    listing_id: uuid.UUID
    title: str
    unit_amount: int
    quantity: int
    amount: int


class OrderOut(msgspec.Struct):
    id: uuid.UUID
    status: str
    seller_id: uuid.UUID
    charge_type: str
    currency: str
    subtotal: int
    application_fee: int
    total: int
    lines: list[OrderLineOut]
    checkout_url: str | None  # while the order waits for payment
    checkout_expires_at: datetime
    status_reason: str | None
    stripe_error_code: str | None
    created_at: datetime
    updated_at: datetime


class CheckoutOut(msgspec.Struct):
    order: OrderOut
    checkout_url: str | None
    # A guest's credential for this order (send it as `X-Order-Token`); shown once, stored hashed.
    access_token: str | None = None


class OrderPage(msgspec.Struct):
    items: list[OrderOut]
    next_cursor: str | None
