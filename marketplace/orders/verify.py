"""`POST /orders/{id}/verify`: the success page's confirmation ("frontend verification").

The page is reached with `?order_id=…&session_id=…` once Stripe's Checkout redirects the buyer back;
often before the webhook has been delivered. Verify re-reads the session from Stripe (as the seller's
account for a direct charge) and applies it with `follow_session`, the same function the webhook
handlers call, so whichever arrives first confirms the order and the other finds it done.

- An order already final (paid, failed, expired, oversold) is answered from the database: no Stripe
  call, so a polling page, a reload or a second tab costs nothing and changes nothing.
- A `session_id` that is not the order's recorded session is refused (409, a security event) before
  Stripe is asked; an order with no recorded session (its checkout's answer was lost) is looked up by
  the session id the page gives, and that session must name the order (`confirm_order`'s checks).
- Stripe unreachable: 503 with Retry-After; the order is untouched and the webhook still confirms it.
"""

from __future__ import annotations

import logging

import stripe
from arq.connections import ArqRedis

from connect.checkout import retrieve_session
from connect.profiles import account_of
from marketplace.lib.problems import Unavailable
from marketplace.lib.stripe_errors import is_transient, problem_from_stripe, stripe_code
from marketplace.orders.confirm import SessionMismatch, follow_session
from marketplace.orders.service import OrderRow
from marketplace.orders.states import TERMINAL
from marketplace.outbox.service import request_delivery

log = logging.getLogger("marketplace.verify")
security_log = logging.getLogger("marketplace.security")

RETRY_AFTER_SECONDS = 2


async def verify(client: stripe.StripeClient, arq: ArqRedis, order: OrderRow, session_id: str | None) -> OrderRow:
    """The order after applying its session as Stripe has it now (see the module doc)."""
    if session_id is not None and order.checkout_session_id is not None and session_id != order.checkout_session_id:
        security_log.warning(
            "security: verify of order %s named session %s; the order's session is %s",
            order.id,
            session_id,
            order.checkout_session_id,
        )
        raise SessionMismatch(
            f"The Checkout Session {session_id} does not belong to order {order.id}; nothing was changed.",
            order_id=str(order.id),
            mismatched=["session id"],
        )
    if order.status in TERMINAL:
        return order
    wanted = order.checkout_session_id or session_id
    if wanted is None:
        return order  # no session yet (its checkout is being retried): nothing to read
    lives_on = account_of(order.charge_type, order.stripe_account_id)
    try:
        session = await retrieve_session(client, wanted, lives_on)
    except stripe.StripeError as exc:
        if is_transient(exc):
            log.warning("verify of order %s: Stripe did not answer (%s)", order.id, type(exc).__name__)
            raise Unavailable(
                "The payment provider did not answer; nothing changed. Try again shortly.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                order_id=str(order.id),
                order_status=order.status.value,
            ) from exc
        if stripe_code(exc) == "resource_missing":
            security_log.warning("security: verify of order %s named session %s, unknown to Stripe", order.id, wanted)
            raise SessionMismatch(
                f"No Checkout Session {wanted} exists for order {order.id}; nothing was changed.",
                order_id=str(order.id),
                mismatched=["session id"],
            ) from exc
        raise problem_from_stripe(exc, "read the Checkout Session") from exc

    async def kick() -> None:
        await request_delivery(arq)

    return await follow_session(order.id, session, "verify", kick=kick, order=order)
