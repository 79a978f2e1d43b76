"""Connected-account events (Connect endpoint): keep each seller's account state in step with Stripe.

account.updated and capability.updated re-read the account from Stripe instead of trusting the
event's snapshot. The platform reads an Account directly by its id (no `Stripe-Account` header: the
account is a platform object); `sync_connected_account` stores a read only if no later-started read
was stored first, so events that arrive twice, late, or out of order all end on Stripe's current
state. A Stripe error while reading is raised, so the event is retried; it never disconnects the
seller. Only account.application.deauthorized does. An account that is no seller's and that Stripe
will not show us (403/404), or that names no seller of ours, is recorded as not ours (`NotOurs`).
"""

from __future__ import annotations

import logging

from marketplace.sellers.sync import NotOurAccount, mark_disconnected, sync_connected_account
from webhooks.registry import HandlerContext, NotOurs, StoredEvent, handles

log = logging.getLogger("webhooks.handlers.accounts")


async def _sync(ctx: HandlerContext, account_id: str, event: StoredEvent) -> None:
    if not account_id.startswith("acct_"):
        raise NotOurs(f"{event.type} names no connected account")
    try:
        await sync_connected_account(ctx.stripe, account_id, source=f"event:{event.id}")
    except NotOurAccount as exc:
        raise NotOurs(exc.note) from exc


@handles("account.updated", endpoints={"connect"})
async def account_updated(ctx: HandlerContext, event: StoredEvent) -> None:
    await _sync(ctx, event.account or str(event.data_object.get("id", "")), event)


@handles("capability.updated", endpoints={"connect"})
async def capability_updated(ctx: HandlerContext, event: StoredEvent) -> None:
    # The capability object names its account; the event's `account` is the same for Connect events.
    await _sync(ctx, event.account or str(event.data_object.get("account", "")), event)


@handles("account.application.deauthorized", endpoints={"connect"})
async def application_deauthorized(ctx: HandlerContext, event: StoredEvent) -> None:
    # data.object is the platform's Application; the account that left is the event's `account`.
    if not event.account:
        raise NotOurs("account.application.deauthorized carries no account")
    if await mark_disconnected(event.account, source=f"event:{event.id}") is None:
        raise NotOurs(f"deauthorized account {event.account} is connected to no seller")
