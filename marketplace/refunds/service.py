"""Refunds the platform decides to make: queued in the deciding transaction, made with Stripe after it.

`queue_refund` writes the refund row and an outbox message (`refund.create`) in the caller's
transaction (the confirmation's, for an oversell): either both exist or neither. The outbox delivers
the message at least once, after the commit, to `RefundSender` (a `Notifier`), which makes the refund by
the one Stripe-call shape (`connect.calls.post`): the row is the intent, `refund:{id}` the key, and the
answer is recorded only while the row is still unrecorded. So a crash, a timeout or a repeated delivery
sends the same key again and Stripe makes one refund.

A transient Stripe failure raises: the outbox retries with backoff and, after its maximum attempts,
parks the message as dead (listed, counted, replayable). A definitive refusal marks the row `refused`
with Stripe's code, logged at error and counted: it needs a person, and retrying cannot help.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import stripe

from connect import calls
from connect.idempotency import refund_key
from connect.profiles import ChargeType
from connect.refunds import CreatedRefund, RefundRequest, RefundState, create_refund, find_refund, refund_params
from marketplace.lib.db import connection
from marketplace.lib.observability import METRICS, count_shared
from marketplace.lib.stripe_errors import is_transient, stripe_code
from marketplace.outbox.service import Notifier, OutboxDelivery, SendResources, add_message, declare_kind
from marketplace.refunds.tables import RefundReason, RefundStatus

log = logging.getLogger("marketplace.refunds")

REFUNDS = "refunds_total"
METRICS.describe(
    REFUNDS,
    "counter",
    "Refunds by outcome (queued, created, refused; failed or canceled at Stripe after it accepted them) and reason.",
)


@dataclass(frozen=True, slots=True)
class RefundRow:
    id: uuid.UUID
    order_id: uuid.UUID
    reason: str
    amount: int
    currency: str
    charge_type: ChargeType
    stripe_account_id: str
    payment_intent_id: str
    status: RefundStatus
    stripe_refund_id: str | None
    stripe_status: str | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RefundRow:
        return cls(
            id=row["id"],
            order_id=row["order"],
            reason=row["reason"],
            amount=int(row["amount"]),
            currency=row["currency"],
            charge_type=row["charge_type"],
            stripe_account_id=row["stripe_account_id"],
            payment_intent_id=row["payment_intent_id"],
            status=RefundStatus(row["status"]),
            stripe_refund_id=row["stripe_refund_id"],
            stripe_status=row["stripe_status"],
            failure_code=row["failure_code"],
            failure_message=row["failure_message"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


async def queue_refund(
    conn: asyncpg.Connection,
    *,
    order_id: uuid.UUID,
    reason: RefundReason,
    amount: int,
    currency: str,
    charge_type: ChargeType,
    stripe_account_id: str,
    payment_intent_id: str,
) -> uuid.UUID | None:
    """Write the refund row and its outbox message in `conn`'s open transaction; the row's id, or None
    when this order already has a refund for `reason` (one oversell refund per order)."""
    refund_id = uuid.uuid4()
    written = await conn.fetchval(
        """
        INSERT INTO refunds (id, "order", reason, amount, currency, charge_type, stripe_account_id,
                             payment_intent_id, status, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'requested', now(), now())
        ON CONFLICT DO NOTHING RETURNING id
        """,
        refund_id,
        order_id,
        reason.value,
        amount,
        currency,
        charge_type,
        stripe_account_id,
        payment_intent_id,
    )
    if written is None:
        return None
    await add_message(REFUND_CREATE, f"refund:{refund_id}:create", {"refund_id": str(refund_id)}, conn=conn)
    return refund_id  # the caller counts it (REFUNDS, outcome "queued") once its transaction has committed


async def refund_by_id(refund_id: uuid.UUID) -> RefundRow | None:
    async with connection() as conn:
        row = await conn.fetchrow("SELECT * FROM refunds WHERE id = $1", refund_id)
    return RefundRow.from_row(row) if row is not None else None


# Stripe's refund statuses that end it: once one is recorded, a slower, older read never replaces it.
_FINAL_STRIPE_STATUSES = ("failed", "canceled")


async def record_stripe_state(row: RefundRow, state: RefundState) -> RefundRow:
    """Apply a refund's state as Stripe shows it now (a refund event's re-read) to its row.

    A row still `requested` (its create's answer was lost) becomes `created` with Stripe's id. A refund
    that fails or is cancelled after Stripe accepted it (a closed card, say) leaves the buyer owed: an
    error line and `refunds_total{outcome="failed"}`, once, for a person to act on."""
    async with connection() as conn, conn.transaction():
        # Events for one change arrive together: they queue here, and each sees what the previous wrote
        # (a statement of its own, so its snapshot is taken after the lock), so a failure counts once.
        before = await conn.fetchval("SELECT stripe_status FROM refunds WHERE id = $1 FOR UPDATE", row.id)
        updated = await conn.fetchrow(
            """
            UPDATE refunds
               SET stripe_status = $3,
                   stripe_refund_id = coalesce(stripe_refund_id, $2),
                   failure_code = coalesce($4, failure_code),
                   status = CASE WHEN status = 'requested' THEN 'created' ELSE status END,
                   updated_at = now()
             WHERE id = $1 AND status <> 'refused' AND (stripe_refund_id IS NULL OR stripe_refund_id = $2)
               AND (stripe_status IS NULL OR stripe_status <> ALL($5::varchar[]) OR $3 = ANY($5::varchar[]))
         RETURNING *
            """,
            row.id,
            state.id,
            state.status,
            state.failure_reason,
            list(_FINAL_STRIPE_STATUSES),
        )
    if updated is None:
        fresh = await refund_by_id(row.id)
        assert fresh is not None
        return fresh
    recorded = RefundRow.from_row(updated)
    _report_if_ended(recorded, before, state.failure_reason)
    return recorded


def _report_if_ended(recorded: RefundRow, before: str | None, failure_reason: str | None) -> None:
    """Once per refund, when Stripe's status has just become failed or canceled (from the create's answer
    or from an event's re-read): the buyer is owed, so an error line and a count for a person to act."""
    status = recorded.stripe_status
    if status not in _FINAL_STRIPE_STATUSES or before == status:
        return
    count_shared(REFUNDS, outcome=status, reason=recorded.reason)
    log.error(
        "refund %s (%s) of order %s %s at Stripe (%s): a person must act, the buyer is owed %d %s",
        recorded.id,
        recorded.stripe_refund_id,
        recorded.order_id,
        status,
        failure_reason,
        recorded.amount,
        recorded.currency,
    )


async def refunds_of(order_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[RefundRow]]:
    out: dict[uuid.UUID, list[RefundRow]] = {order_id: [] for order_id in order_ids}
    if not order_ids:
        return out
    async with connection() as conn:
        rows = await conn.fetch(
            'SELECT * FROM refunds WHERE "order" = ANY($1::uuid[]) ORDER BY created_at, id', order_ids
        )
    for row in rows:
        out[row["order"]].append(RefundRow.from_row(row))
    return out


async def issue_refund(client: stripe.StripeClient, refund_id: uuid.UUID) -> RefundRow:
    """Make the row's refund with Stripe (once, whatever the number of calls); the row as recorded.

    Raises the Stripe error when it is transient (the caller retries later with the same key)."""

    async def intent() -> tuple[RefundRow, str]:
        row = await refund_by_id(refund_id)
        if row is None:
            raise LookupError(f"no refund {refund_id}")
        return row, refund_key(row.id)

    async def call(row: RefundRow, key: str) -> CreatedRefund | stripe.StripeError | None:
        if row.status is not RefundStatus.requested:
            return None  # made (or refused) already: a repeated delivery
        params, stripe_account = refund_params(
            RefundRequest(
                refund_id=str(row.id),
                order_id=str(row.order_id),
                charge_type=row.charge_type,
                connected_account=row.stripe_account_id,
                payment_intent=row.payment_intent_id,
                amount=row.amount,
                reason=row.reason,
            )
        )
        try:
            return await create_refund(client, params, stripe_account, key)
        except stripe.StripeError as exc:
            if is_transient(exc):
                raise
            if stripe_code(exc) == "charge_already_refunded":
                # Perhaps by us, on an attempt whose answer was lost, past the key's 24 hours: look before
                # calling the buyer owed (a transient failure of the lookup is retried like the create).
                made = await find_refund(client, row.payment_intent_id, stripe_account, str(row.id))
                if made is not None:
                    log.warning("refund %s was made on an earlier attempt (%s); recorded now", row.id, made.id)
                    return made
            return exc

    async def record(row: RefundRow, answer: CreatedRefund | stripe.StripeError | None) -> RefundRow:
        if answer is None:
            return row
        async with connection() as conn:
            if isinstance(answer, CreatedRefund):
                updated = await conn.fetchrow(
                    """
                    UPDATE refunds SET status = 'created', stripe_refund_id = $2, stripe_status = $3, updated_at = now()
                     WHERE id = $1 AND status = 'requested' RETURNING *
                    """,
                    row.id,
                    answer.id,
                    answer.status,
                )
            else:
                updated = await conn.fetchrow(
                    """
                    UPDATE refunds SET status = 'refused', failure_code = $2, failure_message = $3, updated_at = now()
                     WHERE id = $1 AND status = 'requested' RETURNING *
                    """,
                    row.id,
                    (stripe_code(answer) or type(answer).__name__)[:64],
                    (answer.user_message or str(answer))[:2000],
                )
        if updated is None:
            fresh = await refund_by_id(row.id)
            assert fresh is not None
            return fresh
        recorded = RefundRow.from_row(updated)
        if recorded.status is RefundStatus.created:
            count_shared(REFUNDS, outcome="created", reason=recorded.reason)
            _report_if_ended(recorded, row.stripe_status, None)  # a refund can come back failed at once
            log.info(
                "refund %s of order %s made: %s (%s)",
                recorded.id,
                recorded.order_id,
                recorded.stripe_refund_id,
                recorded.stripe_status,
            )
        else:
            count_shared(REFUNDS, outcome="refused", reason=recorded.reason)
            log.error(
                "refund %s of order %s refused by Stripe: %s (a person must act: the buyer is owed %d %s)",
                recorded.id,
                recorded.order_id,
                recorded.failure_code,
                recorded.amount,
                recorded.currency,
            )
        return recorded

    return await calls.post("create a refund", intent=intent, call=call, record=record)


class RefundSender:
    """The outbox's receiver for `refund.create` messages: makes the refund (see `issue_refund`)."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    async def send(self, message: OutboxDelivery) -> None:
        await issue_refund(self._client, uuid.UUID(str(message.payload["refund_id"])))


def refund_sender(resources: SendResources) -> Notifier:
    """The sender of `refund.create` messages: makes each refund with the worker's Stripe client."""
    return RefundSender(resources.stripe)


REFUND_CREATE = declare_kind("refund.create", refund_sender)  # the outbox kind RefundSender takes
