from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete
from piccolo.columns.base import OnUpdate
from piccolo.columns.column_types import BigInt
from piccolo.columns.column_types import Boolean
from piccolo.columns.column_types import ForeignKey
from piccolo.columns.column_types import Integer
from piccolo.columns.column_types import Text
from piccolo.columns.column_types import Timestamptz
from piccolo.columns.column_types import UUID
from piccolo.columns.column_types import Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table


class Seller(Table, tablename="sellers", schema=None):
    id = UUID(
        default=UUID4(),
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name=None,
        secret=False,
    )


ID = "2026-12-01T21:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "listings: a seller's offers, with amount, currency and stock constraints and browse indexes"

# The table is made by this SQL, not by Piccolo's DDL: Piccolo cannot declare CHECK constraints or
# partial and descending indexes. `seller` is NOT NULL here (Piccolo's ForeignKey says null=True, and
# its snapshot keeps saying so: a listing without a seller has no owner and must not exist).
# Stock never goes negative: checkout's `UPDATE … SET stock = stock - q WHERE stock >= q` relies on it.
FORWARDS = (
    """
    CREATE TABLE IF NOT EXISTS listings (
        id uuid PRIMARY KEY NOT NULL DEFAULT gen_random_uuid(),
        seller uuid NOT NULL REFERENCES sellers (id) ON DELETE CASCADE ON UPDATE CASCADE,
        title varchar(200) NOT NULL,
        description text NOT NULL DEFAULT '',
        unit_amount bigint NOT NULL,
        currency varchar(3) NOT NULL,
        stock integer DEFAULT NULL,
        active boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT current_timestamp,
        updated_at timestamptz NOT NULL DEFAULT current_timestamp,
        CONSTRAINT listings_unit_amount_check CHECK (unit_amount > 0 AND unit_amount <= 99999999),
        CONSTRAINT listings_stock_check CHECK (stock IS NULL OR stock >= 0),
        CONSTRAINT listings_currency_check CHECK (char_length(currency) = 3 AND currency = lower(currency)),
        CONSTRAINT listings_title_check CHECK (char_length(title) >= 1)
    )
    """,
    # A seller's own listings, newest first (also serves the foreign key's cascade and the seller filter
    # of the public browse, so Piccolo's single-column `listings_seller` index is not made).
    "CREATE INDEX IF NOT EXISTS listings_seller_created_idx ON listings (seller, created_at DESC, id DESC)",
    # The public browse: active listings, newest first.
    "CREATE INDEX IF NOT EXISTS listings_active_created_idx ON listings (created_at DESC, id DESC) WHERE active",
    # The public browse filtered by currency.
    "CREATE INDEX IF NOT EXISTS listings_currency_idx ON listings (currency, created_at DESC, id DESC) WHERE active",
)
BACKWARDS = ("DROP TABLE IF EXISTS listings",)



async def forwards():
    from marketplace.lib.migrate import sql_migration

    manager = sql_migration(FORWARDS, BACKWARDS)(migration_id=ID, app_name="marketplace", description=DESCRIPTION)

    manager.add_table(class_name="Listing", tablename="listings", schema=None, columns=None)

    manager.add_column(
        table_class_name="Listing",
        tablename="listings",
        column_name="id",
        db_column_name="id",
        column_class_name="UUID",
        column_class=UUID,
        params={
            "default": UUID4(),
            "null": False,
            "primary_key": True,
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
        table_class_name="Listing",
        tablename="listings",
        column_name="seller",
        db_column_name="seller",
        column_class_name="ForeignKey",
        column_class=ForeignKey,
        params={
            "references": Seller,
            "on_delete": OnDelete.cascade,
            "on_update": OnUpdate.cascade,
            "target_column": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": True,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Listing",
        tablename="listings",
        column_name="title",
        db_column_name="title",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 200,
            "default": "",
            "null": False,
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
        table_class_name="Listing",
        tablename="listings",
        column_name="description",
        db_column_name="description",
        column_class_name="Text",
        column_class=Text,
        params={
            "default": "",
            "null": False,
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
        table_class_name="Listing",
        tablename="listings",
        column_name="unit_amount",
        db_column_name="unit_amount",
        column_class_name="BigInt",
        column_class=BigInt,
        params={
            "default": 0,
            "null": False,
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
        table_class_name="Listing",
        tablename="listings",
        column_name="currency",
        db_column_name="currency",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 3,
            "default": "",
            "null": False,
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
        table_class_name="Listing",
        tablename="listings",
        column_name="stock",
        db_column_name="stock",
        column_class_name="Integer",
        column_class=Integer,
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
        table_class_name="Listing",
        tablename="listings",
        column_name="active",
        db_column_name="active",
        column_class_name="Boolean",
        column_class=Boolean,
        params={
            "default": True,
            "null": False,
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
        table_class_name="Listing",
        tablename="listings",
        column_name="created_at",
        db_column_name="created_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": TimestamptzNow(),
            "null": False,
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
        table_class_name="Listing",
        tablename="listings",
        column_name="updated_at",
        db_column_name="updated_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": TimestamptzNow(),
            "null": False,
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
