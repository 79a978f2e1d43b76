"""Checkout and order routes: `POST /checkout`, `GET /orders/{id}`, a buyer's and a seller's orders."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from marketplace.auth.deps import PrincipalDep
from marketplace.auth.guards import buyer_only, optional_principal, seller_only
from marketplace.auth.service import AuthenticatedPrincipal
from marketplace.lib.deps import ArqDep, SettingsDep, StripeDep
from marketplace.lib.problems import InvalidCursor, NotFound, TooManyRequests, Unavailable
from marketplace.lib.ratelimit import Limit as RateLimit
from marketplace.lib.ratelimit import client_address, enforce
from marketplace.lib.schemas import Cursor
from marketplace.lib.settings import Settings
from marketplace.orders import checkout as checkout_service
from marketplace.orders import verify as verify_service
from marketplace.orders.confirm import SessionMismatch
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
from marketplace.orders.schemas import (
    CheckoutIn,
    CheckoutOut,
    OrderLineOut,
    OrderOut,
    OrderPage,
    RefundOut,
    VerifyIn,
)
from marketplace.orders.service import (
    OrderLineRow,
    OrderRow,
    lines_of,
    order_for_caller,
    order_for_payer,
    orders_page,
)
from marketplace.orders.states import OrderStatus
from marketplace.refunds.service import RefundRow, refunds_of
from marketplace.sellers.deps import CURRENT_SELLER, CurrentSellerDep
from marketplace.sellers.errors import SellerCannotSell

ORDER_TOKEN_HEADER = "X-Order-Token"
OPTIONAL_BEARER: list[dict[str, list[str]]] = [{}, {"BearerToken": []}]
BEARER: list[dict[str, list[str]]] = [{"BearerToken": []}]
OrderTokenDep = Annotated[
    str | None,
    HeaderParameter(
        name=ORDER_TOKEN_HEADER,
        required=False,
        max_length=200,
        description="A guest's access token for this order (from the checkout answer).",
    ),
]
CallerDep = NamedDependency[AuthenticatedPrincipal | None]
# A success page polls with backoff (~15 calls a minute at most); a second tab or a reload adds a few.
VERIFY_PER_ORDER = RateLimit("verify-order", limit=40, window=60)


def verify_per_caller(settings: Settings) -> RateLimit:
    """Per buyer or, for a guest, per client address: VERIFY_LIMIT_PER_MINUTE (60)."""
    return RateLimit("verify-caller", limit=settings.verify_limit_per_minute, window=60)


def checkout_per_caller(settings: Settings) -> RateLimit:
    """Each checkout writes an order and a Stripe Checkout Session, and anyone may check out as a guest:
    per buyer or, for guests, per client address, CHECKOUT_LIMIT_PER_MINUTE (30): a person's, not a loop's."""
    return RateLimit("checkout-caller", limit=settings.checkout_limit_per_minute, window=60)


IdempotencyKeyDep = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description=(
            "A guest's key for this checkout attempt (any string the client makes up, e.g. a UUID, kept "
            "until the cart changes): a retry with the same key, email and cart within the reuse window "
            "returns the same order and a token for it. Without one a guest's every checkout is a new order. "
            "A key is bound for 24 hours to the body it first came with (lines, quantities, email; a buyer's "
            "keys are their own): the same key with another body is a 422 `idempotency-key-reused`."
        ),
    ),
]


def order_out(order: OrderRow, lines: list[OrderLineRow], refunds: list[RefundRow] | None = None) -> OrderOut:
    return OrderOut(
        id=order.id,
        status=order.status.value,
        seller_id=order.seller,
        charge_type=order.charge_type,
        currency=order.currency,
        subtotal=order.subtotal,
        application_fee=order.application_fee,
        total=order.total,
        lines=[OrderLineOut(x.listing_id, x.title, x.unit_amount, x.quantity, x.amount) for x in lines],
        checkout_url=order.checkout_url if order.status is OrderStatus.pending else None,
        checkout_expires_at=order.checkout_expires_at,
        status_reason=order.status_reason,
        stripe_error_code=order.stripe_error_code,
        created_at=order.created_at,
        updated_at=order.updated_at,
        amount_paid=order.amount_paid,
        amount_discount=order.amount_discount,
        application_fee_charged=order.fee_charged,
        seller_share=order.seller_share,
        paid_at=order.paid_at,
        refunds=[
            RefundOut(r.id, r.reason, r.amount, r.currency, r.status.value, r.stripe_status, r.created_at)
            for r in refunds or []
        ],
    )


async def full_order(order: OrderRow) -> OrderOut:
    """The order with its lines and refunds (what `GET /orders/{id}` and verify answer)."""
    lines = await lines_of([order.id])
    refunds = await refunds_of([order.id]) if order.status is OrderStatus.oversold else {order.id: []}
    return order_out(order, lines[order.id], refunds[order.id])


async def _page(orders: list[OrderRow], next_cursor: str | None) -> OrderPage:
    lines = await lines_of([o.id for o in orders])
    refunds = await refunds_of([o.id for o in orders if o.status is OrderStatus.oversold])
    return OrderPage(items=[order_out(o, lines[o.id], refunds.get(o.id)) for o in orders], next_cursor=next_cursor)


class CheckoutController(Controller):
    path = "/checkout"
    tags = ["checkout"]
    dependencies = {"caller": Provide(optional_principal)}

    @post(
        "/",
        operation_id="createCheckout",
        summary="Check out a cart: write the order, then open a Stripe Checkout Session for it",
        description=(
            "A signed-in buyer (bearer token) or a guest giving `email`. Lines name listings of one seller; "
            "prices are looked up here. 201 with the order and the Checkout URL (a guest also gets the "
            "order's `access_token`, once); 200 with the same order when the same cart was checked out by "
            "the same buyer a moment ago (e.g. a retry after a 503): the same bearer token, or for a guest "
            "the same email and `Idempotency-Key`. Stock is checked, not taken. 429 (with Retry-After) past "
            "30 checkouts a minute per buyer or, for guests, per client address."
        ),
        status_code=201,
        security=OPTIONAL_BEARER,
        responses={200: ResponseSpec(data_container=CheckoutOut, description="The same cart's existing order.")},
        raises=[
            WrongRoleForCheckout,
            ListingUnavailable,
            CartSpansSellers,
            MixedCurrencies,
            AmountNotChargeable,
            InsufficientStock,
            SellerCannotSell,
            CheckoutRefused,
            IdempotencyKeyReused,
            TooManyRequests,
            Unavailable,
        ],
    )
    async def create(
        self,
        data: JSONBody[CheckoutIn],
        caller: CallerDep,
        stripe_client: StripeDep,
        settings: SettingsDep,
        arq: ArqDep,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyDep = None,
    ) -> Response[CheckoutOut]:
        who = str(caller.id) if caller is not None else client_address(request)
        await enforce(arq, (checkout_per_caller(settings), who))
        buyer = await checkout_service.buyer_for(caller, data, idempotency_key)
        key = checkout_service.idempotency_key(buyer, idempotency_key, data)
        result = await checkout_service.checkout(stripe_client, settings, buyer, data, key)
        body = CheckoutOut(
            order=order_out(result.order, result.lines),
            checkout_url=result.order.checkout_url,
            access_token=result.access_token,
        )
        return Response(body, status_code=201 if result.created else 200)


class OrderController(Controller):
    path = "/orders"
    tags = ["orders"]
    dependencies = {"caller": Provide(optional_principal)}

    @get(
        "/{order_id:uuid}",
        operation_id="getOrder",
        summary="One order: for its buyer, its guest (X-Order-Token), its seller and admins",
        description="404 for anyone else, exactly as for an order that does not exist.",
        security=OPTIONAL_BEARER,
    )
    async def get_order(self, order_id: FromPath[uuid.UUID], caller: CallerDep, order_token: OrderTokenDep) -> OrderOut:
        return await full_order(await order_for_caller(order_id, caller, order_token))

    @post(
        "/{order_id:uuid}/verify",
        operation_id="verifyOrder",
        summary="What a success page calls: re-read the order's Checkout Session from Stripe and confirm it",
        description=(
            "For the order's buyer (bearer token) or guest (`X-Order-Token`); 404 for anyone else, its seller"
            " and admins included (they read it with GET). Give the `session_id` from the success URL when "
            "you have it. The session is read again from Stripe (as the seller's account for a direct charge)"
            " and applied by the same confirmation the webhooks use: whichever comes first confirms the "
            "order, once. Answers 200 with the order whatever its status (pending, processing, paid, failed, "
            "expired, oversold), so a page can poll it; 409 when the session is not this order's; 429 (with "
            "Retry-After) past the per-order and per-caller limits; 503 (with Retry-After) when Stripe did "
            "not answer."
        ),
        status_code=200,
        security=OPTIONAL_BEARER,
        raises=[NotFound, SessionMismatch, TooManyRequests, Unavailable],
    )
    async def verify(
        self,
        order_id: FromPath[uuid.UUID],
        caller: CallerDep,
        order_token: OrderTokenDep,
        stripe_client: StripeDep,
        arq: ArqDep,
        settings: SettingsDep,
        request: Request[Any, Any, Any],
        data: JSONBody[VerifyIn | None] = None,
    ) -> OrderOut:
        order = await order_for_payer(order_id, caller, order_token)
        # Per caller: the buyer, or a guest's address (a token per order would give a guest a limit per order).
        who = str(caller.id) if caller is not None else client_address(request)
        await enforce(arq, (VERIFY_PER_ORDER, str(order.id)), (verify_per_caller(settings), who))
        after = await verify_service.verify(stripe_client, arq, order, data.session_id if data else None)
        return await full_order(after)


Limit = Annotated[int, QueryParameter(ge=1, le=100)]


class BuyerOrdersController(Controller):
    path = "/buyers/me/orders"
    tags = ["orders"]
    guards = [buyer_only]
    security = BEARER

    @get(
        "/",
        operation_id="listMyBuyerOrders",
        summary="The buyer's orders, newest first",
        description=(
            "A page of the signed-in buyer's orders, with their lines; pass `next_cursor` as `cursor` for the "
            "next page. 400 `invalid-cursor` for a cursor this API did not return."
        ),
        raises=[InvalidCursor],
    )
    async def list_orders(self, principal: PrincipalDep, limit: Limit = 20, cursor: Cursor = None) -> OrderPage:
        return await _page(*await orders_page(buyer=principal.id, limit=limit, cursor=cursor))


class SellerOrdersController(Controller):
    path = "/sellers/me/orders"
    tags = ["orders"]
    guards = [seller_only]
    security = BEARER
    dependencies = CURRENT_SELLER

    @get(
        "/",
        operation_id="listMySellerOrders",
        summary="The seller's orders, newest first",
        description=(
            "A page of the orders of the seller's listings, with their lines; pass `next_cursor` as `cursor` "
            "for the next page. 400 `invalid-cursor` for a cursor this API did not return."
        ),
        raises=[InvalidCursor],
    )
    async def list_orders(self, seller: CurrentSellerDep, limit: Limit = 20, cursor: Cursor = None) -> OrderPage:
        return await _page(*await orders_page(seller=seller.id, limit=limit, cursor=cursor))


def route_handlers() -> list[Any]:
    return [CheckoutController, OrderController, BuyerOrdersController, SellerOrdersController]
