"""The /shop pages in a real browser: Debian's Chromium driven by Playwright, against the e2e stack.

The stack is tests/e2e's (`stack`: a real API on a port, one worker, the sandbox with both webhook
endpoints registered). The pages are served by one more API process of the same platform (`shop`), on
a port chosen first so that its own URLs (the checkout success/cancel URLs, the seller return URL, the
onboarding redirects) point at itself: the browser stays on one origin, as with a deployed frontend.
Webhooks still go to the stack's API; everything shares the database, Redis and the worker.

Without a Chromium on the machine (or without Playwright) nothing here is collected, and the run says
so in one line at its end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from marketplace.lib.settings import Settings
from marketplace.server.app import create_app
from tests.conftest import free_port, serve, with_settings
from tests.e2e.conftest import Stack, stack  # noqa: F401  (the fixture, shared with this package)

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
# Reports every CSP violation on our pages to the console, where the test collects it (Playwright's init
# scripts are injected by the browser itself, so this one is not subject to the page's CSP).
VIOLATION_REPORTER = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} on ${e.documentURI}`);
});
"""


def _why_skip() -> str | None:
    if CHROMIUM is None:
        return "no chromium on this machine (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


SKIP_REASON = _why_skip()
if SKIP_REASON:  # nothing here is collected; the run says why in one line at its end
    collect_ignore_glob = ["test_*.py"]

    def pytest_terminal_summary(terminalreporter: Any) -> None:
        terminalreporter.write_line(f"tests/browser skipped: {SKIP_REASON}", yellow=True)


@dataclass
class Shop:
    """The API process serving the pages, on its own origin."""

    url: str
    api: httpx.AsyncClient
    settings: Settings
    stack: Stack

    def page_url(self, path: str) -> str:
        return f"{self.url}/shop{path}"


@pytest.fixture(scope="package")
async def shop(stack: Stack) -> AsyncIterator[Shop]:  # noqa: F811
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = with_settings(
        stack.settings,
        public_base_url=url,
        seller_return_url=f"{url}/shop/seller",
        checkout_success_url=f"{url}/shop/success",
        checkout_cancel_url=f"{url}/shop/cancel",
        allowed_redirect_origins=(url,),
        allow_seller_account_profile=True,  # the sign-up form offers both profiles (both charge types)
        checkout_allow_promotion_codes=True,
        shop_enabled=True,
    )
    server, task = await serve(create_app(settings), port)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            yield Shop(url=url, api=api, settings=settings, stack=stack)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


@pytest.fixture(scope="package")
async def playwright_driver() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    driver = await async_playwright().start()
    yield driver
    await driver.stop()


@dataclass
class Browser:
    """One fresh Chromium profile (its own user-data dir), and what its pages said on the console."""

    context: Any
    console: list[str] = field(default_factory=list)  # "type: text (url)" of every message
    errors: list[str] = field(default_factory=list)  # uncaught exceptions in our pages

    async def new_page(self) -> Any:
        return await self.context.new_page()  # watched: the context's "page" event below

    def watch(self, page: Any) -> None:
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text} ({m.location.get('url', '')})"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def violations(self) -> list[str]:
        return [m for m in self.console if "CSP violation" in m or "Content Security Policy" in m]


@pytest.fixture
async def browser(playwright_driver: Any) -> AsyncIterator[Browser]:
    profile = tempfile.mkdtemp(prefix="marketplace-chromium-")
    try:
        context = await playwright_driver.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=LAUNCH_ARGS,
            locale="en-US",
            timezone_id="UTC",
            viewport={"width": 1200, "height": 900},
        )
        await context.add_init_script(VIOLATION_REPORTER)
        session = Browser(context=context)
        context.on("page", session.watch)  # pages the site opens itself
        try:
            yield session
        finally:
            await context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


async def screenshot(page: Any, name: str) -> Path:
    """Save the whole page as tests/browser/artifacts/<name>.png (gitignored) to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
