from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-01T21:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "sellers: account syncs are ordered by a ticket taken before the Stripe read, not by a row lock"

# A read of an account is stored only when its ticket is larger than the one stored (connect.calls).
FORWARDS = (
    "CREATE SEQUENCE IF NOT EXISTS account_sync_tickets AS bigint",
    "ALTER TABLE connected_accounts ADD COLUMN IF NOT EXISTS sync_ticket bigint NOT NULL DEFAULT 0",
)
BACKWARDS = (
    "ALTER TABLE connected_accounts DROP COLUMN IF EXISTS sync_ticket",
    "DROP SEQUENCE IF EXISTS account_sync_tickets",
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="marketplace", description=DESCRIPTION)

    async def forwards_sql():
        from marketplace.lib.db import DB

        for statement in FORWARDS:
            await DB.run_ddl(statement)

    async def backwards_sql():
        from marketplace.lib.db import DB

        for statement in BACKWARDS:
            await DB.run_ddl(statement)

    manager.add_raw(forwards_sql)
    manager.add_raw_backwards(backwards_sql)
    return manager
