"""Every SQL statement on the event store: ingest insert, claim/complete/fail, sweeper, replay, retention.

Status machine of a stored event (the row is the truth; Redis jobs only say "look at event X"):

    pending ──claim──▶ processing ──ok──▶ processed
       ▲                   │  ├─livemode mismatch / a deliberately ignored type──▶ ignored
       │                   │  ├─the handler finds it concerns nothing of ours (NotOurs)──▶ not_ours
       │                   │  └─no handler here / not on its endpoint──▶ unhandled ──(a worker with a
       │                   │                     handler starts, or re-offers on its tick)──claim──▶ processing
       │                   ├─raise or lease expired, attempts < max──▶ failed ──(when due)──claim──▶ processing
       │                   └─raise or lease expired, attempts = max──▶ dead
       └────────────── replay (any state but a live lease; never a livemode mismatch)

    ingest with livemode ≠ configured mode ──▶ ignored (never queued, never replayed)

The lease-and-retry part runs on the one durable-work mechanism (`marketplace.lib.durable.queue`,
declared here as `EVENTS`): a claim is a compare-and-set that takes a lease (random token + expiry)
and only takes an event that is due (pending, or failed with its retry time come); completion only
counts while the token matches; an expired lease (the worker died or hung mid-event) is recorded as a
failed attempt (same backoff, same maximum), so an event that kills its worker ends dead instead of
looping. What is the event store's own stays here: the hot ingest insert (asyncpg, one statement,
group commit), `unhandled` parking and its re-offer query, the livemode rule of replays, retention.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg

from marketplace.lib.db import close_pool, connection, keep_session
from marketplace.lib.durable import queue as durable
from marketplace.lib.durable.queue import Queue
from marketplace.lib.settings import Settings
from webhooks.registry import Endpoint, StoredEvent
from webhooks.tables import EventStatus

# The only statuses retention prunes.
TERMINAL = (EventStatus.processed.value, EventStatus.ignored.value, EventStatus.not_ours.value)
LEASE_EXPIRED_ERROR = "lease expired: the worker died or timed out while processing the event"

EVENTS = Queue(
    table="stripe_events",
    key_type="varchar",
    time_column="received_at",
    done_column="processed_at",
    running=EventStatus.processing.value,
    finished=TERMINAL,
    parked=(EventStatus.unhandled.value,),
    replayable=None,  # by id, any state but a live lease (and never the other livemode: `replay_scope`)
    columns=(
        "id",
        "type",
        "account",
        "endpoint",
        "misrouted",
        "livemode",
        "api_version",
        "created",
        "received_at",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "processed_at",
    ),
    lease_expired_error=LEASE_EXPIRED_ERROR,
    max_attempts=Settings.event_max_attempts,  # the default; the worker's copy has the configured one
)
"""The event store as a queue of durable work; the worker runs it with settings' maximum and backoff."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A verified delivery, ready to store."""

    id: str
    type: str
    account: str | None
    endpoint: Endpoint
    misrouted: bool
    livemode: bool
    api_version: str | None
    created: datetime
    payload_json: str  # the body as received (valid JSON), stored as jsonb without re-encoding
    status: EventStatus
    # The exact body when jsonb cannot hold it (a `\u0000` escape): `payload_json` then has U+FFFD there.
    payload_raw: str | None = None


# One statement stores a whole batch of deliveries; RETURNING names the ids that were new.
_INSERT_MANY = """
INSERT INTO stripe_events (id, type, account, endpoint, misrouted, livemode, api_version, created, payload,
                           received_at, status, attempts, next_attempt_at, last_error, payload_raw)
SELECT e.id, e.type, e.account, e.endpoint, e.misrouted, e.livemode, e.api_version, e.created, e.payload::jsonb,
       now(), e.status, 0, CASE WHEN e.status = 'pending' THEN now() END, e.note, e.raw
  FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::bool[], $6::bool[], $7::varchar[],
              $8::timestamptz[], $9::text[], $10::varchar[], $11::text[], $12::text[])
       AS e(id, type, account, endpoint, misrouted, livemode, api_version, created, payload, status, note, raw)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""

# A lone delivery (the common case below saturation) skips the array encoding and the unnest.
_INSERT_ONE = """
INSERT INTO stripe_events (id, type, account, endpoint, misrouted, livemode, api_version, created, payload,
                           received_at, status, attempts, next_attempt_at, last_error, payload_raw)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, now(), $10::varchar, 0,
        CASE WHEN $10::varchar = 'pending' THEN now() END, $11::text, $12::text)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""

_Pending = tuple[NewEvent, "str | None", "asyncio.Future[bool]"]

# SQLSTATE classes that can be one row's fault: data exception (jsonb refusing a value, a value too
# long) and integrity constraint violation. Anything else (a lost connection, a read-only standby after
# a failover, a missing column, a serialization failure) fails every row alike: no row-by-row retry.
_ROW_SPECIFIC = ("22", "23")


def _row_specific(exc: BaseException) -> bool:
    """Whether a failed insert may be the fault of one row (e.g. jsonb refusing a value), not of the server."""
    if not isinstance(exc, asyncpg.PostgresError):
        return False
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    return sqlstate[:2] in _ROW_SPECIFIC


def _row_values(event: NewEvent, note: str | None) -> tuple[Any, ...]:
    return (
        event.id,
        event.type,
        event.account,
        event.endpoint,
        event.misrouted,
        event.livemode,
        event.api_version,
        event.created,
        event.payload_json,
        event.status.value,
        note,
        event.payload_raw,
    )


class _GroupCommit:
    """Stores concurrent deliveries in shared transactions (group commit), never delaying a lone one.

    A delivery is flushed at once when fewer than `max_in_flight` inserts are running; otherwise it
    joins the next batch, flushed as soon as a running insert commits. Every caller still waits for
    the commit of the statement that holds its row, so nothing is acknowledged before it is durable.
    When the shared statement fails for a reason that may be one row's (PostgreSQL refusing a value),
    the batch is stored again row by row, so only that row's delivery fails (503, Stripe retries);
    when the server or the connection failed, every delivery in the batch fails.

    While an API process runs (`open_ingest_pool`), the inserts use a pool of their own, one
    connection per insert in flight: deliveries never wait behind the API's other queries (nor
    those behind a webhook storm), and since these connections only ever run the autocommit INSERT,
    returning one to the pool skips asyncpg's session reset, a round trip per delivery
    (docs/performance.md). Without it (CLI, tests) they borrow from the shared pool.
    """

    def __init__(self, max_in_flight: int = 3, max_batch: int = 500) -> None:
        self.max_in_flight = max_in_flight
        self.max_batch = max_batch
        self.waiting: list[_Pending] = []
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.pool: asyncpg.Pool | None = None  # the ingest pool, while an API process runs
        self.pool_users = 0

    async def insert(self, event: NewEvent, note: str | None) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self.in_flight < self.max_in_flight and not self.waiting:
            # Nobody to share a commit with: store it from this task (no extra task, no extra wait).
            self.in_flight += 1
            await self._flush([(event, note, future)])
            return future.result()
        self.waiting.append((event, note, future))
        if self.in_flight < self.max_in_flight:
            self._flush_next()
        return await future

    def _flush_next(self) -> None:
        batch, self.waiting = self.waiting[: self.max_batch], self.waiting[self.max_batch :]
        self.in_flight += 1
        task = asyncio.create_task(self._flush(batch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            first: dict[str, int] = {}
            for index, (event, _, _) in enumerate(batch):
                first.setdefault(event.id, index)  # a copy within the batch is a duplicate of the first
            rows = [_row_values(event, note) for event, note, _ in (batch[i] for i in first.values())]
            refused: dict[str, BaseException] = {}
            async with connection(self.pool) as conn:
                if len(rows) == 1:
                    new_id = await conn.fetchval(_INSERT_ONE, *rows[0])
                    inserted = {new_id} if new_id is not None else set()
                else:
                    columns = [list(column) for column in zip(*rows, strict=True)]
                    try:
                        inserted = {r["id"] for r in await conn.fetch(_INSERT_MANY, *columns)}
                    except Exception as exc:
                        if not _row_specific(exc):
                            raise
                        # One row PostgreSQL refuses must not fail the deliveries it shares a statement with.
                        inserted, refused = await _insert_one_by_one(conn, rows)
            for index, (event, _, future) in enumerate(batch):
                if future.done():
                    continue
                if event.id in refused:
                    future.set_exception(refused[event.id])
                else:
                    future.set_result(event.id in inserted and first[event.id] == index)
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self.in_flight -= 1
            if self.waiting:
                self._flush_next()


async def _insert_one_by_one(
    conn: asyncpg.Connection, rows: list[tuple[Any, ...]]
) -> tuple[set[str], dict[str, BaseException]]:
    """Store rows one statement each; returns the ids inserted and, per refused row, why."""
    inserted: set[str] = set()
    refused: dict[str, BaseException] = {}
    for values in rows:
        try:
            new_id = await conn.fetchval(_INSERT_ONE, *values)
        except Exception as exc:
            if not _row_specific(exc):
                raise  # the server went away meanwhile: the rest of the batch fails too
            refused[values[0]] = exc
        else:
            if new_id is not None:
                inserted.add(new_id)
    return inserted, refused


_group_commits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _GroupCommit] = weakref.WeakKeyDictionary()


def _group_commit() -> _GroupCommit:
    loop = asyncio.get_running_loop()
    group = _group_commits.get(loop)
    if group is None:
        group = _group_commits[loop] = _GroupCommit()
    return group


async def insert_event(event: NewEvent, *, note: str | None = None) -> bool:
    """Store a delivery durably; False when the event id was already stored (a duplicate delivery)."""
    return await _group_commit().insert(event, note)


async def open_ingest_pool(dsn: str) -> None:
    """Give this process's ingest inserts their own connections (lazily opened, so it starts while
    PostgreSQL is down). Reference-counted like the shared pool; pair with `close_ingest_pool`."""
    group = _group_commit()
    group.pool_users += 1
    if group.pool is None:
        pool = asyncpg.create_pool(
            dsn, min_size=0, max_size=group.max_in_flight, command_timeout=30, reset=keep_session
        )
        group.pool = pool  # before the await: a second opener in this loop shares it
        await pool


async def close_ingest_pool() -> None:
    group = _group_commit()
    group.pool_users = max(0, group.pool_users - 1)
    pool = group.pool
    if group.pool_users == 0 and pool is not None:
        group.pool = None
        await close_pool(pool)


@dataclass(frozen=True, slots=True)
class Claim:
    """An event this worker holds the lease on."""

    event: StoredEvent
    lease_token: str
    attempts: int  # including this one
    received_at: datetime


def event_payload(row: asyncpg.Record) -> dict[str, Any]:
    """The event as delivered: the exact body when it was kept (jsonb could not hold it), else the jsonb."""
    raw = row["payload_raw"]
    payload = json.loads(raw) if raw is not None else row["payload"]
    if isinstance(payload, str):
        payload = json.loads(payload)
    return cast(dict[str, Any], payload)


def _stored_event(row: asyncpg.Record) -> StoredEvent:
    payload = event_payload(row)
    # Handlers act on the account the event carries, whichever endpoint it reached (misrouted events).
    effective: Endpoint = "connect" if row["account"] else "platform"
    return StoredEvent(
        id=row["id"],
        type=row["type"],
        account=row["account"],
        endpoint=effective,
        livemode=row["livemode"],
        api_version=row["api_version"],
        created=row["created"],
        payload=payload,
        received_on=row["endpoint"],
    )


_CLAIMED_COLUMNS = "id, type, account, endpoint, livemode, api_version, created, payload, payload_raw, received_at"


async def claim(event_id: str, lease_seconds: int, *, unhandled: bool = False) -> Claim | None:
    """Take the lease on a due event (compare-and-set).

    None when there is nothing to do now: done, not yet due (a failed event before its
    `next_attempt_at`), held by another worker, or held by a lease that expired (see `release_expired`).
    `unhandled`: also take an event parked as unhandled (a worker re-offering it to its own handler).
    """
    also = (EventStatus.unhandled.value,) if unhandled else ()
    lease = await durable.claim(EVENTS, event_id, lease_seconds, columns=_CLAIMED_COLUMNS, also=also)
    if lease is None:
        return None
    return Claim(_stored_event(lease.row), lease.token, lease.attempts, lease.row["received_at"])


async def finish(event_id: str, lease_token: str, status: EventStatus, note: str | None = None) -> bool:
    """Record a terminal outcome (processed / ignored / not_ours) if we still hold the lease."""
    return await durable.finish(EVENTS, event_id, lease_token, status.value, last_error=note)


async def park_unhandled(event_id: str, lease_token: str, note: str) -> bool:
    """Park an event no handler here takes (`unhandled`): not done, not an attempt, never pruned.

    The attempt the claim counted is given back: an event that only met workers without its handler
    keeps its whole retry budget for the one that has it.
    """
    return await durable.park(EVENTS, event_id, lease_token, EventStatus.unhandled.value, note)


async def unhandled_events(*, platform_types: Sequence[str], connect_types: Sequence[str], limit: int) -> list[str]:
    """Ids of unhandled events whose type a handler here takes on the event's endpoint, oldest first.

    The endpoint that counts is the account's (a Connect event carries `account`), as in dispatch.
    """
    async with connection() as conn:
        rows = await conn.fetch(
            """
            SELECT id FROM stripe_events
             WHERE status = 'unhandled'
               AND ((account IS NULL AND type = ANY($1::varchar[]))
                    OR (account IS NOT NULL AND type = ANY($2::varchar[])))
             ORDER BY received_at LIMIT $3
            """,
            list(platform_types),
            list(connect_types),
            limit,
        )
    return [r["id"] for r in rows]


async def fail(
    queue: Queue, event_id: str, lease_token: str, error: str, *, attempts: int, permanent: bool = False
) -> durable.Failure | None:
    """Record a handler failure: `failed` with a next attempt (`queue`'s backoff), or `dead` at its maximum
    (at once when `permanent`)."""
    return await durable.fail(queue, event_id, lease_token, error, attempts=attempts, permanent=permanent)


@dataclass(frozen=True, slots=True)
class Released:
    """An expired lease recorded as a failed attempt."""

    id: str
    type: str
    attempts: int
    failure: durable.Failure  # failed (retried after `retry_in`) or dead


async def release_expired(event_id: str, *, queue: Queue) -> Released | None:
    """Record an expired lease as a failed attempt: `failed` with a backoff, or `dead` at the maximum.

    A lease expires only when its worker died or hung past it (a handler that merely runs long is
    cancelled before). None when the event is not under an expired lease.
    """
    for released in await durable.release_expired(queue, keys=[event_id], limit=1, columns="type"):
        return Released(event_id, released.row["type"], released.attempts, released.failure)
    return None


@dataclass(frozen=True, slots=True)
class DueEvent:
    id: str
    attempts: int
    status: str


async def due_events(*, pending_grace: timedelta, limit: int) -> list[DueEvent]:
    """Events a worker should pick up now but that may not be queued.

    Pending events older than `pending_grace` (ingest could not reach Redis), failed events whose
    retry time has come, and processing events whose lease expired (their worker died or hung: the
    sweeper records that with `release_expired` before anything is queued).
    """
    return [
        DueEvent(d.key, d.attempts, d.status)
        for d in await durable.due(EVENTS, pending_grace=pending_grace, limit=limit)
    ]


def replay_scope(livemode: bool, type_: str | None = None) -> dict[str, Any]:
    """What any replay is limited to: the configured key's livemode (events of the other one are stored
    as ignored and never processed), and one type if given."""
    return {"livemode": livemode} | ({"type": type_} if type_ is not None else {})


async def get_event(event_id: str) -> dict[str, Any] | None:
    row = await durable.get(EVENTS, event_id, columns="*")
    if row is None:
        return None
    out = dict(row)
    out["payload"] = event_payload(row)
    return out


async def prune(retention_days: int, *, batch: int = 5000) -> int:
    """Delete processed and ignored events received more than `retention_days` ago.

    Only terminal ones (`TERMINAL`): pending, failed, dead and unhandled events are kept however old.
    """
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    total = 0
    while True:
        async with connection() as conn:
            result: str = await conn.execute(
                """
                DELETE FROM stripe_events WHERE id IN (
                    SELECT id FROM stripe_events WHERE status = ANY($3::varchar[]) AND received_at < $1
                    LIMIT $2)
                """,
                cutoff,
                batch,
                list(TERMINAL),
            )
        deleted = int(result.rsplit(" ", 1)[-1])
        total += deleted
        if deleted < batch:
            return total


@dataclass(frozen=True, slots=True)
class Backlog:
    queue_lag_seconds: float  # age of the oldest event due for processing (0 when none)
    due: int
    dead: int
    failed: int
    unhandled: int


async def backlog() -> Backlog:
    """Figures for the metrics gauges."""
    figures = await durable.backlog(EVENTS)
    return Backlog(
        figures.queue_lag_seconds,
        figures.due,
        figures.dead,
        figures.failed,
        figures.parked[EventStatus.unhandled.value],
    )
