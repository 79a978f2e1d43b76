"""The outbox: one message per fact, delivered once, failures kept for the next run."""

from __future__ import annotations

import uuid
from typing import Any

from marketplace.auth.service import create_principal
from marketplace.auth.tables import Role
from marketplace.outbox.service import add_message, deliver_pending
from marketplace.outbox.tables import OutboxMessage


class Recording:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, uuid.UUID | None, dict[str, Any]]] = []
        self.fail = fail

    async def send(self, kind: str, principal_id: uuid.UUID | None, payload: dict[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("mail server down")
        self.sent.append((kind, principal_id, payload))


async def test_message_is_recorded_once_per_fact_and_delivered_once(settings: Any) -> None:
    principal_id, _ = await create_principal(Role.seller, "outbox seller")
    key = f"test:{uuid.uuid4()}"
    assert await add_message("seller.test", key, {"n": 1}, principal_id) is True
    assert await add_message("seller.test", key, {"n": 2}, principal_id) is False  # a retried writer adds nothing

    failing = Recording(fail=True)
    await deliver_pending(failing)
    row = await OutboxMessage.select().where(OutboxMessage.dedupe_key == key).first()
    assert row is not None
    assert row["delivered_at"] is None
    assert row["attempts"] == 1
    assert row["last_error"] == "mail server down"

    notifier = Recording()
    await deliver_pending(notifier)
    mine = [s for s in notifier.sent if s[1] == principal_id]
    assert mine == [("seller.test", principal_id, {"n": 1})]
    await deliver_pending(notifier)
    assert [s for s in notifier.sent if s[1] == principal_id] == mine  # not sent twice
    row = await OutboxMessage.select().where(OutboxMessage.dedupe_key == key).first()
    assert row is not None
    assert row["delivered_at"] is not None
