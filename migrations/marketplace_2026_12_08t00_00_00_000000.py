from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-08T00:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "orders: a checkout's Idempotency-Key (hashed) and its request body's fingerprint"

# Made by this SQL (a partial index); the declarations below are Piccolo's snapshot only. Existing orders
# have neither: a key is bound to its body from now on.
FORWARDS = (
    "ALTER TABLE orders ADD COLUMN IF NOT EXISTS idempotency_key varchar(64)",
    "ALTER TABLE orders ADD COLUMN IF NOT EXISTS request_fingerprint varchar(64)",
    # The lookup of a key's latest order on every checkout that sends one.
    "CREATE INDEX IF NOT EXISTS orders_idempotency_key_idx ON orders (idempotency_key, created_at DESC)"
    " WHERE idempotency_key IS NOT NULL",
)
BACKWARDS = (
    "DROP INDEX IF EXISTS orders_idempotency_key_idx",
    "ALTER TABLE orders DROP COLUMN IF EXISTS request_fingerprint",
    "ALTER TABLE orders DROP COLUMN IF EXISTS idempotency_key",
)


async def forwards():
    from marketplace.lib.migrate import sql_migration

    manager = sql_migration(FORWARDS, BACKWARDS)(migration_id=ID, app_name="marketplace", description=DESCRIPTION)

    for name in ("idempotency_key", "request_fingerprint"):
        manager.add_column(
            table_class_name="Order",
            tablename="orders",
            column_name=name,
            db_column_name=name,
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

    return manager
