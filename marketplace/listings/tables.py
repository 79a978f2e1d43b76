"""The `listings` table and its typed row.

A listing belongs to one seller and is priced in one currency (`unit_amount` in its minor units). The
constraints the database keeps (migration `2026-12-01T21:40:00:000000`): a positive amount of at most
eight digits, a three-letter currency, and a stock that is unlimited (null) or never negative, so the
checkout's `UPDATE … SET stock = stock - q WHERE stock >= q` can never oversell.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from piccolo.columns import UUID, BigInt, Boolean, ForeignKey, Integer, OnDelete, Text, Timestamptz, Varchar
from piccolo.table import Table

from marketplace.lib.db import DB
from marketplace.sellers.tables import Seller


class Listing(Table, tablename="listings", db=DB):
    id = UUID(primary_key=True)
    seller = ForeignKey(references=Seller, on_delete=OnDelete.cascade, index=True)
    title = Varchar(length=200)
    description = Text(default="")
    unit_amount = BigInt()  # minor units of `currency`
    currency = Varchar(length=3)  # lowercase ISO 4217, one of connect.currencies.SUPPORTED_CURRENCIES
    stock = Integer(null=True, default=None)  # None: unlimited
    active = Boolean(default=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()


@dataclass(frozen=True, slots=True)
class ListingRow:
    """One `listings` row."""

    id: uuid.UUID
    seller: uuid.UUID
    title: str
    description: str
    unit_amount: int
    currency: str
    stock: int | None
    active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ListingRow:
        return cls(
            id=row["id"],
            seller=row["seller"],
            title=row["title"],
            description=row["description"],
            unit_amount=int(row["unit_amount"]),
            currency=row["currency"],
            stock=None if row["stock"] is None else int(row["stock"]),
            active=bool(row["active"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    @property
    def in_stock(self) -> bool:
        """At least one can be sold now (unlimited stock always can)."""
        return self.stock is None or self.stock > 0
