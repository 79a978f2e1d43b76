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

The leases, retries and replays are the one durable-work mechanism's (`marketplace.lib.durable.queue`,
declared here as `OUTBOX`). A delivery run (`deliver_due`, the worker's cron) first records expired
leases as failed attempts (the run holding them died or hung mid-send), then repeatedly claims a batch
(`FOR UPDATE SKIP LOCKED` inside one autocommit UPDATE, which takes a lease). The sends happen after
that statement has committed: no transaction, no row lock and no connection is held while the
notifier runs, and each send is cut by a timeout well inside the lease. The outcome is a second short
statement that only counts while the lease token matches, so a run whose lease was taken over cannot
overwrite the new owner. Outcomes are counted in Redis (`outbox_deliveries_total`, shown on the API's
`/metrics`, since the worker serves no HTTP).

**Kinds are declared.** Every kind of message is declared once, with the sender that delivers it
(`declare_kind`), by the module that writes it, at import: `add_message`/`add_messages` refuse a kind
nobody declared (`UndeclaredKind`, which fails the writer's transaction), and the worker's notifier is
the router the declarations make (`build_router`). A new kind of after-commit work is one declaration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import stripe
from arq.connections import ArqRedis
from redis.asyncio import Redis

from marketplace.lib.durable import budget
from marketplace.lib.durable import operator as operators
from marketplace.lib.durable import queue as durable
from marketplace.lib.durable.queue import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, KEEP, Queue
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
LEASE_EXPIRED_ERROR = "lease expired: the delivery run died or hung while sending the message"

_RECORD_COLUMNS = (
    "id",
    "kind",
    "dedupe_key",
    "principal",
    "status",
    "attempts",
    "last_error",
    "created_at",
    "next_attempt_at",
    "lease_until",
    "delivered_at",
)
OUTBOX = Queue(
    table="outbox_messages",
    key_type="uuid",
    time_column="created_at",
    done_column="delivered_at",
    running=OutboxStatus.sending.value,
    finished=(OutboxStatus.sent.value,),
    replayable=(OutboxStatus.failed.value, OutboxStatus.dead.value),
    columns=_RECORD_COLUMNS,
    lease_expired_error=LEASE_EXPIRED_ERROR,
    max_attempts=DEFAULT_MAX_ATTEMPTS,
)
"""The outbox as a queue of durable work (a delivery run may use another retry policy: `deliver_due`)."""


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


def _json(value: Any) -> dict[str, Any]:
    decoded = json.loads(value) if isinstance(value, str) else value
    if not isinstance(decoded, dict):
        return {"value": decoded}
    return decoded


def payload_of(row: asyncpg.Record) -> dict[str, Any]:
    """A message row's payload, as its sender is given it."""
    return _json(row["payload"])


def record_of(row: asyncpg.Record) -> OutboxRecord:
    """A message row (the queue's declared columns) as operators see it."""
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


# ---- declared kinds ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendResources:
    """What the worker lends the senders of declared kinds (built once per worker)."""

    stripe: stripe.StripeClient


SenderFactory = Callable[[SendResources], Notifier]
"""Makes the `Notifier` that delivers a declared kind, from the worker's resources."""


class UndeclaredKind(LookupError):
    """A programming error: an outbox message of a kind no module declared (`declare_kind`).

    Raised where the message is written, so the writer's transaction fails and nothing is stored;
    a message that would be "sent" by nobody is never owed.
    """


_KINDS: dict[str, SenderFactory] = {}


def declare_kind(kind: str, sender: SenderFactory) -> str:
    """Declare an outbox kind and the sender that delivers it; returns `kind` (for the writer's constant).

    Called at import by the module that writes the kind, so the declaration is there wherever a
    message of it can be written. Declaring a kind again with another sender is refused.
    """
    declared = _KINDS.setdefault(kind, sender)
    if declared is not sender:
        raise ValueError(f"outbox kind {kind!r} is already declared with another sender ({declared!r})")
    return kind


def declared_kinds() -> frozenset[str]:
    return frozenset(_KINDS)


def _require_declared(kinds: Iterable[str]) -> None:
    missing = sorted(set(kinds) - _KINDS.keys())
    if missing:
        raise UndeclaredKind(
            f"outbox kind(s) {', '.join(map(repr, missing))} declared by no module: declare each with "
            "marketplace.outbox.service.declare_kind(kind, sender) where it is written"
        )


class KindRouter:
    """The worker's notifier: hands each message to the sender declared for its kind.

    The outbox is the one after-commit mechanism: messages to people go to the notification writer,
    and commands the platform owes a third party (e.g. `refund.create`, sent to Stripe) to theirs,
    with the same leases, retries, dead state and replay. A kind declared by no module this worker
    imported raises, so the message fails (and is retried, or ends dead): it is never dropped."""

    def __init__(self, routes: dict[str, Notifier]) -> None:
        self._routes = dict(routes)

    async def send(self, message: OutboxDelivery) -> None:
        sender = self._routes.get(message.kind)
        if sender is None:
            raise UndeclaredKind(f"no sender declared for outbox kind {message.kind!r} in this worker")
        await sender.send(message)


def build_router(resources: SendResources) -> KindRouter:
    """The router of every declared kind: one sender per factory, built with `resources`."""
    built: dict[SenderFactory, Notifier] = {}
    routes: dict[str, Notifier] = {}
    for kind, factory in _KINDS.items():
        if factory not in built:
            built[factory] = factory(resources)
        routes[kind] = built[factory]
    return KindRouter(routes)


# ---- writing -----------------------------------------------------------------------------------------


async def add_message(
    kind: str,
    dedupe_key: str,
    payload: dict[str, Any],
    principal_id: uuid.UUID | None = None,
    *,
    conn: asyncpg.Connection | None = None,
) -> bool:
    """Record a message once per `dedupe_key`, in the caller's transaction (Piccolo's, or `conn`'s when
    given); True if this call added it. Raises `UndeclaredKind` for a kind no module declared."""
    _require_declared([kind])
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
    transaction; how many were added (a key already present adds nothing). Raises `UndeclaredKind` for
    a kind no module declared (before anything is written)."""
    if not messages:
        return 0
    _require_declared(kind for kind, _, _, _ in messages)
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


# ---- delivering -------------------------------------------------------------------------------------

_CLAIMED_COLUMNS = "id, kind, dedupe_key, principal, payload"


async def claim_batch(limit: int, lease_seconds: float) -> list[_Claim]:
    """Take a lease on up to `limit` due messages, oldest due first (one autocommit statement).

    SKIP LOCKED: concurrent runs claim disjoint batches; the statement commits before anything is sent.
    """
    return [
        _Claim(
            OutboxDelivery(
                id=lease.row["id"],
                kind=lease.row["kind"],
                dedupe_key=lease.row["dedupe_key"],
                principal_id=lease.row["principal"],
                payload=_json(lease.row["payload"]),
                attempt=lease.attempts,
            ),
            lease.token,
        )
        for lease in await durable.claim_batch(OUTBOX, limit, lease_seconds, columns=_CLAIMED_COLUMNS)
    ]


async def record_sent(message_id: uuid.UUID, lease_token: str) -> bool:
    """Record a successful send if the lease is still ours (`last_error` keeps the earlier attempts')."""
    return await durable.finish(OUTBOX, message_id, lease_token, OutboxStatus.sent.value, last_error=KEEP)


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
    if (problem := budget.lease_problem(send_timeout, lease_seconds)) is not None:
        raise ValueError(f"send_timeout: {problem}")
    if max_attempts < 1 or batch_size < 1:
        raise ValueError("max_attempts and batch_size must be at least 1")
    queue = OUTBOX.with_retry(max_attempts=max_attempts, backoff_base=backoff_base, backoff_cap=backoff_cap)
    outcomes: Counter[tuple[str, str]] = Counter()  # (kind, outcome) → count
    claimed = released = 0
    try:
        for expired in await durable.release_expired(queue, limit=max_messages, columns="kind"):
            released += 1
            outcomes[(expired.row["kind"], expired.failure.status)] += 1
            log.warning(
                "outbox message %s (%s) lease expired on attempt %d: now %s",
                expired.row["key_"],
                expired.row["kind"],
                expired.attempts,
                expired.failure.status,
            )
        deadline = time.monotonic() + max_run_seconds
        while claimed < max_messages and time.monotonic() < deadline:
            batch = await claim_batch(min(batch_size, max_messages - claimed), lease_seconds)
            if not batch:
                break
            claimed += len(batch)
            results = await asyncio.gather(
                *(_deliver_one(queue, notifier, claim, send_timeout) for claim in batch),
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


async def _deliver_one(queue: Queue, notifier: Notifier, claim: _Claim, send_timeout: float) -> str:
    """Send one claimed message (nothing held meanwhile) and record the outcome; returns it."""
    message = claim.delivery
    try:
        async with asyncio.timeout(send_timeout):
            await notifier.send(message)
    except Exception as exc:
        error = describe_error(exc, send_timeout)
        failure = await durable.fail(queue, message.id, claim.lease_token, error, attempts=message.attempt)
        if failure is None:
            log.warning("outbox message %s failed (%s) after its lease was taken over", message.id, error)
            return "lost_lease"
        if failure.dead:
            log.error(
                "outbox message %s (%s) is dead after %d attempts: %s", message.id, message.kind, message.attempt, error
            )
        else:
            log.warning(
                "outbox message %s (%s) attempt %d failed: %s", message.id, message.kind, message.attempt, error
            )
        return failure.status
    if not await record_sent(message.id, claim.lease_token):
        # Sent, but another run now holds the message: it will be sent again (receivers de-duplicate).
        log.warning("outbox message %s was sent after its lease was taken over", message.id)
        return "lost_lease"
    return "sent"


# ---- operators -------------------------------------------------------------------------------------


async def list_messages(
    *, status: OutboxStatus | None, limit: int, before: tuple[datetime, uuid.UUID] | None = None
) -> list[OutboxRecord]:
    """Messages newest first, optionally of one status; `before` is the (created_at, id) keyset cursor."""
    rows = await durable.page(OUTBOX, status=status.value if status else None, limit=limit, before=before)
    return [record_of(row) for row in rows]


async def get_message(message_id: uuid.UUID) -> OutboxRecord | None:
    row = await durable.get(OUTBOX, message_id)
    return record_of(row) if row is not None else None


async def replay(message_id: uuid.UUID) -> OutboxRecord:
    """Put a failed or dead message back to pending with a fresh attempt budget (sent at the next run).

    Raises `MessageNotFound`, or `NotReplayable` for a message that is pending, being sent, or sent.
    """
    try:
        return record_of(await operators.replay_one(OUTBOX, message_id))
    except operators.ReplayRefused as refused:
        if refused.current is None:
            raise MessageNotFound(f"no outbox message {message_id}") from None
        raise NotReplayable(message_id, OutboxStatus(refused.current["status"])) from None


@dataclass(frozen=True, slots=True)
class Backlog:
    failed: int  # waiting for a retry
    dead: int  # needs an operator: replay


async def backlog() -> Backlog:
    """Figures for the metrics gauges."""
    figures = await durable.backlog(OUTBOX)
    return Backlog(failed=figures.failed, dead=figures.dead)


DELIVER_JOB = "deliver_outbox"  # the worker's job (and cron) that runs `deliver_due`
KICK_WINDOW_SECONDS = 0.1


async def request_delivery(pool: ArqRedis) -> None:
    """Ask a worker to deliver the outbox now, rather than at its next cron tick (best effort).

    Requests within one `KICK_WINDOW_SECONDS` window share one job (arq refuses a second job with the
    same id), so a burst of confirmations starts a handful of delivery runs, not one per order."""
    window = int(time.time() / KICK_WINDOW_SECONDS)
    await pool.enqueue_job(DELIVER_JOB, _job_id=f"outbox-kick:{window}")
