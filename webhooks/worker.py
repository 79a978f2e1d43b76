"""The webhook jobs arq runs: process one event, the sweeper, and retention.

`process_event` claims the event (compare-and-set with a lease), dispatches it through the registry,
and records the outcome; a failure schedules the next attempt (exponential backoff) or parks the
event as dead. The sweeper (every 10 s, once across all workers) queues stored events that were never
queued (Redis was down at ingest), retries that are due, and events whose worker died (lease
expired). Retention prunes processed and ignored events after `EVENT_RETENTION_DAYS`.

`marketplace/worker.py` puts `settings`, `stripe` and `redis` in `ctx`; tests may add
`webhook_backoff_base` (seconds) to make retries fast.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

from arq import cron
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from arq.cron import CronJob
from arq.worker import Function, func

from marketplace.observability import METRICS
from marketplace.settings import Settings
from webhooks import store
from webhooks.queueing import BACKOFF_BASE_SECONDS, backoff, enqueue_event, enqueuer_for, job_id_for
from webhooks.registry import HandlerContext, handler_for
from webhooks.tables import EventStatus

__all__ = ["FUNCTIONS", "cron_jobs", "enqueue_event", "enqueuer_for", "job_id_for", "process_event", "sweep"]

log = logging.getLogger("webhooks.worker")

LEASE_MARGIN_SECONDS = 5.0  # a handler is cancelled this long before its lease expires
PENDING_GRACE = timedelta(seconds=5)  # ingest normally queues within milliseconds; after this, sweep
SWEEP_BATCH = 1000

METRICS.describe(
    "webhook_events_processed_total",
    "counter",
    "Processing outcomes by event type (processed, ignored, failed, dead, lost_lease).",
)
METRICS.describe("webhook_sweeper_queued_total", "counter", "Events queued by the sweeper, by reason.")
METRICS.describe(
    "webhook_processing_lag_seconds_sum", "counter", "Sum of received→processed seconds of processed events."
)
METRICS.describe("webhook_processing_lag_seconds_count", "counter", "Processed events counted in the lag sum.")


async def process_event(ctx: dict[str, Any], event_id: str) -> str:
    """Claim, dispatch and record one event; returns the outcome (for logs and tests)."""
    settings: Settings = ctx["settings"]
    claimed = await store.claim(event_id, settings.event_lease_seconds)
    if claimed is None:
        return "skipped"  # done already, not yet due, or another worker holds a live lease
    event = claimed.event
    extra = {"event_id": event.id, "event_type": event.type, "account": event.account}
    registration = handler_for(event.type)
    if registration is None or event.endpoint not in registration.endpoints:
        note = (
            "no handler for this event type"
            if registration is None
            else f"not expected on the {event.endpoint} endpoint"
        )
        await store.finish(event.id, claimed.lease_token, EventStatus.ignored, note)
        METRICS.inc("webhook_events_processed_total", type=event.type, outcome="ignored")
        return "ignored"

    context = HandlerContext(stripe=ctx["stripe"], settings=settings, arq=ctx.get("redis"))
    try:
        # Give up before the lease runs out, so no other worker can reclaim an event still running here.
        async with asyncio.timeout(max(1.0, settings.event_lease_seconds - LEASE_MARGIN_SECONDS)):
            await registration.handler(context, event)
    except Exception as exc:
        return await _record_failure(ctx, claimed, exc)

    if not await store.finish(event.id, claimed.lease_token, EventStatus.processed):
        METRICS.inc("webhook_events_processed_total", type=event.type, outcome="lost_lease")
        log.warning("lease lost before the outcome was recorded", extra=extra)
        return "lost_lease"
    METRICS.inc("webhook_events_processed_total", type=event.type, outcome="processed")
    lag = time.time() - claimed.received_at.timestamp()
    METRICS.inc("webhook_processing_lag_seconds_sum", lag)
    METRICS.inc("webhook_processing_lag_seconds_count")
    return "processed"


async def _record_failure(ctx: dict[str, Any], claimed: store.Claim, exc: BaseException) -> str:
    settings: Settings = ctx["settings"]
    event = claimed.event
    extra = {"event_id": event.id, "event_type": event.type, "account": event.account}
    error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, TimeoutError) else "TimeoutError: handler timed out"
    delay = backoff(claimed.attempts, base=float(ctx.get("webhook_backoff_base", BACKOFF_BASE_SECONDS)))
    status = await store.fail(
        event.id,
        claimed.lease_token,
        error,
        attempts=claimed.attempts,
        max_attempts=settings.event_max_attempts,
        retry_in=delay,
    )
    if status is None:
        METRICS.inc("webhook_events_processed_total", type=event.type, outcome="lost_lease")
        return "lost_lease"
    METRICS.inc("webhook_events_processed_total", type=event.type, outcome=status.value)
    if status is EventStatus.dead:
        log.error("event parked as dead after %d attempts: %s", claimed.attempts, error, extra=extra)
        return "dead"
    log.warning(
        "handler failed (attempt %d of %d), retrying in %.1f s: %s",
        claimed.attempts,
        settings.event_max_attempts,
        delay.total_seconds(),
        error,
        extra=extra,
    )
    pool: ArqRedis | None = ctx.get("redis")
    if pool is not None:
        try:
            await enqueue_event(pool, event.id, attempts=claimed.attempts, defer_by=delay)
        except Exception as enqueue_error:  # the sweeper queues it when it is due
            log.warning("could not queue the retry (%s)", type(enqueue_error).__name__, extra=extra)
    return "failed"


async def queue_due(pool: ArqRedis, *, pending_grace: timedelta = PENDING_GRACE) -> dict[str, int]:
    """Queue every stored event a worker should be processing now; returns counts by reason.

    Candidates whose job is still queued are skipped after one pipelined EXISTS per batch, so a
    long backlog costs the sweeper one round trip per thousand events, not three per event.
    """
    counts = {"pending": 0, "failed": 0, "processing": 0}
    while True:
        due = await store.due_events(pending_grace=pending_grace, limit=SWEEP_BATCH)
        async with pool.pipeline(transaction=False) as pipe:
            for item in due:
                pipe.exists(job_key_prefix + job_id_for(item.id, item.attempts))
            queued_already = await pipe.execute() if due else []
        queued_any = False
        for item, exists in zip(due, queued_already, strict=True):
            if not exists and await enqueue_event(pool, item.id, attempts=item.attempts):
                counts[item.status] += 1
                queued_any = True
        if len(due) < SWEEP_BATCH or not queued_any:
            break
    for status, n in counts.items():
        if n:
            reason = "reclaimed" if status == "processing" else status
            METRICS.inc("webhook_sweeper_queued_total", float(n), reason=reason)
    if any(counts.values()):
        log.info(
            "sweeper queued %d never-queued, %d due retries, %d reclaimed (expired lease)",
            counts["pending"],
            counts["failed"],
            counts["processing"],
        )
    return counts


async def sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron: queue never-queued events, due retries, and events whose worker died."""
    pool: ArqRedis = ctx["redis"]
    return await queue_due(pool)


async def prune_events(ctx: dict[str, Any]) -> int:
    """Cron: delete processed/ignored events older than the retention period."""
    settings: Settings = ctx["settings"]
    deleted = await store.prune(settings.event_retention_days)
    if deleted:
        log.info("retention pruned %d events older than %d days", deleted, settings.event_retention_days)
    return deleted


FUNCTIONS: list[Function] = [func(process_event, name="process_event", keep_result=0, max_tries=1000)]


def cron_jobs(settings: Settings) -> list[CronJob]:
    """The sweeper (every 10 s) and retention (daily); `unique` so one worker runs each tick."""
    return [
        cron(sweep, name="webhooks_sweep", second=set(range(0, 60, 10)), run_at_startup=True, unique=True),
        cron(prune_events, name="webhooks_prune", hour={3}, minute={17}, second={0}, unique=True),
    ]
