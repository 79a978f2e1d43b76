"""The pages' security: the headers on every /shop answer, no inline script or style, API data shown as
text, no CSP violation in the browser, and the setting that turns the pages off."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

from marketplace.lib.settings import SettingsError, load_settings
from marketplace.shop.headers import SECURITY_HEADERS
from marketplace.shop.routes import STATIC
from tests.browser.conftest import Browser, Shop, screenshot
from tests.browser.helpers import open_storefront, seller_with_listing, text

pytestmark = pytest.mark.integration

PATHS = [
    "/shop",
    "/shop/",
    "/shop/success?order_id=x&session_id=cs_test",
    "/shop/cancel",
    "/shop/seller",
    "/shop/currencies.js",
    "/shop/assets/common.js",
    "/shop/assets/shop.css",
    "/shop/assets/favicon.svg",
    "/shop/assets/missing.js",
    "/shop/no/such/page",
]


@pytest.mark.parametrize("path", PATHS)
async def test_every_shop_answer_carries_the_security_headers(shop: Shop, path: str) -> None:
    response = await shop.api.get(path)
    assert response.status_code == (404 if "missing" in path or "no/such" in path else 200)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] in ("same-origin", "no-referrer", "strict-origin-when-cross-origin")


def test_the_pages_have_no_inline_script_or_style_and_no_html_sinks() -> None:
    for page in STATIC.glob("*.html"):
        html = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), page.name  # every script is a file
        assert "<style" not in html, page.name
        assert " style=" not in html, page.name
        assert not re.search(r"\son[a-z]+=", html), page.name  # no inline event handlers
    for script in (STATIC / "assets").glob("*.js"):
        source = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in source, f"{script.name} uses {sink}"


def test_no_page_has_a_card_field() -> None:
    for page in STATIC.glob("*.html"):
        assert not re.search(r"<input[^>]*(card|cc-|cvc|cvv)", page.read_text(), re.IGNORECASE), page.name


async def test_the_pages_load_without_a_csp_violation(shop: Shop, browser: Browser) -> None:
    made = await seller_with_listing(shop, description='<img src=x onerror="alert(1)"> & <script>alert(2)</script>')
    page = await browser.new_page()
    await open_storefront(page, shop)
    card = page.locator("li.card", has_text=made["listing"]["title"])
    # API data is text: the markup in the description is shown, not run or parsed.
    assert text(await card.locator(".description").text_content()).startswith('<img src=x onerror="alert(1)">')
    assert await card.locator("img, script").count() == 0
    for path, ready in [
        ("/seller", "#signup-form"),
        (f"/cancel?order_id={uuid.uuid4()}", "#cart-body"),
        (f"/success?order_id={uuid.uuid4()}&session_id=cs_test_x", "#headline"),
    ]:
        await page.goto(shop.page_url(path))
        await page.wait_for_selector(ready)
        await page.wait_for_load_state("networkidle")
    assert "cannot show this order" in text(await page.text_content("#headline"))  # no token in this browser
    await screenshot(page, "success-no-token")
    await page.goto(shop.page_url(f"/cancel?order_id={uuid.uuid4()}"))
    await page.wait_for_load_state("networkidle")
    await screenshot(page, "cancel-empty-cart")
    assert browser.violations() == [], browser.violations()
    assert browser.errors == []
    assert [m for m in browser.console if m.startswith("error")] == []

    # The policy is enforced, and the listener hears it: markup assigned as HTML throws (Trusted Types),
    # an injected inline style and a third-party stylesheet are refused.
    refused = await page.evaluate(
        """() => {
          const refused = [];
          for (const attempt of [
            () => { document.createElement("div").innerHTML = "<b>x</b>"; },
            () => { const s = document.createElement("script"); s.textContent = "window.ran = 1"; },
          ]) {
            try { attempt(); } catch (e) { refused.push(e.name); }
          }
          const style = document.createElement("style");
          style.append(document.createTextNode("body { background: red }"));
          document.head.append(style);
          const link = document.createElement("link");
          link.rel = "stylesheet";
          link.href = "https://cdn.example.com/evil.css";
          document.head.append(link);
          return refused;
        }"""
    )
    assert refused == ["TypeError", "TypeError"]
    # The console messages come in asynchronously: wait until both are heard (the deadline only ends a
    # wait for a message that never comes).
    deadline = time.monotonic() + 30
    while not all(word in " ".join(browser.violations()) for word in ("require-trusted-types-for", "style-src")):
        assert time.monotonic() < deadline, browser.violations()
        await page.wait_for_timeout(50)


async def test_the_pages_are_off_when_shop_enabled_is_false(shop: Shop) -> None:
    async with shop.stack.api_with(shop_enabled=False) as api:
        for path in ("/shop/", "/shop/seller", "/shop/assets/common.js"):
            assert (await api.get(path)).status_code == 404
        assert (await api.get("/listings")).status_code == 200  # the API itself is unchanged


BASE = {
    "DATABASE_URL": "postgresql://u@127.0.0.1/db",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "STRIPE_SECRET_KEY": "sk_test_x",
}
PRODUCTION = {
    **BASE,
    "APP_ENV": "production",
    "STRIPE_WEBHOOK_SECRET_PLATFORM": "whsec_a",
    "STRIPE_WEBHOOK_SECRET_CONNECT": "whsec_b",
    "PUBLIC_BASE_URL": "https://market.example",
    "SHOP_ENABLED": "true",
}


def test_shop_enabled_defaults_by_environment_and_the_seller_page_is_the_return_url() -> None:
    assert load_settings({**BASE, "APP_ENV": "development"}).shop_enabled is True
    assert load_settings({**BASE, "APP_ENV": "test"}).shop_enabled is True
    frontend = {
        "SHOP_ENABLED": "",
        "CHECKOUT_SUCCESS_URL": "https://market.example/thanks",
        "CHECKOUT_CANCEL_URL": "https://market.example/cart",
        "SELLER_RETURN_URL": "https://market.example/sell",
    }
    assert load_settings({k: v for k, v in {**PRODUCTION, **frontend}.items() if v}).shop_enabled is False
    assert load_settings(PRODUCTION).shop_enabled is True
    assert load_settings({**BASE, "SHOP_ENABLED": "false"}).shop_enabled is False
    assert load_settings(PRODUCTION).seller_return_url == "https://market.example/shop/seller"
    assert load_settings({**BASE, "PORT": "9000"}).seller_return_url == "http://127.0.0.1:9000/shop/seller"
    with pytest.raises(SettingsError, match="SHOP_ENABLED must be true or false"):
        load_settings({**BASE, "SHOP_ENABLED": "maybe"})


def test_the_artifacts_folder_is_ignored_by_git() -> None:
    ignored = (Path(__file__).parents[2] / ".gitignore").read_text().splitlines()
    assert "tests/browser/artifacts/" in ignored
