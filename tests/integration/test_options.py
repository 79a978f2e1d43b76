"""`OPTIONS` lists every method of its path (marketplace/lib/options.py; Litestar 2's litestar#4169)."""

from __future__ import annotations

import re
import uuid

import httpx
from litestar import Controller, Litestar, get, post
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from marketplace.auth.service import create_principal
from marketplace.auth.tables import Role
from marketplace.lib.options import repair_options_allow
from marketplace.lib.settings import Settings
from marketplace.server.app import create_app
from tests.support.factories import BuyerSignupFactory, SellerSignupFactory, payload

Client = httpx.AsyncClient
SAMPLE = {"uuid": str(uuid.uuid4()), "int": "1", "str": "x", "path": "x"}


def _concrete(path: str) -> str:
    """A request path for a route path (`{listing_id:uuid}` -> a UUID)."""
    return re.sub(r"\{[^:}]+:([a-z]+)\}", lambda m: SAMPLE[m.group(1)], path)


class _Things(Controller):
    path = "/things"

    @get("/")
    async def list_things(self) -> None: ...

    @post("/")
    async def add_thing(self) -> None: ...


async def test_litestar_alone_misses_methods_and_the_repair_lists_them_all() -> None:
    """The defect, on a bare Litestar app: without the repair, `Allow` misses a method of the path (if
    this assertion ever fails, Litestar fixed it and `repair_options_allow` can go)."""
    bare = Litestar([_Things])
    async with AsyncTestClient(bare) as http:
        assert (await http.options("/things")).headers["allow"] != "GET, OPTIONS, POST"
    assert repair_options_allow(bare) >= 1
    async with AsyncTestClient(bare) as http:
        response = await http.options("/things")
    assert response.status_code == 204
    assert response.headers["allow"] == "GET, OPTIONS, POST"
    assert repair_options_allow(bare) == 0  # nothing left to repair: idempotent


async def _callers(client: Client) -> list[dict[str, str]]:
    """No token, then a seller's, a buyer's and an admin's (a guarded route's OPTIONS answers 401/403 to
    the wrong caller, as its other methods do)."""
    seller = await client.post("/sellers", json=payload(SellerSignupFactory))
    buyer = await client.post("/buyers", json=payload(BuyerSignupFactory))
    assert seller.status_code == buyer.status_code == 201, (seller.text, buyer.text)
    _, admin = await create_principal(Role.admin, "options admin")
    tokens = [seller.json()["token"], buyer.json()["token"], admin]
    return [{}, *({"Authorization": f"Bearer {token}"} for token in tokens)]


async def test_options_lists_every_method_of_every_route(client: Client, settings: Settings) -> None:
    routes = [route for route in create_app(settings).routes if isinstance(route, HTTPRoute)]
    several = {route.path_format for route in routes if len(route.methods - {"OPTIONS"}) > 1}
    assert {
        "/sellers/me/listings",
        "/sellers/me/listings/{listing_id}",
        "/admin/sellers/{seller_id}/fee-override",
    } <= several
    callers = await _callers(client)
    answered = set()
    for route in routes:
        for headers in callers:
            response = await client.options(_concrete(route.path), headers=headers)
            if response.status_code == 204:
                assert response.headers["allow"] == ", ".join(sorted(route.methods)), route.path
                answered.add(route.path_format)
                break
            assert response.status_code in (401, 403), (route.path, response.status_code)
    assert several <= answered
