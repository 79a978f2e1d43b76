"""An order's status: the one table of which status may follow which, and the only writer of it.

Every change of `orders.status` goes through `move`, a compare-and-set: `UPDATE orders SET status = <to>
WHERE id = <id> AND status IN (<the statuses `to` may follow>) RETURNING …`. Zero rows means the order
was not in a status that allows the move (someone else moved it first, or the move makes no sense):
the caller gets None and changes nothing else. docs/orders.md draws the table.

| from | to | why the guard |
|---|---|---|
| pending | processing | a delayed payment method was submitted (the session completed unpaid) |
| pending, processing | paid | only the confirmation moves an order to paid, once (whoever comes first) |
| pending, processing | failed | a definitive Stripe refusal at checkout, or a delayed payment that failed |
| pending | expired | the session expired unpaid; a processing order's payment is still settling |
| pending, processing | oversold | paid, but the stock was gone: refunded in full, never fulfilled |
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from marketplace.orders.tables import Order


class OrderStatus(StrEnum):
    pending = "pending"  # written; waiting for the buyer to pay on Checkout
    processing = "processing"  # paid with a delayed method; waiting for it to settle
    paid = "paid"
    failed = "failed"
    expired = "expired"
    oversold = "oversold"


# For each status, the statuses it may be entered from.
ENTERED_FROM: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.processing: frozenset({OrderStatus.pending}),
    OrderStatus.paid: frozenset({OrderStatus.pending, OrderStatus.processing}),
    OrderStatus.failed: frozenset({OrderStatus.pending, OrderStatus.processing}),
    OrderStatus.expired: frozenset({OrderStatus.pending}),
    OrderStatus.oversold: frozenset({OrderStatus.pending, OrderStatus.processing}),
}
TERMINAL: frozenset[OrderStatus] = frozenset(
    {OrderStatus.paid, OrderStatus.failed, OrderStatus.expired, OrderStatus.oversold}
)


def may_move(current: OrderStatus, to: OrderStatus) -> bool:
    return current in ENTERED_FROM.get(to, frozenset())


async def move(
    order_id: uuid.UUID, to: OrderStatus, *, reason: str | None = None, values: Mapping[Any, Any] | None = None
) -> OrderStatus | None:
    """Move the order to `to` if its status allows it (compare-and-set); `to`, or None when it did not.

    `values`: other columns set by the same statement (e.g. Stripe's error code). Runs in the caller's
    transaction when there is one, so the move and its side effects commit together.
    """
    allowed = [s.value for s in ENTERED_FROM.get(to, frozenset())]
    if not allowed:
        return None
    updates: dict[Any, Any] = {Order.status: to.value, Order.updated_at: datetime.now(UTC), **(values or {})}
    if reason is not None:
        updates[Order.status_reason] = reason[:2000]
    rows = (
        await Order.update(updates).where((Order.id == order_id) & Order.status.is_in(allowed)).returning(Order.status)
    )
    return to if rows else None
