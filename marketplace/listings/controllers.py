"""Listing routes: a seller's own listings (`/sellers/me/listings`) and the public storefront (`/listings`)."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from marketplace.auth.deps import PrincipalDep
from marketplace.auth.guards import seller_only
from marketplace.lib.problems import InvalidCursor, NotFound
from marketplace.lib.schemas import ROW_CURSOR, CurrencyCode, Cursor
from marketplace.listings import service
from marketplace.listings.schemas import (
    ListingCreate,
    ListingOut,
    ListingPage,
    ListingUpdate,
    PublicListingOut,
    PublicListingPage,
)
from marketplace.listings.service import InvalidListing, ListingChanges, ListingFields, Position
from marketplace.listings.tables import ListingRow
from marketplace.sellers.deps import CURRENT_SELLER, CurrentSellerDep

BEARER: list[dict[str, list[str]]] = [{"BearerToken": []}]

Limit = Annotated[int, QueryParameter(ge=1, le=100, description="Page size.")]


def _encode_cursor(row: ListingRow) -> str:
    return ROW_CURSOR.encode(row.created_at, row.id)


def _decode_cursor(cursor: str) -> Position:
    return ROW_CURSOR.position(cursor)


def _page(rows: list[ListingRow], limit: int) -> tuple[list[ListingRow], str | None]:
    """The first `limit` of `rows` (fetched `limit + 1`) and the cursor to the rest, if there is more."""
    page = rows[:limit]
    return page, _encode_cursor(page[-1]) if len(rows) > limit else None


def _changes(data: ListingUpdate) -> ListingChanges:
    """The fields the body names (an absent field is `UNSET`; `stock: null` is a change)."""
    changes = ListingChanges()
    if not isinstance(data.title, msgspec.UnsetType):
        changes["title"] = data.title
    if not isinstance(data.description, msgspec.UnsetType):
        changes["description"] = data.description
    if not isinstance(data.unit_amount, msgspec.UnsetType):
        changes["unit_amount"] = data.unit_amount
    if not isinstance(data.currency, msgspec.UnsetType):
        changes["currency"] = data.currency
    if not isinstance(data.stock, msgspec.UnsetType):
        changes["stock"] = data.stock
    if not isinstance(data.active, msgspec.UnsetType):
        changes["active"] = data.active
    return changes


def listing_out(row: ListingRow) -> ListingOut:
    return ListingOut(
        id=row.id,
        seller_id=row.seller,
        title=row.title,
        description=row.description,
        unit_amount=row.unit_amount,
        currency=row.currency,
        stock=row.stock,
        in_stock=row.in_stock,
        active=row.active,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def public_listing_out(row: ListingRow) -> PublicListingOut:
    return PublicListingOut(
        id=row.id,
        seller_id=row.seller,
        title=row.title,
        description=row.description,
        unit_amount=row.unit_amount,
        currency=row.currency,
        stock=row.stock,
        in_stock=row.in_stock,
        created_at=row.created_at,
    )


class SellerListingController(Controller):
    """The seller's own listings; another seller's listing answers 404 exactly like a missing one."""

    path = "/sellers/me/listings"
    tags = ["listings"]
    guards = [seller_only]
    security = BEARER
    dependencies = CURRENT_SELLER

    @post(
        "/",
        operation_id="createMyListing",
        summary="Create a listing (amount in minor units of its currency)",
        description=(
            "Creates a listing of the seller's (active unless `active: false`; `stock` omitted or null is "
            "unlimited). 400 `validation-error` names every field that does not validate, e.g. an amount "
            "Stripe cannot charge in that currency."
        ),
        status_code=201,
        raises=[InvalidListing],
    )
    async def create(self, data: JSONBody[ListingCreate], seller: CurrentSellerDep) -> ListingOut:
        fields = ListingFields(
            title=data.title,
            unit_amount=data.unit_amount,
            currency=data.currency,
            description=data.description,
            stock=data.stock,
            active=data.active,
        )
        return listing_out(await service.create_listing(seller.id, fields))

    @get(
        "/",
        operation_id="listMyListings",
        summary="The seller's listings, inactive ones included, newest first",
        description=(
            "A page of the seller's own listings; pass `next_cursor` as `cursor` for the next page (null on "
            "the last). 400 `invalid-cursor` for a cursor this API did not return."
        ),
        raises=[InvalidCursor],
    )
    async def list_mine(self, seller: CurrentSellerDep, limit: Limit = 20, cursor: Cursor = None) -> ListingPage:
        after = _decode_cursor(cursor) if cursor else None
        rows = await service.listings_of_seller(seller.id, limit=limit + 1, after=after)
        page, next_cursor = _page(rows, limit)
        return ListingPage(items=[listing_out(r) for r in page], next_cursor=next_cursor)

    @get(
        "/{listing_id:uuid}",
        operation_id="getMyListing",
        summary="One of the seller's listings",
        description="The listing, active or not. 404 when it does not exist or is another seller's.",
        raises=[NotFound],
    )
    async def get_mine(self, listing_id: FromPath[uuid.UUID], principal: PrincipalDep) -> ListingOut:
        return listing_out(await service.owned_listing(principal, listing_id))

    @patch(
        "/{listing_id:uuid}",
        operation_id="updateMyListing",
        summary="Change some of a listing's fields (`stock: null` makes it unlimited)",
        description="The result is validated as a whole: a new currency must suit the existing amount.",
        raises=[InvalidListing, NotFound],
    )
    async def update_mine(
        self, listing_id: FromPath[uuid.UUID], data: JSONBody[ListingUpdate], principal: PrincipalDep
    ) -> ListingOut:
        return listing_out(await service.update_listing(principal, listing_id, _changes(data)))

    @delete(
        "/{listing_id:uuid}",
        operation_id="deactivateMyListing",
        summary="Take a listing off sale (it is kept, inactive); returns it",
        description=(
            "Sets `active: false` (repeating it changes nothing) and answers the listing; `PATCH` with "
            "`active: true` puts it back on sale. 404 when it is not the seller's."
        ),
        status_code=200,
        raises=[NotFound],
    )
    async def deactivate_mine(self, listing_id: FromPath[uuid.UUID], principal: PrincipalDep) -> ListingOut:
        return listing_out(await service.deactivate_listing(principal, listing_id))


class ListingController(Controller):
    """The storefront: active listings of sellers who can take payments now. No token needed."""

    path = "/listings"
    tags = ["listings"]

    @get(
        "/",
        operation_id="browseListings",
        summary="Listings buyers may buy, newest first, optionally of one seller or in one currency",
        description=(
            "Active listings of sellers whose accounts can take payments now; no token needed. Pass "
            "`next_cursor` as `cursor` for the next page. 400 for an unsupported currency or a cursor this "
            "API did not return."
        ),
        raises=[InvalidCursor],
    )
    async def browse(
        self,
        limit: Limit = 20,
        cursor: Cursor = None,
        seller_id: Annotated[uuid.UUID | None, QueryParameter(description="Only this seller's listings.")] = None,
        currency: Annotated[
            CurrencyCode | None, QueryParameter(description="Only listings in this currency (lowercase or uppercase).")
        ] = None,
    ) -> PublicListingPage:
        after = _decode_cursor(cursor) if cursor else None
        rows = await service.browse_listings(limit=limit + 1, after=after, seller_id=seller_id, currency=currency)
        page, next_cursor = _page(rows, limit)
        return PublicListingPage(items=[public_listing_out(r) for r in page], next_cursor=next_cursor)

    @get(
        "/{listing_id:uuid}",
        operation_id="getListing",
        summary="One listing buyers may buy (404 when inactive or its seller cannot take payments)",
        description=(
            "The storefront view of one listing; no token needed. 404 when it is missing, inactive, or its "
            "seller cannot take payments now, all answered alike."
        ),
        raises=[NotFound],
    )
    async def get_one(self, listing_id: FromPath[uuid.UUID]) -> PublicListingOut:
        return public_listing_out(await service.visible_listing(listing_id))
