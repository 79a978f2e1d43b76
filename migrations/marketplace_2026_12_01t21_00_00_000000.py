from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from enum import Enum
from piccolo.columns.column_types import Timestamptz
from piccolo.columns.column_types import Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-01T21:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "outbox: delivery status with leases, retry times and dead messages (backfilled), claim indexes"

# Existing rows: delivered -> sent; given up on by the old cron (10 attempts) -> dead; else pending, due
# in the order they were written. Attempts and last_error are kept.
BACKFILL = """
UPDATE outbox_messages
   SET status = CASE WHEN delivered_at IS NOT NULL THEN 'sent' WHEN attempts >= 10 THEN 'dead' ELSE 'pending' END,
       next_attempt_at = CASE WHEN delivered_at IS NULL AND attempts < 10 THEN created_at END
"""

INDEXES = {
    # The claim: due pending/failed messages, oldest due first.
    "outbox_messages_due_idx": "ON outbox_messages (next_attempt_at) WHERE status IN ('pending', 'failed')",
    # Leases to release: messages whose sender died or hung.
    "outbox_messages_lease_idx": "ON outbox_messages (lease_until) WHERE status = 'sending'",
    # The admin list, newest first, with or without a status (and the dead-messages gauge).
    "outbox_messages_status_created_idx": "ON outbox_messages (status, created_at, id)",
    "outbox_messages_created_idx": "ON outbox_messages (created_at, id)",
}


class _ColumnsThenBackfill(MigrationManager):
    """Piccolo runs `add_raw` steps before it adds columns, and the backfill and indexes need the new
    columns: they run after the generated steps instead, in the same transaction (nested: reused)."""

    async def run(self, backwards: bool = False):
        from marketplace.lib.db import DB

        async with DB.transaction():
            await super().run(backwards=backwards)
            if not backwards and not self.preview:
                await DB.run_ddl(BACKFILL)
                for name, definition in INDEXES.items():
                    await DB.run_ddl(f"CREATE INDEX IF NOT EXISTS {name} {definition}")


async def forwards():
    manager = _ColumnsThenBackfill(migration_id=ID, app_name="marketplace", description=DESCRIPTION)

    manager.add_column(
        table_class_name="OutboxMessage",
        tablename="outbox_messages",
        column_name="lease_token",
        db_column_name="lease_token",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 64,
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="OutboxMessage",
        tablename="outbox_messages",
        column_name="lease_until",
        db_column_name="lease_until",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="OutboxMessage",
        tablename="outbox_messages",
        column_name="next_attempt_at",
        db_column_name="next_attempt_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": TimestamptzNow(),
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="OutboxMessage",
        tablename="outbox_messages",
        column_name="status",
        db_column_name="status",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 16,
            "default": "pending",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": Enum(
                "OutboxStatus",
                {
                    "pending": "pending",
                    "sending": "sending",
                    "sent": "sent",
                    "failed": "failed",
                    "dead": "dead",
                },
            ),
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    async def drop_indexes():
        from marketplace.lib.db import DB

        for name in INDEXES:
            await DB.run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw_backwards(drop_indexes)

    return manager
