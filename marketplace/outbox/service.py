"""The outbox: writing messages (inside the caller's transaction) and delivering them, at least once.

Delivery is **at least once**: a message may reach its receiver more than once (a send that succeeded
but whose outcome was not recorded, because the worker died, the database went away or the send ran
past its timeout after the receiver had taken it, is sent again). Every send therefore carries the
message's `dedupe_key` (unique per fact announced) and the attempt number, and receivers de-duplicate
on the key. Nothing is ever skipped silently: a message is sent, waiting for a retry, or `dead`.

Status machine of a message (the row is the truth; every transition is a compare-and-set on it):

    pending ──claim──▶ sending ──notifier ok──▶ sent
       ▲                  ├─raise, timeout or lease expired, attempts < max──▶ failed ──(when due)──claim──▶ sending
       │                  └─raise, timeout or lease expired, attempts = max──▶ dead
       └─────────── replay (failed or dead; attempts reset)

A delivery run (`deliver_due`, the worker's cron) first records expired leases as failed attempts (the
run holding them died or hung mid-send), then repeatedly claims a batch with one autocommit
`UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING`, which takes a lease (a
random token and `lease_until`). The sends happen after that statement has committed: no transaction,
no row lock and no connection is held while the notifier runs, and each send is cut by a timeout well
inside the lease. The outcome is a second short statement that only counts while the token matches,
so a run whose lease was taken over cannot overwrite the new owner. Outcomes are counted in Redis
(`outbox_deliveries_total`, shown on the API's `/metrics`, since the worker serves no HTTP).

Delivery goes through a `Notifier`; the default one writes a structured log line, which is what a
development setup wants. A real provider (email, push) plugs in as another `Notifier`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
from arq.connections import ArqRedis
from redis.asyncio import Redis

from marketplace.lib.db import connection
from marketplace.lib.observability import METRICS, redact
from marketplace.outbox.tables import OutboxMessage, OutboxStatus

log = logging.getLogger("marketplace.outbox")

DELIVERIES = "outbox_deliveries_total"
METRICS.describe(
    DELIVERIES, "counter", "Outbox delivery outcomes by message kind (sent, failed, dead, lost_lease), all workers."
)

DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_SEND_TIMEOUT_SECONDS = 10.0
DEFAULT_LEASE_SECONDS = 60.0
LEASE_MARGIN_SECONDS = 5.0  # a send is cut at least this long before its lease expires: time to record it
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0
MAX_ERROR_CHARS = 4000
LEASE_EXPIRED_ERROR = "lease expired: the delivery run died or hung while sending the message"

_REPLAYABLE = (OutboxStatus.failed.value, OutboxStatus.dead.value)


@dataclass(frozen=True, slots=True)
class OutboxDelivery:
    """What a notifier is given: the message, its de-duplication key and which attempt this is."""

    id: uuid.UUID
    kind: str
    dedupe_key: str  # unique per fact: a receiver that saw this key before drops the message
    principal_id: uuid.UUID | None
    payload: dict[str, Any]
    attempt: int  # 1 for the first send; a replay starts again at 1


class Notifier(Protocol):
    async def send(self, message: OutboxDelivery) -> None:
        """Hand the message over; raise if it was not accepted. May be called more than once per key."""
        ...


class LogNotifier:
    """The development notifier: one structured log line per send."""

    async def send(self, message: OutboxDelivery) -> None:
        log.info(
            "notify kind=%s dedupe_key=%s message_id=%s attempt=%d principal=%s payload=%s",
            message.kind,
            message.dedupe_key,
            message.id,
            message.attempt,
            message.principal_id,
            json.dumps(message.payload, sort_keys=True, default=str),
        )


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One stored message as operators see it (admin API, CLI); the payload is left out."""

    id: uuid.UUID
    kind: str
    dedupe_key: str
    principal_id: uuid.UUID | None
    status: OutboxStatus
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    lease_until: datetime | None
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one delivery run did."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0  # including expired leases that used up the last attempt
    lost_lease: int = 0  # sent, but the lease had been taken over before the outcome was recorded
    released: int = 0  # expired leases recorded as failed attempts


class MessageNotFound(Exception):
    """No outbox message has this id."""


class NotReplayable(Exception):
    """Only failed and dead messages are replayed; this one is pending, being sent, or sent."""

    def __init__(self, message_id: uuid.UUID, status: OutboxStatus) -> None:
        super().__init__(f"outbox message {message_id} is {status.value}; only failed or dead messages are replayed")
        self.message_id = message_id
        self.status = status


@dataclass(frozen=True, slots=True)
class _Claim:
    delivery: OutboxDelivery
    lease_token: str


_RECORD_COLUMNS = (
    "id, kind, dedupe_key, principal, status, attempts, last_error, created_at, next_attempt_at, lease_until, "
    "delivered_at"
)


def _json(value: Any) -> dict[str, Any]:
    decoded = json.loads(value) if isinstance(value, str) else value
    if not isinstance(decoded, dict):
        return {"value": decoded}
    return decoded


def _record(row: asyncpg.Record) -> OutboxRecord:
    return OutboxRecord(
        id=row["id"],
        kind=row["kind"],
        dedupe_key=row["dedupe_key"],
        principal_id=row["principal"],
        status=OutboxStatus(row["status"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        lease_until=row["lease_until"],
        delivered_at=row["delivered_at"],
    )


async def add_message(
    kind: str,
    dedupe_key: str,
    payload: dict[str, Any],
    principal_id: uuid.UUID | None = None,
    *,
    conn: asyncpg.Connection | None = None,
) -> bool:
    """Record a message once per `dedupe_key`, in the caller's transaction (Piccolo's, or `conn`'s when
    given); True if this call added it."""
    now = datetime.now(UTC)
    if conn is not None:
        added = await conn.fetchval(
            """
            INSERT INTO outbox_messages (id, kind, dedupe_key, principal, payload, created_at, attempts, status,
                                         next_attempt_at)
            VALUES ($1, $2, $3, $4, $5::jsonb, $6, 0, 'pending', $6)
            ON CONFLICT (dedupe_key) DO NOTHING RETURNING true
            """,
            uuid.uuid4(),
            kind,
            dedupe_key[:255],
            principal_id,
            json.dumps(payload, sort_keys=True, default=str),
            now,
        )
        return bool(added)
    rows = (
        await OutboxMessage.insert(
            OutboxMessage(
                id=uuid.uuid4(),
                kind=kind,
                dedupe_key=dedupe_key[:255],
                principal=principal_id,
                payload=payload,
                created_at=now,
                status=OutboxStatus.pending.value,
                next_attempt_at=now,
            )
        )
        .on_conflict(target=OutboxMessage.dedupe_key, action="DO NOTHING")
        .returning(OutboxMessage.id)
    )
    return bool(rows)


async def add_messages(
    conn: asyncpg.Connection, messages: list[tuple[str, str, dict[str, Any], uuid.UUID | None]]
) -> int:
    """`add_message` for several (kind, dedupe_key, payload, principal) in one statement, in `conn`'s
    transaction; how many were added (a key already present adds nothing)."""
    if not messages:
        return 0
    added: int = await conn.fetchval(
        """
        WITH added AS (
            INSERT INTO outbox_messages (id, kind, dedupe_key, principal, payload, created_at, attempts, status,
                                         next_attempt_at)
            SELECT gen_random_uuid(), m.kind, m.dedupe_key, m.principal, m.payload::jsonb, now(), 0, 'pending', now()
              FROM unnest($1::varchar[], $2::varchar[], $3::uuid[], $4::text[])
                   AS m(kind, dedupe_key, principal, payload)
            ON CONFLICT (dedupe_key) DO NOTHING RETURNING 1
        )
        SELECT count(*) FROM added
        """,
        [kind for kind, _, _, _ in messages],
        [key[:255] for _, key, _, _ in messages],
        [principal for _, _, _, principal in messages],
        [json.dumps(payload, sort_keys=True, default=str) for _, _, payload, _ in messages],
    )
    return added


def backoff(attempts: int, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS) -> timedelta:
    """Delay before the next attempt after `attempts` failed ones: base·2^(n-1), capped, ±20 % jitter."""
    delay = min(cap, base * 2 ** min(max(0, attempts - 1), 32))  # 2^32 periods is past any cap; no overflow
    return timedelta(seconds=delay * random.uniform(0.8, 1.2))


async def release_expired(
    *, max_attempts: int, backoff_base: float, backoff_cap: float, limit: int
) -> list[OutboxRecord]:
    """Record expired leases as failed attempts (`failed` with a backoff, or `dead` at `max_attempts`).

    A lease expires only when its run died or hung past it (a send is cut before); retaking such a
    message as if nothing happened would loop forever on one that kills its worker.
    """
    async with connection() as conn:
        rows = await conn.fetch(
            f"""
            UPDATE outbox_messages
               SET status = CASE WHEN attempts >= $1::int THEN 'dead' ELSE 'failed' END,
                   last_error = $2, lease_token = NULL, lease_until = NULL,
                   next_attempt_at = CASE WHEN attempts >= $1::int THEN NULL ELSE now() + make_interval(
                       secs => least($4::float8, $3::float8 * power(2, least(greatest(attempts - 1, 0), 32)))
                               * (0.8 + random() * 0.4)) END
             WHERE id IN (SELECT id FROM outbox_messages
                           WHERE status = 'sending' AND lease_until < now()
                           ORDER BY lease_until LIMIT $5 FOR UPDATE SKIP LOCKED)
               AND status = 'sending' AND lease_until < now()
         RETURNING {_RECORD_COLUMNS}
            """,  # noqa: S608  # a fixed column list; every value is a bind parameter
            max_attempts,
            LEASE_EXPIRED_ERROR,
            backoff_base,
            backoff_cap,
            limit,
        )
    return [_record(row) for row in rows]


async def claim_batch(limit: int, lease_seconds: float) -> list[_Claim]:
    """Take a lease on up to `limit` due messages, oldest due first (one autocommit statement).

    SKIP LOCKED: concurrent runs claim disjoint batches; the statement commits before anything is sent.
    """
    token = secrets.token_hex(16)
    async with connection() as conn:
        rows = await conn.fetch(
            """
            UPDATE outbox_messages
               SET status = 'sending', attempts = attempts + 1, lease_token = $1,
                   lease_until = now() + make_interval(secs => $2::float8)
             WHERE id IN (SELECT id FROM outbox_messages
                           WHERE status IN ('pending', 'failed') AND (status = 'pending' OR next_attempt_at <= now())
                           ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
               AND status IN ('pending', 'failed')
         RETURNING id, kind, dedupe_key, principal, payload, attempts
            """,
            token,
            lease_seconds,
            limit,
        )
    return [
        _Claim(
            OutboxDelivery(
                id=row["id"],
                kind=row["kind"],
                dedupe_key=row["dedupe_key"],
                principal_id=row["principal"],
                payload=_json(row["payload"]),
                attempt=row["attempts"],
            ),
            token,
        )
        for row in rows
    ]


async def record_sent(message_id: uuid.UUID, lease_token: str) -> bool:
    """Record a successful send if the lease is still ours."""
    async with connection() as conn:
        result: str = await conn.execute(
            """
            UPDATE outbox_messages
               SET status = 'sent', delivered_at = now(), lease_token = NULL, lease_until = NULL, next_attempt_at = NULL
             WHERE id = $1 AND lease_token = $2 AND status = 'sending'
            """,
            message_id,
            lease_token,
        )
    return result.endswith(" 1")


async def record_failure(
    message_id: uuid.UUID, lease_token: str, error: str, *, attempts: int, max_attempts: int, retry_in: timedelta
) -> OutboxStatus | None:
    """Record a failed send: `failed` with a next attempt, or `dead` after `max_attempts`; None: lease lost."""
    status = OutboxStatus.dead if attempts >= max_attempts else OutboxStatus.failed
    async with connection() as conn:
        result: str = await conn.execute(
            """
            UPDATE outbox_messages
               SET status = $3::varchar, last_error = $4, lease_token = NULL, lease_until = NULL,
                   next_attempt_at = CASE WHEN $3::varchar = 'failed' THEN now() + make_interval(secs => $5) END
             WHERE id = $1 AND lease_token = $2 AND status = 'sending'
            """,
            message_id,
            lease_token,
            status.value,
            error[:MAX_ERROR_CHARS],
            retry_in.total_seconds(),
        )
    return status if result.endswith(" 1") else None


def describe_error(exc: BaseException, send_timeout: float) -> str:
    """`Type: message` for `last_error`, masked like a log line (the admin API shows it)."""
    if isinstance(exc, TimeoutError):
        return f"TimeoutError: the notifier did not answer within {send_timeout:g} s"
    return redact(f"{type(exc).__name__}: {exc}")


async def deliver_due(
    notifier: Notifier,
    *,
    redis: Redis | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    send_timeout: float = DEFAULT_SEND_TIMEOUT_SECONDS,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    batch_size: int = 10,
    max_messages: int = 500,
    max_run_seconds: float = 60.0,
    backoff_base: float = BACKOFF_BASE_SECONDS,
    backoff_cap: float = BACKOFF_CAP_SECONDS,
) -> DeliveryReport:
    """One delivery run: release expired leases, then claim and send due messages batch by batch.

    A batch's messages are sent concurrently, each cut after `send_timeout` seconds; no new batch is
    claimed after `max_run_seconds` or once `max_messages` were claimed (the next run goes on). Outcome
    counts go to the shared counters in `redis` (the worker's), if given.
    """
    if send_timeout + LEASE_MARGIN_SECONDS > lease_seconds:
        raise ValueError(
            f"send_timeout ({send_timeout} s) must end at least {LEASE_MARGIN_SECONDS} s before the lease "
            f"({lease_seconds} s): another run could take the message over while it is being sent"
        )
    if max_attempts < 1 or batch_size < 1:
        raise ValueError("max_attempts and batch_size must be at least 1")
    outcomes: Counter[tuple[str, str]] = Counter()  # (kind, outcome) → count
    claimed = released = 0
    try:
        for record in await release_expired(
            max_attempts=max_attempts, backoff_base=backoff_base, backoff_cap=backoff_cap, limit=max_messages
        ):
            released += 1
            outcomes[(record.kind, record.status.value)] += 1
            log.warning(
                "outbox message %s (%s) lease expired on attempt %d: now %s",
                record.id,
                record.kind,
                record.attempts,
                record.status.value,
            )
        deadline = time.monotonic() + max_run_seconds
        while claimed < max_messages and time.monotonic() < deadline:
            batch = await claim_batch(min(batch_size, max_messages - claimed), lease_seconds)
            if not batch:
                break
            claimed += len(batch)
            results = await asyncio.gather(
                *(
                    _deliver_one(notifier, claim, send_timeout, max_attempts, backoff_base, backoff_cap)
                    for claim in batch
                ),
                return_exceptions=True,
            )
            errors: list[BaseException] = []
            for claim, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    errors.append(result)  # recording failed (database): the lease expires, a later run retries
                else:
                    outcomes[(claim.delivery.kind, result)] += 1
            if errors:
                raise errors[0]
    finally:
        if redis is not None and outcomes:
            await METRICS.add_shared(
                redis,
                *(
                    (DELIVERIES, float(n), {"kind": kind, "outcome": outcome})
                    for (kind, outcome), n in outcomes.items()
                ),
            )
    totals: Counter[str] = Counter()
    for (_, outcome), n in outcomes.items():
        totals[outcome] += n
    return DeliveryReport(
        claimed=claimed,
        sent=totals["sent"],
        failed=totals["failed"],
        dead=totals["dead"],
        lost_lease=totals["lost_lease"],
        released=released,
    )


async def _deliver_one(
    notifier: Notifier, claim: _Claim, send_timeout: float, max_attempts: int, backoff_base: float, backoff_cap: float
) -> str:
    """Send one claimed message (nothing held meanwhile) and record the outcome; returns it."""
    message = claim.delivery
    try:
        async with asyncio.timeout(send_timeout):
            await notifier.send(message)
    except Exception as exc:
        error = describe_error(exc, send_timeout)
        status = await record_failure(
            message.id,
            claim.lease_token,
            error,
            attempts=message.attempt,
            max_attempts=max_attempts,
            retry_in=backoff(message.attempt, base=backoff_base, cap=backoff_cap),
        )
        if status is None:
            log.warning("outbox message %s failed (%s) after its lease was taken over", message.id, error)
            return "lost_lease"
        if status is OutboxStatus.dead:
            log.error(
                "outbox message %s (%s) is dead after %d attempts: %s", message.id, message.kind, message.attempt, error
            )
        else:
            log.warning(
                "outbox message %s (%s) attempt %d failed: %s", message.id, message.kind, message.attempt, error
            )
        return status.value
    if not await record_sent(message.id, claim.lease_token):
        # Sent, but another run now holds the message: it will be sent again (receivers de-duplicate).
        log.warning("outbox message %s was sent after its lease was taken over", message.id)
        return "lost_lease"
    return "sent"


async def list_messages(
    *, status: OutboxStatus | None, limit: int, before: tuple[datetime, uuid.UUID] | None = None
) -> list[OutboxRecord]:
    """Messages newest first, optionally of one status; `before` is the (created_at, id) keyset cursor."""
    conditions: list[str] = []
    args: list[Any] = []
    if status is not None:
        args.append(status.value)
        conditions.append(f"status = ${len(args)}")
    if before is not None:
        args.extend(before)
        conditions.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
    async with connection() as conn:
        # Only fixed fragments and $n placeholders are interpolated; every value is a bind parameter.
        rows = await conn.fetch(
            f"SELECT {_RECORD_COLUMNS} FROM outbox_messages {where} "  # noqa: S608
            f"ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
            *args,
        )
    return [_record(row) for row in rows]


async def get_message(message_id: uuid.UUID) -> OutboxRecord | None:
    async with connection() as conn:
        row = await conn.fetchrow(f"SELECT {_RECORD_COLUMNS} FROM outbox_messages WHERE id = $1", message_id)  # noqa: S608
    return _record(row) if row is not None else None


async def replay(message_id: uuid.UUID) -> OutboxRecord:
    """Put a failed or dead message back to pending with a fresh attempt budget (sent at the next run).

    Raises `MessageNotFound`, or `NotReplayable` for a message that is pending, being sent, or sent.
    """
    async with connection() as conn:
        row = await conn.fetchrow(
            f"""
            UPDATE outbox_messages
               SET status = 'pending', attempts = 0, next_attempt_at = now(), lease_token = NULL, lease_until = NULL
             WHERE id = $1 AND status = ANY($2::varchar[])
         RETURNING {_RECORD_COLUMNS}
            """,  # noqa: S608  # a fixed column list; every value is a bind parameter
            message_id,
            list(_REPLAYABLE),
        )
        current: str | None = None
        if row is None:
            current = await conn.fetchval("SELECT status FROM outbox_messages WHERE id = $1", message_id)
    if row is not None:
        return _record(row)
    if current is None:
        raise MessageNotFound(f"no outbox message {message_id}")
    raise NotReplayable(message_id, OutboxStatus(current))


@dataclass(frozen=True, slots=True)
class Backlog:
    failed: int  # waiting for a retry
    dead: int  # needs an operator: replay


async def backlog() -> Backlog:
    """Figures for the metrics gauges (the status index answers both counts)."""
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM outbox_messages WHERE status IN ('failed', 'dead') GROUP BY status"
        )
    counts = {row["status"]: int(row["n"]) for row in rows}
    return Backlog(failed=counts.get("failed", 0), dead=counts.get("dead", 0))


class KindRouter:
    """A notifier that hands each message to the notifier registered for its kind, else to `default`.

    The outbox is the one after-commit mechanism: messages to people go to the default notifier, and
    commands the platform owes a third party (e.g. `refund.create`, sent to Stripe) to theirs, with the
    same leases, retries, dead state and replay."""

    def __init__(self, default: Notifier, routes: dict[str, Notifier] | None = None) -> None:
        self._default = default
        self._routes = dict(routes or {})

    async def send(self, message: OutboxDelivery) -> None:
        await self._routes.get(message.kind, self._default).send(message)


DELIVER_JOB = "deliver_outbox"  # the worker's job (and cron) that runs `deliver_due`
KICK_WINDOW_SECONDS = 0.1


async def request_delivery(pool: ArqRedis) -> None:
    """Ask a worker to deliver the outbox now, rather than at its next cron tick (best effort).

    Requests within one `KICK_WINDOW_SECONDS` window share one job (arq refuses a second job with the
    same id), so a burst of confirmations starts a handful of delivery runs, not one per order."""
    window = int(time.time() / KICK_WINDOW_SECONDS)
    await pool.enqueue_job(DELIVER_JOB, _job_id=f"outbox-kick:{window}")
