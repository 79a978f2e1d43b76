"""Creating or updating our two webhook endpoints in whichever Stripe the client points at.

Endpoints are recognised by URL (`{base}/webhooks/stripe`, `{base}/webhooks/stripe/connect`). A
missing one is created (`connect` flag, `enabled_events` from the registry, `api_version` = the SDK's
pin) with an idempotency key derived from URL and flag, so a retried create returns the same endpoint
and the same secret. An existing one is updated only when its events or description differ; Stripe
reveals a secret only on create, so re-running prints no secret and changes nothing.
"""

from __future__ import annotations

import hashlib
import logging

import stripe
from stripe.params import WebhookEndpointCreateParams, WebhookEndpointListParams, WebhookEndpointUpdateParams

from webhooks.registry import ENDPOINTS, Endpoint, event_types_for, handled_event_types

log = logging.getLogger("webhooks.registration")

PATHS: dict[Endpoint, str] = {"platform": "/webhooks/stripe", "connect": "/webhooks/stripe/connect"}
DESCRIPTIONS: dict[Endpoint, str] = {
    "platform": "marketplace: platform events",
    "connect": "marketplace: connected accounts' events",
}


def endpoint_url(base_url: str, endpoint: Endpoint) -> str:
    return base_url.rstrip("/") + PATHS[endpoint]


def enabled_events(endpoint: Endpoint) -> list[str]:
    """The registry's types for `endpoint`; every handled type when none is specific to it yet."""
    types = event_types_for(endpoint) or handled_event_types()
    if not types:
        raise RuntimeError("no webhook handlers are registered; nothing to subscribe to")
    return types


def idempotency_key(url: str, connect: bool) -> str:
    digest = hashlib.sha256(f"{url}|connect={connect}".encode()).hexdigest()[:32]
    return f"webhook-endpoint:{digest}"


async def _existing(client: stripe.StripeClient) -> dict[str, stripe.WebhookEndpoint]:
    params: WebhookEndpointListParams = {"limit": 100}
    found: dict[str, stripe.WebhookEndpoint] = {}
    page = await client.v1.webhook_endpoints.list_async(params=params)
    async for item in page.auto_paging_iter():
        found.setdefault(item.url, item)
    return found


async def register_webhooks(client: stripe.StripeClient, base_url: str) -> dict[Endpoint, str | None]:
    """Ensure both endpoints exist as configured; the new secret per endpoint, None if it existed."""
    existing = await _existing(client)
    secrets: dict[Endpoint, str | None] = {}
    for endpoint in ENDPOINTS:
        url = endpoint_url(base_url, endpoint)
        events = enabled_events(endpoint)
        current = existing.get(url)
        if current is None:
            create: WebhookEndpointCreateParams = {
                "url": url,
                "connect": endpoint == "connect",
                "enabled_events": events,  # type: ignore[typeddict-item]  # Literal list in the SDK's stubs
                "api_version": stripe.api_version,  # type: ignore[typeddict-item]
                "description": DESCRIPTIONS[endpoint],
                "metadata": {"managed_by": "marketplace"},
            }
            created = await client.v1.webhook_endpoints.create_async(
                params=create, options={"idempotency_key": idempotency_key(url, endpoint == "connect")}
            )
            secrets[endpoint] = created.secret
            log.info("created the %s webhook endpoint %s", endpoint, created.id)
            continue
        secrets[endpoint] = None
        if current.api_version and current.api_version != stripe.api_version:
            log.warning(
                "the %s endpoint %s uses API version %s, not the SDK's %s; Stripe cannot change it: "
                "create a new endpoint and delete the old one",
                endpoint,
                current.id,
                current.api_version,
                stripe.api_version,
            )
        if sorted(current.enabled_events) != events or current.description != DESCRIPTIONS[endpoint]:
            update: WebhookEndpointUpdateParams = {
                "enabled_events": events,  # type: ignore[typeddict-item]
                "description": DESCRIPTIONS[endpoint],
            }
            await client.v1.webhook_endpoints.update_async(current.id, params=update)
            log.info("updated the %s webhook endpoint %s", endpoint, current.id)
    return secrets
