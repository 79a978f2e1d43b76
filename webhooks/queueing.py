"""Putting events on the arq queue: job ids and the batching enqueuer of the API (the retry backoff is
the durable-work mechanism's, `marketplace.lib.durable.queue.backoff`).

A job only says "process event X"; the event store decides whether there is anything to do. Job ids:
the first job of an event is the event id itself; a retry, a sweep after a retry or a reclaim uses
`{event_id}:{attempts}`. While a job with that id is queued arq refuses a second one, so a storm of
duplicate deliveries, or the sweeper re-queueing something already queued, adds nothing. Workers run
with `keep_result=0` (and `process_event` sets it too), so a finished job frees its id at once and a
replay can reuse it.

The API does not wait for Redis before answering: ids go to a per-process `BatchEnqueuer`, which
sends them in pipelined batches with a small Lua script doing what `ArqRedis.enqueue_job` does
(set the job key unless it or its result exists, then add to the queue) in one round trip for many
jobs. If Redis is down the batch is dropped and, for a few seconds, further ids are not even tried:
they are stored as pending and the sweeper queues them once Redis answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.exceptions import NoScriptError

from marketplace.lib.observability import METRICS

log = logging.getLogger("webhooks.queue")

PROCESS_EVENT = "process_event"
REDIS_COOLDOWN_SECONDS = 5.0
BATCH_MAX = 100
LINGER_SECONDS = 0.002  # gather ids this long before a round trip: many events per trip under load

METRICS.describe("webhook_enqueue_total", "counter", "Events put on the arq queue, by result (queued, exists, error).")


def job_id_for(event_id: str, attempts: int) -> str:
    """The arq job id for the next attempt of an event that has had `attempts` attempts."""
    return event_id if attempts == 0 else f"{event_id}:{attempts}"


async def enqueue_event(pool: ArqRedis, event_id: str, *, attempts: int = 0, defer_by: timedelta | None = None) -> bool:
    """Queue the next attempt of an event; False if such a job is already queued. Raises if Redis is down."""
    job = await pool.enqueue_job(PROCESS_EVENT, event_id, _job_id=job_id_for(event_id, attempts), _defer_by=defer_by)
    METRICS.inc("webhook_enqueue_total", result="queued" if job is not None else "exists")
    return job is not None


# arq's enqueue_job for a whole batch in one call (one command to pack and one round trip, whatever
# the batch size). KEYS: queue, then job key and result key per job. ARGV: expiry ms, score, then the
# serialized job and job id per job. Returns how many jobs were new (a job id still queued is skipped).
_ENQUEUE_LUA = """
local queued = 0
for i = 0, (#KEYS - 1) / 2 - 1 do
  local job_key, result_key = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  if redis.call('exists', job_key, result_key) == 0 then
    redis.call('psetex', job_key, ARGV[1], ARGV[3 + 2 * i])
    redis.call('zadd', KEYS[1], ARGV[2], ARGV[4 + 2 * i])
    queued = queued + 1
  end
end
return queued
"""


class BatchEnqueuer:
    """Queues first attempts of freshly stored events in the background, many per Redis round trip."""

    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool
        self.sha: str | None = None
        self.pending: list[str] = []  # only touched from the event loop's thread
        self.task: asyncio.Task[None] | None = None
        self.down_until = 0.0

    def submit(self, event_id: str) -> None:
        """Queue `event_id` soon; never blocks and never raises (the sweeper is the safety net)."""
        if time.monotonic() < self.down_until:
            METRICS.inc("webhook_enqueue_total", result="skipped_redis_down")
            return
        self.pending.append(event_id)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain(), name="webhook-enqueuer")

    async def _drain(self) -> None:
        await asyncio.sleep(LINGER_SECONDS)
        while self.pending:
            batch = self.pending[:BATCH_MAX]
            del self.pending[:BATCH_MAX]
            try:
                await self._send(batch)
            except Exception as exc:
                self.down_until = time.monotonic() + REDIS_COOLDOWN_SECONDS
                dropped = len(batch) + len(self.pending)
                self.pending.clear()
                METRICS.inc("webhook_enqueue_total", float(dropped), result="error")
                log.warning(
                    "could not queue %d stored events (%s); the sweeper will queue them", dropped, type(exc).__name__
                )
                return

    async def _send(self, batch: list[str]) -> None:
        if self.sha is None:
            self.sha = str(await self.pool.script_load(_ENQUEUE_LUA))
        try:
            queued = await self._enqueue_many(batch, self.sha)
        except NoScriptError:  # Redis restarted and forgot the script
            self.sha = str(await self.pool.script_load(_ENQUEUE_LUA))
            queued = await self._enqueue_many(batch, self.sha)
        METRICS.inc("webhook_enqueue_total", float(queued), result="queued")
        if len(batch) > queued:
            METRICS.inc("webhook_enqueue_total", float(len(batch) - queued), result="exists")

    async def _enqueue_many(self, batch: list[str], sha: str) -> int:
        now_ms = int(time.time() * 1000)
        keys: list[Any] = [self.pool.default_queue_name]
        args: list[Any] = [expires_extra_ms, now_ms]
        for event_id in dict.fromkeys(batch):  # one job per id, even if submitted twice
            keys += (job_key_prefix + event_id, result_key_prefix + event_id)
            args += (
                serialize_job(PROCESS_EVENT, (event_id,), {}, None, now_ms, serializer=self.pool.job_serializer),
                event_id,
            )
        queued: int = await self.pool.evalsha(sha, len(keys), *keys, *args)  # type: ignore[misc]
        return queued

    async def flush(self) -> None:
        """Wait until everything submitted so far was sent (tests, shutdown)."""
        while self.task is not None and not self.task.done():
            await asyncio.shield(self.task)


_ENQUEUERS: weakref.WeakKeyDictionary[ArqRedis, BatchEnqueuer] = weakref.WeakKeyDictionary()


def enqueuer_for(pool: ArqRedis) -> BatchEnqueuer:
    """The process's batch enqueuer for this pool (one per pool, created on first use)."""
    enqueuer = _ENQUEUERS.get(pool)
    if enqueuer is None:
        enqueuer = _ENQUEUERS[pool] = BatchEnqueuer(pool)
    return enqueuer
