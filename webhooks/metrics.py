"""What the webhook worker counts, kept in Redis so that the API's `/metrics` shows it.

The worker serves no HTTP, so its counts are shared through Redis (in batches:
`marketplace.lib.observability.SharedCounts`) and every API process renders the totals at scrape time. The
descriptions are registered here, imported by the routes (which render them) and by the worker (which
counts them).
"""

from __future__ import annotations

from redis.asyncio import Redis

from marketplace.lib.observability import METRICS, flush_shared_counts, shared_counts

PROCESSED = "webhook_events_processed_total"
LAG_SUM = "webhook_processing_lag_seconds_sum"
LAG_COUNT = "webhook_processing_lag_seconds_count"
SWEEPER_QUEUED = "webhook_sweeper_queued_total"

METRICS.describe(
    PROCESSED,
    "counter",
    "Processing outcomes by event type (processed, ignored, unhandled, not_ours, failed, dead, lost_lease), "
    "all workers.",
)
METRICS.describe(LAG_SUM, "counter", "Sum of received→processed seconds of processed events, all workers.")
METRICS.describe(LAG_COUNT, "counter", "Processed events counted in the lag sum, all workers.")
METRICS.describe(
    SWEEPER_QUEUED, "counter", "Events queued by the sweeper, by reason (pending, failed, reclaimed), all workers."
)


def count_outcome(redis: Redis | None, event_type: str, outcome: str, lag_seconds: float | None = None) -> None:
    """Count one processing outcome (and its received→processed lag); shared within `FLUSH_DELAY_SECONDS`."""
    if redis is None:
        return
    counts = shared_counts(redis)
    counts.add(PROCESSED, 1.0, type=event_type, outcome=outcome)
    if lag_seconds is not None:
        counts.add(LAG_SUM, lag_seconds)
        counts.add(LAG_COUNT, 1.0)


def count_sweep(redis: Redis, counts: dict[str, int]) -> None:
    """Count what one sweep queued, by reason."""
    for reason, n in counts.items():
        if n:
            shared_counts(redis).add(SWEEPER_QUEUED, float(n), reason=reason)


async def flush_counts() -> None:
    """Share every gathered count now (worker shutdown)."""
    await flush_shared_counts()
