"""Sellers: the marketplace profile of a seller principal. Connected-account state lives beside it."""

from __future__ import annotations

from piccolo.columns import UUID, ForeignKey, OnDelete, Timestamptz, Varchar
from piccolo.table import Table

from marketplace.auth.tables import Principal
from marketplace.db import DB


class Seller(Table, tablename="sellers", db=DB):
    id = UUID(primary_key=True)
    principal = ForeignKey(references=Principal, on_delete=OnDelete.cascade, unique=True, index=True)
    display_name = Varchar(length=200)
    email = Varchar(length=320)
    country = Varchar(length=2)
    business_type = Varchar(length=32)
    # None: the platform's default account profile applies when the connected account is created.
    account_profile = Varchar(length=32, null=True, default=None)
    created_at = Timestamptz()
