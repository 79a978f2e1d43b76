"""The webhooks package's tables: the durable event store, and endpoint registration intents.

`stripe_events`: one row per Stripe event id, written before the delivery is acknowledged. The row
is the source of truth for an event's processing state (see `webhooks.store` for the status
machine); Redis only carries "please look at event X" hints, so losing Redis loses nothing.

`webhook_endpoint_registrations`: one row per attempt to create one of our Stripe webhook endpoints,
written before the create so its idempotency key derives from a row (`webhooks.registration`).
"""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import JSONB, Boolean, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from marketplace.lib.db import DB


class EventStatus(StrEnum):
    pending = "pending"  # stored, waiting for a worker (queued, or to be queued by the sweeper)
    processing = "processing"  # claimed by a worker holding an unexpired lease
    processed = "processed"  # a handler finished (terminal)
    ignored = "ignored"  # livemode mismatch, or a type the code names as deliberately ignored (terminal)
    # No handler here for its type (or not on its endpoint): kept, never pruned, and re-offered by every
    # worker that has a handler for it (a rolling deploy's old workers park what only new ones know).
    unhandled = "unhandled"
    not_ours = "not_ours"  # a handler found the event concerns no object of this platform (terminal)
    failed = "failed"  # a handler raised; retried at next_attempt_at
    dead = "dead"  # gave up after the maximum number of attempts; replay brings it back


class StripeEvent(Table, tablename="stripe_events", db=DB):
    """A Stripe event as delivered to one of our two endpoints."""

    id = Varchar(length=255, primary_key=True)  # Stripe's event id (evt_…): deliveries deduplicate on it
    type = Varchar(length=128)
    account = Varchar(length=255, null=True, default=None)  # connected account (acct_…) or null
    endpoint = Varchar(length=16)  # "platform" | "connect": which endpoint received it
    misrouted = Boolean(default=False)  # arrived at the endpoint that does not match `account`
    livemode = Boolean(default=False)
    api_version = Varchar(length=64, null=True, default=None)
    created = Timestamptz()  # Stripe's `created`
    payload = JSONB()  # the event (a `\u0000` escape, which jsonb refuses, replaced by U+FFFD)
    payload_raw = Text(null=True, default=None)  # the exact body, kept only when `payload` had to differ
    received_at = Timestamptz()
    status = Varchar(length=16, choices=EventStatus, default=EventStatus.pending.value)
    attempts = Integer(default=0)
    last_error = Text(null=True, default=None)
    next_attempt_at = Timestamptz(null=True, default=None)
    lease_token = Varchar(length=64, null=True, default=None)
    lease_until = Timestamptz(null=True, default=None)
    processed_at = Timestamptz(null=True, default=None)


class WebhookEndpointRegistration(Table, tablename="webhook_endpoint_registrations", db=DB):
    """An intent to create one of our webhook endpoints in Stripe, written before the create call.

    The create's idempotency key is `webhook-endpoint-registration:{id}`: a run that crashed after
    Stripe created the endpoint re-sends the same request (same stored params) and gets the same
    endpoint and secret back; a new row (a new key) is written only when the endpoint it recorded no
    longer exists, so a deleted endpoint is really created again.
    """

    id = Serial(primary_key=True)
    url = Varchar(length=2048)
    connect = Boolean()
    params = JSONB()  # the create parameters exactly as sent (a retry must send the same ones)
    created_at = Timestamptz(default=TimestamptzNow())
    endpoint_id = Varchar(length=255, null=True, default=None)  # we_…, once Stripe answered the create
    completed_at = Timestamptz(null=True, default=None)
