"""Applying Piccolo migrations from `migrations/` (used by `marketplace migrate`, `make run` and tests)."""

from __future__ import annotations

import os

from marketplace.lib.db import configure_database


async def migrate(database_url: str) -> None:
    """Apply every pending migration of the one Piccolo app to `database_url`."""
    os.environ["PICCOLO_CONF"] = "marketplace.lib.piccolo_conf"
    configure_database(database_url)
    from piccolo.apps.migrations.commands.forwards import run_forwards

    result = await run_forwards(app_name="marketplace", migration_id="all", fake=False)
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}")


def sql_migration(forward_sql: tuple[str, ...], backward_sql: tuple[str, ...]) -> type:
    """A Piccolo `MigrationManager` class whose run executes `forward_sql` (or `backward_sql`) in one
    transaction instead of the DDL of its declarations.

    For a migration whose schema needs what Piccolo's DDL cannot say (CHECK constraints, partial or
    descending indexes): its `add_table`/`add_column` declarations stay, as Piccolo's schema snapshot
    (what `piccolo migrations new --auto` compares the table classes with), and the SQL makes the schema.
    """
    from piccolo.apps.migrations.auto.migration_manager import MigrationManager

    from marketplace.lib.db import DB

    class SqlMigrationManager(MigrationManager):
        async def run(self, backwards: bool = False) -> None:
            statements = backward_sql if backwards else forward_sql
            direction = ("preview " if self.preview else "") + ("backwards" if backwards else "forwards")
            print(f"  - {self.migration_id} [{direction}]... ", end="")
            if self.preview:
                for statement in statements:
                    print(statement)
                return
            async with DB.transaction():
                for statement in statements:
                    await DB.run_ddl(statement)

    return SqlMigrationManager
