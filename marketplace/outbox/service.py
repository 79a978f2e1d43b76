"""Writing outbox messages (inside the caller's transaction) and delivering them (arq cron).

Delivery goes through a `Notifier`; the default one writes a structured log line, which is what a
development setup wants. A real provider (email, push) plugs in as another `Notifier`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from marketplace.outbox.tables import OutboxMessage

log = logging.getLogger("marketplace.outbox")


class Notifier(Protocol):
    async def send(self, kind: str, principal_id: uuid.UUID | None, payload: dict[str, Any]) -> None: ...


class LogNotifier:
    async def send(self, kind: str, principal_id: uuid.UUID | None, payload: dict[str, Any]) -> None:
        log.info("notify %s principal=%s payload=%s", kind, principal_id, payload)


async def add_message(
    kind: str, dedupe_key: str, payload: dict[str, Any], principal_id: uuid.UUID | None = None
) -> bool:
    """Record a message once per `dedupe_key`; True if this call added it."""
    rows = (
        await OutboxMessage.insert(
            OutboxMessage(
                id=uuid.uuid4(),
                kind=kind,
                dedupe_key=dedupe_key[:255],
                principal=principal_id,
                payload=payload,
                created_at=datetime.now(UTC),
            )
        )
        .on_conflict(target=OutboxMessage.dedupe_key, action="DO NOTHING")
        .returning(OutboxMessage.id)
    )
    return bool(rows)


async def deliver_pending(notifier: Notifier, batch: int = 100, max_attempts: int = 10) -> int:
    """Send undelivered messages oldest first; a failure is recorded and retried on the next run."""
    sent = 0
    async with OutboxMessage._meta.db.transaction():
        # Row locks with SKIP LOCKED: several workers drain the outbox without sending a message twice.
        rows = (
            await OutboxMessage.select()
            .where(OutboxMessage.delivered_at.is_null() & (OutboxMessage.attempts < max_attempts))
            .order_by(OutboxMessage.created_at)
            .limit(batch)
            .lock_rows("UPDATE", skip_locked=True)
            .output(load_json=True)
        )
        sent = await _send_all(notifier, rows)
    return sent


async def _send_all(notifier: Notifier, rows: list[dict[str, Any]]) -> int:
    sent = 0
    for row in rows:
        try:
            await notifier.send(row["kind"], row["principal"], row["payload"])
        except Exception as exc:
            log.warning("outbox delivery of %s failed: %s", row["id"], exc)
            await OutboxMessage.update(
                {
                    OutboxMessage.attempts: OutboxMessage.attempts + 1,
                    OutboxMessage.last_error: str(exc)[:1000],
                }
            ).where(OutboxMessage.id == row["id"])
            continue
        await OutboxMessage.update(
            {
                OutboxMessage.delivered_at: datetime.now(UTC),
                OutboxMessage.attempts: OutboxMessage.attempts + 1,
            }
        ).where(OutboxMessage.id == row["id"])
        sent += 1
    return sent
