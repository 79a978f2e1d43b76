"""The one async StripeClient a process uses, built from plain values (never from app settings)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import stripe

# Seconds spent waiting for Stripe in the current request (a list per request, set by whoever serves it:
# `marketplace.lib.observability.RequestIdMiddleware`), for the access log and the Server-Timing header.
stripe_seconds: ContextVar[list[float] | None] = ContextVar("stripe_seconds", default=None)


class _TimedHTTPXClient(stripe.HTTPXClient):
    """stripe-python's HTTPX client, adding each round trip's duration to `stripe_seconds`."""

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        started = time.perf_counter()
        try:
            return await super().request_async(method, url, headers, post_data)
        finally:
            spent = stripe_seconds.get()
            if spent is not None:
                spent.append(time.perf_counter() - started)


# Per attempt (the SDK's own default is 80 s). One call then ends within (1 + max_network_retries) times
# this plus the SDK's sleeps between attempts; settings check that this fits under a webhook handler's
# timeout (STRIPE_TIMEOUT_SECONDS, docs/architecture.md "Budgets").
DEFAULT_TIMEOUT_SECONDS = 10.0


def build_stripe_client(
    api_key: str,
    *,
    api_base: str | None = None,
    max_network_retries: int = 2,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> stripe.StripeClient:
    """An async-capable client over HTTPX; `api_base` points it at the sandbox instead of Stripe.

    stripe-python retries network errors, 409s, 429s and 5xx with the same idempotency key when
    `max_network_retries` > 0 (it defaults to 0 on a client, hence set here). Each attempt gives up
    after `timeout_seconds`.
    """
    base_addresses: dict[str, str] = {}
    if api_base:
        base_addresses = {"api": api_base, "connect": api_base, "files": api_base}
    return stripe.StripeClient(
        api_key,
        http_client=_TimedHTTPXClient(timeout=timeout_seconds),
        base_addresses=base_addresses,  # type: ignore[arg-type]
        max_network_retries=max_network_retries,
    )


async def close_stripe_client(client: stripe.StripeClient) -> None:
    """Close the client's HTTPX pools (sync and async); call once at shutdown."""
    requestor = getattr(client, "_requestor", None)  # the SDK exposes no public close on the client
    http_client = getattr(requestor, "_client", None)
    if isinstance(http_client, stripe.HTTPXClient):
        await http_client.close_async()  # type: ignore[no-untyped-call]
