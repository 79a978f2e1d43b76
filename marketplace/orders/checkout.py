"""`POST /checkout`: a cart becomes an order, then a Checkout Session; the order always comes first.

1. **Check the cart, write nothing on refusal**: every listing exists, is active and is its seller's;
   one seller, one currency; the seller may take this charge type now (`selling_terms`); stock is
   enough *right now* (checked, not taken: stock is taken only when the payment is confirmed); the
   total is one Stripe would charge. Prices come from the listings, never from the client.
2. **Intent** (one short transaction): the order is written `pending` with a snapshot of its lines,
   amounts, currency, fee, charge type and connected account, and the `expires_at` its session will
   carry. A repeated checkout of the same cart by the same buyer within `CHECKOUT_REUSE_SECONDS`
   returns that order instead of writing another (keyed by `cart_key`, serialized by an advisory lock).
   "The same buyer" is the bearer token's buyer, or for a guest the email *and* the request's
   `Idempotency-Key`: an email alone is no credential, so it never finds (nor gets a token to) an order.
   An `Idempotency-Key` (a buyer's or a guest's) is stored with the order, hashed with its caller's
   scope, beside a fingerprint of the request body (`idempotency_key`); the same key with another body
   within 24 hours is a 422 `idempotency-key-reused` and writes nothing (as Stripe and the IETF
   Idempotency-Key draft answer).
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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import stripe

from connect import calls
from connect.checkout import (
    CHECKOUT_SESSION_ID,
    CreatedSession,
    SessionLine,
    SessionRequest,
    create_session,
    session_params,
)
from connect.currencies import charge_amount_problem, format_amount
from connect.fees import application_fee
from connect.idempotency import checkout_key
from marketplace.auth.service import AuthenticatedPrincipal
from marketplace.auth.tables import Principal, Role
from marketplace.auth.tokens import hash_token, mint_order_token
from marketplace.lib.db import connection
from marketplace.lib.problems import Problem, Unavailable
from marketplace.lib.settings import Settings
from marketplace.lib.stripe_errors import is_transient, stripe_code
from marketplace.listings.tables import Listing, ListingRow
from marketplace.orders import states
from marketplace.orders.errors import (
    AmountNotChargeable,
    CartSpansSellers,
    CheckoutRefused,
    IdempotencyKeyReused,
    InsufficientStock,
    ListingUnavailable,
    MixedCurrencies,
    WrongRoleForCheckout,
)
from marketplace.orders.schemas import CheckoutIn
from marketplace.orders.service import OrderLineRow, OrderRow, lines_of, order_by_id
from marketplace.orders.states import OrderStatus
from marketplace.sellers.accounts import AccountRow
from marketplace.sellers.eligibility import SellingTerms, terms_for
from marketplace.sellers.fees import combine, stored_override
from marketplace.sellers.tables import ConnectedAccount, Seller

log = logging.getLogger("marketplace.checkout")

RETRY_AFTER_SECONDS = 5
# How long an `Idempotency-Key` stays bound to the request body it first came with (Stripe's 24 hours).
IDEMPOTENCY_KEY_HOURS = 24

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
    # A guest's `Idempotency-Key`: what makes two of a guest's checkouts "the same buyer". An email is not
    # a credential (anyone may type it), so it alone never finds an order; without a key no two guest
    # checkouts are the same (each makes its own order).
    attempt: str | None = None
    _once: str = field(default_factory=lambda: uuid.uuid4().hex, repr=False)  # a keyless guest's, per checkout

    @property
    def identity(self) -> str:
        if self.principal_id:
            return f"buyer:{self.principal_id}"
        attempt = hashlib.sha256(self.attempt.encode()).hexdigest() if self.attempt else f"once:{self._once}"
        return f"guest:{self.email.lower()}:{attempt}"


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A checkout's `Idempotency-Key`, as stored: hashed with its caller's scope (a buyer's own keys, or
    the guests'), with the fingerprint of the body it came with."""

    key_hash: str
    fingerprint: str


def idempotency_key(buyer: Buyer, key: str | None, body: CheckoutIn) -> IdempotencyKey | None:
    """The stored form of `key` for this caller and body, or None without a key.

    The fingerprint is a SHA-256 of the body as canonical JSON (sorted keys, no spaces): the lines sorted
    by listing (their order changes nothing) and the email in lowercase (the same guest, as in
    `Buyer.identity`), so a retry of the same request matches whatever its key order or spacing."""
    if key is None:
        return None
    scope = f"buyer:{buyer.principal_id}" if buyer.principal_id else "guest"
    canonical = {
        "email": body.email.lower() if body.email else None,
        "lines": sorted([str(line.listing_id), line.quantity] for line in body.lines),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return IdempotencyKey(
        key_hash=hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest(),
        fingerprint=hashlib.sha256(text.encode()).hexdigest(),
    )


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


async def buyer_for(principal: AuthenticatedPrincipal | None, body: CheckoutIn, attempt: str | None = None) -> Buyer:
    """The buyer of a checkout: a buyer's token (its profile's email) or no token, an email and, for a
    retry to find its order, the guest's `Idempotency-Key` (`attempt`)."""
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
    return Buyer(None, body.email, attempt)


def _validation(key: str, message: str) -> Problem:
    return Problem(
        f"Invalid {key}: {message}.",
        status=400,
        slug="validation-error",
        title="Bad request",
        errors=[{"key": key, "message": message, "source": "body"}],
    )


@dataclass(frozen=True, slots=True)
class _Context:
    """What a cart needs from the database, read in one round trip: its listings, and for each of their
    sellers the current connected account (None: none yet) and the stored fee override."""

    listings: dict[uuid.UUID, ListingRow]
    accounts: dict[uuid.UUID, AccountRow | None]
    overrides: dict[uuid.UUID, object]


_ACCOUNT_COLUMNS = [column._meta.db_column_name for column in ConnectedAccount._meta.columns]
_LISTING_COLUMNS = [column._meta.db_column_name for column in Listing._meta.columns]
# Column names come from the table definitions only; the one value is a bind parameter.
_SELECTED = ", ".join(
    [f'l."{c}" AS "l_{c}"' for c in _LISTING_COLUMNS]
    + ["s.fee_override AS s_fee_override"]
    + [f'a."{c}" AS "a_{c}"' for c in _ACCOUNT_COLUMNS]
)
_CONTEXT_SQL = f"""
SELECT {_SELECTED}
  FROM listings l JOIN sellers s ON s.id = l.seller
  LEFT JOIN LATERAL (SELECT * FROM connected_accounts c WHERE c.seller = s.id ORDER BY c.generation DESC LIMIT 1) a
    ON true
 WHERE l.id = ANY($1::uuid[])
"""  # noqa: S608


async def _context(ids: list[uuid.UUID]) -> _Context:
    """The same reads as `listings_for_checkout`, `account_for_seller` and `fee_override_for`, in one query."""
    async with connection() as conn:
        rows = await conn.fetch(_CONTEXT_SQL, ids)
    context = _Context({}, {}, {})
    for row in rows:
        listing = ListingRow.from_row({c: row[f"l_{c}"] for c in _LISTING_COLUMNS})
        context.listings[listing.id] = listing
        account = {c: row[f"a_{c}"] for c in _ACCOUNT_COLUMNS}
        context.accounts[listing.seller] = AccountRow.from_row(account) if account["id"] is not None else None
        context.overrides[listing.seller] = row["s_fee_override"]
    return context


def _priced_lines(body: CheckoutIn, found: dict[uuid.UUID, ListingRow]) -> list[_Priced]:
    ids = [line.listing_id for line in body.lines]
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


async def checkout(
    client: stripe.StripeClient,
    settings: Settings,
    buyer: Buyer,
    body: CheckoutIn,
    key: IdempotencyKey | None = None,
) -> CheckoutResult:
    """Check the cart, write (or find) the order, and give it a Checkout Session (see the module doc).
    `key`: the request's `Idempotency-Key`, refused (422) when it came with another body before."""
    ids = [line.listing_id for line in body.lines]
    if len(set(ids)) != len(ids):
        raise _validation("lines", "each listing may appear once; put the whole quantity on one line")
    context = await _context(ids)
    lines = _priced_lines(body, context.listings)
    seller_id = await _one_seller(lines)
    currencies = sorted({line.listing.currency for line in lines})
    if len(currencies) > 1:
        raise MixedCurrencies(f"The cart mixes currencies ({', '.join(c.upper() for c in currencies)}).")
    currency = currencies[0]
    terms = terms_for(seller_id, context.accounts[seller_id])
    _check_stock(lines)
    subtotal = sum(line.amount for line in lines)
    problem = charge_amount_problem(subtotal, currency)
    if problem is not None or subtotal == 0:
        raise AmountNotChargeable(
            f"The total {format_amount(subtotal, currency)} cannot be charged: {problem or 'it is zero'}."
        )
    policy = combine(settings, seller_id, stored_override(seller_id, context.overrides[seller_id]))
    fee = application_fee(subtotal, currency, policy)
    cart = cart_key(buyer, terms, currency, fee, lines)

    async def intent() -> tuple[CheckoutResult, str]:
        written = await _write_order(settings, buyer, terms, currency, subtotal, fee, lines, cart, key)
        return written, checkout_key(written.order.id)

    async def call(written: CheckoutResult, idem_key: str) -> CreatedSession | None:
        order = written.order
        if order.checkout_session_id is not None:
            return None  # an earlier checkout of this cart already has its session
        params, stripe_account = session_params(_session_request(settings, order, written.lines))
        try:
            session = await create_session(client, params, stripe_account, idem_key)
        except stripe.StripeError as exc:
            outcome = await _refusal(order, exc)
            if isinstance(outcome, CreatedSession):
                return outcome  # refused, but a concurrent checkout of this order recorded its session
            raise outcome from exc
        return session

    async def record(written: CheckoutResult, session: CreatedSession | None) -> CheckoutResult:
        if session is None:
            return written
        async with connection() as conn:
            recorded = await conn.fetchrow(
                """
                UPDATE orders SET checkout_session_id = $2, checkout_url = $3, updated_at = now()
                 WHERE id = $1 AND checkout_session_id IS NULL
             RETURNING *
                """,
                written.order.id,
                session.id,
                session.url,
            )
        fresh = OrderRow.from_row(recorded) if recorded is not None else await order_by_id(written.order.id)
        assert fresh is not None
        return replace(written, order=fresh)

    return await calls.post("create a Checkout Session", intent=intent, call=call, record=record)


# One statement writes the order, its lines and (for a guest) its access token, or finds the cart's
# pending order within the reuse window and only adds the token. It runs after the cart's advisory lock
# (a statement of its own, so this one's snapshot sees an order committed by whoever held the lock).
_WRITE_ORDER = """
WITH existing AS (
    SELECT * FROM orders
     WHERE cart_key = $1 AND status = 'pending' AND created_at > $2 AND checkout_expires_at > $3
     ORDER BY created_at DESC LIMIT 1
), new_order AS (
    INSERT INTO orders (id, buyer, email, seller, account, stripe_account_id, charge_type, currency, subtotal,
                        application_fee, total, status, cart_key, checkout_expires_at, created_at, updated_at,
                        idempotency_key, request_fingerprint)
    SELECT $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $12, 'pending', $1, $14, $15, $15, $23, $24
     WHERE NOT EXISTS (SELECT 1 FROM existing)
    RETURNING *
), new_lines AS (
    INSERT INTO order_lines (id, "order", position, listing, title, unit_amount, quantity, amount)
    SELECT gen_random_uuid(), o.id, l.position, l.listing, l.title, l.unit_amount, l.quantity, l.amount
      FROM new_order o,
           unnest($16::int[], $17::uuid[], $18::text[], $19::bigint[], $20::int[], $21::bigint[])
             AS l(position, listing, title, unit_amount, quantity, amount)
), token AS (
    INSERT INTO order_access_tokens (id, "order", token_hash, created_at)
    SELECT gen_random_uuid(), coalesce((SELECT id FROM new_order), (SELECT id FROM existing)), $22, $15
     WHERE $22::varchar IS NOT NULL
)
SELECT *, true AS created FROM new_order
UNION ALL
SELECT *, false AS created FROM existing WHERE NOT EXISTS (SELECT 1 FROM new_order)
"""


async def _write_order(
    settings: Settings,
    buyer: Buyer,
    terms: SellingTerms,
    currency: str,
    subtotal: int,
    fee: int,
    lines: list[_Priced],
    cart: str,
    key: IdempotencyKey | None,
) -> CheckoutResult:
    """The pending order for this cart: an earlier one within the reuse window, else a new one;
    `IdempotencyKeyReused` (nothing written) when `key` came with another body within its lifetime."""
    now = datetime.now(UTC)
    token = mint_order_token() if buyer.principal_id is None else None
    values = (
        cart,
        now - timedelta(seconds=settings.checkout_reuse_seconds),
        now + timedelta(minutes=31),  # Stripe's shortest session and a minute: an older one would be refused
        uuid.uuid4(),
        buyer.principal_id,
        buyer.email,
        terms.seller_id,
        terms.account_row_id,
        terms.stripe_account_id,
        terms.charge_type,
        currency,
        subtotal,
        fee,
        now + timedelta(minutes=settings.checkout_expires_minutes),
        now,
        list(range(len(lines))),
        [line.listing.id for line in lines],
        [line.listing.title for line in lines],
        [line.listing.unit_amount for line in lines],
        [line.quantity for line in lines],
        [line.amount for line in lines],
        hash_token(token) if token is not None else None,
        key.key_hash if key is not None else None,
        key.fingerprint if key is not None else None,
    )
    async with connection() as conn, conn.transaction():
        if key is not None:
            # The key's lock first (always in this order: no deadlock), so two bodies sent with one key at
            # once are serialized here and the second sees the first's order.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key.key_hash)
            earlier = await conn.fetchval(
                """
                SELECT request_fingerprint FROM orders
                 WHERE idempotency_key = $1 AND created_at > $2 ORDER BY created_at DESC LIMIT 1
                """,
                key.key_hash,
                now - timedelta(hours=IDEMPOTENCY_KEY_HOURS),
            )
            if earlier is not None and earlier != key.fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used for another checkout (other lines, quantities or email) "
                    f"in the last {IDEMPOTENCY_KEY_HOURS} hours; use a new key for a new checkout."
                )
        # Two checkouts of one cart at once: the second waits here (milliseconds), then finds the first.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", cart)
        row = await conn.fetchrow(_WRITE_ORDER, *values)
    assert row is not None
    order = OrderRow.from_row(row)
    created = bool(row["created"])
    if created:
        order_lines = [
            OrderLineRow(line.listing.id, line.listing.title, line.listing.unit_amount, line.quantity, line.amount)
            for line in lines
        ]
        log.info("order %s written (%s charge, %d %s)", order.id, order.charge_type, order.total, order.currency)
    else:
        order_lines = (await lines_of([order.id]))[order.id]
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


async def _refusal(order: OrderRow, exc: stripe.StripeError) -> Problem | CreatedSession:
    """The problem for a Stripe error; a definitive one also moves the order to failed with the code.

    The recorded session instead when the order has one by then (a concurrent checkout of the same order
    made it, and this request's re-send was refused, e.g. with parameters a rolling deploy changed): the
    order is the buyer's to pay, not failed."""
    code = stripe_code(exc) or ("idempotency_error" if isinstance(exc, stripe.IdempotencyError) else None)
    log.warning(
        "checkout session for order %s failed: %s (code=%s, request=%s)",
        order.id,
        type(exc).__name__,
        code,
        getattr(exc, "request_id", None),
    )
    if is_transient(exc):
        return Unavailable(
            "The payment provider did not answer; your order is kept. Retry shortly: the same order is used.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            order_id=str(order.id),
        )
    words = _PLAIN_WORDS.get(code or "", _GENERIC)
    moved = await states.move(
        order.id,
        OrderStatus.failed,
        reason=exc.user_message or words,
        values={"stripe_error_code": (code or type(exc).__name__)[:64]},
        session_unrecorded=True,
    )
    if moved is None:
        current = await order_by_id(order.id)
        if current is not None and current.checkout_session_id and current.checkout_url:
            log.warning(
                "order %s keeps the session %s a concurrent checkout recorded", order.id, current.checkout_session_id
            )
            return CreatedSession(current.checkout_session_id, current.checkout_url)
    return CheckoutRefused(words, order_id=str(order.id), order_status="failed", stripe_code=code)
