"""The `/shop` router: four pages, their static files, a not-found page, and the currency table the pages format with.

Nothing here reads the database or calls Stripe: the pages are files, and everything they show comes
from the public JSON API, called by the browser as any platform frontend would. The files are read once
when the router is built and served from memory by name (no path is ever joined from a request), and
every answer under `/shop`, a 404 included, carries the security headers (`marketplace.shop.headers`).
"""

from __future__ import annotations

import json
from pathlib import Path

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.router import Router

from connect.currencies import MAXIMUM_AMOUNT, SUPPORTED_CURRENCIES, amount_step, decimals, minimum_charge
from marketplace.shop.headers import security_headers

PATH = "/shop"
STATIC = Path(__file__).parent / "static"
PAGES = {"/": "storefront.html", "/success": "success.html", "/cancel": "cancel.html", "/seller": "seller.html"}
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}


def currencies_module() -> str:
    """An ES module of Stripe's rules per supported currency, in minor units: the exponent (JPY 0, KWD 3),
    the step every amount is a multiple of (KWD 10), the minimum charge, and the maximum amount."""
    codes = sorted(SUPPORTED_CURRENCIES)
    tables = {
        "EXPONENTS": {code: decimals(code) for code in codes},
        "STEPS": {code: amount_step(code) for code in codes},
        "MINIMUMS": {code: minimum_charge(code) for code in codes},
    }
    lines = [f"export const {name} = Object.freeze({json.dumps(table)});" for name, table in tables.items()]
    return "\n".join([*lines, f"export const MAXIMUM_AMOUNT = {MAXIMUM_AMOUNT};", ""])


def _page(path: str, filename: str) -> HTTPRouteHandler:
    document = (STATIC / filename).read_bytes()

    @get(path, name=f"shop:{filename}", include_in_schema=False, sync_to_thread=False)
    def page() -> Response[bytes]:
        return Response(document, media_type=MEDIA_TYPES[".html"])

    return page


def _assets() -> dict[str, tuple[bytes, str]]:
    """Every file of `static/assets` by name, with its media type; the currency table as `currencies.js`."""
    files = {
        file.name: (file.read_bytes(), MEDIA_TYPES[file.suffix])
        for file in sorted((STATIC / "assets").iterdir())
        if file.suffix in MEDIA_TYPES
    }
    files["currencies.js"] = (currencies_module().encode(), MEDIA_TYPES[".js"])
    return files


def not_found() -> Response[bytes]:
    """A missing file (a script, a stylesheet): a plain 404, as nobody reads it."""
    return Response(b"Not found\n", status_code=404, media_type="text/plain")


def shop_router() -> Router:
    """The `/shop` router: the pages, their files, the currency table and a not-found page, all with the headers."""
    assets = _assets()
    not_found_page = (STATIC / "not-found.html").read_bytes()

    @get("/currencies.js", name="shop:currencies", include_in_schema=False, sync_to_thread=False)
    def currencies() -> Response[bytes]:
        content, media_type = assets["currencies.js"]
        return Response(content, media_type=media_type)

    @get("/assets/{name:str}", name="shop:asset", include_in_schema=False, sync_to_thread=False)
    def asset(name: FromPath[str]) -> Response[bytes]:
        found = assets.get(name)
        return not_found() if found is None else Response(found[0], media_type=found[1])

    @get("/{rest:path}", name="shop:not-found", include_in_schema=False, sync_to_thread=False)
    def other(rest: FromPath[str]) -> Response[bytes]:
        # Any other path under /shop is a page a person asked for: a page saying so, with the way back.
        return Response(not_found_page, status_code=404, media_type=MEDIA_TYPES[".html"])

    return Router(
        path=PATH,
        route_handlers=[*(_page(path, filename) for path, filename in PAGES.items()), currencies, asset, other],
        response_headers=security_headers(),
        include_in_schema=False,
    )
