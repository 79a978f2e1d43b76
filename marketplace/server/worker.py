"""The arq worker: its settings, startup (database, Stripe, pool) and every job and cron it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq import cron, func
from arq.connections import ArqRedis
from arq.worker import Worker

# The modules that write outbox messages declare their kinds (with a sender) when imported; the
# worker's router is built from those declarations, so it imports every writer.
import marketplace.orders.confirm
import marketplace.refunds.service
import marketplace.sellers.sync  # noqa: F401
from connect.client import build_stripe_client, close_stripe_client
from marketplace.lib.db import start_database, stop_database
from marketplace.lib.durable import budget
from marketplace.lib.observability import configure_logging, share_counts_through, stop_sharing_counts
from marketplace.lib.queue import redis_settings_from_url
from marketplace.lib.settings import Settings, get_settings
from marketplace.outbox.service import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_SEND_TIMEOUT_SECONDS,
    DELIVER_JOB,
    SendResources,
    build_router,
    deliver_due,
)

log = logging.getLogger("marketplace.server.worker")

DEFAULT_JOB_TIMEOUT_SECONDS = 120  # the crons (sweeper, retention, outbox); never below process_event's


async def deliver_outbox(ctx: dict[str, Any]) -> int:
    """Cron: send due outbox messages (leased, each send cut by a timeout); returns how many were sent."""
    # A send may be a Stripe call (a refund): it gets the whole budget of one call, and its lease more.
    settings: Settings = ctx["settings"]
    send_timeout = max(DEFAULT_SEND_TIMEOUT_SECONDS, settings.stripe_call_budget_seconds + 1.0)
    report = await deliver_due(
        ctx["notifier"],
        redis=ctx.get("redis"),
        send_timeout=send_timeout,
        lease_seconds=budget.lease_for(send_timeout, at_least=DEFAULT_LEASE_SECONDS),
    )
    return report.sent


def build_worker(settings: Settings | None = None, *, redis_pool: ArqRedis | None = None, **overrides: Any) -> Worker:
    """An arq Worker with every job of every package; `overrides` are passed to `Worker` (tests)."""
    import webhooks.worker as webhook_jobs  # the assembly is the one place that knows webhooks

    settings = settings or get_settings()

    async def startup(ctx: dict[str, Any]) -> None:
        configure_logging(settings.log_level, settings.secret_values())
        # At least one connection per concurrent job (settings refuse a smaller pool): a job never waits
        # for a connection another job holds. No job holds one across a Stripe call (connect.calls).
        await start_database(settings.database_url.reveal(), max_size=settings.worker_db_pool_size)
        ctx["settings"] = settings
        # What confirmations and refunds count here shows on every API's /metrics (count_shared).
        share_counts_through(ctx["redis"])
        ctx["stripe"] = build_stripe_client(
            settings.stripe_secret_key.reveal(),
            api_base=settings.stripe_api_base,
            max_network_retries=settings.stripe_max_network_retries,
            timeout_seconds=settings.stripe_timeout_seconds,
        )
        # Each declared kind goes to its sender: people's messages become notifications (and a log line),
        # a refund.create message makes the refund.
        ctx["notifier"] = build_router(SendResources(stripe=ctx["stripe"]))
        # Unhandled events this worker's handlers take (parked by an older deploy's workers): once now,
        # before taking jobs, then on a timer of this worker's own.
        try:
            await webhook_jobs.reoffer_unhandled(ctx)
        except Exception as exc:
            log.warning("re-offering unhandled events at start-up failed (%s); the timer retries", type(exc).__name__)
        ctx["reoffer_task"] = asyncio.create_task(webhook_jobs.reoffer_loop(ctx))
        log.info("worker started")

    async def shutdown(ctx: dict[str, Any]) -> None:
        task = ctx.pop("reoffer_task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await stop_sharing_counts(ctx["redis"])
        await webhook_jobs.flush_counts()  # arq closes its Redis pool right after this
        if "stripe" in ctx:
            await close_stripe_client(ctx["stripe"])
        await stop_database()

    options: dict[str, Any] = {
        # process_event's own timeout is derived from the lease (webhooks.worker.job_timeout_seconds).
        "functions": [*webhook_jobs.functions(settings), func(deliver_outbox, name=DELIVER_JOB)],
        "cron_jobs": [*webhook_jobs.cron_jobs(settings), cron(deliver_outbox, second={0, 15, 30, 45})],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings_from_url(settings.redis_url.reveal()),
        "redis_pool": redis_pool,
        "max_jobs": settings.worker_max_jobs,
        # arq polls the queue every poll_delay seconds and starts at most 100 jobs per poll; its 0.5 s
        # default caps a worker at ~200 jobs/s and adds half a poll to every event's wait. 10 ms: ~100
        # cheap reads a second per idle worker (≈5 % of a core), for received → paid in tens of ms
        # (docs/performance.md, "Confirmation").
        "poll_delay": 0.01,
        "job_timeout": max(DEFAULT_JOB_TIMEOUT_SECONDS, webhook_jobs.job_timeout_seconds(settings)),
        "keep_result": 0,
        "handle_signals": redis_pool is None,
    }
    options.update(overrides)
    if options["job_timeout"] < webhook_jobs.job_timeout_seconds(settings):
        # arq would cancel jobs that still hold their lease, leaving events to wait out the lease.
        raise ValueError(
            f"job_timeout={options['job_timeout']} s is shorter than the event lease "
            f"(EVENT_LEASE_SECONDS={settings.event_lease_seconds} s) plus the time to record an outcome"
        )
    return Worker(**options)
