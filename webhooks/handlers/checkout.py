"""Checkout Session events, on both endpoints: every one re-reads the session and follows it.

A destination charge's session lives on the platform: its events arrive at the platform endpoint. A
direct charge's session lives on the seller's connected account: its events arrive **only** at the
Connect endpoint, with the account in `event.account`. So both endpoints route these types, and each
handler checks that the event came from where the order's session lives before acting.

The four types share one handler: it finds the order named by the session's metadata, re-reads the
session from Stripe (as the connected account for a direct charge; never trusting the snapshot) and
hands the read to `follow_session`, which decides from Stripe's current state (paid → `confirm_order`,
delayed payment settling → processing, failed → failed, expired → expired). The event's type is
therefore only a hint: a late `completed` after `async_payment_succeeded`, or two events for one
change, end in the same state with one set of side effects.

A session that names no order of ours, that Stripe does not know where its order's session lives, or
whose order lives elsewhere (another account, the other endpoint), is recorded as not ours; a session
that does not match its order is a security event (logged by the confirmation) and also ends as not
ours: retrying cannot make it match. An event whose `data.object` or metadata is not an object is
malformed (dead at once, `webhooks.registry.Malformed`). A Stripe error on the re-read raises, so the
event is retried.
"""

from __future__ import annotations

import logging
import uuid

import stripe

from connect.checkout import retrieve_session
from connect.profiles import account_of
from marketplace.orders.confirm import SessionMismatch, follow_session
from marketplace.orders.service import order_by_id
from marketplace.outbox.service import request_delivery
from webhooks.registry import HandlerContext, NotOurs, StoredEvent, handles, require_home

log = logging.getLogger("webhooks.handlers.checkout")

CHECKOUT_EVENTS = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
)


@handles(*CHECKOUT_EVENTS, endpoints={"platform", "connect"})
async def checkout_session_changed(ctx: HandlerContext, event: StoredEvent) -> None:
    snapshot = event.data_object
    session_id = snapshot.get("id")
    metadata = event.metadata_of(snapshot)
    if not isinstance(session_id, str) or not session_id.startswith("cs_"):
        raise NotOurs(f"{event.type} carries no Checkout Session id")
    try:
        order_id = uuid.UUID(str(metadata.get("order_id") or snapshot.get("client_reference_id") or ""))
    except ValueError as exc:
        raise NotOurs(f"session {session_id} names no order of this platform") from exc
    order = await order_by_id(order_id)
    if order is None:
        raise NotOurs(f"session {session_id} names order {order_id}, which does not exist here")
    lives_on = account_of(order.charge_type, order.stripe_account_id)
    require_home(event, lives_on, f"session {session_id} of order {order.id}")
    try:
        session = await retrieve_session(ctx.stripe, session_id, lives_on)
    except stripe.InvalidRequestError as exc:
        if exc.http_status != 404:
            raise
        # A session nobody created (a forged or mistyped id naming a real order): no retry finds it.
        raise NotOurs(f"session {session_id} does not exist on {lives_on or 'the platform'}") from exc
    arq = ctx.arq

    async def kick() -> None:
        if arq is not None:
            await request_delivery(arq)

    try:
        after = await follow_session(order.id, session, f"webhook:{event.id}", kick=kick, order=order)
    except SessionMismatch as exc:
        raise NotOurs(f"session {session_id} does not match order {order.id}: {exc.detail}") from exc
    log.debug("%s %s: order %s is %s", event.type, event.id, order.id, after.status.value)
