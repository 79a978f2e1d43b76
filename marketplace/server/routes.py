"""Every route the API serves, in one list (the assembly point for all packages)."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

import marketplace.orders.controllers
import webhooks.routes
from marketplace.buyers.controllers import BuyerController
from marketplace.lib import health
from marketplace.lib.durable.operator import admin_controller
from marketplace.lib.observability import METRICS
from marketplace.listings.controllers import ListingController, SellerListingController
from marketplace.notifications.controllers import NotificationController
from marketplace.outbox.controllers import OUTBOX_ADMIN
from marketplace.outbox.controllers import collect_backlog as outbox_backlog
from marketplace.sellers.controllers import (
    AdminSellerController,
    OnboardingRedirectController,
    SellerMeController,
    SellerSignupController,
)


def route_handlers() -> list[ControllerRouterHandler]:
    METRICS.add_collector(outbox_backlog)
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
        # Operators' view of durable work: one surface, mounted for each queue.
        admin_controller(webhooks.routes.EVENT_ADMIN, "EventAdminController"),
        admin_controller(OUTBOX_ADMIN, "OutboxAdminController"),
    ]
    return handlers
