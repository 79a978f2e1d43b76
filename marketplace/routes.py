"""Every route the API serves, in one list (the assembly point for all packages)."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from marketplace import health
from marketplace.buyers.controllers import BuyerController
from marketplace.sellers.controllers import SellerSignupController


def route_handlers() -> list[ControllerRouterHandler]:
    handlers: list[ControllerRouterHandler] = [
        health.live,
        health.ready,
        health.metrics,
        SellerSignupController,
        BuyerController,
    ]
    return handlers
