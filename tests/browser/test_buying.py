"""A guest buys on the storefront and pays on Stripe's (the sandbox's) hosted Checkout, for both charge
types: the success page verifies the order and says so in plain words; a declined card then a good one;
a 100 %-off promotion code; cancelling; the success page reached before the webhook; the seller's sales."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Browser, Shop, screenshot
from tests.browser.helpers import (
    DECLINED_CARD,
    GOOD_CARD,
    PROFILES,
    TIMEOUT_MS,
    buy,
    headline,
    order_row,
    outbox_kinds,
    pay_with_card,
    query_of,
    seller_with_listing,
    sign_in_as_seller,
    stored_order_token,
    text,
    unique,
    wait_for_success_page,
)

pytestmark = pytest.mark.integration

CONFIRMATION = ["order.fulfil", "order.receipt", "order.sale"]  # one of each per confirmed order


@pytest.mark.parametrize(("profile", "charge_type"), PROFILES)
async def test_a_guest_pays_and_the_success_page_says_paid(
    shop: Shop, browser: Browser, profile: str, charge_type: str
) -> None:
    made = await seller_with_listing(shop, profile, unit_amount=2500, stock=3)
    title = made["listing"]["title"]
    page = await browser.new_page()
    await buy(page, shop, title, email="guest@example.com")
    assert "25.00 USD" in text(await page.text_content("#total"))
    await screenshot(page, f"sandbox-checkout-{charge_type}")
    await pay_with_card(page, GOOD_CARD)
    await wait_for_success_page(page, shop)
    query = query_of(page.url)
    order_id, session_id = query["order_id"], query["session_id"]
    assert session_id.startswith("cs_")
    await headline(page, "Payment received, thank you")
    assert text(await page.text_content("#order-total")) == "$25.00"
    await screenshot(page, f"success-paid-{charge_type}")
    token = await stored_order_token(page, order_id)
    assert token
    assert token.startswith("ord_")
    row = await order_row(order_id)
    assert (row["status"], row["charge_type"]) == ("paid", charge_type)
    # A second tab of the same URL (it reads the token from localStorage) says the same and changes nothing.
    other = await browser.new_page()
    await other.goto(page.url)
    await headline(other, "Payment received, thank you")
    await page.reload()
    await headline(page, "Payment received, thank you")
    assert await order_row(order_id) == row
    await shop.stack.quiesce()
    assert await outbox_kinds(order_id) == CONFIRMATION
    # The cart was this order's: it is emptied.
    assert await page.evaluate("localStorage.getItem('shop.cart.v1')") is None

    # The seller sees the sale with the platform's fee and the net.
    await sign_in_as_seller(page, shop, made["auth"])
    sale = page.locator("#sales-table tbody tr", has_text=title)
    await sale.wait_for(timeout=TIMEOUT_MS)
    cells = [text(c) for c in await sale.locator("td").all_text_contents()]
    assert cells[2:] == ["paid", f"{title} \u00d7 1", "$25.00", "$2.50", "$22.50"]
    await screenshot(page, f"seller-sales-{charge_type}")
    assert browser.violations() == []
    assert browser.errors == []


@pytest.mark.parametrize(("profile", "charge_type"), PROFILES)
async def test_a_declined_card_then_a_good_one(shop: Shop, browser: Browser, profile: str, charge_type: str) -> None:
    made = await seller_with_listing(shop, profile, unit_amount=1800)
    page = await browser.new_page()
    await buy(page, shop, made["listing"]["title"])
    await pay_with_card(page, DECLINED_CARD)
    await page.locator("[role=alert]", has_text="declined").wait_for(timeout=TIMEOUT_MS)
    await screenshot(page, f"sandbox-declined-{charge_type}")
    await pay_with_card(page, GOOD_CARD)
    await wait_for_success_page(page, shop)
    await headline(page, "Payment received, thank you")
    order_id = query_of(page.url)["order_id"]
    assert (await order_row(order_id))["status"] == "paid"
    await shop.stack.quiesce()
    assert await outbox_kinds(order_id) == CONFIRMATION


async def promotion_code(shop: Shop, account_id: str | None) -> str:
    """A 100 %-off promotion code where the session lives (the platform, or the seller for a direct charge)."""
    options: Any = {"stripe_account": account_id} if account_id else {}
    client = shop.stack.stripe
    coupon = await client.v1.coupons.create_async(params={"percent_off": 100, "duration": "once"}, options=options)
    code = unique("FREE").replace(" ", "").upper()
    await client.v1.promotion_codes.create_async(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": code}, options=options
    )
    return code


@pytest.mark.parametrize(("profile", "charge_type"), PROFILES)
async def test_a_100_percent_promotion_code(shop: Shop, browser: Browser, profile: str, charge_type: str) -> None:
    made = await seller_with_listing(shop, profile, unit_amount=4000)
    code = await promotion_code(shop, made["account_id"] if charge_type == "direct" else None)
    page = await browser.new_page()
    await buy(page, shop, made["listing"]["title"])
    await page.fill("input[name=code]", code)
    await page.get_by_role("button", name="Apply").click()
    await page.get_by_role("button", name="Complete order").wait_for(timeout=TIMEOUT_MS)
    await screenshot(page, f"sandbox-free-{charge_type}")
    await page.get_by_role("button", name="Complete order").click()
    await wait_for_success_page(page, shop)
    await headline(page, "Payment received, thank you")
    assert text(await page.text_content("#order-total")) == "$0.00"
    await screenshot(page, f"success-free-{charge_type}")
    order_id = query_of(page.url)["order_id"]
    row = await order_row(order_id)
    assert (row["status"], row["amount_paid"], row["amount_discount"]) == ("paid", 0, 4000)
    # The seller's sales show nothing charged, no fee taken and nothing to the seller.
    await sign_in_as_seller(page, shop, made["auth"])
    sale = page.locator("#sales-table tbody tr", has_text=made["listing"]["title"])
    await sale.wait_for(timeout=TIMEOUT_MS)
    cells = [text(c) for c in await sale.locator("td").all_text_contents()]
    assert cells[2:] == ["paid", f"{made['listing']['title']} \u00d7 1", "$0.00", "$0.00", "$0.00"]
    await screenshot(page, f"seller-sales-free-{charge_type}")


@pytest.mark.parametrize(("profile", "charge_type"), PROFILES)
async def test_cancel_says_nothing_was_charged_and_offers_the_cart_again(
    shop: Shop, browser: Browser, profile: str, charge_type: str
) -> None:
    made = await seller_with_listing(shop, profile)
    title = made["listing"]["title"]
    page = await browser.new_page()
    await buy(page, shop, title, email="cancel@example.com")
    checkout_url = page.url
    await page.get_by_role("button", name="Back (cancel)").click()
    await page.wait_for_url(f"{shop.url}/shop/cancel?order_id=*", timeout=TIMEOUT_MS)
    assert "Nothing was charged" in text(await page.text_content("main"))
    await page.locator("#cart-body .cart-lines .title", has_text=title).wait_for()
    assert await page.input_value("#checkout-form input[name=email]") == "cancel@example.com"
    await screenshot(page, f"cancel-{charge_type}")
    order_id = query_of(page.url)["order_id"]
    assert (await order_row(order_id))["status"] == "pending"
    # Checking the same cart out again returns the same order, on the same Checkout page.
    await page.get_by_role("button", name="Check out again").click()
    await page.wait_for_url(f"{shop.stack.sandbox_url}/c/pay/**", timeout=TIMEOUT_MS)
    assert page.url == checkout_url
    assert browser.violations() == []
    assert browser.errors == []


@pytest.mark.parametrize(("profile", "charge_type"), PROFILES)
async def test_the_success_page_before_the_webhook_confirms_once(
    shop: Shop, browser: Browser, profile: str, charge_type: str
) -> None:
    made = await seller_with_listing(shop, profile, unit_amount=3000, stock=1)
    await shop.stack.quiesce()
    page = await browser.new_page()
    await buy(page, shop, made["listing"]["title"])
    await shop.stack.control.set_delivery_faults(delay=4.0)  # every delivery of the payment's events waits
    try:
        await pay_with_card(page, GOOD_CARD)
        await wait_for_success_page(page, shop)
        order_id = query_of(page.url)["order_id"]
        await headline(page, "Payment received, thank you")
        row = await order_row(order_id)
        assert (row["status"], row["confirmed_by"]) == ("paid", "verify")  # the page came first
        session_id = row["checkout_session_id"]
        stored = await _stored_completions(session_id)
        assert stored == [], "the webhook had not arrived when the page showed paid"
    finally:
        await shop.stack.control.set_delivery_faults(delay=0.0)
    # The delayed webhook arrives and finds the work done: one confirmation, one set of outbox rows.
    await shop.stack.eventually(lambda: _stored_completions(session_id), lambda s: s == ["processed"])
    await shop.stack.quiesce()
    assert await outbox_kinds(order_id) == CONFIRMATION
    assert (await order_row(order_id))["confirmed_by"] == "verify"
    async with _conn() as conn:
        assert await conn.fetchval("SELECT stock FROM listings WHERE id = $1::uuid", made["listing"]["id"]) == 0


async def _stored_completions(session_id: str) -> list[str]:
    async with _conn() as conn:
        rows = await conn.fetch(
            "SELECT status FROM stripe_events WHERE type = 'checkout.session.completed'"
            " AND payload->'data'->'object'->>'id' = $1",
            session_id,
        )
    return [r["status"] for r in rows]


def _conn() -> Any:
    from marketplace.lib.db import connection

    return connection()


async def test_a_signed_in_buyer_checks_out_and_the_page_verifies_with_the_bearer_token(
    shop: Shop, browser: Browser
) -> None:
    made = await seller_with_listing(shop, "platform_managed", unit_amount=1500)
    page = await browser.new_page()
    await page.goto(shop.page_url("/"))
    await page.click("#buyer details summary")
    await page.fill("#buyer-signup input[name=display_name]", "Grace")
    await page.fill("#buyer-signup input[name=email]", "grace@example.com")
    await page.click("#buyer-signup button[type=submit]")
    await page.locator("#buyer-name", has_text="Grace").wait_for()
    assert text(await page.text_content("#buyer-token")).startswith("mkt_")
    await page.locator("li.card", has_text=made["listing"]["title"]).get_by_role("button", name="Add to cart").click()
    assert not await page.is_visible("#checkout-form input[name=email]")  # the profile's email is used
    await screenshot(page, "storefront-signed-in-buyer")
    await page.click("#checkout-form button[type=submit]")
    await page.wait_for_url(f"{shop.stack.sandbox_url}/c/pay/**", timeout=TIMEOUT_MS)
    await pay_with_card(page, GOOD_CARD)
    await wait_for_success_page(page, shop)
    await headline(page, "Payment received, thank you")
    order_id = query_of(page.url)["order_id"]
    assert await stored_order_token(page, order_id) is None  # a buyer's order needs no order token
    row = await order_row(order_id)
    assert row["status"] == "paid"
    assert row["buyer"] is not None
