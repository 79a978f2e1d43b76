"""Refund events, on both endpoints: the refunds this platform made, followed after Stripe accepted them.

A destination charge's refund is made on the platform (its events arrive at the platform endpoint); a
direct charge's on the seller's connected account (only at the Connect endpoint, with `event.account`).
Every event re-reads the refund where it lives and applies what Stripe shows now
(`marketplace.refunds.service.record_stripe_state`), so the type is only a hint and the order of
arrival does not matter: `refund.created`, `refund.updated`, `charge.refund.updated` and
`refund.failed` for one change end in the same row. A refund that fails after Stripe accepted it is an
error line and a count: the buyer is owed.

A refund without our row's id in its metadata (made in a dashboard, say) is recorded as not ours: what
the platform does about refunds it did not make is not decided here yet. An event from where the
refund does not live is a security log line and not ours, as is one Stripe does not know (404). A
Stripe error on the re-read retries; a body whose object or metadata is not an object is malformed.
"""

from __future__ import annotations

import logging
import uuid

import stripe

from connect.profiles import account_of
from connect.refunds import retrieve_refund
from marketplace.refunds.service import record_stripe_state, refund_by_id
from webhooks.registry import HandlerContext, NotOurs, StoredEvent, handles, require_home

log = logging.getLogger("webhooks.handlers.refunds")

REFUND_EVENTS = ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")


@handles(*REFUND_EVENTS, endpoints={"platform", "connect"})
async def refund_changed(ctx: HandlerContext, event: StoredEvent) -> None:
    snapshot = event.data_object
    stripe_refund_id = snapshot.get("id")
    if not isinstance(stripe_refund_id, str) or not stripe_refund_id.startswith("re_"):
        raise NotOurs(f"{event.type} carries no refund id")
    metadata = event.metadata_of(snapshot)
    try:
        row_id = uuid.UUID(str(metadata.get("refund_id") or ""))
    except ValueError as exc:
        raise NotOurs(f"refund {stripe_refund_id} was not made by this platform (no refund_id)") from exc
    row = await refund_by_id(row_id)
    if row is None:
        raise NotOurs(f"refund {stripe_refund_id} names refund {row_id}, which does not exist here")
    lives_on = account_of(row.charge_type, row.stripe_account_id)
    require_home(event, lives_on, f"refund {stripe_refund_id} of refund {row.id}")
    try:
        state = await retrieve_refund(ctx.stripe, stripe_refund_id, lives_on)
    except stripe.InvalidRequestError as exc:
        if exc.http_status != 404:
            raise
        raise NotOurs(f"refund {stripe_refund_id} does not exist on {lives_on or 'the platform'}") from exc
    if state.metadata_refund_id != str(row.id) or (row.stripe_refund_id not in (None, state.id)):
        raise NotOurs(f"refund {stripe_refund_id} as Stripe shows it is not refund {row.id}'s")
    recorded = await record_stripe_state(row, state)
    log.debug("%s %s: refund %s is %s at Stripe", event.type, event.id, recorded.id, recorded.stripe_status)
