"""Request and response bodies for listing routes.

The rules msgspec can check are declared here (a 400 `validation-error` before any handler runs): bounds,
a title that is not blank, no control characters, a supported currency. The amount that suits its
currency (Stripe's minimum charge, three-decimal amounts ending in 0) is checked by
`marketplace.listings.service.clean`, for every caller, and stated in the OpenAPI document by
`AMOUNT_SUITS_CURRENCY` (below). `clean` checks everything again: it is the rule, these are its shape.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec

from connect.currencies import MAXIMUM_AMOUNT, SUPPORTED_CURRENCIES, amount_step, minimum_charge
from marketplace.lib.schemas import MULTI_LINE, NOT_BLANK_LINE, SHOWN, CurrencyCode

MAXIMUM_STOCK = 1_000_000
MAXIMUM_DESCRIPTION = 5000

Title = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=200, pattern=NOT_BLANK_LINE, description=f"Stored stripped. {SHOWN}"),
]
Description = Annotated[
    str, msgspec.Meta(max_length=MAXIMUM_DESCRIPTION, pattern=MULTI_LINE, description=f"May be empty. {SHOWN}")
]
UnitAmount = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        le=MAXIMUM_AMOUNT,
        description="Minor units of `currency` (cents, yen, fils): at least Stripe's minimum charge in it.",
    ),
]
Currency = Annotated[
    CurrencyCode, msgspec.Meta(description="A currency the marketplace sells in (ISO 4217); stored lowercase.")
]
Stock = Annotated[int, msgspec.Meta(ge=0, le=MAXIMUM_STOCK)]


def _amount_rules() -> list[dict[str, Any]]:
    """One JSON Schema per (minimum charge, amount step) that some currencies share: a listing's
    `unit_amount` in those currencies must be at least the minimum and a multiple of the step."""
    groups: dict[tuple[int, int], list[str]] = {}
    for code in sorted(SUPPORTED_CURRENCIES):
        groups.setdefault((minimum_charge(code), amount_step(code)), []).append(code)
    rules = []
    for (low, step), codes in sorted(groups.items()):
        amount: dict[str, Any] = {"minimum": low} | ({"multipleOf": step} if step > 1 else {})
        currency = {"enum": [*codes, *(code.upper() for code in codes)]}
        rules.append({"properties": {"currency": currency, "unit_amount": amount}})
    return rules


AMOUNT_SUITS_CURRENCY: Mapping[str, Any] = {"anyOf": _amount_rules()}
"""The amount a listing of one unit is charged is one Stripe takes in its currency (`clean` checks the
same, from connect.currencies). A PATCH naming only one of the two is checked against the listing's
stored other one, which no schema knows: its schema holds whichever it names to some currency's rule."""


class ListingCreate(msgspec.Struct, forbid_unknown_fields=True):
    json_schema_extra: ClassVar[Mapping[str, Any]] = AMOUNT_SUITS_CURRENCY  # openapi_rules.py

    title: Title
    unit_amount: UnitAmount
    currency: Currency
    description: Description = ""
    stock: Stock | None = None  # None: unlimited
    active: bool = True


class ListingUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """A partial update: an absent field is left as it is; `stock: null` makes the stock unlimited."""

    json_schema_extra: ClassVar[Mapping[str, Any]] = AMOUNT_SUITS_CURRENCY  # openapi_rules.py

    title: Title | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    unit_amount: UnitAmount | msgspec.UnsetType = msgspec.UNSET
    currency: Currency | msgspec.UnsetType = msgspec.UNSET
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
