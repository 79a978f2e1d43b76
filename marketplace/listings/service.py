"""Listings: the rules a listing must satisfy, a seller's own listings, and what buyers may see.

- **Validity** (`clean`): a title of 1..200 characters once stripped, without control characters; a
  description of at most 5000 characters without NUL or control characters other than tab and line
  breaks; both, being shown to buyers, without bidirectional controls and (a description unless empty)
  with something visible (`marketplace.lib.text.shown_text_problem`); a supported currency (stored
  lowercase); a unit amount Stripe would charge for a quantity of one
  (`connect.currencies.charge_amount_problem`: at least the currency's minimum charge, at most eight
  digits, a multiple of 10 for three-decimal currencies); a stock of 0..1,000,000 or unlimited. Every
  refusal is an `InvalidListing` (400 `validation-error`) listing each field, before anything is written.
- **Ownership**: a seller reaches a listing by id only through `get_owned_or_404` (another seller's
  listing is a 404 exactly like a missing one).
- **Visibility**: buyers see active listings of sellers who can take payments now
  (`sellers_shown_to_buyers`), whatever the listing's stock.
- **Order**: newest first, `(created_at, id)` descending; pages continue strictly after a position.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypedDict

from piccolo.query import Select, WhereRaw

from connect.currencies import charge_amount_problem, is_supported, normalize
from marketplace.auth.service import AuthenticatedPrincipal, get_owned_or_404
from marketplace.lib.db import DB
from marketplace.lib.problems import NotFound, Problem
from marketplace.lib.text import shown_text_problem
from marketplace.listings.schemas import MAXIMUM_DESCRIPTION, MAXIMUM_STOCK
from marketplace.listings.tables import Listing, ListingRow
from marketplace.sellers.eligibility import sellers_shown_to_buyers

MAXIMUM_TITLE = 200

# A page continues strictly after this (created_at, id), in newest-first order.
Position = tuple[datetime, uuid.UUID]


class InvalidListing(Problem):
    """The listing does not validate; `errors` names each field and why. Nothing was written."""

    status = 400
    slug = "validation-error"
    title = "Bad request"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        detail = "; ".join(f"{e['key']}: {e['message']}" for e in errors)
        super().__init__(f"The listing is not valid ({detail}).", errors=errors)


@dataclass(frozen=True, slots=True)
class ListingFields:
    """What a seller says about a listing (everything but its id, owner and timestamps)."""

    title: str
    unit_amount: int
    currency: str
    description: str = ""
    stock: int | None = None  # None: unlimited
    active: bool = True


class ListingChanges(TypedDict, total=False):
    """A partial update: only the keys present change (`stock: None` makes the stock unlimited)."""

    title: str
    description: str
    unit_amount: int
    currency: str
    stock: int | None
    active: bool


_FIELDS = ("title", "description", "unit_amount", "currency", "stock", "active")
_LINE_BREAKS = frozenset("\t\n\r")


def _has_control(text: str, allowed: frozenset[str] = frozenset()) -> bool:
    # Cc: C0, DEL and C1 controls (NUL among them); Cs: lone surrogates, which UTF-8 cannot carry.
    return any(unicodedata.category(c) in ("Cc", "Cs") and c not in allowed for c in text)


def clean(fields: ListingFields, changed: Collection[str] = _FIELDS) -> ListingFields:
    """`fields` normalised (title stripped, currency lowercase), or `InvalidListing` with every reason.

    Only the `changed` fields are checked, except that a unit amount and its currency are always
    checked together when either changed (a new currency against the existing amount, and so on).
    """
    errors: list[dict[str, str]] = []

    def refuse(key: str, message: str) -> None:
        errors.append({"key": key, "message": message, "source": "body"})

    title = fields.title.strip()
    if "title" in changed:
        if not title:
            refuse("title", "must not be blank")
        elif len(title) > MAXIMUM_TITLE:
            refuse("title", f"must be at most {MAXIMUM_TITLE} characters")
        elif _has_control(title):
            refuse("title", "must not contain control characters")
        elif shown := shown_text_problem(title):
            refuse("title", shown)
    if "description" in changed:
        if len(fields.description) > MAXIMUM_DESCRIPTION:
            refuse("description", f"must be at most {MAXIMUM_DESCRIPTION} characters")
        elif _has_control(fields.description, allowed=_LINE_BREAKS):
            refuse("description", "must not contain NUL or control characters other than tabs and line breaks")
        elif fields.description and (shown := shown_text_problem(fields.description)):
            refuse("description", shown)  # empty is no description; blank-looking is a blank card
    currency = normalize(fields.currency)
    if "currency" in changed or "unit_amount" in changed:
        if not is_supported(currency):
            refuse("currency", f"{fields.currency!r} is not a currency this marketplace sells in")
        elif isinstance(fields.unit_amount, bool) or not isinstance(fields.unit_amount, int):
            refuse("unit_amount", "must be an integer amount in minor units")
        elif fields.unit_amount < 1:
            refuse("unit_amount", "must be at least 1 (minor units)")
        elif reason := charge_amount_problem(fields.unit_amount, currency):
            # The amount a quantity of one is charged: a listing must be sellable alone.
            key = "currency" if "unit_amount" not in changed else "unit_amount"
            refuse(key, f"{reason} (unit_amount {fields.unit_amount})" if key == "currency" else reason)
    if "stock" in changed and fields.stock is not None and not 0 <= fields.stock <= MAXIMUM_STOCK:
        refuse("stock", f"must be between 0 and {MAXIMUM_STOCK}, or null for unlimited")
    if errors:
        raise InvalidListing(errors)
    return replace(fields, title=title if "title" in changed else fields.title, currency=currency)


def _fields_of(row: ListingRow) -> ListingFields:
    return ListingFields(
        title=row.title,
        unit_amount=row.unit_amount,
        currency=row.currency,
        description=row.description,
        stock=row.stock,
        active=row.active,
    )


def _after(position: Position) -> WhereRaw:
    at, listing_id = position
    return WhereRaw("(listings.created_at, listings.id) < ({}, {})", at, listing_id)


def _newest_first(query: Select[Listing], limit: int, after: Position | None) -> Select[Listing]:
    if after is not None:
        query = query.where(_after(after))
    return query.order_by(Listing.created_at, Listing.id, ascending=False).limit(limit)


def _not_found(listing_id: uuid.UUID) -> NotFound:
    return NotFound(f"No listing with id {listing_id}.")


# A seller's own listings ---------------------------------------------------------------------------


async def create_listing(seller_id: uuid.UUID, fields: ListingFields) -> ListingRow:
    """Validate and store a new listing of `seller_id`."""
    valid = clean(fields)
    now = datetime.now(UTC)
    row = ListingRow(
        id=uuid.uuid4(),
        seller=seller_id,
        title=valid.title,
        description=valid.description,
        unit_amount=valid.unit_amount,
        currency=valid.currency,
        stock=valid.stock,
        active=valid.active,
        created_at=now,
        updated_at=now,
    )
    await Listing.insert(
        Listing(
            id=row.id,
            seller=row.seller,
            title=row.title,
            description=row.description,
            unit_amount=row.unit_amount,
            currency=row.currency,
            stock=row.stock,
            active=row.active,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
    )
    return row


async def owned_listing(principal: AuthenticatedPrincipal, listing_id: uuid.UUID) -> ListingRow:
    """The listing if `principal` is the seller who owns it; 404 `not-found` otherwise."""
    row = await get_owned_or_404(Listing, listing_id, principal, Listing.seller.principal, what="listing")
    return ListingRow.from_row(row)


async def listings_of_seller(seller_id: uuid.UUID, *, limit: int, after: Position | None = None) -> list[ListingRow]:
    """A page of the seller's listings, inactive ones included, newest first."""
    query = Listing.select().where(Listing.seller == seller_id)
    rows = await _newest_first(query, limit, after)
    return [ListingRow.from_row(r) for r in rows]


async def update_listing(
    principal: AuthenticatedPrincipal, listing_id: uuid.UUID, changes: ListingChanges
) -> ListingRow:
    """Apply `changes` to the principal's listing, re-validating the result; 404 if not theirs.

    The row is locked while the combination is checked, so two concurrent updates (one changing the
    currency, the other the amount) cannot together store a pair neither checked. Only the changed
    columns are written: a checkout's stock decrement in between is never overwritten by a title edit.
    """
    unknown = set(changes) - set(_FIELDS)
    if unknown:
        raise ValueError(f"not listing fields: {sorted(unknown)}")
    async with DB.transaction():
        await owned_listing(principal, listing_id)
        locked = await Listing.select().where(Listing.id == listing_id).lock_rows().first()
        if locked is None:
            raise _not_found(listing_id)
        current = ListingRow.from_row(locked)
        if not changes:
            return current
        valid = clean(replace(_fields_of(current), **changes), changed=changes.keys())
        values: dict[Any, Any] = {name: getattr(valid, name) for name in changes}
        values["updated_at"] = datetime.now(UTC)
        rows = await Listing.update(values).where(Listing.id == listing_id).returning(*Listing.all_columns()).run()
    return ListingRow.from_row(rows[0])


async def deactivate_listing(principal: AuthenticatedPrincipal, listing_id: uuid.UUID) -> ListingRow:
    """Take the principal's listing off sale (`active = false`); 404 if not theirs. Repeating it changes nothing.

    Listings are never deleted: orders name them, and a seller may put one back on sale.
    """
    current = await owned_listing(principal, listing_id)
    rows = await (
        Listing.update({Listing.active: False, Listing.updated_at: datetime.now(UTC)})
        .where((Listing.id == listing_id) & Listing.active.eq(True))
        .returning(*Listing.all_columns())
        .run()
    )
    if rows:
        return ListingRow.from_row(rows[0])
    return await owned_listing(principal, listing_id) if current.active else current


# What buyers see -----------------------------------------------------------------------------------


def _shown_to_buyers() -> Select[Listing]:
    return Listing.select().where(Listing.active.eq(True), Listing.seller.is_in(sellers_shown_to_buyers()))


async def browse_listings(
    *,
    limit: int,
    after: Position | None = None,
    seller_id: uuid.UUID | None = None,
    currency: str | None = None,
) -> list[ListingRow]:
    """A page of the listings buyers may see, newest first, optionally of one seller or in one currency."""
    query = _shown_to_buyers()
    if seller_id is not None:
        query = query.where(Listing.seller == seller_id)
    if currency is not None:
        query = query.where(Listing.currency == normalize(currency))
    rows = await _newest_first(query, limit, after)
    return [ListingRow.from_row(r) for r in rows]


async def visible_listing(listing_id: uuid.UUID) -> ListingRow:
    """The listing if buyers may see it now; 404 `not-found` when it is inactive, missing, or its
    seller cannot take payments."""
    row = await _shown_to_buyers().where(Listing.id == listing_id).first()
    if row is None:
        raise _not_found(listing_id)
    return ListingRow.from_row(row)


async def listings_for_checkout(ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ListingRow]:
    """The listings with these ids, by id, whatever their state (inactive, out of stock, seller hidden).

    Missing ids are simply absent: the caller decides what each refusal says.
    """
    unique = list(dict.fromkeys(ids))
    if not unique:
        return {}
    rows = await Listing.select().where(Listing.id.is_in(unique))
    return {r["id"]: ListingRow.from_row(r) for r in rows}
