"""Reading orders: the typed row, who may see an order, and a buyer's and a seller's lists.

An order is visible to its buyer (their token), to a guest holding one of its access tokens
(`X-Order-Token`), to its seller, and to admins; to anyone else it answers 404 exactly like a missing
order, so ids cannot be probed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connect.profiles import ChargeType
from marketplace.auth.service import AuthenticatedPrincipal
from marketplace.auth.tables import Role
from marketplace.auth.tokens import hash_token, looks_like_order_token
from marketplace.lib.problems import NotFound
from marketplace.lib.schemas import ROW_CURSOR
from marketplace.orders.states import OrderStatus
from marketplace.orders.tables import Order, OrderAccessToken, OrderLine
from marketplace.sellers.tables import Seller


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


async def _seller_id_of(principal: AuthenticatedPrincipal) -> uuid.UUID | None:
    row = await Seller.select(Seller.id).where(Seller.principal == principal.id).first()
    return row["id"] if row else None


async def order_for_caller(
    order_id: uuid.UUID, principal: AuthenticatedPrincipal | None, order_token: str | None
) -> OrderRow:
    """The order if the caller may see it; otherwise 404, exactly as for a missing order."""
    order = await order_by_id(order_id)
    if order is not None and await _may_see(order, principal, order_token):
        return order
    raise NotFound(f"No order with id {order_id}.")


async def order_for_payer(
    order_id: uuid.UUID, principal: AuthenticatedPrincipal | None, order_token: str | None
) -> OrderRow:
    """The order if the caller is the one who pays it (its buyer, or whoever holds one of its guest tokens):
    what verify needs. Its seller and admins read it (`order_for_caller`) but get 404 here."""
    order = await order_by_id(order_id)
    if order is not None:
        if principal is not None and principal.role is Role.buyer and order.buyer == principal.id:
            return order
        if await _holds_token(order, order_token):
            return order
    raise NotFound(f"No order with id {order_id}.")


async def _holds_token(order: OrderRow, order_token: str | None) -> bool:
    if order_token and looks_like_order_token(order_token):
        return await OrderAccessToken.exists().where(
            (OrderAccessToken.order == order.id) & (OrderAccessToken.token_hash == hash_token(order_token))
        )
    return False


async def _may_see(order: OrderRow, principal: AuthenticatedPrincipal | None, order_token: str | None) -> bool:
    if principal is not None:
        if principal.is_admin:
            return True
        if principal.role is Role.buyer and order.buyer == principal.id:
            return True
        if principal.role is Role.seller and order.seller == await _seller_id_of(principal):
            return True
    return await _holds_token(order, order_token)


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
