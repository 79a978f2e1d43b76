"""HTTP: what operators see of the outbox (`OUTBOX_ADMIN`, mounted by the assembly), and its gauges.

The routes themselves are the one operator surface of durable work
(`marketplace.lib.durable.operator.admin_controller`): list by status and kind, show one, replay one
(answered with the message, as this route always was) or every failed/dead one.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from arq.connections import ArqRedis
from litestar.params import FromPath, QueryParameter

from marketplace.auth.guards import admin_only
from marketplace.lib.durable.operator import AdminSurface, RouteDoc
from marketplace.lib.observability import METRICS
from marketplace.lib.problems import Conflict, Problem
from marketplace.lib.schemas import ROW_CURSOR, STRIPE_TOKEN
from marketplace.lib.settings import Settings
from marketplace.outbox import service
from marketplace.outbox.tables import OutboxStatus

log = logging.getLogger("marketplace.outbox")


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


class OutboxMessageDetail(OutboxMessageSummary):
    """A stored outbox message with the payload its sender is given."""

    payload: dict[str, Any]


class OutboxPage(msgspec.Struct):
    items: list[OutboxMessageSummary]
    next_cursor: str | None


Kind = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=STRIPE_TOKEN)]


class OutboxReplayFilter(msgspec.Struct, forbid_unknown_fields=True):
    """Which outbox messages to send again: by status (and optionally kind), oldest first, at most `limit`."""

    status: Literal["failed", "dead"]
    kind: Kind | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class OutboxReplayResult(msgspec.Struct):
    replayed: list[uuid.UUID]  # pending again with a fresh attempt budget; the next delivery run sends them


def _summary(row: asyncpg.Record) -> OutboxMessageSummary:
    record = service.record_of(row)
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


def _detail(row: asyncpg.Record) -> OutboxMessageDetail:
    summary = _summary(row)
    fields = {f: getattr(summary, f) for f in OutboxMessageSummary.__struct_fields__}
    return OutboxMessageDetail(**fields, payload=service.payload_of(row))


async def _replay_result(replayed: list[asyncpg.Record], arq: ArqRedis) -> OutboxReplayResult:
    if replayed:
        try:
            await service.request_delivery(arq)  # sooner than the next cron tick, if Redis answers
        except Exception as exc:
            log.warning("could not ask for a delivery run (%s); the cron sends them", type(exc).__name__)
    return OutboxReplayResult(replayed=[row["id"] for row in replayed])


def _refusal(message_id: uuid.UUID, current: asyncpg.Record, settings: Settings) -> Problem:
    status = OutboxStatus(current["status"])
    if status is OutboxStatus.sending:
        return Conflict(f"Outbox message {message_id} is being sent right now; replay it if it fails.")
    return Conflict(f"Outbox message {message_id} is {status.value}; only failed or dead messages are replayed.")


OUTBOX_ADMIN = AdminSurface(
    queue=service.OUTBOX,
    path="/admin/outbox",
    key_path="{message_id:uuid}",
    key_param="message_id",
    key_type=FromPath[uuid.UUID],
    cursor=ROW_CURSOR,
    status_type=OutboxStatus,
    filter_column="kind",
    filter_type=Annotated[str | None, QueryParameter(name="kind", min_length=1, max_length=64, pattern=STRIPE_TOKEN)],
    summary_type=OutboxMessageSummary,
    summary=_summary,
    page_type=OutboxPage,
    detail_type=OutboxMessageDetail,
    detail=_detail,
    detail_columns=f"{service.OUTBOX.select_list}, payload",
    bulk_filter_type=OutboxReplayFilter,
    replay_answer_type=OutboxReplayResult,
    replay_answer=_replay_result,
    refusal=_refusal,
    noun="outbox message",
    guards=[admin_only],
    replay_one_shows_row=True,
    list_doc=RouteDoc(
        "listOutboxMessages",
        "Outbox messages, newest first, by status (e.g. the dead ones) and kind",
        "Stored outbox messages without their payloads, optionally only those in one `status` and of one "
        "`kind`; pass `next_cursor` as `cursor` for the next page. 400 `invalid-cursor` for a cursor this "
        "API did not return.",
    ),
    show_doc=RouteDoc(
        "getOutboxMessage",
        "One outbox message with its payload",
        "The message, its delivery state and the payload its sender is given. 404 for an unknown message.",
    ),
    replay_doc=RouteDoc(
        "replayOutboxMessage",
        "Send a failed or dead outbox message again (fresh attempt budget, at the next delivery run)",
        "Makes the message due again with a fresh attempt budget and answers it. 404 for an unknown "
        "message; 409 when it is not failed or dead (e.g. being sent right now, or delivered).",
    ),
    replay_all_doc=RouteDoc(
        "replayOutboxMessages",
        "Send again every failed or dead outbox message matching a filter (e.g. all dead ones)",
        "Makes due again, oldest first, at most `limit` messages with this `status` (and `kind`), each "
        "with a fresh attempt budget; `replayed` lists them. 202 even when none matched.",
    ),
)
"""Outbox messages as operators see them (mounted by the assembly)."""


METRICS.describe("outbox_messages_dead", "gauge", "Outbox messages parked as dead (need an operator: replay).")
METRICS.describe("outbox_messages_failed", "gauge", "Outbox messages waiting for a retry.")


async def collect_backlog() -> None:
    """Metrics collector: outbox gauges, refreshed at each scrape."""
    figures = await service.backlog()
    METRICS.set("outbox_messages_dead", figures.dead)
    METRICS.set("outbox_messages_failed", figures.failed)
