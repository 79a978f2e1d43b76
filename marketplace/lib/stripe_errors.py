"""Turning Stripe SDK errors into problems a client can act on (after the SDK's own retries)."""

from __future__ import annotations

import logging

import stripe

from marketplace.lib.problems import Problem, Unavailable, UpstreamError

log = logging.getLogger("marketplace.stripe")


def problem_from_stripe(exc: stripe.StripeError, action: str) -> Problem:
    """A 503 for outages and rate limits (retry later), a 502 for anything else Stripe refused."""
    log.warning(
        "stripe %s failed: %s (code=%s, request=%s)",
        action,
        type(exc).__name__,
        stripe_code(exc),
        getattr(exc, "request_id", None),
    )
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (exc.http_status or 0) >= 500:
        return Unavailable(
            f"Stripe did not answer while trying to {action}; nothing was lost, retry shortly.",
            headers={"Retry-After": "5"},
        )
    message = exc.user_message or "Stripe refused the request."
    return UpstreamError(f"Stripe refused to {action}: {message}", stripe_code=stripe_code(exc))


def stripe_code(exc: stripe.StripeError) -> str | None:
    """Stripe's error code (`account_invalid`, `resource_missing`, …). stripe-python sets `code` only on some
    error classes (not on a 403's PermissionError), so the response body is read when it is missing."""
    code = getattr(exc, "code", None)
    if code:
        return str(code)
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    found = error.get("code") if isinstance(error, dict) else None
    return str(found) if found else None


def is_transient(exc: stripe.StripeError) -> bool:
    """Worth retrying later with the same key: Stripe was unreachable, overloaded or failed (a 409 other
    than an idempotency mismatch is a concurrent request with the same key, still in flight)."""
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    status = exc.http_status or 0
    return status >= 500 or (status == 409 and not isinstance(exc, stripe.IdempotencyError))
