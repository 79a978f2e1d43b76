"""What a person does on the pages, step by step, for the browser tests (Playwright, async)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from marketplace.lib.db import connection
from tests.browser.conftest import Shop
from tests.e2e.test_checkout import active_seller, listing

GOOD_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
PROFILES = [("platform_managed", "destination"), ("seller_managed", "direct")]
TIMEOUT_MS = 60_000  # a wait for something that comes within seconds even on a loaded machine


def unique(title: str) -> str:
    return f"{title} {uuid.uuid4().hex[:6]}"


def text(value: str | None) -> str:
    """Intl puts no-break spaces in some formats ("KWD 1.250"): compare with plain spaces."""
    return (value or "").replace("\xa0", " ").replace("\u202f", " ").strip()


async def seller_with_listing(shop: Shop, profile: str = "platform_managed", **fields: Any) -> dict[str, Any]:
    """An active seller (onboarded through the API and the sandbox) with one listing on sale."""
    auth, seller, account_id = await active_seller(shop.stack, profile)
    item = await listing(shop.stack, auth, **{"title": unique("Hand-thrown mug"), **fields})
    return {"auth": auth, "seller": seller, "account_id": account_id, "listing": item}


def card_of(page: Any, title: str) -> Any:
    return page.locator("li.card", has=page.locator("h3", has_text=re.compile(f"^{re.escape(title)}$")))


async def open_storefront(page: Any, shop: Shop) -> None:
    await page.goto(shop.page_url("/"))
    await page.wait_for_selector("#listing-grid li.card, #listings-status:not([hidden])")


async def add_to_cart(page: Any, title: str) -> None:
    await card_of(page, title).get_by_role("button", name="Add to cart").click()


async def check_out(page: Any, shop: Shop, email: str = "guest@example.com") -> None:
    """Fill the cart's email and check out; returns on Stripe's (the sandbox's) hosted Checkout page."""
    await page.fill("#checkout-form input[name=email]", email)
    await page.click("#checkout-form button[type=submit]")
    await page.wait_for_url(f"{shop.stack.sandbox_url}/c/pay/**", timeout=TIMEOUT_MS)


async def buy(page: Any, shop: Shop, title: str, email: str = "guest@example.com") -> None:
    await open_storefront(page, shop)
    await add_to_cart(page, title)
    await check_out(page, shop, email)


async def pay_with_card(page: Any, card: str) -> None:
    await page.fill("input[name=card]", card)
    await page.get_by_role("button", name="Pay", exact=True).click()


async def wait_for_success_page(page: Any, shop: Shop) -> None:
    await page.wait_for_url(f"{shop.url}/shop/success?*", timeout=TIMEOUT_MS)


async def headline(page: Any, wanted: str) -> None:
    """Wait until the success page's headline says `wanted`."""
    await page.locator("#headline", has_text=wanted).wait_for(timeout=TIMEOUT_MS)


def query_of(url: str) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(url).query))


async def order_row(order_id: str) -> dict[str, Any]:
    async with connection() as conn:
        row = await conn.fetchrow("SELECT * FROM orders WHERE id = $1", uuid.UUID(order_id))
    assert row is not None
    return dict(row)


async def outbox_kinds(order_id: str) -> list[str]:
    """The outbox rows the order's confirmation wrote (unique per order and kind): one set per winner."""
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT kind FROM outbox_messages WHERE dedupe_key LIKE $1 ORDER BY kind", f"order:{order_id}:%"
        )
    return [r["kind"] for r in rows]


async def stored_order_token(page: Any, order_id: str) -> str | None:
    token: str | None = await page.evaluate("(id) => localStorage.getItem('shop.order-token.' + id)", order_id)
    return token


async def sign_in_as_seller(page: Any, shop: Shop, auth: dict[str, str]) -> None:
    await page.goto(shop.page_url("/seller"))
    await page.fill("#signin-form input[name=token]", auth["Authorization"].removeprefix("Bearer "))
    await page.click("#signin-form button[type=submit]")
    await page.wait_for_selector("#signed-in:not([hidden])")
