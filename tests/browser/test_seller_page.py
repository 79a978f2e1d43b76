"""The seller page in Chromium: sign up, onboard through Stripe's (the sandbox's) hosted form, land back on
the page, which shows the account's state as the API reads it; list something; leave onboarding early."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.browser.conftest import Browser, Shop, screenshot
from tests.browser.helpers import PROFILES, TIMEOUT_MS, sign_in_as_seller, text, unique
from tests.e2e.test_onboarding import sign_up

pytestmark = pytest.mark.integration


async def sign_up_on_the_page(page: Any, shop: Shop, profile: str) -> str:
    """Fill and send the sign-up form; returns the seller token the page shows once."""
    await page.goto(shop.page_url("/seller"))
    await page.wait_for_selector("#signup-form")
    await page.fill("#signup-form input[name=display_name]", unique("Ada Crafts"))
    await page.fill("#signup-form input[name=email]", f"ada-{uuid.uuid4().hex[:8]}@example.com")
    await page.select_option("#signup-form select[name=account_profile]", profile)
    await page.click("#signup-form button[type=submit]")
    await page.wait_for_selector("#token-once:not([hidden])")
    token = text(await page.text_content("#token-value"))
    assert token.startswith("mkt_")
    assert await page.evaluate("sessionStorage.getItem('shop.seller-token')") == token
    await page.locator("#account-status", has_text="not connected").wait_for()
    return token


async def onboard_on_the_sandbox(page: Any, shop: Shop, action: str) -> None:
    """Start onboarding from the page, submit the sandbox's hosted form, and land back on the page."""
    await page.get_by_role("button", name="Connect with Stripe").click()
    await page.wait_for_url(f"{shop.stack.sandbox_url}/setup/**", timeout=TIMEOUT_MS)
    label = "Submit (complete onboarding)" if action == "complete" else "Save and finish later"
    await page.get_by_role("button", name=label, exact=False).click()
    await page.wait_for_url(f"{shop.url}/shop/seller*", timeout=TIMEOUT_MS)


@pytest.mark.parametrize(("profile", "charge_type"), PROFILES)
async def test_a_seller_signs_up_onboards_and_lands_back_active(
    shop: Shop, browser: Browser, profile: str, charge_type: str
) -> None:
    page = await browser.new_page()
    token = await sign_up_on_the_page(page, shop, profile)
    await screenshot(page, f"seller-signed-up-{charge_type}")
    await onboard_on_the_sandbox(page, shop, "complete")
    await page.locator("#account-status", has_text="active").wait_for(timeout=TIMEOUT_MS)
    assert page.url == shop.page_url("/seller")  # the query string said what happened; it is gone
    assert "Welcome back from Stripe" in text(await page.text_content("#page-message"))
    me = (await shop.api.get("/sellers/me", headers={"Authorization": f"Bearer {token}"})).json()
    assert me["connected_account"]["status"] == "active"
    assert me["connected_account"]["profile"] == profile

    # List something: a price typed in dollars is sent in cents.
    title = unique("Blue bowl")
    await page.fill("#listing-form input[name=title]", title)
    await page.fill("#listing-form textarea[name=description]", "Stoneware, <b>dishwasher</b> safe")
    await page.fill("#listing-form input[name=price]", "12.50")
    await page.fill("#listing-form input[name=stock]", "3")
    await page.click("#listing-form button[type=submit]")
    row = page.locator("#listings-table tbody tr", has_text=title)
    await row.wait_for()
    assert [text(c) for c in await row.locator("td").all_text_contents()] == [title, "$12.50", "3", "yes"]
    listed = (await shop.api.get("/sellers/me/listings", headers={"Authorization": f"Bearer {token}"})).json()
    assert [(x["title"], x["unit_amount"], x["stock"]) for x in listed["items"]] == [(title, 1250, 3)]
    await screenshot(page, f"seller-active-{charge_type}")
    assert browser.violations() == []
    assert browser.errors == []


async def test_leaving_onboarding_early_shows_restricted_and_what_is_due(shop: Shop, browser: Browser) -> None:
    page = await browser.new_page()
    await sign_up_on_the_page(page, shop, "platform_managed")
    await onboard_on_the_sandbox(page, shop, "later")
    await page.locator("#account-status", has_text="restricted").wait_for(timeout=TIMEOUT_MS)
    due = [await x.get_attribute("data-field") for x in await page.locator("#account-detail ul.due li").all()]
    assert due, "the fields Stripe still wants are listed"
    token = await page.evaluate("sessionStorage.getItem('shop.seller-token')")
    me = (await shop.api.get("/sellers/me", headers={"Authorization": f"Bearer {token}"})).json()
    assert me["connected_account"]["status"] == "restricted"
    assert set(due) <= set(
        me["connected_account"]["requirements"]["currently_due"] + me["connected_account"]["requirements"]["past_due"]
    )
    assert await page.get_by_role("button", name="Continue onboarding").is_visible()
    await screenshot(page, "seller-restricted")
    # A second tab (a new session) does not know the token: it asks to sign in, then shows the same state.
    other = await browser.context.new_page()
    await other.goto(shop.page_url("/seller?onboarding=returned&status=active"))
    await other.wait_for_selector("#signin-form")
    assert "Sign in with your seller token" in text(await other.text_content("#page-message"))
    await other.fill("#signin-form input[name=token]", token)
    await other.click("#signin-form button[type=submit]")
    await other.locator("#account-status", has_text="restricted").wait_for()  # the API's word, not the URL's


@pytest.mark.parametrize("outcome", ["constructor", "__proto__", "toString", "no-such-outcome"])
async def test_a_crafted_onboarding_outcome_in_the_link_still_shows_the_page(
    shop: Shop, browser: Browser, outcome: str
) -> None:
    """`?onboarding=` names a message of the page's own; a name Object.prototype has must not blank it."""
    page = await browser.new_page()
    await page.goto(shop.page_url(f"/seller?onboarding={outcome}"))
    await page.wait_for_selector("#signup-form", state="visible", timeout=TIMEOUT_MS)
    assert "Welcome back." in text(await page.text_content("#page-message"))
    assert browser.errors == []


# What each bad price must say: the words a person needs to type it right (the example in the form expected).
PRICE_ERRORS = [
    ("25,00", "usd", ["point", "25.00"]),  # a comma for decimals: the form expected
    ("1.235", "kwd", ["KWD", "3 decimals", "1.230"]),  # 3 decimals, but Stripe takes KWD in steps of 0.010
    ("999999999", "usd", ["USD", "999,999.99"]),  # over Stripe's maximum, said in dollars
]
LIBRARY_WORDS = ["cent", "minor", "unit_amount", "Expected", "`", "$.", "multiple", "must be"]


@pytest.mark.parametrize(("typed", "currency", "says"), PRICE_ERRORS)
async def test_a_bad_price_gets_one_sentence_saying_what_to_type(
    shop: Shop, browser: Browser, typed: str, currency: str, says: list[str]
) -> None:
    auth, _ = await sign_up(shop.stack)
    page = await browser.new_page()
    await sign_in_as_seller(page, shop, auth)
    await page.fill("#listing-form input[name=title]", unique("Brass tray"))
    await page.fill("#listing-form input[name=price]", typed)
    await page.select_option("#listing-form select[name=currency]", currency)
    await page.click("#listing-form button[type=submit]")
    shown = page.locator("#listings-message.bad")
    await shown.wait_for(timeout=TIMEOUT_MS)
    said = text(await shown.text_content())
    await screenshot(page, f"seller-price-error-{currency}-{typed.replace(',', '_').replace('.', '_')}")
    assert len(re.findall(r"[.!?](?=\s|$)", said)) == 1, said  # exactly one sentence
    assert said.endswith("."), said
    for words in says:
        assert words in said, said
    for words in LIBRARY_WORDS:
        assert words not in said, said
    listed = (await shop.api.get("/sellers/me/listings", headers=auth)).json()
    assert listed["items"] == []  # nothing was listed
    assert browser.errors == []


async def test_the_apis_reason_is_said_once(shop: Shop, browser: Browser) -> None:
    """A refusal whose detail already quotes its field's reason is not followed by the same words again."""
    auth, _ = await sign_up(shop.stack)
    page = await browser.new_page()
    await sign_in_as_seller(page, shop, auth)
    await page.fill("#listing-form input[name=title]", "\u200b")  # nothing visible: the API refuses it
    await page.fill("#listing-form input[name=price]", "25.00")
    await page.click("#listing-form button[type=submit]")
    shown = page.locator("#listings-message.bad")
    await shown.wait_for(timeout=TIMEOUT_MS)
    said = text(await shown.text_content())
    assert said.count("must contain a visible character") == 1, said
