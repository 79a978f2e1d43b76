"""HTTP: the admin routes to list outbox messages (dead ones, above all) and replay one; the outbox gauges."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.types import ControllerRouterHandler

from marketplace.auth.guards import admin_only
from marketplace.lib.observability import METRICS
from marketplace.lib.problems import Conflict, NotFound, Problem
from marketplace.lib.schemas import ROW_CURSOR, Cursor
from marketplace.outbox import service
from marketplace.outbox.tables import OutboxStatus


class OutboxMessageSummary(msgspec.Struct):
    """A stored outbox message without its payload."""

    id: uuid.UUID
    kind: str
    dedupe_key: str  # what receivers de-duplicate on
    principal_id: uuid.UUID | None
    status: OutboxStatus
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    lease_until: datetime | None
    delivered_at: datetime | None


class OutboxPage(msgspec.Struct):
    items: list[OutboxMessageSummary]
    next_cursor: str | None


class InvalidCursor(Problem):
    slug = "invalid-cursor"
    title = "Invalid cursor"


def _summary(record: service.OutboxRecord) -> OutboxMessageSummary:
    return OutboxMessageSummary(
        id=record.id,
        kind=record.kind,
        dedupe_key=record.dedupe_key,
        principal_id=record.principal_id,
        status=record.status,
        attempts=record.attempts,
        last_error=record.last_error,
        created_at=record.created_at,
        next_attempt_at=record.next_attempt_at,
        lease_until=record.lease_until,
        delivered_at=record.delivered_at,
    )


def _encode_cursor(record: service.OutboxRecord) -> str:
    return ROW_CURSOR.encode(record.created_at, record.id)


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    if (position := ROW_CURSOR.decode(cursor)) is None:
        raise InvalidCursor("The cursor is not one this API returned.")
    return position


class OutboxAdminController(Controller):
    path = "/admin/outbox"
    tags = ["admin"]
    guards = [admin_only]
    security = [{"BearerToken": []}]

    @get(
        "/",
        operation_id="listOutboxMessages",
        summary="Outbox messages, newest first, by status (e.g. the dead ones)",
        description=(
            "Stored outbox messages without their payloads, optionally only those in one `status`; pass "
            "`next_cursor` as `cursor` for the next page. 400 `invalid-cursor` for a cursor this API did not "
            "return."
        ),
        raises=[InvalidCursor],
    )
    async def list_messages(
        self,
        status: FromQuery[OutboxStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Cursor = None,
    ) -> OutboxPage:
        before = _decode_cursor(cursor) if cursor else None
        records = await service.list_messages(status=status, limit=limit + 1, before=before)
        page = records[:limit]
        next_cursor = _encode_cursor(page[-1]) if len(records) > limit else None
        return OutboxPage(items=[_summary(r) for r in page], next_cursor=next_cursor)

    @post(
        "/{message_id:uuid}/replay",
        operation_id="replayOutboxMessage",
        summary="Send a failed or dead outbox message again (fresh attempt budget, at the next delivery run)",
        description=(
            "Makes the message due again with a fresh attempt budget and answers it. 404 for an unknown "
            "message; 409 when it is not failed or dead (e.g. being sent right now, or delivered)."
        ),
        status_code=200,
        raises=[NotFound, Conflict],
    )
    async def replay_one(self, message_id: FromPath[uuid.UUID]) -> OutboxMessageSummary:
        try:
            record = await service.replay(message_id)
        except service.MessageNotFound as exc:
            raise NotFound(f"No outbox message {message_id}.") from exc
        except service.NotReplayable as exc:
            if exc.status is OutboxStatus.sending:
                raise Conflict(f"Outbox message {message_id} is being sent right now; replay it if it fails.") from exc
            raise Conflict(
                f"Outbox message {message_id} is {exc.status.value}; only failed or dead messages are replayed."
            ) from exc
        return _summary(record)


METRICS.describe("outbox_messages_dead", "gauge", "Outbox messages parked as dead (need an operator: replay).")
METRICS.describe("outbox_messages_failed", "gauge", "Outbox messages waiting for a retry.")


async def collect_backlog() -> None:
    """Metrics collector: outbox gauges, refreshed at each scrape."""
    figures = await service.backlog()
    METRICS.set("outbox_messages_dead", figures.dead)
    METRICS.set("outbox_messages_failed", figures.failed)


def route_handlers() -> list[ControllerRouterHandler]:
    """The outbox admin routes (also registers the outbox gauges)."""
    METRICS.add_collector(collect_backlog)
    return [OutboxAdminController]
