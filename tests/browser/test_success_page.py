"""The success page's words for every outcome, each produced for real on the sandbox (a bank debit
processing then failing, an expired session, an oversell), and its polling: backoff, Retry-After."""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import pytest

from tests.browser.conftest import Browser, Shop, screenshot
from tests.browser.helpers import (
    GOOD_CARD,
    TIMEOUT_MS,
    add_to_cart,
    buy,
    check_out,
    headline,
    open_storefront,
    order_row,
    outbox_kinds,
    pay_with_card,
    query_of,
    seller_with_listing,
    stored_order_token,
    text,
    wait_for_success_page,
)

pytestmark = pytest.mark.integration


async def checked_out_order(page: Any, shop: Shop) -> str:
    """The order the cart was last checked out as (read back on the shop's origin, from its cart)."""
    await page.goto(shop.page_url("/"))
    order_id: str = await page.evaluate("JSON.parse(localStorage.getItem('shop.cart.v1')).order_id")
    return order_id


async def test_a_bank_debit_says_processing_then_failed(shop: Shop, browser: Browser) -> None:
    made = await seller_with_listing(shop, "platform_managed", unit_amount=5000)
    page = await browser.new_page()
    await buy(page, shop, made["listing"]["title"])
    await page.get_by_role("button", name="Pay with bank debit").click()
    await wait_for_success_page(page, shop)
    await headline(page, "Your bank payment is processing; we will email you")
    await screenshot(page, "success-processing")
    order_id = query_of(page.url)["order_id"]
    row = await order_row(order_id)
    assert row["status"] == "processing"
    await shop.stack.control.fail_bank_debit(row["checkout_session_id"])
    await shop.stack.eventually(lambda: order_row(order_id), lambda r: r["status"] == "failed")
    await page.reload()
    await headline(page, "The payment failed")
    assert "Nothing was charged" in text(await page.text_content("#detail"))
    await screenshot(page, "success-failed")


async def test_an_expired_checkout_says_so(shop: Shop, browser: Browser) -> None:
    made = await seller_with_listing(shop, "seller_managed")
    page = await browser.new_page()
    await buy(page, shop, made["listing"]["title"])
    order_id = await checked_out_order(page, shop)
    row = await order_row(order_id)
    await shop.stack.control.expire_session(row["checkout_session_id"], stripe_account=made["account_id"])
    await page.goto(shop.page_url(f"/success?order_id={order_id}&session_id={row['checkout_session_id']}"))
    await headline(page, "This checkout expired")
    assert (await order_row(order_id))["status"] == "expired"
    assert await page.evaluate("localStorage.getItem('shop.cart.v1')") is not None  # kept to try again
    await screenshot(page, "success-expired")


async def test_the_last_one_bought_twice_tells_the_second_buyer_they_are_refunded(shop: Shop, browser: Browser) -> None:
    made = await seller_with_listing(shop, "platform_managed", unit_amount=2000, stock=1)
    title = made["listing"]["title"]
    first = await browser.new_page()
    await open_storefront(first, shop)
    await add_to_cart(first, title)
    await check_out(first, shop, "first@example.com")
    # A second buyer (another email) with the same cart in another tab: stock is checked, not taken.
    second = await browser.new_page()
    await open_storefront(second, shop)
    await check_out(second, shop, "second@example.com")
    assert first.url != second.url
    await pay_with_card(first, GOOD_CARD)
    await wait_for_success_page(first, shop)
    await headline(first, "Payment received, thank you")
    await pay_with_card(second, GOOD_CARD)
    await wait_for_success_page(second, shop)
    await headline(second, "Sorry, this sold out: you have been refunded in full")
    await screenshot(second, "success-oversold")
    order_id = query_of(second.url)["order_id"]
    assert (await order_row(order_id))["status"] == "oversold"
    await shop.stack.quiesce()
    assert "order.fulfil" not in await outbox_kinds(order_id)


def order_body(order_id: str, status: str) -> dict[str, Any]:
    return {
        "id": order_id,
        "status": status,
        "seller_id": str(uuid.uuid4()),
        "charge_type": "destination",
        "currency": "jpy",
        "subtotal": 3000,
        "application_fee": 300,
        "total": 3000,
        "lines": [
            {"listing_id": str(uuid.uuid4()), "title": "Tea bowl", "unit_amount": 1500, "quantity": 2, "amount": 3000}
        ],
        "checkout_url": None,
        "checkout_expires_at": "2026-12-01T00:00:00Z",
        "status_reason": None,
        "stripe_error_code": None,
        "created_at": "2026-12-01T00:00:00Z",
        "updated_at": "2026-12-01T00:00:00Z",
        "amount_paid": 3000 if status == "paid" else None,
        "amount_discount": 0 if status == "paid" else None,
        "paid_at": None,
    }


# Records the delay of every timer the page sets (the success page sets them only to wait between its
# verify calls): its schedule as it asks for it, whatever the machine does to the timers' firing.
RECORD_TIMERS = """(() => {
  const setTimeout = window.setTimeout;
  window.__timerDelays = [];
  window.setTimeout = function (callback, delay, ...rest) {
    window.__timerDelays.push(delay);
    return setTimeout.call(this, callback, delay, ...rest);
  };
})()"""


async def test_the_page_backs_off_and_honours_retry_after(shop: Shop, browser: Browser) -> None:
    """The verify answers are played by the browser's network layer: a 429 with Retry-After, pending,
    pending, then paid. The page waits as told, then 0.5 s, then 1 s; it sends the session id and token.
    The waits are asserted as the page asks for them (its timers' delays) and, in real time, as lower
    bounds only: how late a timer fires on a loaded machine is not the page's doing."""
    order_id, token = str(uuid.uuid4()), "ord_test_token"
    calls: list[tuple[float, Any, str | None]] = []
    answers = [
        (
            429,
            {"type": "urn:marketplace:problem:too-many-requests", "title": "Too many requests"},
            {"Retry-After": "2"},
        ),
        (200, order_body(order_id, "pending"), {}),
        (200, order_body(order_id, "pending"), {}),
        (200, order_body(order_id, "paid"), {}),
    ]

    async def play(route: Any, request: Any) -> None:
        calls.append((time.monotonic(), request.post_data_json, request.headers.get("x-order-token")))
        status, body, headers = answers[min(len(calls), len(answers)) - 1]
        content_type = "application/problem+json" if status >= 400 else "application/json"
        await route.fulfill(status=status, json=body, headers={**headers, "content-type": content_type})

    page = await browser.new_page()
    await page.route(f"**/orders/{order_id}/verify", play)
    await page.goto(shop.page_url("/"))
    await page.evaluate("([id, t]) => localStorage.setItem('shop.order-token.' + id, t)", [order_id, token])
    await page.add_init_script(RECORD_TIMERS)
    await page.goto(shop.page_url(f"/success?order_id={order_id}&session_id=cs_test_abc"))
    assert text(await page.text_content("#headline")) == "Confirming your payment…"
    await screenshot(page, "success-confirming")
    await headline(page, "Payment received, thank you")
    assert text(await page.text_content("#order-total")) == "¥3,000"
    assert [c[1:] for c in calls] == [({"session_id": "cs_test_abc"}, token)] * 4
    # Retry-After: 2 (the 429 does not grow the backoff), then 0.5 s, then doubling; and once the order
    # is paid (final) no further wait: the page stopped polling.
    assert await page.evaluate("window.__timerDelays") == [2000, 500, 1000]
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(calls)]
    assert gaps[0] >= 1.9, gaps
    assert gaps[1] >= 0.4, gaps
    assert gaps[2] >= 0.9, gaps
    assert await stored_order_token(page, order_id) == token
    assert len(calls) == 4


async def test_an_order_this_browser_may_not_see_is_not_found(shop: Shop, browser: Browser) -> None:
    made = await seller_with_listing(shop)
    page = await browser.new_page()
    await buy(page, shop, made["listing"]["title"])
    order_id = await checked_out_order(page, shop)
    await page.evaluate("(id) => localStorage.setItem('shop.order-token.' + id, 'ord_not_the_token')", order_id)
    await page.goto(shop.page_url(f"/success?order_id={order_id}"))
    await headline(page, "We could not find this order")
    await page.locator("a", has_text="Back to the shop").wait_for(timeout=TIMEOUT_MS)
