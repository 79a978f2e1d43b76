"""Applying Piccolo migrations from `migrations/` (used by `marketplace migrate`, `make run` and tests)."""

from __future__ import annotations

import os

from marketplace.db import configure_database


async def migrate(database_url: str) -> None:
    """Apply every pending migration of the one Piccolo app to `database_url`."""
    os.environ["PICCOLO_CONF"] = "marketplace.piccolo_conf"
    configure_database(database_url)
    from piccolo.apps.migrations.commands.forwards import run_forwards

    result = await run_forwards(app_name="marketplace", migration_id="all", fake=False)
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}")
