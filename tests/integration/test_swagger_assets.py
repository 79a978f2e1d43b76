"""Swagger UI works offline: its page references only this app, and the app serves every asset it names."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx

Client = httpx.AsyncClient
CONTENT_TYPES = {
    ".js": {"text/javascript", "application/javascript"},
    ".css": {"text/css"},
    ".png": {"image/png"},
}


class References(HTMLParser):
    """Every URL the page makes the browser load: `src` of any tag, `href` of `<link>`."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (name == "src" or (tag == "link" and name == "href")):
                self.urls.append(value)


async def swagger_references(client: Client) -> list[str]:
    page = await client.get("/schema/swagger")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert not re.search(r"unpkg|jsdelivr|cdnjs|googleapis", page.text, re.IGNORECASE)
    parser = References()
    parser.feed(page.text)
    return parser.urls


async def test_the_swagger_page_references_only_our_own_origin(client: Client) -> None:
    urls = await swagger_references(client)
    assert {url.rsplit("/", 1)[-1] for url in urls} >= {
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-ui.css",
    }
    for url in urls:
        # Same origin: an absolute path, never a scheme or a protocol-relative `//host`.
        assert url.startswith("/schema/assets/"), url
        assert not url.startswith("//"), url


async def test_every_asset_the_swagger_page_references_is_served(client: Client) -> None:
    for url in await swagger_references(client):
        response = await client.get(url)
        assert response.status_code == 200, url
        suffix = "." + url.rsplit(".", 1)[-1]
        media_type = response.headers["content-type"].split(";")[0].strip()
        assert media_type in CONTENT_TYPES[suffix], (url, media_type)
        assert response.content, url
    bundle = await client.get("/schema/assets/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.content  # swagger-ui's own bundle, not a placeholder


async def test_an_unknown_asset_is_not_found(client: Client) -> None:
    assert (await client.get("/schema/assets/no-such-file.js")).status_code == 404
    assert (await client.get("/schema/assets/%2e%2e/%2e%2e/app.py")).status_code == 404
