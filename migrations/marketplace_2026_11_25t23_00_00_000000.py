from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-25T23:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "sellers: forget onboarding states that older code stored in connected_accounts.synced_from"

# Before 2026-11-25 the return route recorded `return:<state>` (the state is a capability: whoever holds it
# can mint onboarding links for a while), and the API showed `synced_from`. It is just "return" now.
FORGET_STATES = "UPDATE connected_accounts SET synced_from = 'return' WHERE synced_from LIKE 'return:%'"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="marketplace", description=DESCRIPTION)

    async def forget_states():
        from marketplace.lib.db import DB

        await DB.run_ddl(FORGET_STATES)

    manager.add_raw(forget_states)
    return manager
