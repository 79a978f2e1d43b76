"""The webhook jobs arq runs: process one event, the sweeper, and retention.

`process_event` claims the event (compare-and-set with a lease), dispatches it through the registry,
and records the outcome; a failure schedules the next attempt (exponential backoff) or parks the
event as dead. An expired lease (the worker died or hung mid-event) counts as a failed attempt the
same way, whoever finds it first: a job for that event, or the sweeper. The sweeper (every 10 s,
once across all workers) also queues stored events that were never queued (Redis was down at
ingest) and retries that are due. An event whose type no handler here takes (or not on the endpoint it
came from) is parked as `unhandled`, not finished: every worker re-offers the unhandled events its own
handlers take, at start-up and every `REOFFER_SECONDS` (`reoffer_unhandled`), so during a rolling
deploy an event an old worker parked is processed by a new one. Retention prunes only processed and
ignored events after `EVENT_RETENTION_DAYS`. Outcomes are counted in Redis (`webhooks.metrics`), for
the API's `/metrics`.

`marketplace/server/worker.py` puts `settings`, `stripe` and `redis` in `ctx`; `webhook_backoff_base`
(seconds) in `ctx` replaces the 30 s backoff base (tests make retries fast with it).
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

from marketplace.lib.durable.queue import BACKOFF_BASE_SECONDS, Queue
from marketplace.lib.observability import redact
from marketplace.lib.settings import Settings
from webhooks import store
from webhooks.metrics import count_outcome, count_sweep, flush_counts
from webhooks.queueing import enqueue_event, enqueuer_for, job_id_for
from webhooks.registry import HandlerContext, Malformed, NotOurs, event_types_for, handler_for, ignored_because
from webhooks.tables import EventStatus

__all__ = [
    "cron_jobs",
    "enqueue_event",
    "enqueuer_for",
    "flush_counts",
    "functions",
    "job_id_for",
    "job_timeout_seconds",
    "process_event",
    "reoffer_loop",
    "reoffer_unhandled",
    "sweep",
]

log = logging.getLogger("webhooks.worker")

PENDING_GRACE = timedelta(seconds=5)  # ingest normally queues within milliseconds; after this, sweep
# A retry is due by PostgreSQL's clock (`next_attempt_at`) but deferred by this worker's: run it a little
# late (a tenth of the delay, at most this), so a worker clock behind the database's does not fire it
# early (the claim skips it, and it waits for the sweeper).
RETRY_CLOCK_SLACK = timedelta(seconds=1)
SWEEP_BATCH = 1000
REOFFER_SECONDS = 30  # how often each worker looks for unhandled events its handlers take
REOFFER_BATCH = 500


def job_timeout_seconds(settings: Settings) -> int:
    """arq's timeout for `process_event`, derived from the lease (`Settings.job_timeout_seconds`).

    Longer than the lease, so arq never cancels a job before our own handler timeout (the lease
    minus `budget.LEASE_MARGIN_SECONDS`) has fired and the failure has been recorded; a job arq cancelled
    would leave the event to wait for its lease to expire.
    """
    return settings.job_timeout_seconds


def _events(ctx: dict[str, Any]) -> Queue:
    """The event store's queue with this worker's retry policy: settings' maximum, ctx's backoff base."""
    settings: Settings = ctx["settings"]
    return store.EVENTS.with_retry(
        max_attempts=settings.event_max_attempts,
        backoff_base=float(ctx.get("webhook_backoff_base", BACKOFF_BASE_SECONDS)),
    )


async def process_event(ctx: dict[str, Any], event_id: str, *, unhandled: bool = False) -> str:
    """Claim, dispatch and record one event; returns the outcome (for logs and tests).

    `unhandled`: also claim it when parked as unhandled (`reoffer_unhandled`, for a type handled here).
    """
    settings: Settings = ctx["settings"]
    redis: ArqRedis | None = ctx.get("redis")
    claimed = await store.claim(event_id, settings.event_lease_seconds, unhandled=unhandled)
    if claimed is None:
        # Done already, not yet due (a failed event before its next_attempt_at: a stray or early
        # job; the sweeper queues it when due), under another worker's live lease, or under an
        # expired one: that last attempt died with its worker, and counts as failed.
        released = await store.release_expired(event_id, queue=_events(ctx))
        if released is None:
            return "skipped"
        await _after_release(ctx, released)
        return "lease_expired"
    event = claimed.event
    extra = {"event_id": event.id, "event_type": event.type, "account": event.account}
    if event.livemode != settings.livemode:
        # Ingest stores these as ignored and replay leaves them alone; whatever queued this one, an
        # event of the other mode must never reach a handler.
        note = f"livemode={event.livemode} does not match the configured key's mode; never processed"
        await store.finish(event.id, claimed.lease_token, EventStatus.ignored, note)
        log.warning("refused an event of the other livemode", extra=extra)
        count_outcome(redis, event.type, "ignored")
        return "ignored"
    registration = handler_for(event.type)
    if registration is None and (reason := ignored_because(event.type)) is not None:
        await store.finish(event.id, claimed.lease_token, EventStatus.ignored, f"deliberately ignored: {reason}")
        count_outcome(redis, event.type, "ignored")
        return "ignored"
    if registration is None or event.endpoint not in registration.endpoints:
        # Not done: kept for a worker that has the handler (a newer deploy), which re-offers it to itself.
        note = (
            "no handler for this event type in the worker that took it"
            if registration is None
            else f"not expected on the {event.endpoint} endpoint by the worker that took it"
        )
        if await store.park_unhandled(event.id, claimed.lease_token, note):
            count_outcome(redis, event.type, "unhandled")
            log.info("event parked as unhandled: %s", note, extra=extra)
        return "unhandled"

    context = HandlerContext(stripe=ctx["stripe"], settings=settings, arq=redis)
    try:
        async with asyncio.timeout(settings.handler_timeout_seconds):
            await registration.handler(context, event)
    except NotOurs as exc:
        if not await store.finish(event.id, claimed.lease_token, EventStatus.not_ours, redact(exc.note)):
            count_outcome(redis, event.type, "lost_lease")
            return "lost_lease"
        count_outcome(redis, event.type, "not_ours")
        log.info("event concerns nothing of this platform: %s", exc.note, extra=extra)
        return "not_ours"
    except Malformed as exc:  # no retry can change the body: dead at once, with the reason
        note = redact(exc.note)
        if (
            await store.fail(
                _events(ctx), event.id, claimed.lease_token, note, attempts=claimed.attempts, permanent=True
            )
            is None
        ):
            count_outcome(redis, event.type, "lost_lease")
            return "lost_lease"
        count_outcome(redis, event.type, "dead")
        log.error("event parked as dead, malformed: %s", exc.note, extra=extra)
        return "dead"
    except Exception as exc:
        return await _record_failure(ctx, claimed, exc)

    if not await store.finish(event.id, claimed.lease_token, EventStatus.processed):
        count_outcome(redis, event.type, "lost_lease")
        log.warning("lease lost before the outcome was recorded", extra=extra)
        return "lost_lease"
    count_outcome(redis, event.type, "processed", lag_seconds=time.time() - claimed.received_at.timestamp())
    return "processed"


def describe_error(exc: BaseException, settings: Settings) -> str:
    """`Type: message` for `last_error`, masked like a log line (the admin API shows it)."""
    if isinstance(exc, TimeoutError):
        return "TimeoutError: handler timed out"
    return redact(f"{type(exc).__name__}: {exc}", settings.secret_values())


async def _record_failure(ctx: dict[str, Any], claimed: store.Claim, exc: BaseException) -> str:
    settings: Settings = ctx["settings"]
    redis: ArqRedis | None = ctx.get("redis")
    event = claimed.event
    extra = {"event_id": event.id, "event_type": event.type, "account": event.account}
    error = describe_error(exc, settings)
    failure = await store.fail(_events(ctx), event.id, claimed.lease_token, error, attempts=claimed.attempts)
    if failure is None:
        count_outcome(redis, event.type, "lost_lease")
        return "lost_lease"
    count_outcome(redis, event.type, failure.status)
    if failure.retry_in is None:
        log.error("event parked as dead after %d attempts: %s", claimed.attempts, error, extra=extra)
        return "dead"
    delay = failure.retry_in
    log.warning(
        "handler failed (attempt %d of %d), retrying in %.1f s: %s",
        claimed.attempts,
        settings.event_max_attempts,
        delay.total_seconds(),
        error,
        extra=extra,
    )
    await _queue_retry(redis, event.id, claimed.attempts, delay)
    return "failed"


async def _after_release(ctx: dict[str, Any], released: store.Released) -> None:
    """Count, log and queue the retry of an event whose lease expired (see `store.release_expired`)."""
    settings: Settings = ctx["settings"]
    redis: ArqRedis | None = ctx.get("redis")
    extra = {"event_id": released.id, "event_type": released.type}
    count_outcome(redis, released.type, released.failure.status)
    if released.failure.retry_in is None:
        log.error(
            "event parked as dead after %d attempts: %s", released.attempts, store.LEASE_EXPIRED_ERROR, extra=extra
        )
        return
    log.warning(
        "%s (attempt %d of %d), retrying in %.1f s",
        store.LEASE_EXPIRED_ERROR,
        released.attempts,
        settings.event_max_attempts,
        released.failure.retry_in.total_seconds(),
        extra=extra,
    )
    await _queue_retry(redis, released.id, released.attempts, released.failure.retry_in)


async def _queue_retry(redis: ArqRedis | None, event_id: str, attempts: int, delay: timedelta) -> None:
    if redis is None:
        return
    extra = {"event_id": event_id}
    try:
        await enqueue_event(redis, event_id, attempts=attempts, defer_by=delay + min(RETRY_CLOCK_SLACK, delay / 10))
    except Exception as enqueue_error:  # the sweeper queues it when it is due
        log.warning("could not queue the retry (%s); the sweeper will", type(enqueue_error).__name__, extra=extra)


async def queue_due(ctx: dict[str, Any], *, pending_grace: timedelta = PENDING_GRACE) -> dict[str, int]:
    """Queue every stored event a worker should be processing now; returns counts by reason.

    `pending`: stored but never queued (Redis was down). `failed`: retries whose time has come.
    `processing`: expired leases, each recorded as a failed attempt first (`store.release_expired`:
    retried after the backoff, or dead at the maximum). Candidates whose job is still queued are
    skipped after one pipelined EXISTS per batch, so a long backlog costs the sweeper one round trip
    per thousand events, not three per event.
    """
    pool: ArqRedis = ctx["redis"]
    counts = {"pending": 0, "failed": 0, "processing": 0}
    while True:
        due = await store.due_events(pending_grace=pending_grace, limit=SWEEP_BATCH)
        progressed = False
        waiting = []
        for item in due:
            if item.status != EventStatus.processing.value:
                waiting.append(item)
                continue
            released = await store.release_expired(item.id, queue=_events(ctx))
            if released is not None:
                await _after_release(ctx, released)
                counts["processing"] += 1
                progressed = True
        async with pool.pipeline(transaction=False) as pipe:
            for item in waiting:
                pipe.exists(job_key_prefix + job_id_for(item.id, item.attempts))
            queued_already = await pipe.execute() if waiting else []
        for item, exists in zip(waiting, queued_already, strict=True):
            if not exists and await enqueue_event(pool, item.id, attempts=item.attempts):
                counts[item.status] += 1
                progressed = True
        if len(due) < SWEEP_BATCH or not progressed:
            break
    count_sweep(pool, {"reclaimed" if k == "processing" else k: n for k, n in counts.items()})
    if any(counts.values()):
        log.info(
            "sweeper queued %d never-queued, %d due retries; %d expired leases recorded as failed attempts",
            counts["pending"],
            counts["failed"],
            counts["processing"],
        )
    return counts


async def reoffer_unhandled(ctx: dict[str, Any]) -> int:
    """Process, in this worker, the unhandled events that this worker's handlers take; returns how many
    it processed (whatever their outcome).

    Not through the shared queue: the point is that *this* worker, which has the handler, takes them,
    rather than an old worker beside it parking them again.
    """
    platform, connect = event_types_for("platform"), event_types_for("connect")
    done = 0
    while True:
        ids = await store.unhandled_events(platform_types=platform, connect_types=connect, limit=REOFFER_BATCH)
        for event_id in ids:
            if await process_event(ctx, event_id, unhandled=True) != "skipped":
                done += 1
        if len(ids) < REOFFER_BATCH:
            break
    if done:
        log.info("re-offered %d unhandled event(s) to this worker's handlers", done)
    return done


async def reoffer_loop(ctx: dict[str, Any]) -> None:
    """This worker's re-offer of unhandled events, every `REOFFER_SECONDS` (ctx's `webhook_reoffer_seconds`
    replaces it: tests) until cancelled at shutdown.

    The worker's start-up runs one pass itself before taking jobs (`reoffer_unhandled`); a failed pass
    (PostgreSQL away) is logged and tried again on the next tick.
    """
    interval = float(ctx.get("webhook_reoffer_seconds", REOFFER_SECONDS))
    while True:
        await asyncio.sleep(interval)
        try:
            await reoffer_unhandled(ctx)
        except Exception as exc:
            log.warning("re-offering unhandled events failed (%s); retrying in %.0f s", type(exc).__name__, interval)


async def sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron: queue never-queued events and due retries; record expired leases as failed attempts."""
    return await queue_due(ctx)


async def prune_events(ctx: dict[str, Any]) -> int:
    """Cron: delete processed/ignored events older than the retention period (never unhandled ones)."""
    settings: Settings = ctx["settings"]
    deleted = await store.prune(settings.event_retention_days)
    if deleted:
        log.info("retention pruned %d events older than %d days", deleted, settings.event_retention_days)
    return deleted


def functions(settings: Settings) -> list[Function]:
    """The jobs workers run: `process_event`, with arq's timeout derived from the lease."""
    return [
        func(
            process_event,
            name="process_event",
            keep_result=0,
            max_tries=1000,
            timeout=job_timeout_seconds(settings),
        )
    ]


def cron_jobs(settings: Settings) -> list[CronJob]:
    """The sweeper (every 10 s) and retention (daily); `unique` so one worker runs each tick.

    The re-offer of unhandled events is not a cron: arq runs a cron job on whichever worker takes it
    from the shared queue, and it must run on each worker for that worker's handlers (`reoffer_loop`).
    """
    return [
        cron(sweep, name="webhooks_sweep", second=set(range(0, 60, 10)), run_at_startup=True, unique=True),
        cron(prune_events, name="webhooks_prune", hour={3}, minute={17}, second={0}, unique=True),
    ]
