"""Pages a person reaches by mistake or on the way: an unknown /shop address, and the sandbox's hosted pages
(Stripe's Checkout and onboarding stand-ins), which must not make the browser fetch what is not there."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from marketplace.shop.headers import SECURITY_HEADERS
from tests.browser.conftest import CHROMIUM, LAUNCH_ARGS, Browser, Shop, screenshot
from tests.browser.helpers import TIMEOUT_MS, add_to_cart, check_out, open_storefront, seller_with_listing, text
from tests.e2e.test_onboarding import create_account, sign_up

pytestmark = pytest.mark.integration


async def test_an_unknown_shop_address_is_a_not_found_page_with_a_way_back(shop: Shop, browser: Browser) -> None:
    page = await browser.new_page()
    response = await page.goto(shop.page_url("/nope"))
    assert response.status == 404
    assert (await response.all_headers())["content-security-policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    heading = page.get_by_role("heading", level=1)
    assert "not found" in text(await heading.text_content()).lower()
    back = page.get_by_role("link", name="Back to the shop")
    assert await back.get_attribute("href") == "/shop/"
    await screenshot(page, "not-found")
    await back.click()
    await page.wait_for_url(shop.page_url("/"))
    await page.wait_for_selector("#listing-grid li.card, #listings-status:not([hidden])")
    assert browser.violations() == []
    assert browser.errors == []


@dataclass
class NetLog:
    """Every request a Chromium made, its own included (the favicon is fetched by the browser, not the page,
    so Playwright's request events never see it), read from its net log once the browser has closed."""

    path: Path

    def answers(self) -> list[tuple[str, int]]:
        """(url, HTTP status) of every request that got an answer."""
        log = json.loads(self.path.read_text())
        kinds = {name: number for name, number in log["constants"]["logEventTypes"].items()}
        urls: dict[int, str] = {}
        statuses: dict[int, int] = {}
        for event in log["events"]:
            source, params = event["source"]["id"], event.get("params", {})
            if event["type"] == kinds["URL_REQUEST_START_JOB"] and "url" in params:  # its begin, not its end
                urls[source] = params["url"]
            elif event["type"] == kinds["HTTP_TRANSACTION_READ_RESPONSE_HEADERS"]:
                statuses[source] = int(params["headers"][0].split()[1])  # "HTTP/1.1 404 Not Found"
        return [(url, statuses[source]) for source, url in urls.items() if source in statuses]


@asynccontextmanager
async def logged_browser(playwright_driver: Any, tmp_path: Path) -> AsyncIterator[tuple[Any, NetLog]]:
    """A fresh Chromium like the `browser` fixture's, writing its net log."""
    net_log = NetLog(tmp_path / "net-log.json")
    context = await playwright_driver.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=[*LAUNCH_ARGS, f"--log-net-log={net_log.path}"],
        locale="en-US",
    )
    try:
        yield context, net_log
    finally:
        await context.close()  # the net log is complete once the browser has exited


async def settled(page: Any) -> None:
    """Loaded, and a moment more: Chromium asks for a page's icon just after it has loaded. A slow machine
    can only make this miss a regression, never fail a page that is right."""
    await page.wait_for_load_state("load")
    await page.wait_for_timeout(1000)


def failed_on(net_log: NetLog, origin: str) -> list[tuple[str, int]]:
    return [(url, status) for url, status in net_log.answers() if url.startswith(origin) and status >= 400]


async def test_the_sandboxs_checkout_page_makes_no_failed_request(
    shop: Shop, playwright_driver: Any, tmp_path: Path
) -> None:
    made = await seller_with_listing(shop)
    async with logged_browser(playwright_driver, tmp_path) as (context, net_log):
        page = await context.new_page()
        await open_storefront(page, shop)
        await add_to_cart(page, made["listing"]["title"])
        await check_out(page, shop)
        await page.locator("input[name=card]").wait_for(timeout=TIMEOUT_MS)
        await settled(page)
    visited = [url for url, _ in net_log.answers() if url.startswith(f"{shop.stack.sandbox_url}/c/pay/")]
    assert visited, "the net log saw the Checkout page"
    assert failed_on(net_log, shop.stack.sandbox_url) == []


async def test_the_sandboxs_onboarding_page_makes_no_failed_request(
    shop: Shop, playwright_driver: Any, tmp_path: Path
) -> None:
    auth, _ = await sign_up(shop.stack)
    await create_account(shop.stack, auth)
    link = await shop.stack.api.post("/sellers/me/onboarding-link", headers=auth)
    assert link.status_code in (200, 201), link.text
    async with logged_browser(playwright_driver, tmp_path) as (context, net_log):
        page = await context.new_page()
        await page.goto(link.json()["url"])
        await page.wait_for_url(f"{shop.stack.sandbox_url}/setup/**", timeout=TIMEOUT_MS)
        await page.get_by_role("button", name="Save and finish later").wait_for()
        await settled(page)
    assert any(url.startswith(f"{shop.stack.sandbox_url}/setup/") for url, _ in net_log.answers())
    assert failed_on(net_log, shop.stack.sandbox_url) == []
