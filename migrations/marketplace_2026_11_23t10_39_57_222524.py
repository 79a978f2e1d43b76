from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-23T10:39:57:222524"
VERSION = "1.38.0"
DESCRIPTION = "webhooks: partial indexes on stripe_events for the worker, sweeper, admin list and retention"

INDEXES = {
    # The sweeper: stored events due for (re)queueing.
    "stripe_events_due_idx": "ON stripe_events (next_attempt_at) WHERE status IN ('pending', 'failed')",
    # The sweeper: claimed events whose worker died (lease expired).
    "stripe_events_lease_idx": "ON stripe_events (lease_until) WHERE status = 'processing'",
    # Admin listing by status and type, newest first.
    "stripe_events_status_type_idx": "ON stripe_events (status, type, received_at DESC)",
    # Retention and the admin list without filters.
    "stripe_events_received_idx": "ON stripe_events (received_at)",
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="marketplace", description=DESCRIPTION)

    async def create_indexes():
        from marketplace.lib.db import DB

        for name, definition in INDEXES.items():
            await DB.run_ddl(f"CREATE INDEX IF NOT EXISTS {name} {definition}")

    async def drop_indexes():
        from marketplace.lib.db import DB

        for name in INDEXES:
            await DB.run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create_indexes)
    manager.add_raw_backwards(drop_indexes)

    return manager
