"""The one door to paid: `confirm_order`, and `follow_session`, which every caller applies a re-read with.

Callers (each re-reads the Checkout Session from Stripe first, as the connected account for a direct
charge, and passes what it read): the webhook handlers of both endpoints, `POST /orders/{id}/verify`
(the success page) and, later, the reconciler. Whoever comes first does the work, exactly once; the
others find it done. The function never trusts an event's snapshot and never calls Stripe itself, so
it holds no connection across a network call.

`confirm_order(order_id, session, source)`:

1. **The session belongs to the order**: its id is the one recorded at checkout (or, when that record
   was lost, the order's metadata names it), its metadata and `client_reference_id` carry the order's
   id, it was read as the order's connected account for a direct charge (on the platform for a
   destination charge), its currency is the order's, and `amount_total` is the order's total less the
   discount Stripe recorded (`amount_subtotal` is the total). A mismatch changes nothing, answers
   `SessionMismatch` and is logged as a security event with both sides' values.
2. **It is paid**: `payment_status` `paid` with a PaymentIntent, or a zero total (`amount_total == 0`:
   Stripe says `no_payment_required`, older API versions `paid`; there may be no PaymentIntent, or a
   canceled one from an earlier attempt: it is never dereferenced). Not paid yet: nothing changes.
3. **One short transaction**: the compare-and-set `pending|processing → paid … RETURNING`. No row:
   someone else won; the current state is returned, with no side effects. On the winning path, in
   the same transaction, stock is taken line by line (`stock = stock - q WHERE stock >= q`, in listing
   id order so two confirmations never deadlock) and the outbox rows are written (buyer receipt, seller
   sale notice, and the fulfilment request, which is the seller's too; unique per order and kind).
4. **Oversold**: if a line cannot be filled, that transaction is rolled back (no stock taken, nothing
   announced) and a second one moves the order `pending|processing → oversold`, queues a full refund
   (a refund row and its outbox message: the Stripe call is made after the commit, by the worker) and
   tells buyer and seller. A zero-total order that oversells has nothing to refund.

`follow_session` is what the callers call: the same ownership check, then the move the session's
state asks for: paid → `confirm_order`; completed unpaid with its PaymentIntent processing (a delayed
method) → processing; completed unpaid with the PaymentIntent back at `requires_payment_method` or
`canceled` (the delayed payment failed) → failed; expired → expired (from pending only); open → nothing.
Deciding from the re-read rather than from the event's type makes every caller order-independent.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from connect.checkout import SessionFacts
from connect.profiles import account_of
from marketplace.lib.db import connection
from marketplace.lib.observability import METRICS, count_shared
from marketplace.lib.problems import NotFound, Problem
from marketplace.notifications.service import notification_writer
from marketplace.orders import states
from marketplace.orders.service import OrderLineRow, OrderRow, order_by_id
from marketplace.orders.states import OrderStatus
from marketplace.outbox.service import add_messages, declare_kind
from marketplace.refunds.service import REFUNDS, queue_refund
from marketplace.refunds.tables import RefundReason

log = logging.getLogger("marketplace.confirm")

# The outbox kinds a confirmation writes (messages to people), declared with their sender.
ORDER_RECEIPT = declare_kind("order.receipt", notification_writer)
ORDER_SALE = declare_kind("order.sale", notification_writer)
ORDER_FULFIL = declare_kind("order.fulfil", notification_writer)
ORDER_OVERSOLD = declare_kind("order.oversold", notification_writer)
ORDER_OVERSOLD_SELLER = declare_kind("order.oversold_seller", notification_writer)
security_log = logging.getLogger("marketplace.security")

CONFIRMATIONS = "order_confirmations_total"
METRICS.describe(
    CONFIRMATIONS,
    "counter",
    "confirm_order outcomes (paid, oversold, already, unpaid, mismatch, paid_but_closed) by caller kind "
    "(webhook, verify, …).",
)

Kick = Callable[[], Awaitable[None]]  # asks for the outbox to be delivered now (best effort; a cron follows)


class SessionMismatch(Problem):
    status = 409
    slug = "session-mismatch"
    title = "The Checkout Session does not belong to this order"


@dataclass(frozen=True, slots=True)
class Confirmation:
    order: OrderRow  # as it is after this call
    won: bool  # this call moved the order (to paid or oversold) and wrote its side effects
    refund_id: uuid.UUID | None = None  # the refund an oversell queued


def _kind(source: str) -> str:
    return source.partition(":")[0] or "unknown"


def ownership_mismatches(order: OrderRow, session: SessionFacts) -> list[tuple[str, Any, Any]]:
    """(what, the order's value, the session's value) for every way the session is not this order's."""
    found: list[tuple[str, Any, Any]] = []
    # The session must be the one checkout recorded. None recorded is no wildcard: a buyer only ever gets
    # a Checkout URL after it is recorded, while a seller with their own API keys (a direct charge's
    # account) could make a session carrying the order's metadata, say 100 % off, and pay nothing.
    if order.checkout_session_id is None or session.id != order.checkout_session_id:
        found.append(("session id", order.checkout_session_id, session.id))
    if session.metadata_order_id != str(order.id):
        found.append(("metadata.order_id", str(order.id), session.metadata_order_id))
    if session.client_reference_id != str(order.id):
        found.append(("client_reference_id", str(order.id), session.client_reference_id))
    expected_account = account_of(order.charge_type, order.stripe_account_id)
    if session.read_as != expected_account:
        found.append(("read as account", expected_account, session.read_as))
    if session.currency != order.currency:
        found.append(("currency", order.currency, session.currency))
    return found


def amount_mismatches(order: OrderRow, session: SessionFacts) -> list[tuple[str, Any, Any]]:
    """The amounts: what Stripe charged must be the order's total less the discount Stripe recorded."""
    found: list[tuple[str, Any, Any]] = []
    if session.amount_subtotal != order.total:
        found.append(("amount_subtotal", order.total, session.amount_subtotal))
    if not 0 <= session.amount_discount <= order.total:
        found.append(("amount_discount", f"0..{order.total}", session.amount_discount))
    if session.amount_tax or session.amount_shipping:
        found.append(("tax and shipping", 0, session.amount_tax + session.amount_shipping))
    expected_total = order.total - session.amount_discount
    if session.amount_total != expected_total:
        found.append(("amount_total", expected_total, session.amount_total))
    return found


def is_paid(session: SessionFacts) -> bool:
    """Paid, as Stripe's fulfilment guide has it: never dereferences the PaymentIntent of a zero total."""
    if session.status != "complete" or session.amount_total is None:
        return False
    if session.amount_total == 0:
        return session.payment_status in ("no_payment_required", "paid")
    return session.payment_status == "paid" and session.payment_intent_id is not None


def _refuse(order: OrderRow, session: SessionFacts, source: str, found: list[tuple[str, Any, Any]]) -> SessionMismatch:
    details = "; ".join(f"{what}: order has {ours!r}, session has {theirs!r}" for what, ours, theirs in found)
    security_log.warning(
        "security: session %s does not match order %s (source=%s): %s", session.id, order.id, source, details
    )
    count_shared(CONFIRMATIONS, outcome="mismatch", source=_kind(source))
    return SessionMismatch(
        f"The Checkout Session {session.id} does not belong to order {order.id}; nothing was changed.",
        order_id=str(order.id),
        mismatched=[what for what, _, _ in found],
    )


async def _order(order_id: uuid.UUID) -> OrderRow:
    order = await order_by_id(order_id)
    if order is None:
        raise NotFound(f"No order with id {order_id}.")
    return order


class _Short(Exception):
    def __init__(self, line: OrderLineRow) -> None:
        super().__init__(str(line.listing_id))
        self.line = line


class _Lost(Exception):
    pass


async def confirm_order(
    order_id: uuid.UUID,
    session: SessionFacts,
    source: str,
    *,
    kick: Kick | None = None,
    order: OrderRow | None = None,
) -> Confirmation:
    """Move the order to paid if `session` (as read from Stripe) shows it paid; see the module doc.

    `source` names the caller (`webhook:evt_…`, `verify`, `reconciler`); it is stored with the win.
    `order`: the row as the caller just read it (saves a read; the compare-and-set decides anyway)."""
    if order is None or order.id != order_id:
        order = await _order(order_id)
    found = ownership_mismatches(order, session) + amount_mismatches(order, session)
    if found:
        raise _refuse(order, session, source, found)
    if not is_paid(session):
        count_shared(CONFIRMATIONS, outcome="unpaid", source=_kind(source))
        return Confirmation(order, won=False)
    if order.status not in states.ENTERED_FROM[OrderStatus.paid]:
        if order.status in (OrderStatus.failed, OrderStatus.expired) and session.amount_total:
            # Money taken for an order that will not be fulfilled: no guard should let this happen (an
            # expired session cannot be paid; checkout fails only orders with no session recorded), so
            # when it does, a person must look (and refund): an error line and its own count, never silence.
            count_shared(CONFIRMATIONS, outcome="paid_but_closed", source=_kind(source))
            log.error(
                "order %s is %s but its session %s is paid (%d %s, PaymentIntent %s): not fulfilled, not "
                "refunded; refund it by hand (seen by %s)",
                order.id,
                order.status.value,
                session.id,
                session.amount_total,
                session.currency,
                session.payment_intent_id,
                source,
            )
            return Confirmation(order, won=False)
        count_shared(CONFIRMATIONS, outcome="already", source=_kind(source))
        return Confirmation(order, won=False)
    lines, seller_principal = await _lines_and_seller(order)
    record: dict[str, Any] = {
        "amount_paid": session.amount_total,
        "amount_discount": session.amount_discount,
        "payment_intent_id": session.payment_intent_id if session.amount_total else None,
        "paid_at": datetime.now(UTC),
        "confirmed_by": source[:300],
        "checkout_session_id": session.id,
    }
    try:
        async with connection() as conn, conn.transaction():
            row = await states.move(order.id, OrderStatus.paid, values=record, conn=conn)
            if row is None:
                raise _Lost
            paid = OrderRow.from_row(row)
            for line in sorted(lines, key=lambda x: x.listing_id):
                taken = await conn.fetchval(
                    "UPDATE listings SET stock = stock - $2, updated_at = now()"
                    " WHERE id = $1 AND (stock IS NULL OR stock >= $2) RETURNING true",
                    line.listing_id,
                    line.quantity,
                )
                if not taken:
                    raise _Short(line)
            await _announce_sale(conn, paid, lines, seller_principal)
    except _Lost:
        count_shared(CONFIRMATIONS, outcome="already", source=_kind(source))
        return Confirmation(await _order(order.id), won=False)
    except _Short as short:
        return await _oversold(order, lines, seller_principal, short.line, record, source, kick)
    count_shared(CONFIRMATIONS, outcome="paid", source=_kind(source))
    log.info("order %s paid (%d %s, by %s)", paid.id, session.amount_total, paid.currency, source)
    await _kick(kick)
    return Confirmation(paid, won=True)


async def _oversold(
    order: OrderRow,
    lines: list[OrderLineRow],
    seller_principal: uuid.UUID | None,
    short: OrderLineRow,
    record: dict[str, Any],
    source: str,
    kick: Kick | None,
) -> Confirmation:
    reason = f"Paid, but {short.title!r} had fewer than {short.quantity} left: refunded in full, not fulfilled."
    refund_id: uuid.UUID | None = None
    moved: OrderRow | None = None
    async with connection() as conn, conn.transaction():
        row = await states.move(order.id, OrderStatus.oversold, reason=reason, values=record, conn=conn)
        if row is not None:
            moved = OrderRow.from_row(row)
            amount = int(record["amount_paid"] or 0)
            if amount > 0 and record["payment_intent_id"]:
                refund_id = await queue_refund(
                    conn,
                    order_id=moved.id,
                    reason=RefundReason.oversold,
                    amount=amount,
                    currency=moved.currency,
                    charge_type=moved.charge_type,
                    stripe_account_id=moved.stripe_account_id,
                    payment_intent_id=str(record["payment_intent_id"]),
                )
            payload = _payload(moved, lines) | {"amount": amount, "refund_id": str(refund_id) if refund_id else None}
            await add_messages(
                conn,
                [
                    (ORDER_OVERSOLD, f"order:{moved.id}:oversold", payload, moved.buyer),
                    (ORDER_OVERSOLD_SELLER, f"order:{moved.id}:oversold_seller", payload, seller_principal),
                ],
            )
    if moved is None:
        count_shared(CONFIRMATIONS, outcome="already", source=_kind(source))
        return Confirmation(await _order(order.id), won=False)
    count_shared(CONFIRMATIONS, outcome="oversold", source=_kind(source))
    if refund_id is not None:
        count_shared(REFUNDS, outcome="queued", reason=RefundReason.oversold.value)
    log.warning(
        "order %s oversold (%s short); full refund %s queued (by %s)", order.id, short.listing_id, refund_id, source
    )
    await _kick(kick)
    return Confirmation(moved, won=True, refund_id=refund_id)


def _payload(order: OrderRow, lines: list[OrderLineRow]) -> dict[str, Any]:
    return {
        "order_id": str(order.id),
        "email": order.email,
        "seller_id": str(order.seller),
        "currency": order.currency,
        "amount": order.amount_paid if order.amount_paid is not None else order.total,
        "application_fee": order.application_fee,
        "charge_type": order.charge_type,
        "lines": [
            {"listing_id": str(x.listing_id), "title": x.title, "quantity": x.quantity, "amount": x.amount}
            for x in lines
        ],
    }


async def _lines_and_seller(order: OrderRow) -> tuple[list[OrderLineRow], uuid.UUID | None]:
    """The order's lines (its snapshot) and its seller's principal, in one round trip, before the
    transaction (neither changes once the order is written)."""
    async with connection() as conn:
        rows = await conn.fetch(
            """
            SELECT l.listing, l.title, l.unit_amount, l.quantity, l.amount, s.principal AS seller_principal
              FROM sellers s LEFT JOIN order_lines l ON l."order" = $1
             WHERE s.id = $2
             ORDER BY l.position
            """,
            order.id,
            order.seller,
        )
    lines = [
        OrderLineRow(r["listing"], r["title"], int(r["unit_amount"]), int(r["quantity"]), int(r["amount"]))
        for r in rows
        if r["listing"] is not None
    ]
    return lines, rows[0]["seller_principal"] if rows else None


async def _announce_sale(
    conn: asyncpg.Connection, order: OrderRow, lines: list[OrderLineRow], seller_principal: uuid.UUID | None
) -> None:
    """The paid order's outbox rows, unique per order and kind (one statement, in the confirmation's
    transaction)."""
    payload = _payload(order, lines) | {"net": order.seller_share or 0}
    await add_messages(
        conn,
        [
            (ORDER_RECEIPT, f"order:{order.id}:receipt", payload, order.buyer),
            (ORDER_SALE, f"order:{order.id}:sale", payload, seller_principal),
            (ORDER_FULFIL, f"order:{order.id}:fulfil", payload, seller_principal),  # the seller ships it
        ],
    )


async def _kick(kick: Kick | None) -> None:
    if kick is None:
        return
    try:
        await kick()
    except Exception as exc:  # the outbox cron delivers anyway; a failed kick only delays it
        log.warning("could not ask for the outbox to be delivered now (%s); the next delivery run sends it", exc)


async def follow_session(
    order_id: uuid.UUID,
    session: SessionFacts,
    source: str,
    *,
    kick: Kick | None = None,
    order: OrderRow | None = None,
) -> OrderRow:
    """Apply what the re-read session says to the order (see the module doc); the order as it is after.

    `order`: the row as the caller just read it (saves a read; every move is a compare-and-set)."""
    if order is None or order.id != order_id:
        order = await _order(order_id)
    found = ownership_mismatches(order, session)
    if found:
        raise _refuse(order, session, source, found)
    if is_paid(session):
        return (await confirm_order(order_id, session, source, kick=kick, order=order)).order
    moved: asyncpg.Record | None = None
    if session.status == "expired":
        moved = await states.move(order.id, OrderStatus.expired, reason="The Checkout Session expired unpaid.")
    elif session.status == "complete" and session.payment_status == "unpaid":
        intent = session.payment_intent_status
        if intent == "processing":
            moved = await states.move(
                order.id, OrderStatus.processing, reason="A delayed payment method was submitted; it is settling."
            )
        elif intent in ("requires_payment_method", "canceled"):
            moved = await states.move(
                order.id,
                OrderStatus.failed,
                reason="The payment did not go through.",
                values={"stripe_error_code": (session.payment_error_code or "payment_failed")[:64]},
            )
    if moved is not None:
        log.info("order %s %s (by %s)", order.id, moved["status"], source)
        return OrderRow.from_row(moved)
    return await _order(order.id)
