"""Every route the API serves, in one list (the assembly point for all packages)."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

import marketplace.orders.controllers
import marketplace.outbox.controllers
import webhooks.routes
from marketplace.buyers.controllers import BuyerController
from marketplace.lib import health
from marketplace.listings.controllers import ListingController, SellerListingController
from marketplace.notifications.controllers import NotificationController
from marketplace.sellers.controllers import (
    AdminSellerController,
    OnboardingRedirectController,
    SellerMeController,
    SellerSignupController,
)


def route_handlers() -> list[ControllerRouterHandler]:
    handlers: list[ControllerRouterHandler] = [
        health.live,
        health.ready,
        health.metrics,
        SellerSignupController,
        SellerMeController,
        OnboardingRedirectController,
        AdminSellerController,
        BuyerController,
        SellerListingController,
        ListingController,
        *marketplace.orders.controllers.route_handlers(),
        NotificationController,
        *webhooks.routes.route_handlers(),
        *marketplace.outbox.controllers.route_handlers(),
    ]
    return handlers
