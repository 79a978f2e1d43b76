"""Request and response bodies for listing routes.

The bounds msgspec can check are declared here (a 400 `validation-error` before any handler runs);
the rules it cannot (a title that is blank once stripped, control characters, an amount that suits its
currency, a supported currency) are checked by `marketplace.listings.service.clean`, for every caller.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from connect.currencies import MAXIMUM_AMOUNT

MAXIMUM_STOCK = 1_000_000
MAXIMUM_DESCRIPTION = 5000

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Description = Annotated[str, msgspec.Meta(max_length=MAXIMUM_DESCRIPTION)]
UnitAmount = Annotated[
    int, msgspec.Meta(ge=1, le=MAXIMUM_AMOUNT, description="Minor units of `currency` (cents, yen, fils).")
]
CurrencyCode = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z]{3}$", description="ISO 4217, any case; stored lowercase.")
]
Stock = Annotated[int, msgspec.Meta(ge=0, le=MAXIMUM_STOCK)]


class ListingCreate(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    unit_amount: UnitAmount
    currency: CurrencyCode
    description: Description = ""
    stock: Stock | None = None  # None: unlimited
    active: bool = True


class ListingUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """A partial update: an absent field is left as it is; `stock: null` makes the stock unlimited."""

    title: Title | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    unit_amount: UnitAmount | msgspec.UnsetType = msgspec.UNSET
    currency: CurrencyCode | msgspec.UnsetType = msgspec.UNSET
    stock: Stock | msgspec.UnsetType | None = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


class ListingOut(msgspec.Struct):
    """A listing as its seller sees it."""

    id: uuid.UUID
    seller_id: uuid.UUID
    title: str
    description: str
    unit_amount: int
    currency: str
    stock: int | None  # None: unlimited
    in_stock: bool
    active: bool
    created_at: datetime
    updated_at: datetime


class ListingPage(msgspec.Struct):
    items: list[ListingOut]
    next_cursor: str | None


class PublicListingOut(msgspec.Struct):
    """A listing as the storefront shows it (active, of a seller who can take payments)."""

    id: uuid.UUID
    seller_id: uuid.UUID
    title: str
    description: str
    unit_amount: int
    currency: str
    stock: int | None  # None: unlimited
    in_stock: bool
    created_at: datetime


class PublicListingPage(msgspec.Struct):
    items: list[PublicListingOut]
    next_cursor: str | None
