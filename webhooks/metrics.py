"""What the webhook worker counts, kept in Redis so that the API's `/metrics` shows it.

The worker serves no HTTP, so its counters go through `METRICS.add_shared` (one Redis round trip per
event) and every API process renders the totals at scrape time. The descriptions are registered
here, imported by the routes (which render them) and by the worker (which counts them).
"""

from __future__ import annotations

from redis.asyncio import Redis

from marketplace.observability import METRICS

PROCESSED = "webhook_events_processed_total"
LAG_SUM = "webhook_processing_lag_seconds_sum"
LAG_COUNT = "webhook_processing_lag_seconds_count"
SWEEPER_QUEUED = "webhook_sweeper_queued_total"

METRICS.describe(
    PROCESSED,
    "counter",
    "Processing outcomes by event type (processed, ignored, failed, dead, lost_lease), all workers.",
)
METRICS.describe(LAG_SUM, "counter", "Sum of received→processed seconds of processed events, all workers.")
METRICS.describe(LAG_COUNT, "counter", "Processed events counted in the lag sum, all workers.")
METRICS.describe(
    SWEEPER_QUEUED, "counter", "Events queued by the sweeper, by reason (pending, failed, reclaimed), all workers."
)


async def count_outcome(redis: Redis | None, event_type: str, outcome: str, lag_seconds: float | None = None) -> None:
    """Count one processing outcome (and its received→processed lag); logs, never raises, if Redis fails."""
    if redis is None:
        return
    increments: list[tuple[str, float, dict[str, str]]] = [(PROCESSED, 1.0, {"type": event_type, "outcome": outcome})]
    if lag_seconds is not None:
        increments += [(LAG_SUM, lag_seconds, {}), (LAG_COUNT, 1.0, {})]
    await METRICS.add_shared(redis, *increments)


async def count_sweep(redis: Redis, counts: dict[str, int]) -> None:
    """Count what one sweep queued, by reason; logs, never raises, if Redis fails."""
    increments = [(SWEEPER_QUEUED, float(n), {"reason": reason}) for reason, n in counts.items() if n]
    if increments:
        await METRICS.add_shared(redis, *increments)
