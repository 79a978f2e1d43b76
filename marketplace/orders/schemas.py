"""Request and response bodies for checkout and order routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from marketplace.lib.schemas import Email
from marketplace.lib.text import require_email

MAX_LINES = 50
MAX_QUANTITY = 10_000


class CheckoutLineIn(msgspec.Struct, forbid_unknown_fields=True):
    """One line of a cart: a listing and how many units of it."""

    listing_id: Annotated[
        uuid.UUID,
        msgspec.Meta(
            description=(
                "A listing on sale (active, of a seller who can take payments now): another is a 422 "
                "`listing-unavailable`. A listing appears on one line only (400 `validation-error`)."
            )
        ),
    ]
    quantity: Annotated[
        int, msgspec.Meta(ge=1, le=MAX_QUANTITY, description="Units; more than in stock is a 409 `insufficient-stock`.")
    ]


class CheckoutIn(msgspec.Struct, forbid_unknown_fields=True):
    """A cart: lines of (listing, quantity) of one seller, in one currency, for a total Stripe can charge
    in it (else a 422: `cart-spans-sellers`, `mixed-currencies`, `amount-not-chargeable`). Prices are
    looked up, never sent.

    Who checks out is the caller: a buyer's bearer token, or none for a guest, who must give `email`
    (400 `validation-error` without it; the schema cannot say so, as it depends on the token). A token
    of another role is a 403, an unknown one a 401.
    """

    lines: Annotated[list[CheckoutLineIn], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    email: Annotated[
        Email | None,
        msgspec.Meta(
            description=(
                "Required for a guest (no bearer token). For a signed-in buyer the profile's email is used, "
                "and this one only when the profile has none."
            )
        ),
    ] = None

    def __post_init__(self) -> None:
        # Checked and normalized before anything is stored (marketplace.lib.text); the decoder's 400 names it.
        if self.email is not None:
            self.email = require_email("email", self.email)


class OrderLineOut(msgspec.Struct):
    listing_id: uuid.UUID
    title: str
    unit_amount: int
    quantity: int
    amount: int


class RefundOut(msgspec.Struct):
    id: uuid.UUID
    reason: str  # oversold
    amount: int
    currency: str
    status: str  # requested (not yet made with Stripe) | created (Stripe has it: see stripe_status) | refused
    stripe_status: str | None
    created_at: datetime


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
    # Set when the payment was confirmed (paid or oversold): what Stripe charged and the discount it gave.
    amount_paid: int | None = None
    amount_discount: int | None = None
    # The fee the platform took with the payment (0 when nothing was charged) and what that leaves the
    # seller before Stripe's processing fees: docs/charges.md, "Discounts and the fee".
    application_fee_charged: int | None = None
    seller_share: int | None = None
    paid_at: datetime | None = None
    refunds: list[RefundOut] = msgspec.field(default_factory=list)


class CheckoutOut(msgspec.Struct):
    order: OrderOut
    checkout_url: str | None
    # A guest's credential for this order (send it as `X-Order-Token`); shown once, stored hashed.
    access_token: str | None = None


class OrderPage(msgspec.Struct):
    items: list[OrderOut]
    next_cursor: str | None


SESSION_ID_PATTERN = r"^cs_[A-Za-z0-9_]{1,250}$"


class VerifyIn(msgspec.Struct, forbid_unknown_fields=True):
    """What a success page sends: the session id from its URL (`{CHECKOUT_SESSION_ID}`), when it has it."""

    session_id: Annotated[str, msgspec.Meta(pattern=SESSION_ID_PATTERN, max_length=253)] | None = None
