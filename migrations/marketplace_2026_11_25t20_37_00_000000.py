from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-25T20:37:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "sellers: one connected_accounts row per seller and generation (reconnection after a disconnect)"

INDEXES = {
    # A reconnection inserts generation n + 1 with ON CONFLICT DO NOTHING: concurrent calls make one row.
    "connected_accounts_seller_generation_key": "ON connected_accounts (seller, generation)",
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="marketplace", description=DESCRIPTION)

    async def create_indexes():
        from marketplace.lib.db import DB

        for name, definition in INDEXES.items():
            await DB.run_ddl(f"CREATE UNIQUE INDEX IF NOT EXISTS {name} {definition}")

    async def drop_indexes():
        from marketplace.lib.db import DB

        for name in INDEXES:
            await DB.run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create_indexes)
    manager.add_raw_backwards(drop_indexes)

    return manager
