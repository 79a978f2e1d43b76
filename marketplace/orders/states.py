"""An order's status: the one table of which status may follow which, and the only writer of it.

Every change of `orders.status` goes through `move`, a compare-and-set: `UPDATE orders SET status = <to>
WHERE id = <id> AND status IN (<the statuses `to` may follow>) RETURNING …`. Zero rows means the order
was not in a status that allows the move (someone else moved it first, or the move makes no sense):
the caller gets None and changes nothing else. docs/orders.md draws the table.

| from | to | why the guard |
|---|---|---|
| pending | processing | a delayed payment method was submitted (the session completed unpaid) |
| pending, processing | paid | only the confirmation moves an order to paid, once (whoever comes first) |
| pending, processing | failed | a definitive refusal at checkout (no session recorded¹); a delayed payment failed |
| pending | expired | the session expired unpaid; a processing order's payment is still settling |
| pending, processing | oversold | paid, but the stock was gone: refunded in full, never fulfilled |

¹ A refused re-send of an order's session request (say, its parameters changed in a rolling deploy) must not
fail an order whose session a concurrent checkout recorded: the buyer may be paying it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import asyncpg

from marketplace.lib.db import connection


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
    order_id: uuid.UUID,
    to: OrderStatus,
    *,
    reason: str | None = None,
    values: Mapping[str, Any] | None = None,
    conn: asyncpg.Connection | None = None,
    session_unrecorded: bool = False,
) -> asyncpg.Record | None:
    """Move the order to `to` if its status allows it (compare-and-set); the moved row, or None when not.

    `values`: other columns of `orders` set by the same statement (e.g. `stripe_error_code`), by name.
    `session_unrecorded`: only while no Checkout Session is recorded on the order (checkout's refusal).
    With `conn` it runs in that connection's open transaction, so the move and its side effects commit
    together; without, it borrows a connection for the one statement.
    """
    allowed = [s.value for s in ENTERED_FROM.get(to, frozenset())]
    if not allowed:
        return None
    extra = dict(values or {})
    unknown = set(extra) - _SETTABLE
    if unknown:
        raise ValueError(f"move() cannot set {sorted(unknown)}")
    if reason is not None:
        extra["status_reason"] = reason[:2000]
    names = sorted(extra)
    assignments = "".join(f", {name} = ${index + 4}" for index, name in enumerate(names))
    # The column names come from _SETTABLE, never from input; every value is bound.
    sql = (
        f"UPDATE orders SET status = $2, updated_at = now(){assignments}"  # noqa: S608
        " WHERE id = $1 AND status = ANY($3::varchar[])"
        + (" AND checkout_session_id IS NULL" if session_unrecorded else "")
        + " RETURNING *"
    )
    args = (order_id, to.value, allowed, *(extra[name] for name in names))
    row: asyncpg.Record | None
    if conn is not None:
        row = await conn.fetchrow(sql, *args)
    else:
        async with connection() as borrowed:
            row = await borrowed.fetchrow(sql, *args)
    return row


# The columns a move may set besides the status (the confirmation's record of the session; Stripe's code).
_SETTABLE = frozenset(
    {
        "stripe_error_code",
        "amount_discount",
        "amount_paid",
        "payment_intent_id",
        "paid_at",
        "confirmed_by",
        "checkout_session_id",
    }
)
