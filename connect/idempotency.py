"""Deterministic idempotency keys, each derived from a row we wrote before calling Stripe.

A retry after a crash or a timeout sends the same key, so Stripe answers with the object it already
made instead of making a second one. Keys never contain secrets and stay well under 255 characters.
"""

from __future__ import annotations

import uuid


def account_key(seller_id: uuid.UUID) -> str:
    return f"account:{seller_id}"


def account_link_key(link_request_id: uuid.UUID) -> str:
    return f"account_link:{link_request_id}"


def login_link_key(link_request_id: uuid.UUID) -> str:
    return f"login_link:{link_request_id}"
