"""Reading orders: the typed row, who may see an order, and a buyer's and a seller's lists.

An order is visible to its buyer (their token), to a guest holding one of its access tokens
(`X-Order-Token`), to its seller, and to admins; to anyone else it answers 404 exactly like a missing
order, so ids cannot be probed. Only its buyer and its guest may pay it (verify). Both are declared as
owner relations and decided by the one ownership rule, `marketplace.auth.service.get_owned_or_404`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connect.profiles import ChargeType
from marketplace.auth.service import AuthenticatedPrincipal, HeldBy, OwnedBy, get_owned_or_404
from marketplace.auth.tables import Role
from marketplace.auth.tokens import hash_token, looks_like_order_token
from marketplace.lib.schemas import ROW_CURSOR
from marketplace.orders.states import OrderStatus
from marketplace.orders.tables import Order, OrderAccessToken, OrderLine


@dataclass(frozen=True, slots=True)
class OrderLineRow:
    listing_id: uuid.UUID
    title: str
    unit_amount: int
    quantity: int
    amount: int


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One order as stored: amounts in minor units of `currency`, status from the transition table."""

    id: uuid.UUID
    buyer: uuid.UUID | None
    email: str
    seller: uuid.UUID
    account: uuid.UUID
    stripe_account_id: str
    charge_type: ChargeType
    currency: str
    subtotal: int
    application_fee: int
    total: int
    status: OrderStatus
    status_reason: str | None
    stripe_error_code: str | None
    cart_key: str
    checkout_session_id: str | None
    checkout_url: str | None
    checkout_expires_at: datetime
    created_at: datetime
    updated_at: datetime
    amount_discount: int | None = None  # the rest: written by the confirmation (marketplace.orders.confirm)
    amount_paid: int | None = None
    payment_intent_id: str | None = None
    paid_at: datetime | None = None
    confirmed_by: str | None = None

    @property
    def fee_charged(self) -> int | None:
        """The platform's fee Stripe took with the payment: the order's fee, or 0 when nothing was charged
        (a 100 % discount: no PaymentIntent, so no fee); None until the payment is confirmed."""
        if self.amount_paid is None:
            return None
        return 0 if self.amount_paid == 0 else self.application_fee

    @property
    def seller_share(self) -> int | None:
        """What the payment leaves the seller before Stripe's processing fees (a direct charge's seller
        pays those; a destination charge's platform does): paid less the fee; None until confirmed."""
        if self.amount_paid is None or self.fee_charged is None:
            return None
        return max(self.amount_paid - self.fee_charged, 0)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OrderRow:
        return cls(
            id=row["id"],
            buyer=row["buyer"],
            email=row["email"],
            seller=row["seller"],
            account=row["account"],
            stripe_account_id=row["stripe_account_id"],
            charge_type=row["charge_type"],
            currency=row["currency"],
            subtotal=int(row["subtotal"]),
            application_fee=int(row["application_fee"]),
            total=int(row["total"]),
            status=OrderStatus(row["status"]),
            status_reason=row["status_reason"],
            stripe_error_code=row["stripe_error_code"],
            cart_key=row["cart_key"],
            checkout_session_id=row["checkout_session_id"],
            checkout_url=row["checkout_url"],
            checkout_expires_at=row["checkout_expires_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            amount_discount=None if row["amount_discount"] is None else int(row["amount_discount"]),
            amount_paid=None if row["amount_paid"] is None else int(row["amount_paid"]),
            payment_intent_id=row["payment_intent_id"],
            paid_at=row["paid_at"],
            confirmed_by=row["confirmed_by"],
        )


async def order_by_id(order_id: uuid.UUID) -> OrderRow | None:
    row = await Order.select().where(Order.id == order_id).first()
    return OrderRow.from_row(row) if row else None


async def lines_of(order_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[OrderLineRow]]:
    """Each order's lines, in cart order."""
    out: dict[uuid.UUID, list[OrderLineRow]] = {order_id: [] for order_id in order_ids}
    if not order_ids:
        return out
    rows = await OrderLine.select().where(OrderLine.order.is_in(list(order_ids))).order_by(OrderLine.position)
    for r in rows:
        out[r["order"]].append(
            OrderLineRow(r["listing"], r["title"], int(r["unit_amount"]), int(r["quantity"]), int(r["amount"]))
        )
    return out


def _token_holder(order_token: str | None) -> HeldBy:
    """A guest owns the orders whose access tokens include the one they showed (only its hash is stored)."""
    if not (order_token and looks_like_order_token(order_token)):
        return HeldBy(None)
    granted = OrderAccessToken.select(OrderAccessToken.order).where(
        OrderAccessToken.token_hash == hash_token(order_token)
    )
    return HeldBy(Order.id.is_in(granted))


# An order's owners besides a holder of one of its guest tokens: its buyer (who, like the guest, pays it)
# and its seller's principal (who reads it but does not pay it).
_BUYER = OwnedBy(Order.buyer, Role.buyer)
_SELLER = OwnedBy(Order.seller.principal, Role.seller)


async def order_for_caller(
    order_id: uuid.UUID, principal: AuthenticatedPrincipal | None, order_token: str | None
) -> OrderRow:
    """The order if the caller may see it (its buyer, a holder of its guest token, its seller, an admin);
    otherwise 404, exactly as for a missing order."""
    row = await get_owned_or_404(Order, order_id, principal, _BUYER, _token_holder(order_token), _SELLER, what="order")
    return OrderRow.from_row(row)


async def order_for_payer(
    order_id: uuid.UUID, principal: AuthenticatedPrincipal | None, order_token: str | None
) -> OrderRow:
    """The order if the caller is the one who pays it (its buyer, or whoever holds one of its guest tokens):
    what verify needs. Its seller and admins read it (`order_for_caller`) but get 404 here."""
    row = await get_owned_or_404(
        Order, order_id, principal, _BUYER, _token_holder(order_token), admins=False, what="order"
    )
    return OrderRow.from_row(row)


def encode_cursor(order: OrderRow) -> str:
    return ROW_CURSOR.encode(order.created_at, order.id)


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    return ROW_CURSOR.position(cursor)


async def orders_page(
    *, buyer: uuid.UUID | None = None, seller: uuid.UUID | None = None, limit: int, cursor: str | None
) -> tuple[list[OrderRow], str | None]:
    """A buyer's or a seller's orders, newest first, keyset-paginated on (created_at, id)."""
    query = Order.select().order_by(Order.created_at, ascending=False).order_by(Order.id, ascending=False)
    if buyer is not None:
        query = query.where(Order.buyer == buyer)
    if seller is not None:
        query = query.where(Order.seller == seller)
    if cursor:
        created, order_id = decode_cursor(cursor)
        query = query.where((Order.created_at < created) | ((Order.created_at == created) & (Order.id < order_id)))
    rows = [OrderRow.from_row(r) for r in await query.limit(limit + 1)]
    page = rows[:limit]
    return page, encode_cursor(page[-1]) if len(rows) > limit else None
