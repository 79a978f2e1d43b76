"""Connected-account events (Connect endpoint): keep each seller's account state in step with Stripe.

account.updated and capability.updated re-read the account from Stripe instead of trusting the
event's snapshot. The platform reads an Account directly by its id (no `Stripe-Account` header: the
account is a platform object), and `sync_connected_account` serializes the reads of one account under
a row lock, so events that arrive twice, late, or out of order all end on Stripe's current state. A
Stripe error while reading is raised, so the event is retried; it never disconnects the seller. Only
account.application.deauthorized does.
"""

from __future__ import annotations

import logging

from marketplace.sellers.onboarding import mark_disconnected, sync_connected_account
from webhooks.registry import HandlerContext, StoredEvent, handles

log = logging.getLogger("webhooks.handlers.accounts")


@handles("account.updated", endpoints={"connect"})
async def account_updated(ctx: HandlerContext, event: StoredEvent) -> None:
    account_id = event.account or str(event.data_object.get("id", ""))
    if not account_id.startswith("acct_"):
        log.warning("account.updated %s names no account; ignored", event.id)
        return
    await sync_connected_account(ctx.stripe, account_id, source=f"event:{event.id}")


@handles("capability.updated", endpoints={"connect"})
async def capability_updated(ctx: HandlerContext, event: StoredEvent) -> None:
    # The capability object names its account; the event's `account` is the same for Connect events.
    account_id = event.account or str(event.data_object.get("account", ""))
    if not account_id.startswith("acct_"):
        log.warning("capability.updated %s names no account; ignored", event.id)
        return
    await sync_connected_account(ctx.stripe, account_id, source=f"event:{event.id}")


@handles("account.application.deauthorized", endpoints={"connect"})
async def application_deauthorized(ctx: HandlerContext, event: StoredEvent) -> None:
    # data.object is the platform's Application; the account that left is the event's `account`.
    if not event.account:
        log.warning("account.application.deauthorized %s carries no account; ignored", event.id)
        return
    await mark_disconnected(event.account, source=f"event:{event.id}")
