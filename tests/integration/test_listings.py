"""Listings: a seller's own (create, list, read, change, deactivate; 404 for another seller's), the public
storefront (only active listings of sellers who can take payments), validation, and keyset pages."""

from __future__ import annotations

import asyncio
import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from marketplace.listings.service import listings_for_checkout
from marketplace.listings.tables import Listing, ListingRow
from marketplace.sellers.tables import ConnectedAccount
from tests.support.factories import BuyerSignupFactory, ListingCreateFactory, SellerSignupFactory, payload

Client = httpx.AsyncClient
VALIDATION = "urn:marketplace:problem:validation-error"


@dataclass
class SellerUser:
    id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def sign_up_seller(client: Client) -> SellerUser:
    response = await client.post("/sellers", json=payload(SellerSignupFactory))
    assert response.status_code == 201, response.text
    body = response.json()
    return SellerUser(id=body["seller"]["id"], token=body["token"])


async def give_account(seller: SellerUser, *, can_take_payments: bool = True) -> None:
    """A connected account row as the sync would leave it: active (or restricted), no Stripe needed."""
    await ConnectedAccount.insert(
        ConnectedAccount(
            id=uuid.uuid4(),
            seller=seller.id,
            stripe_account_id=f"acct_test{uuid.uuid4().hex[:12]}",
            profile="platform_managed",
            status="active" if can_take_payments else "restricted",
            charges_enabled=can_take_payments,
            payouts_enabled=can_take_payments,
            details_submitted=True,
            capabilities={"transfers": "active", "card_payments": "active"}
            if can_take_payments
            else {"transfers": "inactive", "card_payments": "inactive"},
            created_at=datetime.now(UTC),
        )
    )


async def payable_seller(client: Client) -> SellerUser:
    seller = await sign_up_seller(client)
    await give_account(seller)
    return seller


async def create(client: Client, seller: SellerUser, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        "/sellers/me/listings", json=payload(ListingCreateFactory, **overrides), headers=seller.auth
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def count_of(seller: SellerUser) -> int:
    count: int = await Listing.count().where(Listing.seller == seller.id)
    return count


async def walk(client: Client, url: str, headers: dict[str, str] | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated list, following `next_cursor` to the end."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(url, params=query, headers=headers or {})
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the pages never ended")


# A seller's own listings -------------------------------------------------------------------------------


async def test_a_seller_creates_lists_reads_changes_and_deactivates_a_listing(client: Client) -> None:
    seller = await sign_up_seller(client)
    created = await create(
        client, seller, title="  Hand-thrown mug  ", unit_amount=2500, currency="USD", stock=3, description="Blue."
    )
    assert created["title"] == "Hand-thrown mug"  # stripped
    assert created["currency"] == "usd"  # stored normalised
    assert (created["unit_amount"], created["stock"], created["in_stock"], created["active"]) == (2500, 3, True, True)
    assert created["seller_id"] == seller.id

    stored = await Listing.select().where(Listing.id == created["id"]).first()
    assert stored is not None
    assert ListingRow.from_row(stored).title == "Hand-thrown mug"

    listed = await client.get("/sellers/me/listings", headers=seller.auth)
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [created["id"]]
    assert listed.json()["next_cursor"] is None

    one = await client.get(f"/sellers/me/listings/{created['id']}", headers=seller.auth)
    assert one.status_code == 200
    assert one.json() == created

    changed = await client.patch(
        f"/sellers/me/listings/{created['id']}", json={"unit_amount": 3000, "stock": 0}, headers=seller.auth
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["unit_amount"], body["stock"], body["in_stock"]) == (3000, 0, False)
    assert (body["title"], body["description"], body["currency"]) == ("Hand-thrown mug", "Blue.", "usd")  # untouched
    assert datetime.fromisoformat(body["updated_at"]) > datetime.fromisoformat(created["updated_at"])

    unlimited = await client.patch(f"/sellers/me/listings/{created['id']}", json={"stock": None}, headers=seller.auth)
    assert unlimited.status_code == 200
    assert (unlimited.json()["stock"], unlimited.json()["in_stock"]) == (None, True)

    nothing = await client.patch(f"/sellers/me/listings/{created['id']}", json={}, headers=seller.auth)
    assert nothing.status_code == 200
    assert nothing.json() == unlimited.json()

    deactivated = await client.delete(f"/sellers/me/listings/{created['id']}", headers=seller.auth)
    assert deactivated.status_code == 200
    assert deactivated.json()["active"] is False
    again = await client.delete(f"/sellers/me/listings/{created['id']}", headers=seller.auth)
    assert again.status_code == 200
    assert again.json() == deactivated.json()  # repeating it changes nothing

    still_listed = await client.get("/sellers/me/listings", headers=seller.auth)
    assert [(i["id"], i["active"]) for i in still_listed.json()["items"]] == [(created["id"], False)]
    reactivated = await client.patch(
        f"/sellers/me/listings/{created['id']}", json={"active": True}, headers=seller.auth
    )
    assert reactivated.json()["active"] is True
    assert await count_of(seller) == 1


async def test_another_sellers_listing_answers_404_like_a_missing_one(client: Client) -> None:
    owner, other = await sign_up_seller(client), await sign_up_seller(client)
    listing = await create(client, owner, title="Mine", unit_amount=1000, currency="usd")
    url = f"/sellers/me/listings/{listing['id']}"
    missing = f"/sellers/me/listings/{uuid.uuid4()}"

    for method, body in (("GET", None), ("PATCH", {"title": "Stolen"}), ("DELETE", None)):
        theirs = await client.request(method, url, json=body, headers=other.auth)
        nobody = await client.request(method, missing, json=body, headers=other.auth)
        assert theirs.status_code == nobody.status_code == 404, (method, theirs.text)
        assert theirs.json()["type"] == nobody.json()["type"] == "urn:marketplace:problem:not-found"

    assert (await client.get("/sellers/me/listings", headers=other.auth)).json()["items"] == []
    untouched = await client.get(url, headers=owner.auth)
    assert (untouched.json()["title"], untouched.json()["active"]) == ("Mine", True)


async def test_seller_routes_need_a_seller_token(client: Client) -> None:
    seller = await sign_up_seller(client)
    listing = await create(client, seller)
    buyer = (await client.post("/buyers", json=payload(BuyerSignupFactory))).json()["token"]
    as_buyer = {"Authorization": f"Bearer {buyer}"}
    url = f"/sellers/me/listings/{listing['id']}"
    attempts = [
        ("POST", "/sellers/me/listings", payload(ListingCreateFactory)),
        ("GET", "/sellers/me/listings", None),
        ("GET", url, None),
        ("PATCH", url, {"title": "x"}),
        ("DELETE", url, None),
    ]
    for method, path, body in attempts:
        anonymous = await client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        forbidden = await client.request(method, path, json=body, headers=as_buyer)
        assert forbidden.status_code == 403, (method, path)
    assert await count_of(seller) == 1
    assert (await client.get(url, headers=seller.auth)).json()["title"] == listing["title"]


# The storefront ----------------------------------------------------------------------------------------


async def test_the_storefront_shows_only_active_listings_of_sellers_who_can_take_payments(client: Client) -> None:
    payable = await payable_seller(client)
    restricted = await sign_up_seller(client)
    await give_account(restricted, can_take_payments=False)
    no_account = await sign_up_seller(client)

    shown = await create(client, payable, title="Shown", unit_amount=1200, currency="usd", stock=2)
    sold_out = await create(client, payable, title="Sold out", unit_amount=1200, currency="usd", stock=0)
    inactive = await create(client, payable, title="Draft", unit_amount=1200, currency="usd", active=False)
    withdrawn = await create(client, payable, title="Withdrawn", unit_amount=1200, currency="usd")
    assert (await client.delete(f"/sellers/me/listings/{withdrawn['id']}", headers=payable.auth)).status_code == 200
    hidden = [
        await create(client, restricted, title="Restricted", unit_amount=1200, currency="usd"),
        await create(client, no_account, title="Not onboarded", unit_amount=1200, currency="usd"),
    ]

    mine = await client.get("/listings", params={"seller_id": payable.id})  # no token needed
    assert mine.status_code == 200
    items = mine.json()["items"]
    assert [i["id"] for i in items] == [sold_out["id"], shown["id"]]  # newest first; sold out is still shown
    assert {(i["stock"], i["in_stock"]) for i in items} == {(2, True), (0, False)}
    assert set(items[0]) == {
        "id", "seller_id", "title", "description", "unit_amount", "currency", "stock", "in_stock", "created_at"
    }  # fmt: skip

    everything = {i["id"] for i in await walk(client, "/listings", limit=100)}
    assert {shown["id"], sold_out["id"]} <= everything
    assert not everything & {inactive["id"], withdrawn["id"], *(h["id"] for h in hidden)}

    assert (await client.get(f"/listings/{shown['id']}")).json()["title"] == "Shown"
    for listing in (inactive, withdrawn, *hidden):
        answer = await client.get(f"/listings/{listing['id']}")
        assert answer.status_code == 404, listing["title"]
        assert answer.json()["type"] == "urn:marketplace:problem:not-found"
    assert (await client.get(f"/listings/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/listings", params={"seller_id": restricted.id})).json()["items"] == []

    # Once the restricted seller's account can take payments again, its listing is back.
    await ConnectedAccount.update(
        {
            ConnectedAccount.status: "active",
            ConnectedAccount.charges_enabled: True,
            ConnectedAccount.capabilities: {"transfers": "active", "card_payments": "active"},
        }
    ).where(ConnectedAccount.seller == restricted.id)
    assert (await client.get(f"/listings/{hidden[0]['id']}")).status_code == 200


async def test_the_storefront_filters_by_seller_and_currency(client: Client) -> None:
    first, second = await payable_seller(client), await payable_seller(client)
    usd = await create(client, first, unit_amount=1000, currency="usd")
    jpy = await create(client, first, unit_amount=500, currency="jpy")
    other = await create(client, second, unit_amount=2000, currency="usd")

    by_first = await client.get("/listings", params={"seller_id": first.id})
    assert {i["id"] for i in by_first.json()["items"]} == {usd["id"], jpy["id"]}
    first_in_jpy = await client.get("/listings", params={"seller_id": first.id, "currency": "JPY"})
    assert [i["id"] for i in first_in_jpy.json()["items"]] == [jpy["id"]]
    in_usd = {i["id"] for i in await walk(client, "/listings", currency="usd", limit=100)}
    assert {usd["id"], other["id"]} <= in_usd
    assert jpy["id"] not in in_usd
    assert all(i["currency"] == "usd" for i in await walk(client, "/listings", currency="usd", limit=100))

    for bad in ({"currency": "xxx"}, {"currency": "dollars"}, {"seller_id": "not-a-uuid"}):
        refused = await client.get("/listings", params=bad)
        assert refused.status_code == 400, bad
        assert refused.json()["type"] == VALIDATION


async def test_pages_walk_every_listing_once(client: Client) -> None:
    seller = await payable_seller(client)
    made = [(await create(client, seller, title=f"Item {n}"))["id"] for n in range(7)]
    newest_first = list(reversed(made))
    for limit in (1, 2, 3, 7, 100):
        own = [i["id"] for i in await walk(client, "/sellers/me/listings", headers=seller.auth, limit=limit)]
        public = [i["id"] for i in await walk(client, "/listings", seller_id=seller.id, limit=limit)]
        assert own == public == newest_first, limit
    first = await client.get("/sellers/me/listings", params={"limit": 3}, headers=seller.auth)
    assert len(first.json()["items"]) == 3
    assert first.json()["next_cursor"]
    for limit in (0, 101, -1):
        assert (await client.get("/listings", params={"limit": limit})).status_code == 400
        assert (
            await client.get("/sellers/me/listings", params={"limit": limit}, headers=seller.auth)
        ).status_code == 400


async def test_listings_made_in_the_same_instant_page_by_id(client: Client) -> None:
    seller = await payable_seller(client)
    made = [(await create(client, seller))["id"] for _ in range(4)]
    same = datetime(2026, 1, 1, tzinfo=UTC)
    await Listing.update({Listing.created_at: same}).where(Listing.id.is_in([uuid.UUID(m) for m in made]))
    walked = [i["id"] for i in await walk(client, "/listings", seller_id=seller.id, limit=1)]
    assert walked == sorted(made, reverse=True)


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        "%%%",
        base64.urlsafe_b64encode(b"garbage").decode(),
        base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|not-a-uuid").decode(),
        base64.urlsafe_b64encode(f"yesterday|{uuid.uuid4()}".encode()).decode(),
        base64.urlsafe_b64encode(f"2026-01-01T00:00:00|{uuid.uuid4()}".encode()).decode(),  # no time zone
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "x" * 201,
    ],
)
async def test_a_malformed_cursor_is_refused(client: Client, cursor: str) -> None:
    seller = await sign_up_seller(client)
    for url, headers in (("/listings", {}), ("/sellers/me/listings", seller.auth)):
        response = await client.get(url, params={"cursor": cursor}, headers=headers)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["type"] in ("urn:marketplace:problem:invalid-cursor", VALIDATION)


# Validation --------------------------------------------------------------------------------------------

REFUSED_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("unknown field", {"colour": "red"}),
    ("seller chosen by the client", {"seller_id": str(uuid.uuid4())}),
    ("amount 0", {"unit_amount": 0}),
    ("negative amount", {"unit_amount": -100}),
    ("amount over eight digits", {"unit_amount": 10**8}),
    ("amount as a fraction", {"unit_amount": 10.5}),
    ("amount as a boolean", {"unit_amount": True}),
    ("amount missing", {"unit_amount": None}),
    ("three-decimal amount not ending in 0", {"currency": "kwd", "unit_amount": 1005}),
    ("under the minimum charge in JPY", {"currency": "jpy", "unit_amount": 10}),
    ("under the minimum charge in USD", {"currency": "usd", "unit_amount": 49}),
    ("unsupported currency", {"currency": "xxx"}),
    ("currency too long", {"currency": "usdd"}),
    ("currency not letters", {"currency": "u$d"}),
    ("empty title", {"title": ""}),
    ("blank title", {"title": "   "}),
    ("title too long", {"title": "a" * 201}),
    ("NUL in the title", {"title": "mug\x00"}),
    ("control character in the title", {"title": "mug\x1b[31m"}),
    ("line break in the title", {"title": "mug\nsecond line"}),
    ("description too long", {"description": "d" * 5001}),
    ("NUL in the description", {"description": "before\x00after"}),
    ("negative stock", {"stock": -1}),
    ("stock over a million", {"stock": 1_000_001}),
    ("active not a boolean", {"active": "yes"}),
]


@pytest.mark.parametrize(("case", "changes"), REFUSED_BODIES, ids=[case for case, _ in REFUSED_BODIES])
async def test_an_invalid_listing_is_refused_and_nothing_is_written(
    client: Client, case: str, changes: dict[str, Any]
) -> None:
    seller = await sign_up_seller(client)
    body = {**payload(ListingCreateFactory, unit_amount=1000, currency="usd"), **changes}
    body = {k: v for k, v in body.items() if v is not None or k == "stock"}
    response = await client.post("/sellers/me/listings", json=body, headers=seller.auth)
    assert response.status_code == 400, (case, response.text)
    problem = response.json()
    assert problem["type"] == VALIDATION, case
    assert problem["errors"], case
    assert await count_of(seller) == 0


@pytest.mark.parametrize(("case", "changes"), REFUSED_BODIES, ids=[case for case, _ in REFUSED_BODIES])
async def test_an_invalid_change_is_refused_and_nothing_is_written(
    client: Client, case: str, changes: dict[str, Any]
) -> None:
    seller = await sign_up_seller(client)
    listing = await create(client, seller, unit_amount=1000, currency="usd")
    response = await client.patch(f"/sellers/me/listings/{listing['id']}", json=changes, headers=seller.auth)
    assert response.status_code == 400, (case, response.text)
    assert response.json()["type"] == VALIDATION
    after = await client.get(f"/sellers/me/listings/{listing['id']}", headers=seller.auth)
    assert after.json() == listing


async def test_a_change_is_checked_against_the_fields_it_leaves(client: Client) -> None:
    seller = await sign_up_seller(client)
    listing = await create(client, seller, unit_amount=1005, currency="usd")
    url = f"/sellers/me/listings/{listing['id']}"

    to_kwd = await client.patch(url, json={"currency": "KWD"}, headers=seller.auth)
    assert to_kwd.status_code == 400  # 1005 fils does not end in 0
    assert [e["key"] for e in to_kwd.json()["errors"]] == ["currency"]
    assert (await client.patch(url, json={"unit_amount": 40}, headers=seller.auth)).status_code == 400  # < USD 0.50
    assert (await client.get(url, headers=seller.auth)).json() == listing

    both = await client.patch(url, json={"currency": "kwd", "unit_amount": 1250}, headers=seller.auth)
    assert both.status_code == 200
    assert (both.json()["currency"], both.json()["unit_amount"]) == ("kwd", 1250)
    assert (await client.patch(url, json={"unit_amount": 1255}, headers=seller.auth)).status_code == 400


async def test_concurrent_changes_cannot_store_a_pair_neither_checked(client: Client) -> None:
    """One seller changes the currency while another request changes the amount: each is valid against
    the row it started from (USD 10.00 → 1.000 KWD; USD 10.00 → USD 10.05), the pair (1005 fils) is not.
    The row lock makes the second one see the first's write and be refused."""
    seller = await sign_up_seller(client)
    for _ in range(5):
        listing = await create(client, seller, unit_amount=1000, currency="usd")
        url = f"/sellers/me/listings/{listing['id']}"
        answers = await asyncio.gather(
            client.patch(url, json={"currency": "kwd"}, headers=seller.auth),
            client.patch(url, json={"unit_amount": 1005}, headers=seller.auth),
        )
        assert sorted(a.status_code for a in answers) == [200, 400], [a.text for a in answers]
        final = (await client.get(url, headers=seller.auth)).json()
        assert (final["currency"], final["unit_amount"]) in {("kwd", 1000), ("usd", 1005)}


@pytest.mark.parametrize(
    ("currency", "unit_amount", "stored"),
    [
        ("JPY", 50, "jpy"),  # zero-decimal: ¥50, the minimum
        ("jpy", 99_999_999, "jpy"),
        ("KWD", 1250, "kwd"),  # three-decimal: 1.250 KWD
        ("bhd", 200, "bhd"),
        ("usd", 50, "usd"),
        ("huf", 17500, "huf"),
    ],
)
async def test_zero_and_three_decimal_amounts_are_stored_as_given(
    client: Client, currency: str, unit_amount: int, stored: str
) -> None:
    seller = await sign_up_seller(client)
    listing = await create(client, seller, currency=currency, unit_amount=unit_amount)
    assert (listing["currency"], listing["unit_amount"]) == (stored, unit_amount)
    row = await Listing.select(Listing.currency, Listing.unit_amount).where(Listing.id == listing["id"]).first()
    assert row == {"currency": stored, "unit_amount": unit_amount}


# The table and the service API for checkout --------------------------------------------------------------


async def test_the_database_itself_refuses_a_negative_stock_or_a_bad_amount(client: Client) -> None:
    seller = await sign_up_seller(client)
    listing = await create(client, seller, unit_amount=1000, currency="usd", stock=1)
    refused: list[dict[Any, Any]] = [
        {Listing.stock: -1},
        {Listing.unit_amount: 0},
        {Listing.unit_amount: 10**8},
        {Listing.currency: "US"},
    ]
    for change in refused:
        with pytest.raises(asyncpg.CheckViolationError):
            await Listing.update(change).where(Listing.id == listing["id"])
    # Checkout's conditional decrement: the second one of a last item finds nothing to take.
    take = "UPDATE listings SET stock = stock - {} WHERE id = {} AND stock >= {} RETURNING stock"
    assert await Listing.raw(take, 1, listing["id"], 1) == [{"stock": 0}]
    assert await Listing.raw(take, 1, listing["id"], 1) == []


async def test_listings_for_checkout_returns_rows_whatever_their_state(client: Client) -> None:
    payable, restricted = await payable_seller(client), await sign_up_seller(client)
    await give_account(restricted, can_take_payments=False)
    active = await create(client, payable, unit_amount=1000, currency="usd")
    inactive = await create(client, payable, unit_amount=1000, currency="usd", active=False)
    hidden = await create(client, restricted, unit_amount=700, currency="gbp", stock=0)
    missing = uuid.uuid4()
    ids = [
        uuid.UUID(active["id"]),
        uuid.UUID(inactive["id"]),
        uuid.UUID(hidden["id"]),
        missing,
        uuid.UUID(active["id"]),
    ]

    found = await listings_for_checkout(ids)
    assert set(found) == set(ids) - {missing}
    assert found[uuid.UUID(inactive["id"])].active is False
    row = found[uuid.UUID(hidden["id"])]
    assert (row.seller, row.currency, row.unit_amount, row.stock, row.in_stock) == (
        uuid.UUID(restricted.id), "gbp", 700, 0, False
    )  # fmt: skip
    assert await listings_for_checkout([]) == {}


async def test_the_listing_routes_are_documented(client: Client) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    assert {"post", "get"} <= set(paths["/sellers/me/listings"])
    mine = paths["/sellers/me/listings/{listing_id}"]
    assert {"get", "patch", "delete"} <= set(mine)
    assert {"200", "400", "401", "403", "404"} <= set(mine["delete"]["responses"])
    assert {"200", "400", "401", "403", "404"} <= set(paths["/sellers/me/listings"]["get"]["responses"])
    assert "201" in paths["/sellers/me/listings"]["post"]["responses"]
    assert "security" not in paths["/listings"]["get"]
    assert "404" in paths["/listings/{listing_id}"]["get"]["responses"]
    assert "invalid-cursor" in paths["/listings"]["get"]["responses"]["400"]["description"]
    assert all(op["tags"] == ["listings"] for p, item in paths.items() if "listings" in p for op in item.values())
