"""The app's one StripeClient: async over HTTPX, retries as configured, closed when the app stops.

Observed from the outside: a stand-in Stripe on a free port that answers every request with a 500
and records what it received.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import stripe

from marketplace.server.app import create_app
from tests.conftest import free_port, in_process, make_settings, serve
from tests.support.asgi import serve_lifespan


class FailingStripe:
    """An ASGI app answering every request with Stripe's 500 error envelope, keeping each request's headers."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        self.requests.append({k.decode(): v.decode() for k, v in scope["headers"]})
        body = json.dumps({"error": {"type": "api_error", "message": "down for the test"}}).encode()
        await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


async def test_the_apps_stripe_client_is_httpx_retries_as_configured_and_is_closed_at_shutdown(
    database: str, redis_url: str
) -> None:
    fake = FailingStripe()
    port = free_port()
    server, task = await serve(fake, port)  # type: ignore[arg-type]
    try:
        settings = make_settings(
            database,
            redis_url,
            STRIPE_API_BASE=f"http://127.0.0.1:{port}",
            STRIPE_MAX_NETWORK_RETRIES="1",  # not the default (2): the count below comes from settings
        )
        app = create_app(settings)
        async with in_process(app):
            client: stripe.StripeClient = app.state.stripe
            with pytest.raises(stripe.APIError):
                await client.v1.balance.retrieve_async()
            assert len(fake.requests) == 2  # the request and exactly STRIPE_MAX_NETWORK_RETRIES retry
            user_agent = json.loads(fake.requests[0]["x-stripe-client-user-agent"])
            assert user_agent["httplib"] == "httpx"
        # The app has shut down: its client's connection pool is closed, nothing leaves any more.
        with pytest.raises(stripe.APIConnectionError):
            await client.v1.balance.retrieve_async()
        assert len(fake.requests) == 2
    finally:
        server.should_exit = True
        await task
