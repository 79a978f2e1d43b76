"""Checkout over real HTTP, for both charge types: the order first, then exactly the session Stripe
should hold; paying it moves money as Stripe would; retries never make a second session; every refusal
writes nothing; and nobody reads another's order."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from marketplace.auth.service import create_principal
from marketplace.auth.tables import Role
from marketplace.orders.tables import Order, OrderAccessToken, OrderLine
from marketplace.sellers.tables import ConnectedAccount
from tests.e2e.conftest import Stack
from tests.e2e.test_onboarding import create_account, me, sign_up

pytestmark = pytest.mark.integration


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def active_seller(stack: Stack, profile: str = "platform_managed") -> tuple[dict[str, str], dict[str, Any], str]:
    """A seller whose account completed onboarding (the Connect webhook made it active)."""
    async with stack.api_with(allow_seller_account_profile=True) as api:
        auth, seller = await sign_up(stack, api, account_profile=profile)
        account_id = (await create_account(stack, auth))["account_id"]
    await stack.control.complete_onboarding(account_id)
    await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "active")
    return auth, seller, account_id


async def listing(stack: Stack, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"title": "Hand-thrown mug", "unit_amount": 2500, "currency": "usd", "stock": 3, **fields}
    response = await stack.api.post("/sellers/me/listings", json=body, headers=auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def order_count() -> int:
    return await Order.count()


async def checkout(
    stack: Stack, lines: list[tuple[str, int]], api: httpx.AsyncClient | None = None, **extra: Any
) -> httpx.Response:
    body: dict[str, Any] = {"lines": [{"listing_id": i, "quantity": q} for i, q in lines]}
    headers = extra.pop("headers", {})
    body.update(extra)
    return await (api or stack.api).post("/checkout", json=body, headers=headers)


async def session_of(stack: Stack, session_id: str, account: str | None) -> dict[str, Any]:
    options: Any = {"stripe_account": account} if account else {}
    session = await stack.stripe.v1.checkout.sessions.retrieve_async(session_id, options=options)
    return session.to_dict()


@pytest.mark.parametrize("profile", ["platform_managed", "seller_managed"])
async def test_a_guest_checkout_makes_the_expected_session_and_paying_it_moves_the_money(
    stack: Stack, profile: str
) -> None:
    auth, _, account_id = await active_seller(stack, profile)
    item = await listing(stack, auth)
    response = await checkout(stack, [(item["id"], 2)], email="guest@example.com")
    assert response.status_code == 201, response.text
    body = response.json()
    order = body["order"]
    charge_type = "destination" if profile == "platform_managed" else "direct"
    assert (order["status"], order["charge_type"], order["currency"]) == ("pending", charge_type, "usd")
    assert (order["subtotal"], order["total"], order["application_fee"]) == (5000, 5000, 500)  # 10 % default
    assert body["access_token"].startswith("ord_")
    assert body["checkout_url"] == order["checkout_url"]

    row = await Order.select().where(Order.id == order["id"]).first()
    assert row is not None
    on = account_id if charge_type == "direct" else None
    session = await session_of(stack, row["checkout_session_id"], on)
    assert session["url"] == body["checkout_url"]
    assert session["amount_total"] == 5000
    assert session["currency"] == "usd"
    assert session["metadata"] == {"order_id": order["id"]}
    assert session["client_reference_id"] == order["id"]
    assert session["customer_email"] == "guest@example.com"
    success = f"{stack.settings.checkout_success_url}?order_id={order['id']}&session_id={{CHECKOUT_SESSION_ID}}"
    assert session["success_url"] == success
    assert session["cancel_url"] == f"{stack.settings.checkout_cancel_url}?order_id={order['id']}"

    before, platform_before = await balance_total(stack, account_id), await balance_total(stack, None)
    # Pay on the hosted Checkout page as a browser would: the form it shows, the test card 4242….
    async with httpx.AsyncClient(timeout=30) as browser:
        page = await browser.get(body["checkout_url"])
        assert page.status_code == 200
        assert "50.00 USD" in page.text
        paid = await browser.post(
            f"{body['checkout_url']}/card",
            data={"email": "guest@example.com", "card": "4242 4242 4242 4242", "name": "Guest"},
        )
    assert paid.status_code == 303, paid.text
    assert paid.headers["location"] == success.replace("{CHECKOUT_SESSION_ID}", session["id"])
    intent = (await session_of(stack, session["id"], on))["payment_intent"]
    options: Any = {"stripe_account": on} if on else {}
    pi = (await stack.stripe.v1.payment_intents.retrieve_async(intent, options=options)).to_dict()
    assert pi["amount"] == 5000
    assert pi["application_fee_amount"] == 500
    assert pi["metadata"] == {"order_id": order["id"]}
    fees = (await stack.stripe.v1.application_fees.list_async(params={"limit": 100})).to_dict()["data"]
    assert [f["amount"] for f in fees if f["account"] == account_id] == [500]  # the fee is the platform's
    if charge_type == "destination":
        assert pi["transfer_data"] == {"destination": account_id}
    else:
        assert pi.get("transfer_data") is None
    # The fee on the platform, the rest on the seller (the sandbox moves gross amounts: Stripe's own
    # processing fee, which the platform pays for a destination charge and the seller for a direct one,
    # is not emulated; docs/sandbox.md).
    assert await balance_total(stack, None) - platform_before == 500
    assert await balance_total(stack, account_id) - before == 4500


async def balance_total(stack: Stack, account_id: str | None) -> int:
    options: Any = {"stripe_account": account_id} if account_id else {}
    balance = (await stack.stripe.v1.balance.retrieve_async(options=options)).to_dict()
    return sum(b["amount"] for b in balance["available"] + balance["pending"] if b["currency"] == "usd")


async def test_a_checkout_retried_after_a_timeout_makes_no_second_session(stack: Stack) -> None:
    """Stripe made the session but its answer arrived after our client gave up (twice, with the SDK's
    retry): the buyer gets a 503 and retries, and gets the same order with the one session Stripe made."""
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth)
    attempt = {"Idempotency-Key": f"attempt-{uuid.uuid4()}"}  # what makes the guest's retry the same buyer
    await stack.quiesce()
    async with stack.api_with(stripe_timeout_seconds=1.0, stripe_max_network_retries=1) as impatient:
        await stack.control.set_latency(0, response_ms=1500)
        try:
            first = await checkout(stack, [(item["id"], 1)], api=impatient, email="retry@example.com", headers=attempt)
        finally:
            await stack.control.set_latency(0)
        assert first.status_code == 503, first.text
        assert first.headers["retry-after"] == "5"
        order_id = first.json()["order_id"]
        assert (await Order.select(Order.status).where(Order.id == order_id).first() or {})["status"] == "pending"
        again = await checkout(stack, [(item["id"], 1)], api=impatient, email="retry@example.com", headers=attempt)
    assert again.status_code == 200, again.text  # the same cart, the same order
    assert again.json()["order"]["id"] == order_id
    sessions = (await stack.stripe.v1.checkout.sessions.list_async(params={"limit": 100})).to_dict()["data"]
    mine = [s for s in sessions if s["client_reference_id"] == order_id]
    assert len(mine) == 1
    assert again.json()["checkout_url"] == mine[0]["url"]


async def test_a_definitive_stripe_refusal_fails_the_order_with_stripes_code(stack: Stack) -> None:
    auth, _, account_id = await active_seller(stack, "seller_managed")
    item = await listing(stack, auth)
    await stack.quiesce()
    # The seller leaves the platform, and the event has not reached us yet: we still think it active.
    await stack.control.set_delivery_faults(drop=1)
    try:
        await stack.control.deauthorize(account_id)
    finally:
        await stack.control.set_delivery_faults(drop=0)
    response = await checkout(stack, [(item["id"], 1)], email="refused@example.com")
    assert response.status_code == 502, response.text
    problem = response.json()
    assert problem["type"].endswith("checkout-refused")
    assert problem["stripe_code"] == "account_invalid"
    assert "cannot take payments" in problem["detail"]
    row = await Order.select().where(Order.id == problem["order_id"]).first()
    assert row is not None
    assert (row["status"], row["stripe_error_code"], row["checkout_session_id"]) == ("failed", "account_invalid", None)


async def test_every_refusal_answers_its_problem_and_writes_nothing(stack: Stack) -> None:
    auth, seller, _ = await active_seller(stack)
    other_auth, _, _ = await active_seller(stack)
    mug = await listing(stack, auth, stock=2)
    euro = await listing(stack, auth, currency="eur", unit_amount=1000)
    pricey = await listing(stack, auth, unit_amount=99_999_999, stock=None)
    retired = await listing(stack, auth)
    assert (await stack.api.delete(f"/sellers/me/listings/{retired['id']}", headers=auth)).status_code == 200
    elsewhere = await listing(stack, other_auth)
    restricted_auth, restricted_seller, restricted_account = await active_seller(stack)
    blocked = await listing(stack, restricted_auth)
    await ConnectedAccount.update({ConnectedAccount.status: "restricted"}).where(
        ConnectedAccount.stripe_account_id == restricted_account
    )
    _, seller_token = await create_principal(Role.seller, "not a buyer")
    guest = {"email": "g@example.com"}
    cases: list[tuple[list[tuple[str, int]], dict[str, Any], int, str]] = [
        ([(str(uuid.uuid4()), 1)], guest, 422, "listing-unavailable"),
        ([(retired["id"], 1)], guest, 422, "listing-unavailable"),
        ([(mug["id"], 1), (elsewhere["id"], 1)], guest, 422, "cart-spans-sellers"),
        ([(mug["id"], 1), (euro["id"], 1)], guest, 422, "mixed-currencies"),
        ([(mug["id"], 3)], guest, 409, "insufficient-stock"),
        ([(pricey["id"], 2)], guest, 422, "amount-not-chargeable"),
        ([(blocked["id"], 1)], guest, 409, "seller-cannot-sell"),
        ([(mug["id"], 0)], guest, 400, "validation-error"),
        ([(mug["id"], -1)], guest, 400, "validation-error"),
        ([(mug["id"], 10**9)], guest, 400, "validation-error"),
        ([(mug["id"], 1), (mug["id"], 1)], guest, 400, "validation-error"),
        ([(mug["id"], 1)], {}, 400, "validation-error"),  # a guest without an email
        ([(mug["id"], 1)], {**guest, "unit_amount": 1}, 400, "validation-error"),  # no client prices
        ([(mug["id"], 1)], {**guest, "headers": bearer(seller_token)}, 403, "forbidden"),
        ([(mug["id"], 1)], {**guest, "headers": bearer("mkt_not-a-real-token-at-all")}, 401, "unauthorized"),
    ]
    before = (await order_count(), await OrderLine.count(), await OrderAccessToken.count())
    for lines, extra, status, slug in cases:
        response = await checkout(stack, lines, **dict(extra))
        assert response.status_code == status, (lines, extra, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] == f"urn:marketplace:problem:{slug}", response.text
    assert (await order_count(), await OrderLine.count(), await OrderAccessToken.count()) == before
    spans = await checkout(stack, [(mug["id"], 1), (elsewhere["id"], 1)], email="g@example.com")
    named = {s["seller_id"] for s in spans.json()["sellers"]}
    assert seller["id"] in named
    assert len(named) == 2
    assert restricted_seller["id"]  # shown only for the record of which seller was refused


async def test_nobody_reads_another_ones_order(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    other_seller_auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=None)
    _, buyer_token = await create_principal(Role.buyer, "buyer one", "one@example.com")
    _, other_buyer_token = await create_principal(Role.buyer, "buyer two", "two@example.com")
    _, admin_token = await create_principal(Role.admin, "admin")
    mine = await checkout(stack, [(item["id"], 1)], headers=bearer(buyer_token))
    assert mine.status_code == 201, mine.text
    assert mine.json()["access_token"] is None  # a signed-in buyer reads it with their own token
    guest = await checkout(stack, [(item["id"], 2)], email="guest@example.com")
    guest_token = guest.json()["access_token"]
    buyer_order, guest_order = mine.json()["order"]["id"], guest.json()["order"]["id"]

    async def read(order_id: str, headers: dict[str, str]) -> int:
        return (await stack.api.get(f"/orders/{order_id}", headers=headers)).status_code

    token = {"X-Order-Token": guest_token}
    matrix = {
        "its buyer": (buyer_order, bearer(buyer_token), 200),
        "another buyer": (buyer_order, bearer(other_buyer_token), 404),
        "its seller": (buyer_order, auth, 200),
        "another seller": (buyer_order, other_seller_auth, 404),
        "an admin": (buyer_order, bearer(admin_token), 200),
        "nobody": (buyer_order, {}, 404),
        "a guest token of another order": (buyer_order, token, 404),
        "the guest with its token": (guest_order, token, 200),
        "the guest with a wrong token": (guest_order, {"X-Order-Token": "ord_" + "x" * 43}, 404),
        "a buyer on a guest's order": (guest_order, bearer(buyer_token), 404),
    }
    seen = {who: await read(order_id, headers) for who, (order_id, headers, _) in matrix.items()}
    assert seen == {who: status for who, (_, _, status) in matrix.items()}
    assert (await read(str(uuid.uuid4()), bearer(admin_token))) == 404

    buyer_list = await stack.api.get("/buyers/me/orders", headers=bearer(buyer_token))
    assert [o["id"] for o in buyer_list.json()["items"]] == [buyer_order]
    assert (await stack.api.get("/buyers/me/orders", headers=bearer(other_buyer_token))).json()["items"] == []
    seller_list = await stack.api.get("/sellers/me/orders", headers=auth)
    assert {o["id"] for o in seller_list.json()["items"]} == {buyer_order, guest_order}
    assert (await stack.api.get("/sellers/me/orders", headers=other_seller_auth)).json()["items"] == []
    assert (await stack.api.get("/sellers/me/orders", headers=bearer(buyer_token))).status_code == 403
    assert (await stack.api.get("/buyers/me/orders", headers=auth)).status_code == 403


async def test_the_same_cart_checked_out_twice_is_one_order_and_a_new_price_is_a_new_one(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=None)
    attempt = {"Idempotency-Key": f"attempt-{uuid.uuid4()}"}
    first = await checkout(stack, [(item["id"], 1)], email="twice@example.com", headers=attempt)
    second = await checkout(stack, [(item["id"], 1)], email="TWICE@example.com", headers=attempt)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["order"]["id"] == second.json()["order"]["id"]
    assert first.json()["access_token"] != second.json()["access_token"]  # each answer its own credential
    for token in (first.json()["access_token"], second.json()["access_token"]):
        order_id = first.json()["order"]["id"]
        assert (await stack.api.get(f"/orders/{order_id}", headers={"X-Order-Token": token})).status_code == 200
    # An email is no credential: whoever knows it and the cart, without the guest's key, gets an order
    # of their own, and a token that reads only that one.
    for stranger in ({}, {"Idempotency-Key": f"guess-{uuid.uuid4()}"}):
        guessed = await checkout(stack, [(item["id"], 1)], email="twice@example.com", headers=stranger)
        assert guessed.status_code == 201, guessed.text
        assert guessed.json()["order"]["id"] != first.json()["order"]["id"]
        theirs = {"X-Order-Token": guessed.json()["access_token"]}
        assert (await stack.api.get(f"/orders/{first.json()['order']['id']}", headers=theirs)).status_code == 404
    # A signed-in buyer is the same buyer by their token.
    _, buyer_token = await create_principal(Role.buyer, "twice buyer", "twice-buyer@example.com")
    mine = [await checkout(stack, [(item["id"], 1)], headers=bearer(buyer_token)) for _ in range(2)]
    assert [r.status_code for r in mine] == [201, 200]
    assert mine[0].json()["order"]["id"] == mine[1].json()["order"]["id"]
    repriced = await stack.api.patch(f"/sellers/me/listings/{item['id']}", json={"unit_amount": 2600}, headers=auth)
    assert repriced.status_code == 200
    third = await checkout(stack, [(item["id"], 1)], email="twice@example.com", headers=attempt)
    assert third.status_code == 201
    assert third.json()["order"]["id"] != first.json()["order"]["id"]
    assert third.json()["order"]["total"] == 2600
