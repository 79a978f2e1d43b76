"""`POST /checkout`: a cart becomes an order, then a Checkout Session; the order always comes first.

1. **Check the cart, write nothing on refusal**: every listing exists, is active and is its seller's;
   one seller, one currency; the seller may take this charge type now (`selling_terms`); stock is
   enough *right now* (checked, not taken: stock is taken only when the payment is confirmed); the
   total is one Stripe would charge. Prices come from the listings, never from the client.
2. **Intent** (one short transaction): the order is written `pending` with a snapshot of its lines,
   amounts, currency, fee, charge type and connected account, and the `expires_at` its session will
   carry. A repeated checkout of the same cart by the same buyer within `CHECKOUT_REUSE_SECONDS`
   returns that order instead of writing another (keyed by `cart_key`, serialized by an advisory lock).
3. **Call** Stripe (nothing held): `checkout.sessions.create` with the key `checkout:{order_id}` and
   parameters built from the stored snapshot only, so a retry (the SDK's, or the buyer's) sends the
   same request and gets the same session, never a second one.
4. **Record** the session's id and URL (a guarded update: only while none is recorded).

A timeout or a 5xx that outlasts the SDK's retries leaves the order pending and answers 503 with
`Retry-After`: the buyer's retry finds the same order and re-sends the same key. A definitive Stripe
error moves the order to `failed` with Stripe's code, and answers 502 `checkout-refused` in plain words.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import stripe

from connect import calls
from connect.checkout import CHECKOUT_SESSION_ID, SessionLine, SessionRequest, create_session, session_params
from connect.currencies import charge_amount_problem, format_amount
from connect.fees import application_fee
from connect.idempotency import checkout_key
from marketplace.auth.service import AuthenticatedPrincipal
from marketplace.auth.tables import Principal, Role
from marketplace.auth.tokens import hash_token, mint_order_token
from marketplace.db import DB
from marketplace.listings.service import listings_for_checkout
from marketplace.listings.tables import ListingRow
from marketplace.orders import states
from marketplace.orders.errors import (
    AmountNotChargeable,
    CartSpansSellers,
    CheckoutRefused,
    InsufficientStock,
    ListingUnavailable,
    MixedCurrencies,
    WrongRoleForCheckout,
)
from marketplace.orders.schemas import CheckoutIn
from marketplace.orders.service import OrderLineRow, OrderRow, lines_of, order_by_id
from marketplace.orders.states import OrderStatus
from marketplace.orders.tables import Order, OrderAccessToken, OrderLine
from marketplace.problems import Problem, Unavailable
from marketplace.sellers.eligibility import SellingTerms, selling_terms
from marketplace.sellers.fees import fee_policy_for
from marketplace.sellers.tables import Seller
from marketplace.settings import Settings
from marketplace.stripe_errors import stripe_code

log = logging.getLogger("marketplace.checkout")

RETRY_AFTER_SECONDS = 5

# Stripe's codes a buyer may see, in plain words (anything else: the generic sentence).
_PLAIN_WORDS = {
    "account_invalid": "The seller's payment account cannot take payments right now.",
    "amount_too_small": "The total is below the smallest amount that can be charged.",
    "amount_too_large": "The total is above the largest amount that can be charged.",
    "idempotency_error": "This checkout could not be started again; please start a new one.",
}
_GENERIC = "The payment provider refused to start this checkout; nothing was charged."


@dataclass(frozen=True, slots=True)
class Buyer:
    """Who checks out: a signed-in buyer (their principal) or a guest (an email only)."""

    principal_id: uuid.UUID | None
    email: str

    @property
    def identity(self) -> str:
        return f"buyer:{self.principal_id}" if self.principal_id else f"guest:{self.email.lower()}"


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    order: OrderRow
    lines: list[OrderLineRow]
    created: bool  # False: an earlier checkout of the same cart was returned
    access_token: str | None  # for a guest: a new credential for this order, shown once


@dataclass(frozen=True, slots=True)
class _Priced:
    listing: ListingRow
    quantity: int

    @property
    def amount(self) -> int:
        return self.listing.unit_amount * self.quantity


async def buyer_for(principal: AuthenticatedPrincipal | None, body: CheckoutIn) -> Buyer:
    """The buyer of a checkout: a buyer's token (its profile's email) or no token and an email."""
    if principal is not None:
        if principal.role is not Role.buyer:
            raise WrongRoleForCheckout("Check out with a buyer's token, or as a guest without a token.")
        row = await Principal.select(Principal.email).where(Principal.id == principal.id).first()
        email = (row or {}).get("email") or body.email
        if not email:
            raise _validation("email", "the buyer has no email on file; give one")
        return Buyer(principal.id, email)
    if not body.email:
        raise _validation("email", "a guest checkout needs an email (or sign in as a buyer)")
    return Buyer(None, body.email)


def _validation(key: str, message: str) -> Problem:
    return Problem(
        f"Invalid {key}: {message}.",
        status=400,
        slug="validation-error",
        title="Bad request",
        errors=[{"key": key, "message": message, "source": "body"}],
    )


async def _priced_lines(body: CheckoutIn) -> list[_Priced]:
    ids = [line.listing_id for line in body.lines]
    if len(set(ids)) != len(ids):
        raise _validation("lines", "each listing may appear once; put the whole quantity on one line")
    found = await listings_for_checkout(ids)
    missing = [str(i) for i in ids if i not in found or not found[i].active]
    if missing:
        raise ListingUnavailable(
            f"{'This listing is' if len(missing) == 1 else 'These listings are'} not for sale: {', '.join(missing)}.",
            listing_ids=missing,
        )
    return [_Priced(found[line.listing_id], line.quantity) for line in body.lines]


async def _one_seller(lines: list[_Priced]) -> uuid.UUID:
    sellers = list(dict.fromkeys(line.listing.seller for line in lines))
    if len(sellers) > 1:
        rows = await Seller.select(Seller.id, Seller.display_name).where(Seller.id.is_in(sellers))
        names = {r["id"]: r["display_name"] for r in rows}
        described = [{"seller_id": str(s), "display_name": names.get(s, "")} for s in sellers]
        raise CartSpansSellers(
            "One checkout pays one seller; this cart has items from "
            + ", ".join(f"{d['display_name']} ({d['seller_id']})" for d in described)
            + ". Check out each seller's items separately.",
            sellers=described,
        )
    return sellers[0]


def _check_stock(lines: list[_Priced]) -> None:
    short = [
        {"listing_id": str(line.listing.id), "requested": line.quantity, "available": line.listing.stock}
        for line in lines
        if line.listing.stock is not None and line.quantity > line.listing.stock
    ]
    if short:
        raise InsufficientStock(
            "Not enough stock right now for: "
            + ", ".join(f"{s['listing_id']} ({s['available']} left, {s['requested']} asked)" for s in short)
            + ".",
            lines=short,
        )


def cart_key(buyer: Buyer, terms: SellingTerms, currency: str, fee: int, lines: list[_Priced]) -> str:
    """What makes two checkouts "the same cart": the buyer, the seller's account, and every line at its
    current price, with the fee. A price or fee change makes a different cart (a new order)."""
    material = [
        buyer.identity,
        terms.stripe_account_id,
        terms.charge_type,
        currency,
        fee,
        sorted([str(p.listing.id), p.listing.unit_amount, p.quantity] for p in lines),
    ]
    return hashlib.sha256(json.dumps(material, separators=(",", ":")).encode()).hexdigest()


async def checkout(client: stripe.StripeClient, settings: Settings, buyer: Buyer, body: CheckoutIn) -> CheckoutResult:
    """Check the cart, write (or find) the order, and give it a Checkout Session (see the module doc)."""
    lines = await _priced_lines(body)
    seller_id = await _one_seller(lines)
    currencies = sorted({line.listing.currency for line in lines})
    if len(currencies) > 1:
        raise MixedCurrencies(f"The cart mixes currencies ({', '.join(c.upper() for c in currencies)}).")
    currency = currencies[0]
    terms = await selling_terms(seller_id)
    _check_stock(lines)
    subtotal = sum(line.amount for line in lines)
    problem = charge_amount_problem(subtotal, currency)
    if problem is not None or subtotal == 0:
        raise AmountNotChargeable(
            f"The total {format_amount(subtotal, currency)} cannot be charged: {problem or 'it is zero'}."
        )
    fee = application_fee(subtotal, currency, await fee_policy_for(settings, seller_id))
    key = cart_key(buyer, terms, currency, fee, lines)

    async def intent() -> tuple[CheckoutResult, str]:
        written = await _write_order(settings, buyer, terms, currency, subtotal, fee, lines, key)
        return written, checkout_key(written.order.id)

    async def call(written: CheckoutResult, idem_key: str) -> dict[str, str] | None:
        order = written.order
        if order.checkout_session_id is not None:
            return None  # an earlier checkout of this cart already has its session
        params, stripe_account = session_params(_session_request(settings, order, written.lines))
        try:
            session = await create_session(client, params, stripe_account, idem_key)
        except stripe.StripeError as exc:
            raise await _refusal(order, exc) from exc
        return {"id": str(session["id"]), "url": str(session["url"])}

    async def record(written: CheckoutResult, session: dict[str, str] | None) -> CheckoutResult:
        if session is None:
            return written
        recorded = (
            await Order.update(
                {
                    Order.checkout_session_id: session["id"],
                    Order.checkout_url: session["url"],
                    Order.updated_at: datetime.now(UTC),
                }
            )
            .where((Order.id == written.order.id) & Order.checkout_session_id.is_null())
            .returning(*Order.all_columns())
        )
        fresh = OrderRow.from_row(recorded[0]) if recorded else await order_by_id(written.order.id)
        assert fresh is not None
        return replace(written, order=fresh)

    return await calls.post("create a Checkout Session", intent=intent, call=call, record=record)


async def _write_order(
    settings: Settings,
    buyer: Buyer,
    terms: SellingTerms,
    currency: str,
    subtotal: int,
    fee: int,
    lines: list[_Priced],
    key: str,
) -> CheckoutResult:
    """The pending order for this cart: an earlier one within the reuse window, else a new one."""
    now = datetime.now(UTC)
    token = mint_order_token() if buyer.principal_id is None else None
    async with DB.transaction():
        # Two checkouts of one cart at once: the second waits here (milliseconds), then finds the first.
        await Order.raw("SELECT pg_advisory_xact_lock(hashtextextended({}, 0))", key)
        existing = (
            await Order.select()
            .where(
                (Order.cart_key == key)
                & (Order.status == OrderStatus.pending.value)
                & (Order.created_at > now - timedelta(seconds=settings.checkout_reuse_seconds))
                & (Order.checkout_expires_at > now + timedelta(minutes=30))  # Stripe's shortest session
            )
            .order_by(Order.created_at, ascending=False)
            .first()
        )
        if existing is not None:
            order = OrderRow.from_row(existing)
            order_lines = (await lines_of([order.id]))[order.id]
            created = False
        else:
            order_id = uuid.uuid4()
            inserted = await Order.insert(
                Order(
                    id=order_id,
                    buyer=buyer.principal_id,
                    email=buyer.email,
                    seller=terms.seller_id,
                    account=terms.account_row_id,
                    stripe_account_id=terms.stripe_account_id,
                    charge_type=terms.charge_type,
                    currency=currency,
                    subtotal=subtotal,
                    application_fee=fee,
                    total=subtotal,
                    status=OrderStatus.pending.value,
                    cart_key=key,
                    checkout_expires_at=now + timedelta(minutes=settings.checkout_expires_minutes),
                    created_at=now,
                    updated_at=now,
                )
            ).returning(*Order.all_columns())
            order = OrderRow.from_row(inserted[0])
            order_lines = [
                OrderLineRow(line.listing.id, line.listing.title, line.listing.unit_amount, line.quantity, line.amount)
                for line in lines
            ]
            await OrderLine.insert(
                *(
                    OrderLine(
                        id=uuid.uuid4(),
                        order=order_id,
                        position=position,
                        listing=line.listing.id,
                        title=line.listing.title,
                        unit_amount=line.listing.unit_amount,
                        quantity=line.quantity,
                        amount=line.amount,
                    )
                    for position, line in enumerate(lines)
                )
            )
            created = True
        if token is not None:
            await OrderAccessToken.insert(
                OrderAccessToken(id=uuid.uuid4(), order=order.id, token_hash=hash_token(token), created_at=now)
            )
    if created:
        log.info("order %s written (%s charge, %d %s)", order.id, order.charge_type, order.total, order.currency)
    return CheckoutResult(order, order_lines, created, token)


def _session_request(settings: Settings, order: OrderRow, lines: list[OrderLineRow]) -> SessionRequest:
    """The session request, from the order's snapshot only (every retry sends the same one)."""
    return SessionRequest(
        order_id=str(order.id),
        charge_type=order.charge_type,
        connected_account=order.stripe_account_id,
        currency=order.currency,
        lines=[SessionLine(line.title, line.unit_amount, line.quantity, str(line.listing_id)) for line in lines],
        application_fee=order.application_fee,
        expires_at=int(order.checkout_expires_at.timestamp()),
        success_url=f"{settings.checkout_success_url}?order_id={order.id}&session_id={CHECKOUT_SESSION_ID}",
        cancel_url=f"{settings.checkout_cancel_url}?order_id={order.id}",
        customer_email=order.email,
        allow_promotion_codes=settings.checkout_allow_promotion_codes,
        on_behalf_of=settings.checkout_on_behalf_of,
    )


def _transient(exc: stripe.StripeError) -> bool:
    """Worth retrying later with the same key: Stripe was unreachable, overloaded or failed."""
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    status = exc.http_status or 0
    return status >= 500 or (status == 409 and not isinstance(exc, stripe.IdempotencyError))


async def _refusal(order: OrderRow, exc: stripe.StripeError) -> Problem:
    """The problem for a Stripe error; a definitive one also moves the order to failed with the code."""
    code = stripe_code(exc) or ("idempotency_error" if isinstance(exc, stripe.IdempotencyError) else None)
    log.warning(
        "checkout session for order %s failed: %s (code=%s, request=%s)",
        order.id,
        type(exc).__name__,
        code,
        getattr(exc, "request_id", None),
    )
    if _transient(exc):
        return Unavailable(
            "The payment provider did not answer; your order is kept. Retry shortly: the same order is used.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            order_id=str(order.id),
        )
    words = _PLAIN_WORDS.get(code or "", _GENERIC)
    await states.move(
        order.id,
        OrderStatus.failed,
        reason=exc.user_message or words,
        values={Order.stripe_error_code: (code or type(exc).__name__)[:64]},
    )
    return CheckoutRefused(words, order_id=str(order.id), order_status="failed", stripe_code=code)
