"""Rows of durable work claimed with a lease: every SQL statement of the lease-and-retry machine.

A kind of work declares its table as a `Queue`; these are its states (the row is the truth; each
transition is one compare-and-set on it):

    pending ──claim──▶ <running> ──finish (lease holder only)──▶ one of `finished` (terminal)
       ▲                   ├──park (lease holder only; the attempt is given back)──▶ one of `parked`
       │                   ├─fail, or its lease expired, attempts < max──▶ failed ──(when due)──claim──▶ <running>
       │                   └─fail, or its lease expired, attempts = max──▶ dead (kept, counted)
       └── replay (an operator; never a row under a live lease): attempts reset, due now

A claim takes a random token and `lease_until`: `claim` for one row by its key (a compare-and-set),
`claim_batch` for the oldest due rows (`FOR UPDATE SKIP LOCKED` inside one autocommit UPDATE, so
concurrent claimers take disjoint batches). The work runs after that statement committed, with
nothing held. `finish`, `park` and `fail` count only while the token still matches, so a holder
whose lease was taken over cannot overwrite the new owner. A lease expires only when its holder died
or hung past it (the work is cut earlier, `budget.work_timeout`): `release_expired` records that as a
failed attempt (same backoff, same maximum), so work that kills its holder ends dead, not in a loop.

Statuses and column names come from the declaration (code, never input) and are checked to be plain
identifiers before they are put into SQL; every value is a bind parameter.
"""

from __future__ import annotations

import math
import random
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg

from marketplace.lib.db import connection

PENDING: Final = "pending"
FAILED: Final = "failed"
DEAD: Final = "dead"
MAX_ERROR_CHARS = 4000
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def backoff(attempts: int, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS) -> timedelta:
    """Delay before the next attempt after `attempts` failed ones: base·2^(n-1), capped, ±20 % jitter."""
    try:
        doubled = math.ldexp(base, max(0, attempts - 1))  # base·2^(n-1), exactly, for any n
    except OverflowError:  # past any float, so past any cap
        doubled = math.inf
    delay = min(cap, doubled)
    return timedelta(seconds=delay * random.uniform(0.8, 1.2))


@dataclass(frozen=True, slots=True)
class Queue:
    """The declaration of one kind of durable work: its table, its statuses, its retry policy.

    `pending`, `failed` and `dead` are the same words for every queue; the rest is declared. A copy
    with another retry policy (from settings, or a test's fast backoff) is `with_retry(...)`.
    """

    table: str
    key_type: str  # SQL type of the key column, for arrays of keys: "varchar", "uuid"
    time_column: str  # when a row was written: lists (newest first) and bulk replays (oldest first) go by it
    done_column: str  # stamped when a row is finished
    running: str  # the status of a row under a lease
    finished: tuple[str, ...]  # terminal statuses the lease holder may record
    columns: tuple[str, ...]  # what operators see of a row (lists, replays): no payload
    lease_expired_error: str  # `last_error` of an attempt whose lease expired
    max_attempts: int
    parked: tuple[str, ...] = ()  # not done, not an attempt: the holder gives its attempt back
    replayable: tuple[str, ...] | None = None  # statuses an operator may replay by key (None: any)
    backoff_base: float = BACKOFF_BASE_SECONDS
    backoff_cap: float = BACKOFF_CAP_SECONDS
    key_column: str = "id"

    def __post_init__(self) -> None:
        words = [self.table, self.key_type, self.time_column, self.done_column, self.running, self.key_column]
        words += [*self.finished, *self.parked, *self.columns, *(self.replayable or ())]
        for word in words:
            if not _IDENTIFIER.match(word):
                raise ValueError(f"not a plain SQL identifier in a queue declaration: {word!r}")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def with_retry(
        self, *, max_attempts: int | None = None, backoff_base: float | None = None, backoff_cap: float | None = None
    ) -> Queue:
        """This queue with another retry policy (settings' maximum, a test's fast backoff)."""
        return replace(
            self,
            max_attempts=self.max_attempts if max_attempts is None else max_attempts,
            backoff_base=self.backoff_base if backoff_base is None else backoff_base,
            backoff_cap=self.backoff_cap if backoff_cap is None else backoff_cap,
        )

    def retry_in(self, attempts: int) -> timedelta:
        """The backoff after `attempts` failed attempts, by this queue's policy."""
        return backoff(attempts, base=self.backoff_base, cap=self.backoff_cap)

    def outcome_of_failure(self, attempts: int) -> tuple[str, timedelta | None]:
        """`failed` with the delay before the next attempt, or `dead` once `attempts` reached the maximum."""
        if attempts >= self.max_attempts:
            return DEAD, None
        return FAILED, self.retry_in(attempts)

    @property
    def due_predicate(self) -> str:
        # Spelled with literals so that the partial index `… WHERE status IN ('pending', 'failed')` serves it.
        return f"status IN ('{PENDING}', '{FAILED}') AND (status = '{PENDING}' OR next_attempt_at <= now())"

    @property
    def select_list(self) -> str:
        return ", ".join(self.columns)


@dataclass(frozen=True, slots=True)
class Lease:
    """A row this holder leased: the columns it asked for, its token, and which attempt this is."""

    row: asyncpg.Record
    token: str
    attempts: int  # including this one


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt as recorded: `failed` (retried after `retry_in`) or `dead`."""

    status: str
    retry_in: timedelta | None

    @property
    def dead(self) -> bool:
        return self.status == DEAD


@dataclass(frozen=True, slots=True)
class Released:
    """An expired lease recorded as a failed attempt."""

    row: asyncpg.Record  # the columns asked for, as they were before the release
    attempts: int
    failure: Failure


class _Keep:
    """`finish(..., last_error=KEEP)`: leave `last_error` as the earlier attempts wrote it."""


KEEP: Final = _Keep()


async def claim(
    queue: Queue, key: Any, lease_seconds: float, *, columns: str, also: Sequence[str] = ()
) -> Lease | None:
    """Lease one row if it is due (pending, or failed with its retry time come), or in a status of `also`.

    None when there is nothing to do now: done, not yet due, or under a lease (live or expired: see
    `release_expired`).
    """
    token = secrets.token_hex(16)
    async with connection() as conn:
        row = await conn.fetchrow(
            f"""
            UPDATE {queue.table}
               SET status = '{queue.running}', attempts = attempts + 1, lease_token = $2,
                   lease_until = now() + make_interval(secs => $3::float8)
             WHERE {queue.key_column} = $1 AND (({queue.due_predicate}) OR status = ANY($4::varchar[]))
         RETURNING {columns}, attempts
            """,  # noqa: S608  # declared identifiers only; every value is a bind parameter
            key,
            token,
            float(lease_seconds),
            list(also),
        )
    return Lease(row, token, row["attempts"]) if row is not None else None


async def claim_batch(queue: Queue, limit: int, lease_seconds: float, *, columns: str) -> list[Lease]:
    """Lease up to `limit` due rows, oldest due first, in one autocommit statement (disjoint batches)."""
    # The batch is chosen once, in a materialized CTE. Written as `UPDATE … WHERE key IN (SELECT … LIMIT n
    # FOR UPDATE SKIP LOCKED)`, PostgreSQL may re-run the sub-select for each row it updates, and every
    # re-run skips the rows this statement has just updated: one claim then took every due row, whatever
    # the limit, and a concurrent run found nothing left.
    token = secrets.token_hex(16)
    async with connection() as conn:
        rows = await conn.fetch(
            f"""
            WITH batch AS MATERIALIZED (
                SELECT {queue.key_column} AS key_ FROM {queue.table} WHERE {queue.due_predicate}
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED
            )
            UPDATE {queue.table}
               SET status = '{queue.running}', attempts = attempts + 1, lease_token = $1,
                   lease_until = now() + make_interval(secs => $2::float8)
              FROM batch
             WHERE {queue.key_column} = batch.key_
         RETURNING {columns}, attempts
            """,  # noqa: S608  # declared identifiers only; every value is a bind parameter
            token,
            float(lease_seconds),
            limit,
        )
    return [Lease(row, token, row["attempts"]) for row in rows]


async def finish(queue: Queue, key: Any, token: str, status: str, *, last_error: str | _Keep | None = None) -> bool:
    """Record a terminal outcome if `token` still holds the lease; False when it was taken over."""
    if status not in queue.finished:
        raise ValueError(f"{status!r} is not a finished status of {queue.table}")
    keep = isinstance(last_error, _Keep)
    async with connection() as conn:
        result: str = await conn.execute(
            f"""
            UPDATE {queue.table}
               SET status = $3, {queue.done_column} = now(), lease_token = NULL, lease_until = NULL,
                   next_attempt_at = NULL, last_error = CASE WHEN $5 THEN last_error ELSE $4 END
             WHERE {queue.key_column} = $1 AND lease_token = $2 AND status = '{queue.running}'
            """,  # noqa: S608  # declared identifiers only; every value is a bind parameter
            key,
            token,
            status,
            None if isinstance(last_error, _Keep) else last_error,
            keep,
        )
    return result.endswith(" 1")


async def park(queue: Queue, key: Any, token: str, status: str, note: str) -> bool:
    """Set a leased row aside in a parked status (not done, not an attempt: the attempt is given back)."""
    if status not in queue.parked:
        raise ValueError(f"{status!r} is not a parked status of {queue.table}")
    async with connection() as conn:
        result: str = await conn.execute(
            f"""
            UPDATE {queue.table}
               SET status = $3, attempts = greatest(attempts - 1, 0), lease_token = NULL, lease_until = NULL,
                   next_attempt_at = NULL, {queue.done_column} = NULL, last_error = $4
             WHERE {queue.key_column} = $1 AND lease_token = $2 AND status = '{queue.running}'
            """,  # noqa: S608  # declared identifiers only; every value is a bind parameter
            key,
            token,
            status,
            note,
        )
    return result.endswith(" 1")


async def fail(
    queue: Queue, key: Any, token: str, error: str, *, attempts: int, permanent: bool = False
) -> Failure | None:
    """Record a failed attempt (the `attempts`-th): `failed` with a backoff, or `dead` at the maximum;
    `dead` at once when `permanent` (no retry can change the outcome: a malformed event, say).

    None when `token` no longer holds the lease (nothing is written).
    """
    status, delay = (DEAD, None) if permanent else queue.outcome_of_failure(attempts)
    async with connection() as conn:
        result: str = await conn.execute(
            f"""
            UPDATE {queue.table}
               SET status = $3::varchar, last_error = $4, lease_token = NULL, lease_until = NULL,
                   next_attempt_at = CASE WHEN $3::varchar = '{FAILED}' THEN now() + make_interval(secs => $5) END
             WHERE {queue.key_column} = $1 AND lease_token = $2 AND status = '{queue.running}'
            """,  # noqa: S608  # declared identifiers only; every value is a bind parameter
            key,
            token,
            status,
            error[:MAX_ERROR_CHARS],
            delay.total_seconds() if delay is not None else 0.0,
        )
    return Failure(status, delay) if result.endswith(" 1") else None


async def release_expired(
    queue: Queue, *, keys: Sequence[Any] | None = None, limit: int, columns: str
) -> list[Released]:
    """Record expired leases (of `keys`, or any) as failed attempts: `failed` with a backoff, or `dead`.

    A lease expires only when its holder died or hung past it (the work is cut before); retaking such
    a row as if nothing happened would loop forever on work that kills its holder. Rows locked by a
    concurrent release are skipped (it records them).
    """
    args: list[Any] = [limit]
    only = ""
    if keys is not None:
        args.append(list(keys))
        only = f"AND {queue.key_column} = ANY($2::{queue.key_type}[])"
    async with connection() as conn, conn.transaction():
        rows = await conn.fetch(
            f"""
            SELECT {queue.key_column} AS key_, attempts, {columns} FROM {queue.table}
             WHERE status = '{queue.running}' AND lease_until < now() {only}
             ORDER BY lease_until LIMIT $1 FOR UPDATE SKIP LOCKED
            """,  # noqa: S608  # declared identifiers only; every value is a bind parameter
            *args,
        )
        if not rows:
            return []
        released = [Released(row, row["attempts"], Failure(*queue.outcome_of_failure(row["attempts"]))) for row in rows]
        await conn.execute(
            f"""
            UPDATE {queue.table} AS t
               SET status = u.status, last_error = $4, lease_token = NULL, lease_until = NULL,
                   next_attempt_at = CASE WHEN u.status = '{FAILED}' THEN now() + make_interval(secs => u.delay) END
              FROM unnest($1::{queue.key_type}[], $2::varchar[], $3::float8[]) AS u(key_, status, delay)
             WHERE t.{queue.key_column} = u.key_
            """,  # noqa: S608  # declared identifiers only; every value is a bind parameter
            [r.row["key_"] for r in released],
            [r.failure.status for r in released],
            [r.failure.retry_in.total_seconds() if r.failure.retry_in is not None else 0.0 for r in released],
            queue.lease_expired_error,
        )
    return released


@dataclass(frozen=True, slots=True)
class Due:
    """A row a worker should pick up now: its key, attempts so far and status."""

    key: Any
    attempts: int
    status: str


async def due(queue: Queue, *, pending_grace: timedelta, limit: int) -> list[Due]:
    """Rows that should be worked on now but may have no job queued.

    Pending rows older than `pending_grace` (whoever wrote them could not ask a worker), failed rows
    whose retry time has come, and rows whose lease expired (record those with `release_expired`).
    """
    key = queue.key_column
    async with connection() as conn:
        rows = await conn.fetch(
            f"""
            (SELECT {key} AS key_, attempts, status FROM {queue.table}
              WHERE status = '{PENDING}' AND next_attempt_at <= now() - make_interval(secs => $1)
              ORDER BY next_attempt_at LIMIT $2)
            UNION ALL
            (SELECT {key} AS key_, attempts, status FROM {queue.table}
              WHERE status = '{FAILED}' AND next_attempt_at <= now()
              ORDER BY next_attempt_at LIMIT $2)
            UNION ALL
            (SELECT {key} AS key_, attempts, status FROM {queue.table}
              WHERE status = '{queue.running}' AND lease_until < now()
              ORDER BY lease_until LIMIT $2)
            """,  # noqa: S608  # declared identifiers only; every value is a bind parameter
            pending_grace.total_seconds(),
            limit,
        )
    return [Due(r["key_"], r["attempts"], r["status"]) for r in rows]


def _conditions(queue: Queue, where: Mapping[str, Any], args: list[Any]) -> list[str]:
    """`column = $n` for each equality filter (column names from code; values as bind parameters)."""
    conditions = []
    for column, value in where.items():
        if not _IDENTIFIER.match(column):
            raise ValueError(f"not a plain SQL identifier: {column!r}")
        args.append(value)
        conditions.append(f"{column} = ${len(args)}")
    return conditions


async def replay(
    queue: Queue,
    *,
    keys: Sequence[Any] | None = None,
    statuses: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
    limit: int,
) -> list[asyncpg.Record]:
    """Make rows due again with a fresh attempt budget (pending, attempts 0), oldest first.

    Only rows of `keys` / in `statuses` / matching `where` (equality on columns); never a row under a
    live lease. Returns the replayed rows (the declared columns).
    """
    args: list[Any] = []
    conditions = [f"NOT (status = '{queue.running}' AND lease_until >= now())"]
    conditions += _conditions(queue, where or {}, args)
    if keys is not None:
        args.append(list(keys))
        conditions.append(f"{queue.key_column} = ANY(${len(args)}::{queue.key_type}[])")
    if statuses is not None:
        args.append(list(statuses))
        conditions.append(f"status = ANY(${len(args)}::varchar[])")
    args.append(limit)
    async with connection() as conn:
        rows = await conn.fetch(
            f"""
            WITH chosen AS MATERIALIZED (
                SELECT {queue.key_column} AS key_ FROM {queue.table} WHERE {" AND ".join(conditions)}
                 ORDER BY {queue.time_column} LIMIT ${len(args)} FOR UPDATE SKIP LOCKED
            )
            UPDATE {queue.table}
               SET status = '{PENDING}', attempts = 0, next_attempt_at = now(), lease_token = NULL,
                   lease_until = NULL, {queue.done_column} = NULL
              FROM chosen
             WHERE {queue.key_column} = chosen.key_
         RETURNING {queue.select_list}
            """,  # noqa: S608  # declared identifiers only; every value is a bind parameter
            *args,
        )
    return list(rows)


async def get(queue: Queue, key: Any, *, columns: str | None = None) -> asyncpg.Record | None:
    """One row (the declared columns, or `columns`), or None."""
    async with connection() as conn:
        row: asyncpg.Record | None = await conn.fetchrow(
            f"SELECT {columns or queue.select_list} FROM {queue.table} WHERE {queue.key_column} = $1",  # noqa: S608
            key,
        )
    return row


async def page(
    queue: Queue,
    *,
    status: str | None,
    where: Mapping[str, Any] | None = None,
    limit: int,
    before: tuple[datetime, Any] | None = None,
) -> list[asyncpg.Record]:
    """Rows newest first, optionally of one status and matching `where`; `before` is the keyset cursor
    (time, key) of the last row of the previous page."""
    args: list[Any] = []
    conditions = _conditions(queue, {"status": status} if status is not None else {}, args)
    conditions += _conditions(queue, where or {}, args)
    if before is not None:
        args.extend(before)
        conditions.append(f"({queue.time_column}, {queue.key_column}) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    filtered = ("WHERE " + " AND ".join(conditions)) if conditions else ""
    async with connection() as conn:
        rows = await conn.fetch(
            f"SELECT {queue.select_list} FROM {queue.table} {filtered} "  # noqa: S608
            f"ORDER BY {queue.time_column} DESC, {queue.key_column} DESC LIMIT ${len(args)}",
            *args,
        )
    return list(rows)


@dataclass(frozen=True, slots=True)
class Backlog:
    """What a queue owes, for its gauges."""

    queue_lag_seconds: float  # age of the oldest row due now (0 when none)
    due: int  # pending, or failed with its retry time come
    failed: int  # waiting for a retry
    dead: int  # needs an operator: replay
    parked: Mapping[str, int]  # per parked status


async def backlog(queue: Queue) -> Backlog:
    """The queue's backlog figures, in one statement (the partial indexes answer it)."""
    parked = [f"count(*) FILTER (WHERE status = '{status}') AS {status}" for status in queue.parked]
    watched = ", ".join(f"'{status}'" for status in (PENDING, FAILED, DEAD, *queue.parked))
    async with connection() as conn:
        row = await conn.fetchrow(
            f"""
            SELECT
              COALESCE(EXTRACT(EPOCH FROM now() - min(next_attempt_at) FILTER (WHERE {queue.due_predicate})), 0)
                AS lag_,
              count(*) FILTER (WHERE {queue.due_predicate}) AS due_,
              count(*) FILTER (WHERE status = '{FAILED}') AS failed_,
              count(*) FILTER (WHERE status = '{DEAD}') AS dead_
              {"".join(", " + p for p in parked)}
            FROM {queue.table} WHERE status IN ({watched})
            """  # noqa: S608  # declared identifiers only
        )
    assert row is not None
    return Backlog(
        queue_lag_seconds=float(row["lag_"]),
        due=int(row["due_"]),
        failed=int(row["failed_"]),
        dead=int(row["dead_"]),
        parked={status: int(row[status]) for status in queue.parked},
    )
