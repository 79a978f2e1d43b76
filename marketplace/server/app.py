"""The app factory: assembles settings, logging, the database, Stripe, arq and every package's routes."""

from __future__ import annotations

import gc
import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import stripe
from arq.connections import ArqRedis
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, Contact, SecurityScheme, Tag
from litestar.router import Router
from litestar.static_files import create_static_files_router
from piccolo.engine.postgres import PostgresEngine

from connect.client import build_stripe_client, close_stripe_client
from marketplace.auth.guards import current_principal
from marketplace.lib.bodies import JsonBodyGuard
from marketplace.lib.db import DB, start_database, stop_database
from marketplace.lib.observability import (
    RequestIdMiddleware,
    configure_logging,
    share_counts_through,
    stop_sharing_counts,
)
from marketplace.lib.openapi_rules import bodies_as_decoded, forbid_unknown_fields
from marketplace.lib.options import repair_options_allow
from marketplace.lib.problem_docs import document_problems
from marketplace.lib.problem_handlers import exception_handlers
from marketplace.lib.queue import arq_pool
from marketplace.lib.settings import Settings, get_settings
from marketplace.server import routes
from marketplace.shop.routes import shop_router
from webhooks.routes import WebhookIngress
from webhooks.store import close_ingest_pool, open_ingest_pool

API_VERSION = "0.1.0"


OPENAPI_PATH = "/schema"
SWAGGER_ASSETS = f"{OPENAPI_PATH}/assets"  # swagger-ui's dist files, served by the app itself (no CDN)

# One tag per operation (Swagger UI lists an operation once per tag it has); each declared here.
OPENAPI_TAGS = [
    Tag(
        name="sellers",
        description="Seller sign-up and profile, the Stripe connected account, onboarding "
        "and dashboard links, and the redirects Stripe sends the seller's browser back to.",
    ),
    Tag(name="listings", description="A seller's own listings, and the public storefront buyers browse."),
    Tag(name="buyers", description="Buyer sign-up and profile."),
    Tag(name="checkout", description="Check out a cart: an order and a Stripe Checkout Session for it."),
    Tag(name="orders", description="Reading orders (one by id, a buyer's and a seller's), and verifying a payment."),
    Tag(name="notifications", description="What the platform told a buyer or a seller (receipts, sales)."),
    Tag(name="webhooks", description="The endpoints Stripe delivers events to (signed; stored before the 200)."),
    Tag(
        name="admin",
        description="Platform administration (admin token): sellers and their fees, stored "
        "Stripe events and outbox messages, and replaying them.",
    ),
    Tag(name="health", description="Liveness, readiness and Prometheus metrics (no token)."),
]


def swagger_ui_dist() -> Path:
    """The folder of swagger-ui's dist files that the `swagger-ui-py` package ships (found, not imported)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed (a dependency in pyproject.toml)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


class SelfHostedSwagger(SwaggerRenderPlugin):
    """Swagger UI whose JS, CSS and favicon come from `/schema/assets/…` on this app, so it works offline."""

    def __init__(self) -> None:
        super().__init__(
            js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
            css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
            standalone_preset_js_url=f"{SWAGGER_ASSETS}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{SWAGGER_ASSETS}/favicon-32x32.png'>",
        )

    def receive_router(self, router: Router) -> None:
        super().receive_router(router)
        router.register(
            create_static_files_router(
                path=SWAGGER_ASSETS.removeprefix(OPENAPI_PATH),
                directories=[swagger_ui_dist()],
                name="swagger-assets",
                include_in_schema=False,
            )
        )


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Marketplace API",
        version=API_VERSION,
        description="A Stripe Connect marketplace: sellers onboard as connected accounts, buyers pay "
        "through Stripe Checkout, the platform keeps a fee. Errors are RFC 9457 problem details.",
        contact=Contact(name="Marketplace platform team"),
        tags=OPENAPI_TAGS,
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="A token from sign-up or `marketplace admin create-token`.",
                )
            }
        ),
        render_plugins=[SelfHostedSwagger()],
        path=OPENAPI_PATH,
    )


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the ASGI app; `settings` defaults to the environment's (validated)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.secret_values())

    @asynccontextmanager
    async def resources(app: Litestar) -> AsyncIterator[None]:
        await start_database(settings.database_url.reveal())
        await open_ingest_pool(settings.database_url.reveal())
        app.state.arq = arq_pool(settings.redis_url.reveal())
        share_counts_through(app.state.arq)  # confirmations and refunds counted for the whole deployment
        app.state.stripe = build_stripe_client(
            settings.stripe_secret_key.reveal(),
            api_base=settings.stripe_api_base,
            max_network_retries=settings.stripe_max_network_retries,
            timeout_seconds=settings.stripe_timeout_seconds,
        )
        # Everything allocated so far lives as long as the process: move it out of the collector's way, so
        # full collections under load scan only request garbage (shorter pauses, a shorter latency tail).
        gc.freeze()
        try:
            yield
        finally:
            for close in (
                lambda: close_stripe_client(app.state.stripe),
                lambda: stop_sharing_counts(app.state.arq),
                app.state.arq.aclose,
                close_ingest_pool,
                stop_database,
            ):
                try:
                    await close()
                except Exception:  # keep closing the rest; a dead Redis must not leave the pool open
                    logging.getLogger("marketplace.server.app").exception("error while shutting down")
            # Log lines are written in batches, and uvicorn ends a SIGTERM'd process by re-raising the
            # signal (no atexit, so no logging.shutdown): write the last requests' lines now.
            for handler in logging.getLogger().handlers:
                handler.flush()

    def provide_settings() -> Settings:
        return settings

    def provide_db() -> PostgresEngine:
        # The one engine every table is bound to (Piccolo binds tables to an engine object at import, so
        # it lives in marketplace.lib.db); handlers that run queries or transactions directly take it as `db`.
        return DB

    def provide_stripe(state: State) -> stripe.StripeClient:
        client: stripe.StripeClient = state.stripe
        return client

    def provide_arq(state: State) -> ArqRedis:
        pool: ArqRedis = state.arq
        return pool

    app = Litestar(
        # The /shop pages (docs/pages.md) only when enabled: otherwise /shop is a 404 like any unknown path.
        route_handlers=[*routes.route_handlers(), *([shop_router()] if settings.shop_enabled else [])],
        dependencies={
            "settings": Provide(provide_settings, sync_to_thread=False),
            "db": Provide(provide_db, sync_to_thread=False),
            "stripe_client": Provide(provide_stripe, sync_to_thread=False),
            "arq": Provide(provide_arq, sync_to_thread=False),
            "principal": Provide(current_principal),
        },
        lifespan=[resources],
        exception_handlers=exception_handlers,
        middleware=[JsonBodyGuard()],  # JSON bodies: media type, read timeout, depth, NUL (bodies.py)
        openapi_config=openapi_config(),
        state=State({"settings": settings}),
        debug=False,
        logging_config=None,  # our JSON handler (configure_logging) is the only one
    )
    # Outermost, so routing errors (404/405) carry the request id too; the webhook ingress inside it
    # serves Stripe's deliveries without the framework's per-request machinery (webhooks/routes.py).
    app.asgi_handler = RequestIdMiddleware(
        WebhookIngress(app.asgi_handler), server_timing=settings.app_env != "production"
    )
    document_problems(app)  # error responses in OpenAPI are problem documents, for every route
    forbid_unknown_fields(app)  # strict request bodies say `additionalProperties: false` (openapi_rules.py)
    bodies_as_decoded(app)  # request body fields as msgspec checks them, with every bound (openapi_rules.py)
    repair_options_allow(app)  # OPTIONS lists every method of a path served by several handlers (options.py)
    return app
