"""The app factory: assembles settings, logging, the database, Stripe, arq and every package's routes."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import stripe
from arq.connections import ArqRedis
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from piccolo.engine.postgres import PostgresEngine

from connect.client import build_stripe_client, close_stripe_client
from marketplace import routes
from marketplace.auth.guards import current_principal
from marketplace.db import DB, start_database, stop_database
from marketplace.observability import RequestIdMiddleware, configure_logging
from marketplace.problem_docs import document_problems
from marketplace.problem_handlers import exception_handlers
from marketplace.queue import arq_pool
from marketplace.settings import Settings, get_settings
from webhooks.routes import WebhookIngress
from webhooks.store import close_ingest_pool, open_ingest_pool

API_VERSION = "0.1.0"


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Marketplace API",
        version=API_VERSION,
        description="A Stripe Connect marketplace: sellers onboard as connected accounts, buyers pay "
        "through Stripe Checkout, the platform keeps a fee. Errors are RFC 9457 problem details.",
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="A token from sign-up or `marketplace admin create-token`.",
                )
            }
        ),
        render_plugins=[SwaggerRenderPlugin()],
        path="/schema",
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
                app.state.arq.aclose,
                close_ingest_pool,
                stop_database,
            ):
                try:
                    await close()
                except Exception:  # keep closing the rest; a dead Redis must not leave the pool open
                    logging.getLogger("marketplace.app").exception("error while shutting down")
            # Log lines are written in batches, and uvicorn ends a SIGTERM'd process by re-raising the
            # signal (no atexit, so no logging.shutdown): write the last requests' lines now.
            for handler in logging.getLogger().handlers:
                handler.flush()

    def provide_settings() -> Settings:
        return settings

    def provide_db() -> PostgresEngine:
        # The one engine every table is bound to (Piccolo binds tables to an engine object at import, so
        # it lives in marketplace.db); handlers that run queries or transactions directly take it as `db`.
        return DB

    def provide_stripe(state: State) -> stripe.StripeClient:
        client: stripe.StripeClient = state.stripe
        return client

    def provide_arq(state: State) -> ArqRedis:
        pool: ArqRedis = state.arq
        return pool

    app = Litestar(
        route_handlers=routes.route_handlers(),
        dependencies={
            "settings": Provide(provide_settings, sync_to_thread=False),
            "db": Provide(provide_db, sync_to_thread=False),
            "stripe_client": Provide(provide_stripe, sync_to_thread=False),
            "arq": Provide(provide_arq, sync_to_thread=False),
            "principal": Provide(current_principal),
        },
        lifespan=[resources],
        exception_handlers=exception_handlers,
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
    return app
