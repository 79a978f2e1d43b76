"""The outbox: claimed with a lease, sent with nothing held, cut by a timeout, dead after N failures, replayable.

Delivery is at least once: every send carries the message's dedupe key, and the tests check that a
message is never sent twice by concurrent runs, that nothing (transaction, row lock, pooled connection)
is held while the notifier runs, and that dead messages are visible and can be replayed (API and CLI).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from marketplace.auth.service import create_principal
from marketplace.auth.tables import Role
from marketplace.lib.db import DB
from marketplace.lib.settings import Settings
from marketplace.outbox import service
from marketplace.outbox.service import (
    LogNotifier,
    Notifier,
    OutboxDelivery,
    SendResources,
    UndeclaredKind,
    add_message,
    add_messages,
    build_router,
    declare_kind,
    deliver_due,
)
from marketplace.outbox.tables import OutboxStatus
from marketplace.server import outbox_cli
from tests.conftest import TEST_STRIPE_KEY

pytestmark = pytest.mark.integration


def log_sender(resources: SendResources) -> Notifier:
    return LogNotifier()


# Every kind is declared with its sender where it is written; these tests write kinds of their own.
for _kind in ("test.outbox", "seller.test"):
    declare_kind(_kind, log_sender)


class Recording:
    """Accepts every message and remembers it."""

    def __init__(
        self, delay: float = 0.0, hold: asyncio.Event | None = None, signal: asyncio.Event | None = None
    ) -> None:
        self.sent: list[OutboxDelivery] = []
        self.delay = delay
        self.hold = hold  # each send waits for it (at most 5 s)
        self.signal = signal  # set once this one has sent a message

    async def send(self, message: OutboxDelivery) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.hold is not None:
            await asyncio.wait_for(self.hold.wait(), timeout=5)
        self.sent.append(message)
        if self.signal is not None:
            self.signal.set()


class Failing:
    def __init__(self) -> None:
        self.calls: list[OutboxDelivery] = []

    async def send(self, message: OutboxDelivery) -> None:
        self.calls.append(message)
        raise ConnectionError("mail server down")


class HangsOnce:
    """The first send never answers (a receiver that accepted the connection and went quiet)."""

    def __init__(self) -> None:
        self.calls = 0
        self.sent: list[OutboxDelivery] = []

    async def send(self, message: OutboxDelivery) -> None:
        self.calls += 1
        if self.calls == 1:
            await asyncio.Event().wait()
        self.sent.append(message)


class Blocking:
    """Blocks inside `send` until the test lets it go."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.sent: list[OutboxDelivery] = []

    async def send(self, message: OutboxDelivery) -> None:
        self.entered.set()
        await self.release.wait()
        self.sent.append(message)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own (not the pool's), on an outbox emptied for this test."""
    conn = await asyncpg.connect(settings.database_url.reveal())
    await conn.execute("DELETE FROM outbox_messages")
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    _, token = await create_principal(Role.admin, "outbox test admin")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def seller_headers(client: httpx.AsyncClient) -> dict[str, str]:
    _, token = await create_principal(Role.seller, "outbox test seller")
    return {"Authorization": f"Bearer {token}"}


async def row(db: asyncpg.Connection, key: str) -> asyncpg.Record:
    found = await db.fetchrow("SELECT * FROM outbox_messages WHERE dedupe_key = $1", key)
    assert found is not None
    return found


async def make_due(db: asyncpg.Connection) -> None:
    """Skip the backoff: every failed message is due now."""
    await db.execute("UPDATE outbox_messages SET next_attempt_at = now() - interval '1 second' WHERE status = 'failed'")


async def new_message(kind: str = "test.outbox", principal_id: uuid.UUID | None = None) -> str:
    key = f"test:{uuid.uuid4()}"
    assert await add_message(kind, key, {"key": key}, principal_id)
    return key


async def test_every_send_carries_the_dedupe_key_and_a_sent_message_is_not_sent_again(
    db: asyncpg.Connection,
) -> None:
    principal_id, _ = await create_principal(Role.seller, "outbox seller")
    key = f"test:{uuid.uuid4()}"
    assert await add_message("seller.test", key, {"n": 1}, principal_id) is True
    assert await add_message("seller.test", key, {"n": 2}, principal_id) is False  # a retried writer adds nothing

    notifier = Recording()
    report = await deliver_due(notifier)
    stored = await row(db, key)
    assert notifier.sent == [
        OutboxDelivery(
            id=stored["id"], kind="seller.test", dedupe_key=key, principal_id=principal_id, payload={"n": 1}, attempt=1
        )
    ]
    assert (report.claimed, report.sent) == (1, 1)
    assert stored["status"] == "sent"
    assert stored["delivered_at"] is not None
    assert (stored["lease_token"], stored["lease_until"], stored["next_attempt_at"]) == (None, None, None)

    await deliver_due(notifier)
    assert len(notifier.sent) == 1  # not sent twice


async def test_a_send_that_hangs_is_cut_by_the_timeout_recorded_as_failed_and_sent_later(
    db: asyncpg.Connection,
) -> None:
    key = await new_message()
    notifier = HangsOnce()
    # The send never answers: only the timeout ends this run (the generous bound is for a test that would
    # otherwise hang, not a measure of how soon: that is the scheduler's).
    report = await asyncio.wait_for(deliver_due(notifier, send_timeout=0.3), 60)
    assert (report.sent, report.failed) == (0, 1)
    stored = await row(db, key)
    assert stored["status"] == "failed"
    assert stored["attempts"] == 1
    assert stored["last_error"] == "TimeoutError: the notifier did not answer within 0.3 s"
    assert stored["next_attempt_at"] is not None
    assert stored["lease_token"] is None

    await deliver_due(notifier, send_timeout=0.3)
    assert notifier.sent == []  # the retry waits for its backoff
    await make_due(db)
    report = await deliver_due(notifier, send_timeout=0.3)
    assert report.sent == 1
    assert [(m.dedupe_key, m.attempt) for m in notifier.sent] == [(key, 2)]
    assert (await row(db, key))["status"] == "sent"


async def test_nothing_is_held_while_the_notifier_runs(
    db: asyncpg.Connection, client: httpx.AsyncClient, settings: Settings
) -> None:
    """No transaction open, no lock on the row, no pooled connection borrowed, while a send is in progress."""
    key = await new_message()
    notifier = Blocking()
    run = asyncio.create_task(deliver_due(notifier))
    try:
        await asyncio.wait_for(notifier.entered.wait(), 10)
        in_transaction = await db.fetch(
            """
            SELECT pid, state, query FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'
            """
        )
        assert in_transaction == []
        message_id = (await row(db, key))["id"]
        async with db.transaction():
            locked = await db.fetchval(
                "SELECT status FROM outbox_messages WHERE id = $1 FOR UPDATE NOWAIT", message_id
            )  # raises LockNotAvailableError while someone holds the row
        assert locked == "sending"  # claimed (and committed) before the send
        pool = DB.pool
        assert pool is not None  # the app's pool, which the delivery run uses too
        assert pool.get_size() == pool.get_idle_size()  # no connection borrowed across the send
    finally:
        notifier.release.set()
        report = await asyncio.wait_for(run, 10)
    assert report.sent == 1
    assert (await row(db, key))["status"] == "sent"


async def test_after_n_failures_a_message_is_dead_listed_replayed_and_then_sent(
    db: asyncpg.Connection, client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Settings
) -> None:
    kind = declare_kind(f"test.dead.{uuid.uuid4().hex[:8]}", log_sender)
    key = await new_message(kind)
    failing = Failing()
    redis = Redis.from_url(settings.redis_url.reveal())
    try:
        for attempt in range(1, 4):
            report = await deliver_due(failing, max_attempts=3, redis=redis)
            stored = await row(db, key)
            assert stored["attempts"] == attempt
            assert stored["status"] == ("dead" if attempt == 3 else "failed")
            await make_due(db)
        assert report.dead == 1
        assert stored["last_error"] == "ConnectionError: mail server down"
        assert stored["next_attempt_at"] is None
        # Dead is a state, not a skip: it stays dead, visible, and no run tries it again.
        await db.execute(
            "UPDATE outbox_messages SET next_attempt_at = now() - interval '1 hour' WHERE dedupe_key = $1", key
        )
        await deliver_due(failing, max_attempts=3, redis=redis)
        assert len(failing.calls) == 3
        assert [m.attempt for m in failing.calls] == [1, 2, 3]
    finally:
        await redis.aclose()

    listed = await client.get("/admin/outbox", params={"status": "dead"}, headers=admin_headers)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [(i["dedupe_key"], i["status"], i["attempts"]) for i in items] == [(key, "dead", 3)]
    assert items[0]["last_error"] == "ConnectionError: mail server down"
    message_id = items[0]["id"]

    metrics = (await client.get("/metrics")).text
    assert f'outbox_deliveries_total{{kind="{kind}",outcome="failed"}} 2' in metrics
    assert f'outbox_deliveries_total{{kind="{kind}",outcome="dead"}} 1' in metrics
    assert "outbox_messages_dead 1" in metrics.splitlines()

    replayed = await client.post(f"/admin/outbox/{message_id}/replay", headers=admin_headers)
    assert replayed.status_code == 200, replayed.text
    assert (replayed.json()["status"], replayed.json()["attempts"]) == ("pending", 0)

    notifier = Recording()
    assert (await deliver_due(notifier, max_attempts=3)).sent == 1
    assert [(m.dedupe_key, m.attempt) for m in notifier.sent] == [(key, 1)]
    assert (await row(db, key))["status"] == "sent"

    again = await client.post(f"/admin/outbox/{message_id}/replay", headers=admin_headers)
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    missing = await client.post(f"/admin/outbox/{uuid.uuid4()}/replay", headers=admin_headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_replay_refuses_a_message_being_sent(
    db: asyncpg.Connection, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    key = await new_message()
    message_id = (await row(db, key))["id"]
    pending = await client.post(f"/admin/outbox/{message_id}/replay", headers=admin_headers)
    assert pending.status_code == 409
    await db.execute(
        "UPDATE outbox_messages SET status = 'sending', lease_token = 'x', lease_until = now() + interval '1 minute' "
        "WHERE id = $1",
        message_id,
    )
    sending = await client.post(f"/admin/outbox/{message_id}/replay", headers=admin_headers)
    assert sending.status_code == 409
    assert "being sent" in sending.json()["detail"]


async def test_the_admin_list_pages_newest_first(
    db: asyncpg.Connection, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    keys = [await new_message() for _ in range(5)]
    await db.execute("UPDATE outbox_messages SET status = 'dead', next_attempt_at = NULL")
    other = await new_message()  # pending: not in a status=dead listing

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"status": "dead", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/admin/outbox", params=params, headers=admin_headers)
        assert response.status_code == 200
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [item["dedupe_key"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(keys))  # newest first, each exactly once

    everything = await client.get("/admin/outbox", headers=admin_headers)
    assert everything.json()["items"][0]["dedupe_key"] == other
    bad = await client.get("/admin/outbox", params={"cursor": "%%%"}, headers=admin_headers)
    assert bad.status_code == 400
    unknown_status = await client.get("/admin/outbox", params={"status": "lost"}, headers=admin_headers)
    assert unknown_status.status_code == 400


async def test_the_admin_shows_one_message_and_replays_every_dead_one(
    db: asyncpg.Connection, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dead = [await new_message() for _ in range(3)]
    await db.execute(
        "UPDATE outbox_messages SET status = 'dead', attempts = 10, next_attempt_at = NULL, last_error = 'gave up'"
    )
    pending = await new_message()
    message_id = (await row(db, dead[0]))["id"]

    shown = await client.get(f"/admin/outbox/{message_id}", headers=admin_headers)
    assert shown.status_code == 200, shown.text
    assert (shown.json()["status"], shown.json()["payload"], shown.json()["last_error"]) == (
        "dead",
        {"key": dead[0]},
        "gave up",
    )
    missing = await client.get(f"/admin/outbox/{uuid.uuid4()}", headers=admin_headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")

    other_kind = await client.post(
        "/admin/outbox/replay", json={"status": "dead", "kind": "order.receipt"}, headers=admin_headers
    )
    assert (other_kind.status_code, other_kind.json()["replayed"]) == (202, [])
    replayed = await client.post("/admin/outbox/replay", json={"status": "dead"}, headers=admin_headers)
    assert replayed.status_code == 202, replayed.text
    dead_ids = {str((await row(db, key))["id"]) for key in dead}
    assert set(replayed.json()["replayed"]) == dead_ids
    for key in dead:
        again = await row(db, key)
        assert (again["status"], again["attempts"]) == ("pending", 0)
    assert (await row(db, pending))["status"] == "pending"
    for body in ({"status": "sent"}, {"status": "dead", "limit": 0}, {"status": "dead", "unknown": 1}):
        refused = await client.post("/admin/outbox/replay", json=body, headers=admin_headers)
        assert refused.status_code == 400, body


class Overlapping:
    """Holds every send until the test lets go: a run that got here holds the lease on its batch."""

    def __init__(self, go: asyncio.Event) -> None:
        self.entered = asyncio.Event()
        self.go = go
        self.sent: list[OutboxDelivery] = []

    async def send(self, message: OutboxDelivery) -> None:
        self.entered.set()
        await asyncio.wait_for(self.go.wait(), timeout=10)
        self.sent.append(message)


async def test_two_overlapping_runs_claim_disjoint_batches_and_never_send_a_message_twice(
    db: asyncpg.Connection,
) -> None:
    keys = {await new_message() for _ in range(40)}
    go = asyncio.Event()
    first, second = Overlapping(go), Overlapping(go)
    runs = [asyncio.create_task(deliver_due(run, batch_size=3)) for run in (first, second)]
    try:
        # Both runs are inside a send at once, each holding the batch it claimed: the runs overlap.
        await asyncio.wait_for(asyncio.gather(first.entered.wait(), second.entered.wait()), 10)
        leases = await db.fetch(
            "SELECT lease_token, count(*) AS n FROM outbox_messages WHERE status = 'sending' GROUP BY lease_token"
        )
        assert sorted(lease["n"] for lease in leases) == [3, 3]  # two leases, on disjoint batches of 3
    finally:
        go.set()
    reports = await asyncio.wait_for(asyncio.gather(*runs), 30)
    sent = Counter(m.dedupe_key for m in [*first.sent, *second.sent])
    assert set(sent) == keys
    assert set(sent.values()) == {1}  # each message sent once, by one of the runs
    assert first.sent
    assert second.sent
    assert sum(r.sent for r in reports) == 40
    assert await db.fetchval("SELECT count(*) FROM outbox_messages WHERE status <> 'sent'") == 0


async def test_a_message_of_an_undeclared_kind_is_refused_where_it_is_written(
    db: asyncpg.Connection, settings: Settings
) -> None:
    """Nothing is stored, not even what the same transaction wrote before: the writer's transaction fails."""

    async def in_piccolos_transaction() -> None:
        async with DB.transaction():
            assert await add_message("test.outbox", f"test:{uuid.uuid4()}", {"n": 1})
            await add_message("test.never_declared", f"test:{uuid.uuid4()}", {"n": 2})

    async def in_a_connections_transaction(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await add_message("test.outbox", f"test:{uuid.uuid4()}", {"n": 3}, conn=conn)
            await add_messages(
                conn,
                [
                    ("test.outbox", f"test:{uuid.uuid4()}", {"n": 4}, None),
                    ("test.never_declared", f"test:{uuid.uuid4()}", {"n": 5}, None),
                ],
            )

    with pytest.raises(UndeclaredKind, match=r"test\.never_declared"):
        await in_piccolos_transaction()
    conn = await asyncpg.connect(settings.database_url.reveal())
    try:
        with pytest.raises(UndeclaredKind, match=r"test\.never_declared"):
            await in_a_connections_transaction(conn)
    finally:
        await conn.close()
    assert await db.fetchval("SELECT count(*) FROM outbox_messages") == 0


async def test_a_stored_message_of_a_kind_no_sender_takes_fails_instead_of_being_sent(db: asyncpg.Connection) -> None:
    """The worker's router (built from the declarations) never drops a message: one it has no sender for
    (written before its declaration existed, say) fails, is retried, and is visible."""
    await db.execute(
        """
        INSERT INTO outbox_messages (id, kind, dedupe_key, payload, created_at, attempts, status, next_attempt_at)
        VALUES ($1, 'test.from_elsewhere', 'test:legacy', '{}', now(), 0, 'pending', now())
        """,
        uuid.uuid4(),
    )
    router = build_router(SendResources(stripe=None))  # type: ignore[arg-type]  # no sender here calls Stripe
    report = await deliver_due(router)
    assert (report.sent, report.failed) == (0, 1)
    stored = await row(db, "test:legacy")
    assert stored["status"] == "failed"
    assert "no sender declared for outbox kind 'test.from_elsewhere'" in stored["last_error"]


def test_every_kind_the_code_writes_is_declared_with_a_sender() -> None:
    import marketplace.server.worker  # noqa: F401  # imports every module that writes outbox messages
    from marketplace.outbox.service import declared_kinds

    written = {
        "order.receipt",
        "order.sale",
        "order.fulfil",
        "order.oversold",
        "order.oversold_seller",
        "seller.account_status_changed",
        "seller.account_requirements_changed",
        "refund.create",
    }
    assert written <= declared_kinds()


async def test_an_expired_lease_is_reclaimed_as_a_failed_attempt(db: asyncpg.Connection) -> None:
    crashed, live, last_try = await new_message(), await new_message(), await new_message()
    # A run died mid-send (lease expired), another is sending right now (lease live), and one died on
    # the message's last attempt.
    await db.execute(
        """
        UPDATE outbox_messages SET status = 'sending', lease_token = 'gone', attempts = 1,
               lease_until = now() - interval '1 second' WHERE dedupe_key = $1
        """,
        crashed,
    )
    await db.execute(
        """
        UPDATE outbox_messages SET status = 'sending', lease_token = 'busy', attempts = 1,
               lease_until = now() + interval '1 minute' WHERE dedupe_key = $1
        """,
        live,
    )
    await db.execute(
        """
        UPDATE outbox_messages SET status = 'sending', lease_token = 'gone', attempts = 3,
               lease_until = now() - interval '1 second' WHERE dedupe_key = $1
        """,
        last_try,
    )
    notifier = Recording()
    report = await deliver_due(notifier, max_attempts=3, backoff_base=0)
    assert report.released == 2
    assert [(m.dedupe_key, m.attempt) for m in notifier.sent] == [(crashed, 2)]  # the expiry counted as attempt 1
    assert (await row(db, crashed))["status"] == "sent"
    assert (await row(db, live))["status"] == "sending"  # a live lease is left alone
    dead = await row(db, last_try)
    assert (dead["status"], dead["attempts"]) == ("dead", 3)
    assert dead["last_error"] == service.LEASE_EXPIRED_ERROR

    # The run that died cannot record anything over the new owner's outcome.
    crashed_id = (await row(db, crashed))["id"]
    assert await service.record_sent(crashed_id, "gone") is False


async def test_the_admin_routes_need_an_admin(client: httpx.AsyncClient, seller_headers: dict[str, str]) -> None:
    replay = f"/admin/outbox/{uuid.uuid4()}/replay"
    assert (await client.get("/admin/outbox")).status_code == 401
    assert (await client.post(replay)).status_code == 401
    assert (await client.get("/admin/outbox", headers={"Authorization": "Bearer mkt_not_a_token"})).status_code == 401
    assert (await client.get("/admin/outbox", headers=seller_headers)).status_code == 403
    assert (await client.post(replay, headers=seller_headers)).status_code == 403


async def cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": settings.database_url.reveal(),
        "REDIS_URL": settings.redis_url.reveal(),
        "STRIPE_SECRET_KEY": TEST_STRIPE_KEY,
        "LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "marketplace.server.cli",
        "outbox",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_cli_lists_and_replays(db: asyncpg.Connection, settings: Settings) -> None:
    assert tuple(s.value for s in OutboxStatus) == outbox_cli.STATUSES
    dead_key, pending_key = await new_message(), await new_message()
    await db.execute(
        "UPDATE outbox_messages SET status = 'dead', attempts = 10, last_error = 'gave up' WHERE dedupe_key = $1",
        dead_key,
    )
    dead_id = str((await row(db, dead_key))["id"])

    code, out, err = await cli(settings, "list", "--status", "dead")
    assert code == 0, err
    assert [line.split()[1] for line in out.splitlines()] == [dead_id]
    assert dead_key in out
    assert "gave up" in out
    code, out, err = await cli(settings, "list", "--limit", "1")
    assert code == 0, err
    assert len(out.splitlines()) == 1

    code, out, err = await cli(settings, "replay", dead_id)
    assert code == 0, err
    assert out.strip() == dead_id
    replayed = await row(db, dead_key)
    assert (replayed["status"], replayed["attempts"]) == ("pending", 0)

    pending_id = str((await row(db, pending_key))["id"])
    for args, expected_code, expected in [
        (("replay", pending_id), 1, "pending"),
        (("replay", str(uuid.uuid4())), 1, "no outbox message"),
        (("replay", "not-a-uuid"), 2, "not a message id"),
    ]:
        code, out, err = await cli(settings, *args)
        assert code == expected_code, (args, err)
        assert len(err.strip().splitlines()) == 1, err
        assert expected in err
        assert out == ""

    code, out, err = await cli(settings, "list", "--status", "failed")
    assert (code, out) == (0, "")
    assert err.strip() == "no failed messages"  # said, not left to an empty screen

    code, _, err = await cli(settings, "list", "--limit", "0")
    assert code == 2
    assert "--limit" in err


MIGRATE_UP_TO = """
import asyncio, os, sys
os.environ["PICCOLO_CONF"] = "marketplace.lib.piccolo_conf"
from marketplace.lib.db import configure_database
from piccolo.apps.migrations.commands.forwards import run_forwards

configure_database(sys.argv[1])
result = asyncio.run(run_forwards(app_name="marketplace", migration_id=sys.argv[2], fake=False))
sys.exit(0 if result.success else 1)
"""


async def test_the_migration_backfills_existing_messages(pg_server_url: str) -> None:
    from tests.conftest import _with_database

    name = f"test_outbox_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = _with_database(pg_server_url, name)

    async def migrate(up_to: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            MIGRATE_UP_TO,
            url,
            up_to,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, (out.decode(), err.decode())

    try:
        await migrate("2026-11-25T23:00:00:000000")  # the schema before this change
        conn = await asyncpg.connect(url)
        try:
            for key, delivered, attempts in [("sent", True, 1), ("dead", False, 10), ("retrying", False, 3)]:
                await conn.execute(
                    """
                    INSERT INTO outbox_messages (id, kind, dedupe_key, payload, created_at, delivered_at, attempts)
                    VALUES ($1, 'test', $2, '{}', now() - interval '1 day', CASE WHEN $3 THEN now() END, $4)
                    """,
                    uuid.uuid4(),
                    key,
                    delivered,
                    attempts,
                )
            await migrate("all")
            rows = {
                r["dedupe_key"]: r
                for r in await conn.fetch("SELECT dedupe_key, status, next_attempt_at, created_at FROM outbox_messages")
            }
            assert {k: r["status"] for k, r in rows.items()} == {"sent": "sent", "dead": "dead", "retrying": "pending"}
            assert rows["retrying"]["next_attempt_at"] == rows["retrying"]["created_at"]
            assert rows["sent"]["next_attempt_at"] is None
            indexes = {r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes")}
            assert {"outbox_messages_due_idx", "outbox_messages_lease_idx"} <= indexes
        finally:
            await conn.close()
    finally:
        admin = await asyncpg.connect(pg_server_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
