"""The single Piccolo app: tables gathered from each package that owns some, migrations in `migrations/`."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

# Each package owns its tables; adding a package with tables means adding its module here.
TABLE_MODULES = [
    "marketplace.auth.tables",
    "marketplace.sellers.tables",
    "marketplace.listings.tables",
    "marketplace.buyers.tables",
    "marketplace.outbox.tables",
    "marketplace.orders.tables",
    "marketplace.refunds.tables",
    "marketplace.notifications.tables",
    "webhooks.tables",
]

APP_CONFIG = AppConfig(
    app_name="marketplace",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations"),
    table_classes=table_finder(modules=TABLE_MODULES, exclude_imported=True),
    migration_dependencies=[],
    commands=[],
)
