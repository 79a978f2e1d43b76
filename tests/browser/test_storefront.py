"""The storefront in Chromium: prices in each currency's minor units formatted right, stock, and a cart that
holds one seller's items (kept across reloads)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Browser, Shop, screenshot
from tests.browser.helpers import add_to_cart, card_of, open_storefront, seller_with_listing, text, unique
from tests.e2e.test_checkout import listing

pytestmark = pytest.mark.integration


async def test_prices_and_stock_are_shown_in_each_currencys_units(shop: Shop, browser: Browser) -> None:
    made = await seller_with_listing(shop, unit_amount=2500, currency="usd", stock=3)
    auth = made["auth"]
    titles = {
        "usd": made["listing"]["title"],
        "jpy": unique("Tea bowl"),
        "krw": unique("Celadon cup"),
        "kwd": unique("Brass tray"),
        "eur": unique("Linen towel"),
    }
    await listing(shop.stack, auth, title=titles["jpy"], unit_amount=1500, currency="jpy", stock=None)
    await listing(shop.stack, auth, title=titles["krw"], unit_amount=12000, currency="krw", stock=1)
    await listing(shop.stack, auth, title=titles["kwd"], unit_amount=1250, currency="kwd", stock=2)
    await listing(shop.stack, auth, title=titles["eur"], unit_amount=999, currency="eur", stock=0)
    page = await browser.new_page()
    await open_storefront(page, shop)

    async def shown(currency: str) -> tuple[str, str]:
        card = card_of(page, titles[currency])
        return text(await card.locator(".price").text_content()), text(await card.locator(".stock").text_content())

    assert await shown("usd") == ("$25.00", "3 in stock")
    assert await shown("jpy") == ("¥1,500", "In stock (unlimited)")  # zero-decimal: 1500 is ¥1,500
    assert await shown("krw") == ("₩12,000", "1 in stock")
    assert await shown("kwd") == ("KWD 1.250", "2 in stock")  # three decimals: 1250 fils
    assert await shown("eur") == ("€9.99", "Sold out")
    assert await card_of(page, titles["eur"]).get_by_role("button", name="Add to cart").is_disabled()
    await screenshot(page, "storefront")
    assert browser.violations() == []
    assert browser.errors == []


async def test_the_cart_holds_one_sellers_items_and_survives_a_reload(shop: Shop, browser: Browser) -> None:
    first = await seller_with_listing(shop, unit_amount=1200, stock=2)
    second = await seller_with_listing(shop, unit_amount=800)
    mine, theirs = first["listing"]["title"], second["listing"]["title"]
    page = await browser.new_page()
    await open_storefront(page, shop)
    await add_to_cart(page, mine)
    await add_to_cart(page, mine)
    assert text(await page.text_content("#cart-total")) == "$24.00"
    await add_to_cart(page, mine)  # a third: only 2 in stock
    assert "Only 2" in text(await page.text_content("#cart-message"))
    await add_to_cart(page, theirs)
    assert "another seller" in text(await page.text_content("#cart-message"))
    assert [text(t) for t in await page.locator("#cart-body .cart-lines .title").all_text_contents()] == [mine]
    await screenshot(page, "storefront-cart-one-seller")
    await page.reload()
    await page.locator("#cart-body .cart-lines .title", has_text=mine).wait_for()
    assert text(await page.text_content("#cart-total")) == "$24.00"
    # Emptied, it takes the other seller's item.
    await page.get_by_role("button", name="Empty cart").click()
    await add_to_cart(page, theirs)
    assert [text(t) for t in await page.locator("#cart-body .cart-lines .title").all_text_contents()] == [theirs]
    assert browser.violations() == []
    assert browser.errors == []


async def test_a_long_unbroken_word_stays_inside_its_card(shop: Shop, browser: Browser) -> None:
    """80 "W"s with no space in a title and a description: wrapped inside the card, no card overlapping
    another or the cart beside the grid."""
    word = "W" * 80
    made = await seller_with_listing(shop, title=unique(word), description=f"Made by {word} in the workshop")
    await listing(shop.stack, made["auth"], title=unique("Small jug"), description="A plain neighbour")
    page = await browser.new_page()
    await open_storefront(page, shop)
    card = card_of(page, made["listing"]["title"])
    await card.wait_for()
    await screenshot(page, "storefront-long-word")
    boxes = await page.evaluate(
        """() => [...document.querySelectorAll('#listing-grid li.card')].map((c) => {
             const r = c.getBoundingClientRect();
             const parts = [...c.children].map((p) => {
               const b = p.getBoundingClientRect();
               return {tag: p.tagName, left: b.left, right: b.right, scroll: p.scrollWidth, client: p.clientWidth};
             });
             return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, parts,
                     scroll: c.scrollWidth, client: c.clientWidth};
           })"""
    )
    assert len(boxes) >= 2
    cart = await page.locator("#cart").bounding_box()
    boxes.append(
        {
            "left": cart["x"],
            "right": cart["x"] + cart["width"],
            "top": cart["y"],
            "bottom": cart["y"] + cart["height"],
            "parts": [],
            "scroll": 0,
            "client": 0,
        }
    )
    for box in boxes:
        assert box["scroll"] <= box["client"], box  # nothing sticks out of the card
        for part in box["parts"]:
            assert box["left"] <= part["left"], part  # title, description, price, stock, button
            assert part["right"] <= box["right"], part
            assert part["scroll"] <= part["client"] or part["tag"] == "BUTTON", part
    for i, one in enumerate(boxes):
        for other in boxes[i + 1 :]:  # no two cards share any area
            apart = (
                one["right"] <= other["left"]
                or other["right"] <= one["left"]
                or one["bottom"] <= other["top"]
                or other["bottom"] <= one["top"]
            )
            assert apart, (one, other)
    assert browser.violations() == []
    assert browser.errors == []
