"""The default notifier: a structured log line, and a row in `notifications` its recipient can list.

Each outbox message becomes at most one notification (unique on the message's `dedupe_key`): the outbox
delivers at least once, and a repeated delivery adds nothing. A real provider (email, push) is another
`Notifier` beside this one. The modules that write messages to people declare their kinds with
`notification_writer` as the sender (`marketplace.outbox.service.declare_kind`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connect.currencies import format_amount
from marketplace.lib.db import connection
from marketplace.lib.schemas import ROW_CURSOR
from marketplace.outbox.service import LogNotifier, Notifier, OutboxDelivery, SendResources

# What each kind says, in a sentence built from its payload (never anything a payload did not carry).
_SUBJECTS = {
    "order.receipt": "Receipt: you paid {amount} for order {order_id}",
    "order.sale": "Sold: order {order_id} was paid, {amount}; your share after the platform's fee is {net}",
    "order.fulfil": "Fulfil order {order_id}",
    "order.oversold": "Order {order_id} could not be filled; {amount} is being refunded in full",
    "order.oversold_seller": "Order {order_id} was paid but the stock had run out; the buyer is refunded in full",
}


def subject_of(kind: str, payload: dict[str, Any]) -> str:
    template = _SUBJECTS.get(kind)
    currency = str(payload.get("currency") or "")
    values = {
        "order_id": payload.get("order_id", ""),
        "amount": format_amount(int(payload.get("amount", 0)), currency) if currency else "",
        "net": format_amount(int(payload.get("net", 0)), currency) if currency else "",
    }
    return template.format(**values) if template else kind


class NotificationWriter:
    """Log the message (like `LogNotifier`) and keep it for its recipient."""

    def __init__(self) -> None:
        self._log = LogNotifier()

    async def send(self, message: OutboxDelivery) -> None:
        email = message.payload.get("email") if message.principal_id is None else None
        async with connection() as conn:
            await conn.execute(
                """
                INSERT INTO notifications (id, principal, email, kind, dedupe_key, subject, payload, created_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, now())
                ON CONFLICT (dedupe_key) DO NOTHING
                """,
                uuid.uuid4(),
                message.principal_id,
                email if isinstance(email, str) else None,
                message.kind,
                message.dedupe_key,
                subject_of(message.kind, message.payload),
                json.dumps(message.payload, sort_keys=True, default=str),
            )
        await self._log.send(message)


def notification_writer(resources: SendResources) -> Notifier:
    """The sender of every outbox kind addressed to people (`declare_kind(kind, notification_writer)`)."""
    return NotificationWriter()


@dataclass(frozen=True, slots=True)
class NotificationRow:
    id: uuid.UUID
    kind: str
    subject: str
    payload: dict[str, Any]
    created_at: datetime


def _encode(row: NotificationRow) -> str:
    return ROW_CURSOR.encode(row.created_at, row.id)


def _decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    return ROW_CURSOR.position(cursor)


async def notifications_page(
    principal_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[NotificationRow], str | None]:
    """A principal's notifications, newest first, keyset-paginated on (created_at, id)."""
    after = _decode(cursor) if cursor else None
    async with connection() as conn:
        rows = await conn.fetch(
            """
            SELECT id, kind, subject, payload, created_at FROM notifications
             WHERE principal = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
             ORDER BY created_at DESC, id DESC LIMIT $4
            """,
            principal_id,
            after[0] if after else None,
            after[1] if after else None,
            limit + 1,
        )
    found = [NotificationRow(r["id"], r["kind"], r["subject"], json.loads(r["payload"]), r["created_at"]) for r in rows]
    page = found[:limit]
    return page, _encode(page[-1]) if len(found) > limit else None
