"""Deterministic idempotency keys, each derived from a row we wrote before calling Stripe.

A retry after a crash or a timeout sends the same key, so Stripe answers with the object it already
made instead of making a second one. Keys never contain secrets and stay well under 255 characters.
"""

from __future__ import annotations

import uuid


def account_key(seller_id: uuid.UUID, generation: int = 1) -> str:
    """The key of a seller's connected account: `account:{seller_id}` for the first one, and
    `account:{seller_id}:{n}` for the one made when the seller connects again after a disconnect."""
    if generation < 1:
        raise ValueError("generation starts at 1")
    return f"account:{seller_id}" if generation == 1 else f"account:{seller_id}:{generation}"


def account_link_key(link_request_id: uuid.UUID) -> str:
    return f"account_link:{link_request_id}"


def login_link_key(link_request_id: uuid.UUID) -> str:
    return f"login_link:{link_request_id}"


def checkout_key(order_id: uuid.UUID) -> str:
    """The key of an order's Checkout Session: one session per order, however often it is retried."""
    return f"checkout:{order_id}"


def refund_key(refund_id: uuid.UUID) -> str:
    """The key of one refund row's Stripe refund: one refund per row, however often it is retried."""
    return f"refund:{refund_id}"
