from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-01T21:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "sellers: an optional per-seller fee override (connect.fees.FeeOverride as JSON; null: the platform's)"

FORWARDS = ("ALTER TABLE sellers ADD COLUMN IF NOT EXISTS fee_override jsonb",)
BACKWARDS = ("ALTER TABLE sellers DROP COLUMN IF EXISTS fee_override",)


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
