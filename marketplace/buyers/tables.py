"""Buyers: the marketplace profile of a buyer principal."""

from __future__ import annotations

from piccolo.columns import UUID, ForeignKey, OnDelete, Timestamptz, Varchar
from piccolo.table import Table

from marketplace.auth.tables import Principal
from marketplace.lib.db import DB


class Buyer(Table, tablename="buyers", db=DB):
    id = UUID(primary_key=True)
    principal = ForeignKey(references=Principal, on_delete=OnDelete.cascade, unique=True, index=True)
    display_name = Varchar(length=200)
    email = Varchar(length=320)
    created_at = Timestamptz()
