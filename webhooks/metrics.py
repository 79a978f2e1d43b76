"""What the webhook worker counts, kept in Redis so that the API's `/metrics` shows it.

The worker serves no HTTP, so its counters go through `METRICS.add_shared` and every API process
renders the totals at scrape time. A worker gathers its counts in memory and adds them in one Redis
round trip at most every `FLUSH_DELAY_SECONDS` (or every `FLUSH_AT` counts, and at shutdown): a round
trip per event cost about an eighth of the worker's throughput (docs/performance.md). Counts that
Redis refused are kept and added with the next flush. The descriptions are registered here, imported
by the routes (which render them) and by the worker (which counts them).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref

from redis.asyncio import Redis

from marketplace.observability import METRICS

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


FLUSH_DELAY_SECONDS = 0.5
FLUSH_AT = 500

_Series = tuple[str, tuple[tuple[str, str], ...]]


class _SharedCounts:
    """One process's not-yet-shared counts for one Redis, added there in batches."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.pending: dict[_Series, float] = {}
        self.added = 0
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()  # cuts the current wait short: FLUSH_AT counts, or shutdown

    def add(self, name: str, amount: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.pending[key] = self.pending.get(key, 0.0) + amount
        self.added += 1
        if self.task is None or self.task.done():
            self.wake.clear()
            self.task = asyncio.create_task(self._flush_soon(), name="shared-metrics-flush")
        if self.added >= FLUSH_AT:
            self.wake.set()

    async def _flush_soon(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), FLUSH_DELAY_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        """Add everything gathered so far; what Redis refuses stays for the next flush (logged, not raised)."""
        batch, self.pending, self.added = self.pending, {}, 0
        if not batch or await METRICS.add_shared(
            self.redis, *((name, amount, dict(labels)) for (name, labels), amount in batch.items())
        ):
            return
        for key, amount in batch.items():
            self.pending[key] = self.pending.get(key, 0.0) + amount


_COUNTS: weakref.WeakKeyDictionary[Redis, _SharedCounts] = weakref.WeakKeyDictionary()


def _counts_for(redis: Redis) -> _SharedCounts:
    counts = _COUNTS.get(redis)
    if counts is None:
        counts = _COUNTS[redis] = _SharedCounts(redis)
    return counts


def count_outcome(redis: Redis | None, event_type: str, outcome: str, lag_seconds: float | None = None) -> None:
    """Count one processing outcome (and its received→processed lag); shared within `FLUSH_DELAY_SECONDS`."""
    if redis is None:
        return
    counts = _counts_for(redis)
    counts.add(PROCESSED, 1.0, type=event_type, outcome=outcome)
    if lag_seconds is not None:
        counts.add(LAG_SUM, lag_seconds)
        counts.add(LAG_COUNT, 1.0)


def count_sweep(redis: Redis, counts: dict[str, int]) -> None:
    """Count what one sweep queued, by reason."""
    for reason, n in counts.items():
        if n:
            _counts_for(redis).add(SWEEPER_QUEUED, float(n), reason=reason)


async def flush_counts() -> None:
    """Share every gathered count now (worker shutdown)."""
    for counts in list(_COUNTS.values()):
        if counts.task is not None and not counts.task.done():
            counts.wake.set()  # a flush already under way finishes (cancelling it would drop its batch)
            await counts.task
        await counts.flush()
